"""``xaiscope demo``: train the reference models on bundled real data and write their reports."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, List, Optional

import torch

import explain
from explain.zoo import BiLSTMClassifier, Conv1dNet, SmallCNN, train_classifier
from explain.zoo.bundled import (load_digits_images, load_gunpoint_series, load_motion_series, load_photo_patches,
                                  load_plot_summaries, load_reviews)

from ._save import check_output
from .build import build_report
from .history import HISTORY_FILE
from .monitor import Monitor

#: the probes the demo trains with (the monitor's defaults are accuracy only)
DEMO_PROBES = ["accuracy", "explanations", "robustness", "ood"]


def _monitor(wrapper: explain.ModelWrapper, folder: Path, x: torch.Tensor, y: torch.Tensor, ood: torch.Tensor,
             epochs: int) -> Monitor:
    """A monitor over 200 fixed test samples, writing into ``folder`` (an earlier demo history there is replaced;
    only the monitor's own files are removed). The training loop runs on the CPU, so ``wrapper`` must be on it too.
    Probes run on the monitor's default schedule: within 5 % of the training time, first and last epoch always."""
    if (folder / HISTORY_FILE).exists():
        for f in [folder / HISTORY_FILE, folder / "samples.npy", *sorted((folder / "maps").glob("epoch-*.npy"))]:
            f.unlink()
    return Monitor(wrapper, probe=(x[:200], y[:200]), probes=DEMO_PROBES, ood=ood[:200], out=folder, epochs=epochs,
                   attack_steps=3, progress=False, live=False)


def _seeded(seed: int, make: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return make()


def run_demo(out: str, *, seed: int = 0, methods: Optional[List[str]] = None, samples: int = 6,
             log: Callable[[str], None] = print, force: bool = False) -> List[Path]:
    """Train three small models (digits CNN, review BiLSTM, GunPoint 1-D CNN) and write one report each.

    The reports go to ``out/digits``, ``out/reviews`` and ``out/gunpoint``. Each of these may be new,
    empty or an earlier report (re-running the demo replaces only the reports' own files and keeps
    anything else you put there); a folder holding other files is refused unless ``force=True``,
    which writes the report's files into it without deleting anything.

    Returns the paths of the three ``index.html`` files.

    Raises:
        OutputExistsError: one of the three folders is a file, or holds other files and ``force`` is False.
    """
    methods = methods or ["gradcam", "occlusion", "lime", "shap", "integrated_gradients"]
    root = Path(out)
    for sub in ("digits", "reviews", "gunpoint"):  # refuse a wrong folder before minutes of training
        check_output(root / sub, force)
    paths = []

    digits = load_digits_images(seed=seed)
    t = time.perf_counter()
    mean, std = digits.x_train.mean().item(), digits.x_train.std().item()
    cnn = _seeded(seed, lambda: SmallCNN(in_channels=1, num_classes=10, width=16))
    make = lambda device: explain.ModelWrapper(cnn, "image", class_names=digits.class_names, mean=[mean], std=[std],  # noqa: E731
                                               device=device)
    ood = load_photo_patches(300, size=digits.x_test.shape[-1], channels=digits.x_test.shape[1], seed=seed)
    mon = _monitor(make("cpu"), root / "training" / "digits", digits.x_test, digits.y_test, ood, epochs=2)
    train_classifier(cnn, digits.x_train, digits.y_train, epochs=2, seed=seed,
                     mean=torch.tensor(mean), std=torch.tensor(std), monitor=mon)
    m = make("auto")
    log(f"trained SmallCNN on {digits.name} in {time.perf_counter() - t:.0f} s (monitored)")
    rep = build_report(m, (digits.x_test, digits.y_test), out=root / "digits", force=force, methods=methods, samples=samples,
                       ood_data=ood, history=mon.folder,
                       seed=seed, max_samples=400, title="SmallCNN on handwritten digits",
                       config={"explanations": {"params": {"occlusion": {"window": 6, "stride": 3}}},
                               "features": {"steps": 32, "examples": 3}})
    paths.append(root / "digits" / "index.html")
    log(f"wrote {paths[-1]}  ({rep.sections[1].summary.get('accuracy', 0):.1%} accuracy)")

    reviews = load_reviews(max_len=40, vocab_size=6000, seed=seed)
    t = time.perf_counter()
    lstm = _seeded(seed, lambda: BiLSTMClassifier(len(reviews.vocab), 2, embed_dim=48, hidden=48))
    ood = load_plot_summaries(reviews.vocab, max_len=reviews.x_test.shape[1])
    mon = _monitor(explain.ModelWrapper(lstm, "tokens", class_names=reviews.class_names, device="cpu"),
                   root / "training" / "reviews", reviews.x_test, reviews.y_test, ood, epochs=6)
    train_classifier(lstm, reviews.x_train, reviews.y_train, epochs=6, seed=seed, lr=3e-3, monitor=mon)
    m = explain.ModelWrapper(lstm, "tokens", class_names=reviews.class_names)
    log(f"trained BiLSTMClassifier on {reviews.name} in {time.perf_counter() - t:.0f} s (monitored)")
    rep = build_report(m, (reviews.x_test, reviews.y_test), out=root / "reviews", force=force, methods=methods, samples=samples,
                       ood_data=ood, history=mon.folder,
                       seed=seed, max_samples=400, vocab=reviews.vocab, title="BiLSTM on movie-review snippets")
    paths.append(root / "reviews" / "index.html")
    log(f"wrote {paths[-1]}  ({rep.sections[1].summary.get('accuracy', 0):.1%} accuracy)")

    gun = load_gunpoint_series()
    t = time.perf_counter()
    mean, std = gun.x_train.mean().item(), gun.x_train.std().item()
    c1d = _seeded(seed, lambda: Conv1dNet(1, 2, width=16))
    ood = load_motion_series(gun.x_test.shape[1]) * gun.x_train.std() + gun.x_train.mean()
    mon = _monitor(explain.ModelWrapper(c1d, "series", class_names=gun.class_names, mean=[mean], std=[std], device="cpu"),
                   root / "training" / "gunpoint", gun.x_test, gun.y_test, ood, epochs=60)
    train_classifier(c1d, gun.x_train, gun.y_train, epochs=60, batch_size=16, seed=seed, mean=torch.tensor(mean),
                     std=torch.tensor(std), monitor=mon)
    m = explain.ModelWrapper(c1d, "series", class_names=gun.class_names, mean=[mean], std=[std])
    log(f"trained Conv1dNet on {gun.name} in {time.perf_counter() - t:.0f} s (monitored)")
    rep = build_report(m, (gun.x_test, gun.y_test), out=root / "gunpoint", force=force, methods=methods, samples=samples,
                       ood_data=ood, history=mon.folder,
                       seed=seed, title="1-D CNN on GunPoint motion series")
    paths.append(root / "gunpoint" / "index.html")
    log(f"wrote {paths[-1]}  ({rep.sections[1].summary.get('accuracy', 0):.1%} accuracy)")
    return paths
