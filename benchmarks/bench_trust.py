"""Explanation trust metrics: the full trust table against the explanations it judges, and each
metric side by side with Quantus on the same work.

Part 1 — the report's trust table (randomisation, deletion/insertion against random order, max-
sensitivity) for 5 methods on the demo CNN (SmallCNN on handwritten digits, as ``xaiscope demo``
trains it), as a multiple of the time the 5 explanations themselves take.

Part 2 — the same metric, same inputs, same parameters, same attributions, xaiscope vs Quantus
(``quantus`` package): cascading model-parameter randomisation (MPRT), pixel flipping and
faithfulness correlation. Medians of interleaved runs; milliseconds per sample. Beside them the
*ceiling*: the same number of model evaluations (Quantus's count) at the model's best batch size in
a bare forward (or forward+backward) loop — what an implementation with no overhead would reach.

Usage:
    python benchmarks/bench_trust.py [--repeats 2] [--samples 32] [--threads 2] [--skip-quantus | --skip-table]
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import explain  # noqa: E402
from benchmarks._common import base_parser, interleaved_medians, machine_line, markdown_table  # noqa: E402
from explain.zoo import SmallCNN, train_classifier  # noqa: E402
from explain.zoo.bundled import load_digits_images  # noqa: E402

METHODS = ["gradcam", "occlusion", "lime", "shap", "integrated_gradients"]
PARAMS = {"occlusion": {"window": 6, "stride": 3}}  # as the demo report


def demo_cnn(seed: int = 0, n_train: int = 0):
    digits = load_digits_images(seed=seed)
    mean, std = digits.x_train.mean().item(), digits.x_train.std().item()
    torch.manual_seed(seed)
    n = n_train or len(digits.x_train)
    net = train_classifier(SmallCNN(in_channels=1, num_classes=10, width=16), digits.x_train[:n], digits.y_train[:n],
                           epochs=2, seed=seed, mean=torch.tensor(mean), std=torch.tensor(std))
    m = explain.ModelWrapper(net, "image", class_names=digits.class_names, mean=[mean], std=[std], device="cpu")
    return m, digits


def trust_table(m, x, config: dict):
    from reports.report import ReportContext
    from reports.sections import trust
    ctx = ReportContext(wrapper=m, x=x, y=None, config=config)
    res = trust._compute(ctx)
    return res


def part1(m, x, repeats, modes=(False, True)):
    rows, totals = [], []
    for quick in modes:
        cfg = {"explanations": {"methods": METHODS, "params": PARAMS}, "trust": {"samples": len(x), "quick": quick}}
        expl, metric, per = [], [], {}
        for _ in range(repeats):
            res = trust_table(m, x, cfg)
            assert not res["failures"], res["failures"]
            expl.append(sum(r["explanation_seconds"] for r in res["methods"].values()))
            metric.append(sum(r["metric_seconds"] for r in res["methods"].values()))
            for name, r in res["methods"].items():
                per.setdefault(name, []).append((r["explanation_seconds"], r["metric_seconds"],
                                                 r["randomization"].verdict, r["curves"]["deletion"].verdict))
        e, t = float(np.median(expl)), float(np.median(metric))
        totals.append(["quick" if quick else "default", e, t, t / e])
        if not quick:
            for name, vals in per.items():
                es, ms = np.median([v[0] for v in vals]), np.median([v[1] for v in vals])
                rows.append([name, es / len(x) * 1000, ms / len(x) * 1000, ms / es, vals[0][2], vals[0][3]])
    return rows, totals


def part2(m, x, repeats):
    import quantus
    net = m.model
    wrapped = copy.deepcopy(net)
    mean, std = float(m.mean[0]), float(m.std[0])

    class Normalised(torch.nn.Module):  # Quantus sees the same function of natural-unit inputs
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, z):
            return self.inner((z - mean) / std)

    qnet = Normalised(wrapped).eval()
    y = m.predict(x)
    a = explain.integrated_gradients(m, x, y, steps=16)
    a_np = a.values[:, None].numpy()
    x_np, y_np = x.numpy(), y.numpy()
    d = x[0].numel()
    size, runs = max(1, d // 10), 50

    def q_explain(model, inputs, targets, **_):
        w = explain.ModelWrapper(model, "image", device="cpu")
        return explain.gradcam(w, torch.as_tensor(inputs), torch.as_tensor(targets)).values.numpy()[:, None]

    n_layers = len(explain.metrics.randomizable_layers(net))
    quantus_calls = {
        "MPRT (gradcam, all layers)": lambda bs: quantus.MPRT(disable_warnings=True)(
            model=qnet, x_batch=x_np, y_batch=y_np, a_batch=None, explain_func=q_explain, channel_first=True,
            device="cpu", batch_size=bs),
        "pixel flipping (IG, 28 steps)": lambda bs: quantus.PixelFlipping(
            features_in_step=d // 28, perturb_baseline=0.0, disable_warnings=True)(
            model=qnet, x_batch=x_np, y_batch=y_np, a_batch=a_np, channel_first=True, device="cpu", batch_size=bs),
        f"faithfulness correlation ({runs} runs)": lambda bs: quantus.FaithfulnessCorrelation(
            nr_runs=runs, subset_size=size, perturb_baseline=0.0, disable_warnings=True)(
            model=qnet, x_batch=x_np, y_batch=y_np, a_batch=a_np, channel_first=True, device="cpu", batch_size=bs),
    }
    ours = {
        "MPRT (gradcam, all layers)": lambda: explain.metrics.randomization(m, x, "gradcam", target=y, absolute=True),
        "pixel flipping (IG, 28 steps)": lambda: explain.metrics.deletion(  # the attribution-order curve alone
            m, x, a, features="pixels", baseline=0.0, steps=28, n_random=0),
        f"faithfulness correlation ({runs} runs)": lambda: explain.metrics.faithfulness_correlation(
            m, x, a, n_runs=runs, subset_size=size, baseline=0.0, output="logit"),
    }
    # model evaluations per sample (Quantus's count) and whether each needs a backward pass
    evals = {"MPRT (gradcam, all layers)": (1 + n_layers, True), "pixel flipping (IG, 28 steps)": (28, False),
             f"faithfulness correlation ({runs} runs)": (1 + runs, False)}
    fns = forward_limit_fns(m, x)
    for key, fn in ours.items():  # per metric: xaiscope, Quantus on the whole batch, Quantus one sample at a time
        fns[(key, "xaiscope")] = fn
        fns[(key, "batched")] = lambda q=quantus_calls[key], n=len(x): q(n)
        fns[(key, "per-sample")] = lambda q=quantus_calls[key]: q(1)
    med = interleaved_medians(fns, repeats, torch.device("cpu"))
    per_row = {k[1:]: v / LIMIT_ROWS for k, v in med.items() if k[0] == "limit"}  # (size, backward) → s/row
    rows = []
    for key in ours:
        t, tb, t1 = med[(key, "xaiscope")], med[(key, "batched")], med[(key, "per-sample")]
        k = 1000 / len(x)
        e, bwd = evals[key]
        best = min(v for (size, b), v in per_row.items() if b == bwd)
        ceiling = e * best * len(x)
        rows.append([key, t * k, tb * k, tb / t, t1 * k, t1 / t, ceiling * k, t1 / ceiling, ceiling / t])
    limits = [[size, "forward+backward" if b else "forward", v * 1e3] for (size, b), v in sorted(per_row.items())]
    return rows, n_layers, limits


LIMIT_ROWS = 512
LIMIT_SIZES = (1, 8, 16, 32, 64, 128, 256)


def forward_limit_fns(m, x):
    """The model's forward (and forward+backward) limit: bare loops over ``LIMIT_ROWS`` rows at each
    batch size, no xaiscope code in the way (natural-unit inputs normalised once, outside the loop)."""
    net = copy.deepcopy(m.model).eval().requires_grad_(False)  # gradients for the input only, as the methods
    z = m.normalize(x.repeat(LIMIT_ROWS // len(x) + 1, 1, 1, 1)[:LIMIT_ROWS])

    def loop(size, backward):
        def run():
            for i in range(0, LIMIT_ROWS, size):
                xb = z[i:i + size]
                if backward:
                    xb = xb.clone().requires_grad_(True)
                    net(xb).max(1).values.sum().backward()
                else:
                    with torch.no_grad():
                        net(xb)
        return run

    return {("limit", size, b): loop(size, b) for size in LIMIT_SIZES for b in (False, True)}


def main() -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=32, help="samples judged (default 32)")
    p.add_argument("--train", type=int, default=0, help="train the demo CNN on this many digits (default all)")
    p.add_argument("--no-quick", action="store_true", help="skip the quick-mode trust table")
    p.add_argument("--table-repeats", type=int, default=0, help="runs of the trust table (default --repeats)")
    p.add_argument("--skip-quantus", action="store_true", help="time only the trust table")
    p.add_argument("--skip-table", action="store_true", help="time only the Quantus comparison")
    p.set_defaults(repeats=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    m, digits = demo_cnn(n_train=args.train)
    x = digits.x_test[: args.samples]
    print(f"# {machine_line(torch.device('cpu'))}; {digits.name} {tuple(x.shape[1:])}, {len(x)} samples "
          f"(model trained in {time.perf_counter() - t0:.0f} s, accuracy "
          f"{float((m.predict(digits.x_test[:500]) == digits.y_test[:500]).float().mean()):.1%})\n", flush=True)
    if not args.skip_quantus:
        rows2, n_layers, limits = part2(m, x, args.repeats)
        print(markdown_table(["metric (same inputs and parameters)", "xaiscope ms/sample", "Quantus batched ms/sample",
                              "speed-up vs batched", "Quantus per-sample ms/sample", "speed-up vs per-sample",
                              "ceiling ms/sample", "ceiling's speed-up vs per-sample", "ceiling / xaiscope"],
                             rows2))
        print(f"\n({n_layers} randomisable layers)\n")
        print(markdown_table(["batch size", "pass", "ms per row"], limits))
        print(flush=True)
    if not args.skip_table:
        rows, totals = part1(m, x, args.table_repeats or args.repeats, (False,) if args.no_quick else (False, True))
        print(markdown_table(["method", "explanation ms/sample", "trust checks ms/sample", "× explanation",
                              "randomisation", "deletion"], rows))
        print()
        print(markdown_table(["mode", "explanations s", "trust table s", "× explanations"], totals))
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
