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
    cnn = train_classifier(_seeded(seed, lambda: SmallCNN(in_channels=1, num_classes=10, width=16)),
                           digits.x_train, digits.y_train, epochs=2, seed=seed,
                           mean=torch.tensor(mean), std=torch.tensor(std))
    log(f"trained SmallCNN on {digits.name} in {time.perf_counter() - t:.0f} s")
    m = explain.ModelWrapper(cnn, "image", class_names=digits.class_names, mean=[mean], std=[std])
    ood = load_photo_patches(300, size=digits.x_test.shape[-1], channels=digits.x_test.shape[1], seed=seed)
    rep = build_report(m, (digits.x_test, digits.y_test), out=root / "digits", force=force, methods=methods, samples=samples,
                       ood_data=ood,
                       seed=seed, max_samples=400, title="SmallCNN on handwritten digits",
                       config={"explanations": {"params": {"occlusion": {"window": 6, "stride": 3}}}})
    paths.append(root / "digits" / "index.html")
    log(f"wrote {paths[-1]}  ({rep.sections[1].summary.get('accuracy', 0):.1%} accuracy)")

    reviews = load_reviews(max_len=40, vocab_size=6000, seed=seed)
    t = time.perf_counter()
    lstm = train_classifier(_seeded(seed, lambda: BiLSTMClassifier(len(reviews.vocab), 2, embed_dim=48, hidden=48)),
                            reviews.x_train, reviews.y_train, epochs=6, seed=seed, lr=3e-3)
    log(f"trained BiLSTMClassifier on {reviews.name} in {time.perf_counter() - t:.0f} s")
    m = explain.ModelWrapper(lstm, "tokens", class_names=reviews.class_names)
    ood = load_plot_summaries(reviews.vocab, max_len=reviews.x_test.shape[1])
    rep = build_report(m, (reviews.x_test, reviews.y_test), out=root / "reviews", force=force, methods=methods, samples=samples,
                       ood_data=ood,
                       seed=seed, max_samples=400, vocab=reviews.vocab, title="BiLSTM on movie-review snippets")
    paths.append(root / "reviews" / "index.html")
    log(f"wrote {paths[-1]}  ({rep.sections[1].summary.get('accuracy', 0):.1%} accuracy)")

    gun = load_gunpoint_series()
    t = time.perf_counter()
    mean, std = gun.x_train.mean().item(), gun.x_train.std().item()
    c1d = train_classifier(_seeded(seed, lambda: Conv1dNet(1, 2, width=16)), gun.x_train, gun.y_train,
                           epochs=60, batch_size=16, seed=seed, mean=torch.tensor(mean), std=torch.tensor(std))
    log(f"trained Conv1dNet on {gun.name} in {time.perf_counter() - t:.0f} s")
    m = explain.ModelWrapper(c1d, "series", class_names=gun.class_names, mean=[mean], std=[std])
    ood = load_motion_series(gun.x_test.shape[1]) * gun.x_train.std() + gun.x_train.mean()
    rep = build_report(m, (gun.x_test, gun.y_test), out=root / "gunpoint", force=force, methods=methods, samples=samples,
                       ood_data=ood,
                       seed=seed, title="1-D CNN on GunPoint motion series")
    paths.append(root / "gunpoint" / "index.html")
    log(f"wrote {paths[-1]}  ({rep.sections[1].summary.get('accuracy', 0):.1%} accuracy)")
    return paths
