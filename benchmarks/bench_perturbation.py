"""LIME, KernelSHAP and occlusion: xaiscope side by side with the lime, shap and captum packages, and
against the model's forward limit at its best batch.

The limit for a method that needs P forward passes per explanation is (forward throughput at the
model's best batch ÷ P). The best batch is measured here (candidates 8…256); the peer libraries run
at that batch (their own batching knob: lime ``batch_size``, shap ``batch_size``, captum
``perturbations_per_eval``) and, for lime, also at its default. xaiscope runs with no batch setting
at all (its automatic choice). Entries are timed in interleaved rounds; medians are reported.

Usage:
    python benchmarks/bench_perturbation.py [--device cuda] [--repeats 3] [--size 64] [--samples 500]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import explain  # noqa: E402
from benchmarks._common import ResNet18Like, base_parser, interleaved_medians, machine_line, markdown_table  # noqa: E402
from explain.methods._features import image_groups  # noqa: E402

CANDIDATES = (8, 16, 32, 64, 128, 256)


def best_forward(net, size, device, repeats):
    """(best batch, images/s at it, images/s per candidate), interleaved rounds."""
    xs = {b: torch.rand(b, 3, size, size, device=device) for b in CANDIDATES}

    def run(b):
        def fn():
            with torch.no_grad():
                for _ in range(max(1, 256 // b)):
                    net(xs[b])
        return fn
    med = interleaved_medians({b: run(b) for b in CANDIDATES}, repeats, device)
    rate = {b: max(1, 256 // b) * b / med[b] for b in CANDIDATES}
    best = max(rate, key=rate.get)
    return best, rate[best], rate


def main() -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=64, help="image side (default 64)")
    p.add_argument("--samples", type=int, default=500, help="perturbations per LIME/SHAP explanation (default 500)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    S, R, size = args.samples, args.repeats, args.size
    torch.manual_seed(0)
    net = ResNet18Like().to(device).eval()
    for q in net.parameters():
        q.requires_grad_(False)
    best, rate, rates = best_forward(net, size, device, R)
    x = torch.rand(1, 3, size, size, device=device)
    m = explain.ModelWrapper(net, "image", device=device)
    t = int(m.predict(x)[0])
    groups = image_groups(x.cpu())  # the default segmentation, shared by every library
    seg = groups[0].numpy()
    nseg = int(seg.max()) + 1
    win, stride = 8, 4
    n_windows = ((size - win) // stride + 1) ** 2

    def probs_np(b):
        with torch.no_grad():
            return torch.softmax(net(torch.from_numpy(np.asarray(b)).permute(0, 3, 1, 2).float().to(device)), 1).cpu().numpy()

    from lime import lime_image
    img = x[0].permute(1, 2, 0).double().cpu().numpy()

    def lime_pkg(bs):
        def fn():
            lime_image.LimeImageExplainer(random_state=0).explain_instance(
                img, probs_np, labels=(t,), top_labels=None, num_features=nseg, num_samples=S, batch_size=bs,
                segmentation_fn=lambda _i: seg, random_seed=0)
        return fn

    import shap
    masker = shap.maskers.Image("inpaint_telea", (size, size, 3))
    shap_exp = shap.Explainer(probs_np, masker, algorithm="partition")

    from captum.attr import KernelShap, Lime, Occlusion
    mask = groups.to(device)[:, None]

    fns = {
        "xaiscope lime": lambda: explain.lime(m, x, t, n_samples=S, features=groups),
        f"lime package (batch_size={best})": lime_pkg(best),
        "lime package (default batch_size=10)": lime_pkg(10),
        f"captum Lime (perturbations_per_eval={best})": lambda: Lime(net).attribute(
            x, target=t, feature_mask=mask, n_samples=S, perturbations_per_eval=best),
        "xaiscope shap (kernel, no background)": lambda: explain.shap(m, x, t, n_samples=S, features=groups),
        f"shap Partition, image masker (max_evals={S}, batch_size={best})": lambda: shap_exp(
            x.permute(0, 2, 3, 1).cpu().numpy(), max_evals=S, batch_size=best, outputs=[t], silent=True),
        f"captum KernelShap (perturbations_per_eval={best})": lambda: KernelShap(net).attribute(
            x, target=t, feature_mask=mask, n_samples=S, perturbations_per_eval=best),
        f"xaiscope occlusion (window {win}, stride {stride})": lambda: explain.occlusion(m, x, t, window=win, stride=stride),
        f"captum Occlusion (perturbations_per_eval={best})": lambda: Occlusion(net).attribute(
            x, target=t, sliding_window_shapes=(3, win, win), strides=(3, stride, stride), perturbations_per_eval=best),
    }
    with torch.no_grad():
        med = interleaved_medians(fns, R, device)
    rows = []
    for label, sec in med.items():
        passes = n_windows if "cclusion" in label else S
        rows.append([label, sec, (1 / sec) / (rate / passes)])
    print(f"machine: {machine_line(device)}; ResNet-18-like at {size}px; {S} samples per LIME/SHAP explanation, "
          f"{nseg} superpixels (xaiscope's default segmentation, given to every library), {n_windows} occlusion "
          f"windows; medians of {R} interleaved rounds\n")
    print("forward throughput by batch (images/s): " + ", ".join(f"{b}: {rates[b]:.0f}" for b in CANDIDATES))
    print(f"best batch {best}: {rate:.0f} images/s; xaiscope's automatic choice here: "
          f"{sorted(set(m.tuner.best.values()))}\n")
    print(markdown_table(["method", "seconds / image", "fraction of the forward limit"], rows))


if __name__ == "__main__":
    main()
