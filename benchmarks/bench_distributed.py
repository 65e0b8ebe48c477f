"""Sharded evaluation: end-to-end report time on 1 vs 2 gloo processes, per-section throughput
against the model's forward limit, and the communication each section needs.

    python benchmarks/bench_distributed.py [--n 2000] [--stream 20000] [--repeats 2] [--world 2]

1. End to end: ``torchrun --nproc-per-node W -m``-style runs (``torch.distributed.run``) of a
   report on ``--n`` digits inputs with the demo CNN, for W = 1 and ``--world``, interleaved,
   ``--repeats`` times; the median wall time of the whole command and of ``build_report``, and each
   section's seconds. Rank 0 also records the bytes every section all-reduced and gathered.
2. Throughput on a ``--stream``-sample stream (an unshuffled ``DataLoader``): each evaluation
   section's work against the model's own limit for the same passes (forward, forward+backward at
   its best batch), the limit timed right before each section in every repeat.
3. Communication volume per section, computed from the shapes (and checked against the bytes
   measured in step 1), and what 8 processes would give from the measured per-process throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLASSES = [str(i) for i in range(10)]
SECTIONS = ["model_card", "performance", "explanations", "robustness", "ood", "verification"]
CORRUPTIONS = ["gaussian_noise", "contrast"]
SEVERITIES = [1, 3, 5]
OOD = ["msp", "energy", "mahalanobis", "knn", "vim"]


def config(n: int) -> dict:
    return {"explanations": {"methods": ["gradcam", "occlusion"], "samples": 6},
            "robustness": {"methods": ["fgsm", "pgd"], "eps": [0, 0.05, 0.1, 0.2], "steps": 5, "bisect_steps": 2,
                           "corruptions": CORRUPTIONS, "severities": SEVERITIES, "max_samples": n},
            "ood": {"methods": OOD, "max_samples": n},
            "verify": {"samples": 64, "method": "ibp", "eps": [0, 1 / 255, 4 / 255], "attack_steps": 10}}


def make_net():
    from explain.zoo import SmallCNN
    return SmallCNN(in_channels=1, num_classes=10, width=16)


def prepare(folder: Path, n: int) -> None:
    """Train the demo CNN for one epoch on MNIST digits and store weights and ``n`` evaluation inputs."""
    from explain.zoo import train_classifier
    from explain.zoo.bundled import load_digits_images
    digits = load_digits_images(seed=0)
    torch.manual_seed(0)
    net = make_net()
    train_classifier(net, digits.x_train, digits.y_train, epochs=1, seed=0)
    x = torch.cat([digits.x_test, digits.x_train])[:n]
    y = torch.cat([digits.y_test, digits.y_train])[:n]
    torch.save(net.state_dict(), folder / "w.pt")
    torch.save({"x": x, "y": y}, folder / "data.pt")


def wrapper(folder: Path):
    import explain
    net = make_net()
    net.load_state_dict(torch.load(folder / "w.pt", weights_only=True))
    return explain.ModelWrapper(net, "image", class_names=CLASSES, device="cpu")


def worker(folder: Path, out: Path) -> None:
    """One rank of the end-to-end run (started by ``torch.distributed.run``)."""
    from reports import build as build_mod
    from robustness import distributed as dist
    dist.init_from_env()
    data = torch.load(folder / "data.pt", weights_only=True)
    traffic = {}
    run_section = build_mod._run_section

    def counted(name, module_path, ctx):
        before = dist.traffic()
        section = run_section(name, module_path, ctx)
        after = dist.traffic()
        traffic[name] = {k: after[k] - before[k] for k in after}
        return section
    build_mod._run_section = counted
    ood = torch.rand(data["x"].shape, generator=torch.Generator().manual_seed(1))
    rep = build_mod.build_report(wrapper(folder), (data["x"], data["y"]), ood_data=ood, out=out, sections=SECTIONS,
                                 config=config(len(data["x"])), max_samples=len(data["x"]),
                                 keep_samples=len(data["x"]), force=True)
    if dist.is_main():
        (out / "traffic.json").write_text(json.dumps({"traffic": traffic, "build_seconds": rep.meta["seconds"]}))
    import torch.distributed as td
    if td.is_initialized():
        td.destroy_process_group()


def end_to_end(folder: Path, world: int) -> dict:
    out = folder / f"out{world}"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(world),
                    str(Path(__file__).resolve()), "--worker", str(folder), str(out)], check=True, env=env, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    summary = json.loads((out / "summary.json").read_text())
    extra = json.loads((out / "traffic.json").read_text())
    return {"wall": wall, "build": extra["build_seconds"], "traffic": extra["traffic"],
            "sections": {k: v["seconds"] for k, v in summary["sections"].items()}, "summary": summary}


def best_throughput(fn, n: int, batches=(32, 64, 128, 256, 512, 1024), repeats: int = 3) -> tuple:
    """``(samples/s, batch)`` of ``fn(batch_size)`` at its best batch size (median of ``repeats``)."""
    best = (0.0, None)
    for b in batches:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn(b)
            times.append(time.perf_counter() - t)
        rate = n / statistics.median(times)
        best = max(best, (rate, b), key=lambda r: r[0])
    return best


def throughput(folder: Path, n: int, repeats: int = 3) -> dict:
    """Each evaluation section's work on an ``n``-sample stream against the forward limit, interleaved.

    The stream is an unshuffled ``DataLoader`` (batch 100) over the digits inputs repeated to ``n``;
    the sections read it in their own batches (256). Each repeat times, for every section, the bare
    model limit for the section's passes (forward, or forward+backward, at the model's best batch
    over the same inputs) right before the section, so load changes hit both alike; the share of
    the limit is the median over repeats of limit seconds / section seconds.
    """
    import robustness
    from reports._data_pass import read_data
    m = wrapper(folder)
    data = torch.load(folder / "data.pt", weights_only=True)
    reps = (n + len(data["x"]) - 1) // len(data["x"])
    x, y = data["x"].repeat(reps, 1, 1, 1)[:n], data["y"].repeat(reps)[:n]
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=100)
    net = m.model.eval()

    def forward(b):
        with torch.inference_mode():
            for i in range(0, n, b):
                net(x[i:i + b])

    def forward_backward(b):
        for i in range(0, n, b):
            xb = x[i:i + b].clone().requires_grad_(True)
            torch.nn.functional.cross_entropy(net(xb), y[i:i + b]).backward()
            net.zero_grad(set_to_none=True)
    fwd, fwd_batch = best_throughput(forward, n)
    fb, fb_batch = best_throughput(forward_backward, n, repeats=2)
    energy = robustness.ood_detector("energy").fit(m, (x[:1000], y[:1000]))
    maha = robustness.ood_detector("mahalanobis").fit(m, (x[:1000], y[:1000]))
    passes = 1 + len(CORRUPTIONS) * len(SEVERITIES)
    work = {  # name: (section work, forward passes, forward+backward passes, description)
        "performance (streamed outcomes)": (lambda: read_data(m, loader, None, 256, 256), 1, 0, "1 fwd"),
        "corruptions": (lambda: robustness.corruption_accuracy(m, loader, corruptions=CORRUPTIONS,
                                                               severities=SEVERITIES), passes, 0, f"{passes} fwd"),
        "attack (FGSM, one budget)": (lambda: robustness.robust_accuracy(m, loader, eps=[0.1], method="fgsm",
                                                                         minimal_eps=False),
                                      2, 1, "2 fwd + 1 fwd+bwd"),
        "OOD scoring (energy)": (lambda: energy.score_data(loader), 1, 0, "1 fwd"),
        "OOD scoring (Mahalanobis)": (lambda: maha.score_data(loader), 1, 0, "1 fwd (features)"),
    }
    shares = {k: [] for k in work}
    seconds = {k: [] for k in work}
    limits = {k: [] for k in work}
    for _ in range(repeats):
        for name, (fn, n_fwd, n_fb, _) in work.items():
            t = time.perf_counter()
            forward(fwd_batch)
            limit = n_fwd * (time.perf_counter() - t)
            if n_fb:
                t = time.perf_counter()
                forward_backward(fb_batch)
                limit += n_fb * (time.perf_counter() - t)
            t = time.perf_counter()
            fn()
            took = time.perf_counter() - t
            shares[name].append(limit / took)
            seconds[name].append(took)
            limits[name].append(limit)
    rows = {k: {"seconds": statistics.median(seconds[k]), "limit": statistics.median(limits[k]),
                "share": statistics.median(shares[k]), "passes": work[k][3]} for k in work}
    return {"forward": fwd, "forward_batch": fwd_batch, "forward_backward": fb, "fb_batch": fb_batch, "rows": rows,
            "repeats": repeats}


def round_rows(n: int, world: int, batch: int = 256) -> list:
    """Rows of each rank in each round when batch ``i`` of a stream of ``n`` goes to rank ``i % world``."""
    sizes = [min(batch, n - i) for i in range(0, n, batch)]
    return [[sizes[r0 + r] if r0 + r < len(sizes) else 0 for r in range(world)] for r0 in range(0, len(sizes), world)]


def volumes(n: int, k: int, d: int, world: int, n_fit: int, n_test: int, n_out: int, knn_k: int = 10,
            attacks: int = 2, gallery: int = 6, map_px: int = 0, methods: int = 2) -> dict:
    """Bytes each section moves, from the shapes (every rank's contribution, as ``traffic()`` counts them).

    Data held in memory is split in contiguous blocks (gathers pad every block to the longest);
    streamed data goes out by batch, round-robin (gathers pad every rank's rows to the most any
    rank holds; KNN's sharded scoring gathers each round's queries and k-nearest lists).
    """
    block = -(-n // world)  # the longest block; gathers pad every block to it
    f64, f32 = 8, 4

    def per_rank_longest(m):  # a gather of one value per sample of a streamed set
        return max(map(sum, zip(*round_rows(m, world)))) * world

    def knn(m):  # each round: queries padded to the longest part, then every query's k nearest from each rank
        return sum(max(r) * world * f32 * d + world * sum(r) * f32 * knn_k for r in round_rows(m, world))
    return {
        "performance": f64 * (k * k + 3 * 15),                              # confusion counts + calibration bins
        "explanations": f64 * 2 * block * world,                            # (pred, conf) gathered to pick samples
        "explanations (maps, pickled)": methods * gallery * map_px * f32,   # the gallery's maps, via the control group
        "robustness": attacks * f32 * per_rank_longest(n) + f64 * (2 + len(CORRUPTIONS) * len(SEVERITIES)),  # + counts, n
        "ood": (f64 * (k + k * d + d * d)                                   # Mahalanobis sums and outer products
                + f64 * (1 + d * d + 2)                                     # ViM covariance, count, α sums
                + f64 * 1                                                   # KNN bank size
                + knn(n_test) + knn(n_out)                                  # KNN queries out, k nearest back
                + len(OOD) * f32 * (per_rank_longest(n_test) + per_rank_longest(n_out))),  # scores gathered
        "verification": f64 * (2 + 2 * 3),                                 # sample, clean, verified, violated counts
    }


def print_projection(args, med: dict, folder: Path, ev: dict) -> None:
    """What 8 processes would give, from the measured 1- and W-process section times and the shapes."""
    w = args.world
    d = wrapper(folder).features(torch.load(folder / "data.pt", weights_only=True)["x"][:2]).shape[1]
    print("\n## What 8 processes would give (computed)\n")
    print("Per-process rate = samples / section seconds on one process (step 1); 8 processes each take n/8 "
          "samples; communication as computed above for world 8, at 10 GB/s (ring: each byte crosses "
          "the link (W−1)/W times).\n")
    print("The last column splits each section's 1- and 2-process times into a serial part s and a "
          "sharded part p (t1 = s + p, t2 = s + p/2) and gives t1 / (s + p/8); on a shared machine t2 is "
          "noisy, so read it as a bound on what the unsharded parts (figures on rank 0, the adversarial "
          "examples, budgets chosen on every rank) cost.\n")
    print("| section | 1-process s | ideal 8-process s | communication bytes (W=8) | communication time | "
          "ideal speed-up | speed-up from the 1 vs 2 split |")
    print("|---|---|---|---|---|---|---|")
    vol8 = volumes(args.n, 10, d, 8, ev["n_fit"], ev["n_in"], ev["n_out"], map_px=28 * 28)
    for s in ("performance", "explanations", "robustness", "ood", "verification"):
        one, two = med[1][s], med[w][s]
        comm = (vol8[s] + (vol8["explanations (maps, pickled)"] if s == "explanations" else 0)) * 7 / 8 / 10e9
        eight = one / 8 + comm
        p_part = min(max(2 * (one - two), 0.0), one) if w == 2 else one
        amdahl = one / ((one - p_part) + p_part / 8 + comm)
        print(f"| {s} | {one:.2f} | {eight:.3f} | {vol8[s]:,} | {comm * 1e3:.3f} ms | {one / eight:.1f}× | "
              f"{amdahl:.1f}× |")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--stream", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--world", type=int, default=2)
    p.add_argument("--skip-throughput", action="store_true", help="only the end-to-end runs and the communication table")
    p.add_argument("--only-throughput", action="store_true", help="only the streamed throughput against the limit")
    args = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prepare(folder, args.n)
        if args.only_throughput:
            print_throughput(args, folder)
            return
        runs = {1: [], args.world: []}
        for _ in range(args.repeats):
            for world in runs:
                runs[world].append(end_to_end(folder, world))
        print(f"## End to end: report on {args.n} digits inputs, demo CNN, gloo on this machine "
              f"({os.cpu_count()} cores), median of {args.repeats} interleaved runs\n")
        print("| processes | command wall s | build_report s | " + " | ".join(SECTIONS) + " |")
        print("|---|---|---|" + "---|" * len(SECTIONS))
        med = {}
        for world, rs in runs.items():
            med[world] = {s: statistics.median(r["sections"][s] for r in rs) for s in SECTIONS}
            print(f"| {world} | {statistics.median(r['wall'] for r in rs):.1f} | "
                  f"{statistics.median(r['build'] for r in rs):.1f} | "
                  + " | ".join(f"{med[world][s]:.2f}" for s in SECTIONS) + " |")
        w = args.world
        print(f"\nspeed-up of build_report, 1 → {w} processes: "
              f"{statistics.median(r['build'] for r in runs[1]) / statistics.median(r['build'] for r in runs[w]):.2f}×")
        ev = runs[w][0]["summary"]["sections"]["ood"]["summary"]
        measured = runs[w][0]["traffic"]
        d = wrapper(folder).features(torch.load(folder / "data.pt", weights_only=True)["x"][:2]).shape[1]
        vol = volumes(args.n, 10, d, w, ev["n_fit"], ev["n_in"], ev["n_out"], map_px=28 * 28)
        print(f"\n## Communication per section at {w} processes (bytes; computed from shapes vs counted on rank 0)\n")
        print("| section | computed | counted (all-reduce + gather) |")
        print("|---|---|---|")
        for s in ("performance", "explanations", "explanations (maps, pickled)", "robustness", "ood", "verification"):
            counted = sum(measured.get(s, {}).values()) if s in measured else "not counted"
            print(f"| {s} | {vol[s]:,} | {counted if isinstance(counted, str) else f'{counted:,}'} |")
        if args.skip_throughput:
            print_projection(args, med, folder, ev)
            return
        print_throughput(args, folder)
        print_projection(args, med, folder, ev)


def print_throughput(args, folder: Path) -> None:
    tp = throughput(folder, args.stream, repeats=max(args.repeats, 3))
    print(f"\n## Throughput on a {args.stream}-sample stream (one process; DataLoader, batch 100), "
          f"median of {tp['repeats']} interleaved repeats\n")
    print(f"forward limit {tp['forward']:.0f} samples/s at batch {tp['forward_batch']}; forward+backward "
          f"{tp['forward_backward']:.0f} samples/s at batch {tp['fb_batch']}\n")
    print("| section work | passes per sample | seconds | limit seconds (measured just before) | share of the limit |")
    print("|---|---|---|---|---|")
    for name, r in tp["rows"].items():
        print(f"| {name} | {r['passes']} | {r['seconds']:.2f} | {r['limit']:.2f} | {r['share']:.2f} |")


if __name__ == "__main__":
    main()
