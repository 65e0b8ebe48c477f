"""Certified bounds: time per sample against forward+backward, and certified accuracy after normal vs IBP training.

Part 1 times IBP, CROWN-IBP (IBP intermediate bounds, CROWN for the logits), CROWN and α-CROWN
per sample (ε = 1/255, median of ``--repeats`` runs) as a ratio to the model's own forward+backward
time per sample at its best batch, on the reference CNN (``SmallCNN``, 32 px) and on ResNet-sized
CNNs: a narrow ResNet (ResNet-18's layout at widths 8-64, 32 px) for all methods, and ResNet-18
itself for IBP and CROWN-IBP (``--resnet18-crown`` adds CROWN and α-CROWN there, one run). Each
method runs in a forked process whose peak resident memory above the parent's is reported.

Part 2 trains a small CNN on the bundled digits twice — normally, and with interval bound
propagation (IBP training, Gowal et al. 2018, ε ramped to 4/255) — and reports clean, certified
(CROWN) and empirical (PGD/APGD) robust accuracy at ε ∈ {1/255, 2/255}.

Usage:
    python benchmarks/bench_verify.py [--threads 1] [--repeats 3] [--samples 100]
"""

from __future__ import annotations

import os
import pickle
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import explain  # noqa: E402
import robustness  # noqa: E402
from benchmarks._common import BasicBlock, ResNet18Like, base_parser, interleaved_medians, machine_line, markdown_table  # noqa: E402
from explain.zoo import SmallCNN  # noqa: E402
from explain.zoo.bundled import load_digits_images  # noqa: E402


