"""Training-monitor overhead on the demo models, and feature-visualisation speed against its limit.

1. Overhead: each demo model's whole training run (digits CNN 2 epochs, review BiLSTM 6, GunPoint
   1-D CNN 60, with the demo's batch sizes) with and without a ``reports.Monitor``; the monitor
   records every step and probes 200 fixed samples at epoch ends. Runs are timed interleaved, each
   from a fresh copy of the same starting weights. Reported: the default probe (accuracy) probed at
   every epoch (``every="epoch"``) and on the default budget schedule (``every="auto"``), and the
   demo's four probes on the budget schedule, with the number of epochs each schedule probed.
   Beside the wall-clock overhead (the difference of two medians, noisy on runs of a second), the
   monitor's own clock: the time it spent inside ``step``/``epoch_end`` (recording, writing,
   probing) as a share of the epochs' time, median over the runs; it leaves out construction and
   ``close()`` (a few milliseconds) and any indirect cost to training.
2. Feature visualisation: seconds per class for ``steps`` optimisation steps on the digits CNN,
   against the limit ``steps`` forward+backward passes per class at the model's best batch size.

Medians of ``--repeats`` interleaved runs. Bundled demo data when installed (``xaiscope[demo]``),
else planted data of the same shapes.

Usage:
    python benchmarks/bench_monitor.py [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import explain  # noqa: E402
import reports  # noqa: E402
from benchmarks._common import base_parser, interleaved_medians, machine_line, markdown_table  # noqa: E402
from explain.zoo import BiLSTMClassifier, Conv1dNet, SmallCNN, planted_images, planted_series, planted_tokens  # noqa: E402
from explain.zoo import train_classifier  # noqa: E402


def demo_sets():
    """(name, make model, kind, x_train, y_train, x_probe, y_probe, ood, batch size, epochs as in the demo)."""
    out = []
    try:
        from explain.zoo.bundled import load_digits_images, load_photo_patches
        d = load_digits_images()
        ood = load_photo_patches(200, size=d.x_test.shape[-1], channels=1)
        out.append(("digits SmallCNN", lambda: SmallCNN(1, 10, 16), "image", d.x_train, d.y_train, d.x_test, d.y_test,
                    ood, 64, 2))
    except Exception:  # noqa: BLE001 - the demo extra is optional for benchmarks
        p = planted_images(4200, size=28)
        out.append(("planted-image SmallCNN", lambda: SmallCNN(3, 4, 16), "image", p.x[:4000], p.y[:4000], p.x[4000:],
                    p.y[4000:], torch.rand(200, 3, 28, 28), 64, 2))
    try:
        from explain.zoo.bundled import load_plot_summaries, load_reviews
        r = load_reviews(max_len=40, vocab_size=6000)
        out.append(("reviews BiLSTM", lambda: BiLSTMClassifier(len(r.vocab), 2, embed_dim=48, hidden=48), "tokens",
                    r.x_train, r.y_train, r.x_test, r.y_test, load_plot_summaries(r.vocab, 40), 64, 6))
    except Exception:  # noqa: BLE001
        t = planted_tokens(8200, length=40, vocab_size=6000)
        out.append(("planted-token BiLSTM", lambda: BiLSTMClassifier(6000, 2, 48, 48), "tokens", t.x[:8000], t.y[:8000],
                    t.x[8000:], t.y[8000:], torch.randint(2, 6000, (200, 40)), 64, 6))
    try:
        from explain.zoo.bundled import load_gunpoint_series, load_motion_series
        g = load_gunpoint_series()
        out.append(("GunPoint Conv1dNet", lambda: Conv1dNet(1, 2, 16), "series", g.x_train, g.y_train, g.x_test, g.y_test,
                    load_motion_series(150), 16, 60))
    except Exception:  # noqa: BLE001
        s = planted_series(250, length=150, num_classes=2)
        out.append(("planted-series Conv1dNet", lambda: Conv1dNet(1, 2, 16), "series", s.x[:50], s.y[:50], s.x[50:],
                    s.y[50:], torch.randn(200, 150, 1), 16, 60))
    return out


ALL_PROBES = ["accuracy", "explanations", "robustness", "ood"]


def overhead_rows(repeats: int, only: str = ""):
    rows = []
    for name, make, kind, xt, yt, xp, yp, ood, bs, epochs in demo_sets():
        if only and only not in name:
            continue
        torch.manual_seed(0)
        start = make()
        tmp = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
        counter = [0]
        probed, own = {}, {}

        def run(key, probes=None, every="auto"):
            net = copy.deepcopy(start)
            mon = None
            if probes is not None:
                counter[0] += 1
                m = explain.ModelWrapper(net, kind, device="cpu")
                mon = reports.Monitor(m, probe=(xp[:200], yp[:200]), probes=probes, ood=ood[:200], every=every,
                                      epochs=epochs, out=tmp / f"run{counter[0]}", progress=False, live=False,
                                      attack_steps=3)
            train_classifier(net, xt, yt, epochs=epochs, batch_size=bs, monitor=mon)
            if mon is not None:
                mon.close()
                ep = [r for r in mon.records if r.get("type") == "epoch"]
                probed[key] = sum(1 for r in ep if r.get("probed"))
                own.setdefault(key, []).append(sum(r["probe_seconds"] + r["monitor_seconds"] for r in ep)
                                               / sum(r["seconds"] for r in ep))

        fns = {"plain": lambda: run("plain"), "epoch": lambda: run("epoch", ["accuracy"], "epoch"),
               "auto": lambda: run("auto", ["accuracy"]), "all": lambda: run("all", ALL_PROBES)}
        if len(xt) * epochs > 5000:  # long runs: the budget schedule probes as often as every="epoch" would
            fns.pop("epoch")
        med = interleaved_medians(fns, repeats, torch.device("cpu"))

        def cell(key):
            if key not in med:
                return "not timed"
            return (f"{(med[key] - med['plain']) / med['plain']:.1%} ({probed[key]}/{epochs} probed; own clock "
                    f"{statistics.median(own[key]):.1%})")
        rows.append([name, f"{epochs} × {len(xt)} samples, batch {bs}", med["plain"], cell("epoch"), cell("auto"),
                     cell("all")])
    return rows


def feature_vis_rows(repeats: int, steps: int):
    from explain.zoo.bundled import load_digits_images
    try:
        d = load_digits_images()
        x = d.x_test[:64]
        net = SmallCNN(1, 10, 16)
    except Exception:  # noqa: BLE001
        x = planted_images(64, size=28).x
        net = SmallCNN(3, 4, 16)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    m = explain.ModelWrapper(net, "image", device="cpu")
    classes = list(range(4))
    best = None
    for b in (1, 4, 16, 64):
        xb = x[:b].repeat(max(1, b // len(x[:b])), 1, 1, 1)[:b]

        def fb(xb=xb):
            xr = xb.detach().clone().requires_grad_(True)
            net(xr)[:, 0].sum().backward()
        t = interleaved_medians({"fb": fb}, repeats, torch.device("cpu"))["fb"]
        rate = b / t
        best = rate if best is None or rate > best else best
    t = interleaved_medians({"fv": lambda: explain.feature_visualization(m, classes=classes, steps=steps, seed=0,
                                                                       shape=tuple(x.shape[1:]))},
                            max(1, repeats // 2), torch.device("cpu"))["fv"]
    per_class = t / len(classes)
    limit = steps / best
    return [[f"feature_visualization, {steps} steps, {len(classes)} classes batched", per_class, limit, limit / per_class]]


def main() -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=64, help="feature-visualisation steps")
    p.add_argument("--only", default="", help="time only the demo model whose name contains this")
    p.add_argument("--skip-features", action="store_true", help="skip the feature-visualisation timing")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    print(f"machine: {machine_line(torch.device('cpu'))}; medians of {args.repeats} interleaved runs\n")
    print(markdown_table(["demo model", "run", "run s (no monitor)", "default probe, every epoch",
                          "default probe, auto", "four probes, auto"], overhead_rows(args.repeats, args.only)), flush=True)
    if not args.skip_features:
        print()
        print(markdown_table(["job", "s per class", "limit s per class", "ratio to limit"],
                             feature_vis_rows(args.repeats, args.steps)))
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
