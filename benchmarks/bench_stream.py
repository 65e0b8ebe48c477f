"""Peak memory of streamed evaluation: 2 000 vs 20 000 inputs from a lazily generated Dataset.

Each measurement runs in a fresh Python process (so peaks do not carry over), which builds the
demo CNN's architecture (``SmallCNN(in_channels=1, num_classes=10, width=16)``, seeded random
weights), wraps a ``Dataset`` whose inputs are made in ``__getitem__`` from the index (the data set
itself holds nothing) in a ``DataLoader`` and runs one entry point on it. The child reports its
resident set size after set-up (model built, one batch run) and its peak RSS
(``resource.getrusage``, ``ru_maxrss``) at the end. ``growth`` is the peak's increase from
2 000 to 20 000 inputs. As a control, ``--materialised`` also feeds the same inputs as in-memory
tensors, which must grow.

With ``--world W`` every measurement runs as W gloo processes under ``torch.distributed.run``
(each reads only its own batches of the DataLoader) and the largest peak of any rank is reported.

Usage:
    python benchmarks/bench_stream.py --repeats 3 [--world 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTRIES = ["robust_accuracy", "evaluate_ood", "build_report-performance"]
SIZE = 32


def _rss_now_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def child(entry: str, n: int, materialised: bool) -> dict:
    import resource

    import torch
    from torch.utils.data import DataLoader, Dataset

    import explain
    import reports
    import robustness
    from explain.zoo import SmallCNN

    torch.set_num_threads(1)
    from robustness import distributed as dist
    rank, world = dist.init_from_env()

    class Lazy(Dataset):
        def __init__(self, n: int, offset: int = 0, scale: float = 1.0) -> None:
            self.n, self.offset, self.scale = n, offset, scale

        def __len__(self) -> int:
            return self.n

        def __getitem__(self, i: int):
            g = torch.Generator().manual_seed(self.offset + i)
            return torch.rand(1, SIZE, SIZE, generator=g) * self.scale, (self.offset + i) % 10

    torch.manual_seed(0)
    net = SmallCNN(in_channels=1, num_classes=10, width=16)
    m = explain.ModelWrapper(net, "image", class_names=[str(i) for i in range(10)], device="cpu", batch_size=64)

    def data(n, **kw):
        ds = Lazy(n, **kw)
        if materialised:
            xs = torch.stack([ds[i][0] for i in range(n)])
            return xs, torch.tensor([ds[i][1] for i in range(n)])
        return DataLoader(ds, batch_size=64)

    m.predict(torch.rand(64, 1, SIZE, SIZE))  # warm: allocator and kernels set up before the baseline
    d = data(n)
    ood = data(n // 4, offset=10 ** 7, scale=0.2) if entry == "evaluate_ood" else None
    base = _rss_now_kb()
    if entry == "robust_accuracy":
        r = robustness.robust_accuracy(m, d, eps=[0, 2 / 255, 8 / 255], method="fgsm", bisect_steps=0)
        out = r.accuracy
    elif entry == "evaluate_ood":
        r = robustness.evaluate_ood(m, d, ood, methods=["msp", "energy", "mahalanobis"])
        out = {k: round(v.auroc, 4) for k, v in r.methods.items()}
    else:
        rep = reports.build_report(m, d, sections=["performance"], max_samples=None)
        out = rep.to_dict()["sections"]["performance"]["summary"]["accuracy"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    return {"entry": entry, "n": n, "base_mb": base / 1024, "peak_mb": peak / 1024, "result": out, "rank": rank,
            "world": world}


def run_child(entry: str, n: int, materialised: bool, world: int = 1) -> dict:
    """One measurement in fresh processes; with ``world`` > 1 under ``torch.distributed.run`` (gloo),
    reporting the largest peak of any rank (every rank must agree on the result)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    launch = [sys.executable] if world == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                  "--nproc-per-node", str(world)]
    cmd = launch + [__file__, "--child", entry, str(n)] + (["--materialised"] if materialised else [])
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    ranks = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(ranks) == world and all(r["result"] == ranks[0]["result"] for r in ranks), ranks
    return max(ranks, key=lambda r: r["peak_mb"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sizes", type=int, nargs=2, default=[2000, 20000])
    p.add_argument("--entries", nargs="+", default=ENTRIES, choices=ENTRIES)
    p.add_argument("--materialised", action="store_true", help="also run on in-memory tensors (control)")
    p.add_argument("--world", type=int, default=1, help="processes per measurement (torchrun, gloo)")
    p.add_argument("--child", nargs=2, metavar=("ENTRY", "N"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.child[0], int(a.child[1]), a.materialised)))
        return
    modes = [False] + ([True] if a.materialised else [])
    runs: dict = {}
    for _ in range(a.repeats):  # interleaved: every configuration once per round
        for mode in modes:
            for entry in a.entries:
                for n in a.sizes:
                    r = run_child(entry, n, mode, a.world)
                    runs.setdefault((mode, entry, n), []).append(r)
                    print(f"  {'tensors' if mode else 'stream '} {entry:26s} n={n:6d} peak {r['peak_mb']:7.1f} MB "
                          f"(after set-up {r['base_mb']:6.1f} MB) -> {r['result']}", file=sys.stderr)
    lo, hi = a.sizes
    print(f"| data | entry point | peak RSS, {lo} inputs (MB) | peak RSS, {hi} inputs (MB) | growth |")
    print("|---|---|---:|---:|---:|")
    for mode in modes:
        for entry in a.entries:
            p_lo = statistics.median(r["peak_mb"] for r in runs[(mode, entry, lo)])
            p_hi = statistics.median(r["peak_mb"] for r in runs[(mode, entry, hi)])
            what = ("in-memory tensors" if mode else "lazy Dataset → DataLoader(64)") + (
                f", {a.world} processes (largest rank peak)" if a.world > 1 else "")
            print(f"| {what} | {entry} | {p_lo:.1f} | {p_hi:.1f} | {100 * (p_hi / p_lo - 1):+.1f} % |")


if __name__ == "__main__":
    main()