class NarrowResNet(nn.Module):
    """ResNet-18's layout (stem, four stages of two basic blocks, global mean) at 1/8 of its width."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        widths, layers, cin = [8, 16, 32, 64], [], 8
        for i, w in enumerate(widths):
            layers.append(nn.Sequential(BasicBlock(cin, w, 1 if i == 0 else 2), BasicBlock(w, w, 1)))
            cin = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.fc(self.layers(self.stem(x)).mean(dim=(2, 3)))


def fb_per_sample(m, x, repeats, device) -> float:
    """Forward+backward seconds per sample at the best of a few batch sizes."""
    best = float("inf")
    for b in (1, 8, 32):
        xb = x[:1].repeat(b, 1, 1, 1).to(device)

        def run():
            z = xb.clone().requires_grad_(True)
            with m.session(grad=True):
                m.forward(z).sum().backward()
        t = interleaved_medians({"fb": run}, repeats, device)["fb"]
        best = min(best, t / b)
    return best


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def in_child(fn):
    """``fn()`` in a forked process (Linux): its result and the child's peak resident memory above its
    resident memory at the start, in MB (the kernel's high-water mark is reset first)."""
    if not hasattr(os, "fork"):
        return fn(), float("nan")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # pragma: no cover - child
        os.close(r)
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            base = _status_mb("VmRSS")
            out = fn()
            extra = _status_mb("VmHWM") - base
        except OSError:
            out, extra = fn(), float("nan")
        with os.fdopen(w, "wb") as f:
            pickle.dump((out, extra), f)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        result = pickle.load(f)
    os.waitpid(pid, 0)
    return result


METHODS = {"ibp": dict(method="ibp"), "CROWN-IBP": dict(method="crown", intermediate="ibp"),
           "crown": dict(method="crown"), "alpha-crown": dict(method="alpha-crown")}


def part1(args, device) -> str:
    """Round-robin over the methods (each run in its own process) so that outside load falls on all alike."""
    rows = []
    full = ("ibp", "CROWN-IBP", "crown", "alpha-crown")
    models = [("reference CNN (SmallCNN, 32 px)", SmallCNN(3, 10, width=16), full),
              ("narrow ResNet (ResNet-18 layout, width 8-64, 32 px)", NarrowResNet(), full),
              ("ResNet-18 (32 px)", ResNet18Like(), full if args.resnet18_crown else ("ibp", "CROWN-IBP"))]
    warm = explain.ModelWrapper(SmallCNN(3, 10, width=2).eval(), "image", device=device)
    robustness.output_bounds(warm, torch.rand(1, 3, 8, 8), eps=1 / 255, method="alpha-crown", progress=False)
    for name, net, methods in models:
        torch.manual_seed(0)
        m = explain.ModelWrapper(net.eval(), "image", device=device)
        x = torch.rand(4, 3, 32, 32)
        fbs, times, mem = [], {k: [] for k in methods}, {k: [] for k in methods}
        for rep in range(args.repeats):
            fbs.append(fb_per_sample(m, x, 1, device))
            for meth in methods:
                if rep > 0 and meth in ("crown", "alpha-crown") and "ResNet" in name:
                    continue   # minutes per run: one run each
                n = 4 if meth == "ibp" else 1

                def run(n=n, meth=meth):
                    t = time.perf_counter()
                    robustness.output_bounds(m, x[:n], eps=1 / 255, spec="margin", batch_size=n, progress=False,
                                             **METHODS[meth])
                    return (time.perf_counter() - t) / n
                sec, extra = in_child(run)
                times[meth].append(sec)
                mem[meth].append(extra)
        fb = statistics.median(fbs)
        for meth in methods:
            per = statistics.median(times[meth])
            rows.append([name, meth, per, per / fb, f"{max(mem[meth]):.0f}", len(times[meth])])
        rows.append([name, "forward+backward", fb, 1.0, "", len(fbs)])
    return markdown_table(["model", "method", "seconds / sample", "× forward+backward", "peak extra MB", "runs"], rows)


def small_cnn(size: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(32 * ((size + 1) // 2) ** 2, 100), nn.ReLU(), nn.Linear(100, 10))


def ibp_margin_loss(net: nn.Sequential, x, y, eps):
    """Cross-entropy of IBP's worst-case logits (lower bound for the label, upper for the others)."""
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    for layer in net:
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            c, r = (lo + hi) / 2, (hi - lo) / 2
            c = layer(c)
            r = F.linear(r, layer.weight.abs()) if isinstance(layer, nn.Linear) else \
                F.conv2d(r, layer.weight.abs(), None, layer.stride, layer.padding)
            lo, hi = c - r, c + r
        else:
            lo, hi = layer(lo), layer(hi)
    worst = torch.where(F.one_hot(y, 10).bool(), lo, hi)
    return F.cross_entropy(worst, y)


def train(x, y, robust: bool, epochs: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = small_cnn(x.shape[-1])
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    n = len(x)
    for ep in range(epochs):
        perm = torch.randperm(n)
        ramp = min(1.0, ep / max(1, epochs // 2))
        for i in range(0, n, 64):
            idx = perm[i:i + 64]
            xb, yb = x[idx], y[idx]
            loss = F.cross_entropy(net(xb), yb)
            if robust:
                loss = 0.5 * loss + 0.5 * ibp_margin_loss(net, xb, yb, ramp * 4 / 255) if ramp > 0 else loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def part2(args) -> str:
    data = load_digits_images(seed=0)
    x_train, x_test = data.x_train, data.x_test
    if x_train.shape[-1] > 16:   # MNIST: 14×14 (2×2 means) keeps CROWN on one core within minutes
        x_train, x_test = F.avg_pool2d(x_train, 2), F.avg_pool2d(x_test, 2)
    rows = []
    for label, robust in (("normally trained", False), ("IBP-trained (ε → 4/255)", True)):
        net = train(x_train, data.y_train, robust, args.epochs)
        m = explain.ModelWrapper(net, "image", device="cpu")
        t = time.perf_counter()
        ca = robustness.certified_accuracy(m, (x_test[:args.samples], data.y_test[:args.samples]),
                                           eps=[0] + args.eps, method="crown", progress=False)
        sec = time.perf_counter() - t
        for e, c, a in zip(ca.eps[1:], ca.certified[1:], ca.empirical[1:]):
            rows.append([f"{label}", f"{e * 255:.0f}/255", f"{ca.clean_accuracy:.1%}", f"{c:.1%}", f"{a:.1%}", sec])
    return (f"Data: {data.name} at {x_test.shape[-1]} px, first {args.samples} test images.\n\n"
            + markdown_table(["model", "ε", "clean", "certified (CROWN)", "empirical (PGD+APGD)", "seconds (sweep)"], rows))


def _budgets(value: str) -> list:
    """'1/255,0.01' → [1/255, 0.01]."""
    out = []
    for item in value.split(","):
        num, _, den = item.partition("/")
        out.append(float(num) / (float(den) if den else 1.0))
    return out


def main() -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=100, help="test images certified per model")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--eps", type=_budgets, default=[1 / 255, 2 / 255],
                   help="budgets for part 2, e.g. 1/255,2/255,8/255")
    p.add_argument("--resnet18-crown", action="store_true", help="also run CROWN and α-CROWN on ResNet-18 (slow on a CPU)")
    p.add_argument("--skip-timing", action="store_true")
    p.add_argument("--skip-certified", action="store_true", help="only part 1 (timing)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(machine_line(device))
    if not args.skip_timing:
        print(part1(args, device))
        print()
    if not args.skip_certified:
        print(part2(args))


if __name__ == "__main__":
    main()
