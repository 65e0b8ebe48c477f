"""OOD: scoring throughput vs the forward limit, and fit time / peak memory on 50k × 512 features.

Output-based detectors cost one forward pass per input: the limit is the model's forward throughput.
Feature detectors are fitted on random features (``--fit-n`` × ``--fit-d``, 100 classes) side by
side with a plain implementation of the usual recipe (all features stacked, per-class covariance
loops, one full distance matrix for KNN), which is what pytorch-ood does; pytorch-ood itself needs
torchvision and is not importable beside the CPU torch build used here.

Usage:
    python benchmarks/bench_ood.py [--device cuda] [--repeats 3]
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import explain  # noqa: E402
import robustness  # noqa: E402
from benchmarks._common import ResNet18Like, base_parser, interleaved_medians, machine_line, markdown_table  # noqa: E402


def _child(task, n, d, classes, queue):
    torch.set_num_threads(2)
    torch.manual_seed(0)
    z = torch.randn(n, d)
    y = torch.randint(0, classes, (n,))
    q = torch.randn(2000, d)
    jobs = {
        "maha": lambda: robustness.ood_detector("mahalanobis").fit_features(z, y),
        "maha_naive": lambda: naive_mahalanobis_fit(z, y, classes),
        "knn": lambda: robustness.ood_detector("knn", k=50).fit_features(z).score_features(q),
        "knn_naive": lambda: naive_knn_score(z, q, 50),
    }
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    jobs[task]()
    seconds = time.perf_counter() - t
    queue.put((seconds, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024))


def peak_mb(task, n, d, classes):
    """Seconds and peak resident-memory growth (MB) of one task, each in a fresh process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(task, n, d, classes, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def naive_mahalanobis_fit(z, y, classes):
    means = torch.stack([z[y == c].mean(0) for c in range(classes)])
    centred = torch.cat([z[y == c] - means[c] for c in range(classes)])
    cov = centred.T @ centred / len(z)
    return means, torch.linalg.pinv(cov)


def naive_knn_score(bank, q, k):
    bank = torch.nn.functional.normalize(bank, dim=1)
    q = torch.nn.functional.normalize(q, dim=1)
    d = torch.cdist(q, bank)  # the full query × bank matrix at once
    return d.topk(k, dim=1, largest=False).values[:, -1]


def main() -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--fit-n", type=int, default=50_000)
    p.add_argument("--fit-d", type=int, default=512)
    p.add_argument("--size", type=int, default=32)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    R = args.repeats
    torch.manual_seed(0)
    net = ResNet18Like().to(device).eval()
    x = torch.rand(256, 3, args.size, args.size, device=device)
    m = explain.ModelWrapper(net, "image", device=device)

    def fwd():
        with torch.no_grad():
            net(x)
    data = (x.cpu(), torch.zeros(len(x), dtype=torch.long))
    fns = {"limit": fwd}
    for name in ("msp", "maxlogit", "energy"):
        det = robustness.ood_detector(name).fit(m, data)
        fns[name] = lambda det=det: det.score(x)
    med = interleaved_medians(fns, R, device)
    limit = len(x) / med.pop("limit")
    rows = [["model forward (limit)", limit, 1.0]]
    rows += [[f"{name} scoring", len(x) / sec, len(x) / sec / limit] for name, sec in med.items()]
    print(f"machine: {machine_line(device)}; ResNet-18-like at {args.size}px; medians of {R} runs\n")
    print(markdown_table(["scoring", "inputs/s", "ratio to forward limit"], rows))

    n, d, classes = args.fit_n, args.fit_d, 100
    labels = {"maha": "mahalanobis fit (xaiscope, running sums)", "maha_naive": "mahalanobis fit (stack-and-loop recipe)",
              "knn": "knn fit + score 2000 queries (xaiscope, chunked bank)",
              "knn_naive": "knn score 2000 queries (one full distance matrix)"}
    fit_rows = [[labels[task], *peak_mb(task, n, d, classes)] for task in labels]
    print(f"\nfeatures: {n} × {d}, {classes} classes; peak = growth of the process's resident memory\n")
    print(markdown_table(["fit / score", "seconds", "peak MB"], fit_rows))


if __name__ == "__main__":
    main()
