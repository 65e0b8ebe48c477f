"""Planted-signal data sets: the cause of every label is drawn in by code, so the right
explanation is known (a mask over the pixels, tokens or time steps that carry the class).

Example:
    >>> d = planted_images(100, seed=0)
    >>> d.x.shape, d.y.shape, d.mask.shape
    (torch.Size([100, 3, 32, 32]), torch.Size([100]), torch.Size([100, 32, 32]))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch


@dataclass(frozen=True)
class PlantedSet:
    """Inputs ``x``, labels ``y`` and ``mask`` (True where the class evidence was planted).

    ``mask`` is ``N×H×W`` for images and ``N×T`` for tokens and series.
    """

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor
    class_names: List[str]
    input_kind: str

    def __len__(self) -> int:
        return len(self.y)


def _shapes(size: int) -> List[torch.Tensor]:
    """Class stencils on a ``size×size`` grid: a filled square, a plus, an X and a checkerboard.

    None of them contains another, so each class has evidence of its own where the shape is.
    """
    s = size
    i = torch.arange(s)
    square = torch.ones(s, s)
    plus = torch.zeros(s, s)
    plus[s // 2 - 1:s // 2 + 1, :] = 1
    plus[:, s // 2 - 1:s // 2 + 1] = 1
    diag = (i[:, None] - i[None, :]).abs().le(0)
    anti = (i[:, None] + i[None, :] - (s - 1)).abs().le(0)
    cross = (diag | anti).float()
    checker = ((i[:, None] // 2 + i[None, :] // 2) % 2).float()
    return [square, plus, cross, checker]


def _background(n: int, size: int, noise: float, smooth: bool, gen: torch.Generator) -> torch.Tensor:
    if not smooth:
        return torch.rand(n, 3, size, size, generator=gen) * noise
    coarse = torch.rand(n, 3, 4, 4, generator=gen) * noise
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def planted_images(n: int, *, size: int = 32, num_classes: int = 3, patch: Optional[int] = None, noise: float = 0.35,
                   blank: bool = True, smooth: bool = False, seed: int = 0) -> PlantedSet:
    """Noisy RGB images with one class-specific shape at a random position.

    Background pixels are uniform noise in ``[0, noise]`` — or, with ``smooth=True``, smooth
    coloured noise (a 4×4 grid of random colours in ``[0, noise]`` interpolated bicubically); the
    shape (``patch`` pixels wide, default ``size·10/32``) is drawn at brightness 1 in all channels.
    ``mask`` marks the shape's bounding box. With ``blank=True`` one more class, ``"blank"``
    (background only, empty mask), is added so no shape class can be recognised merely by the
    absence of the others: a model must find each shape where it is.
    """
    if not 2 <= num_classes <= 4:
        raise ValueError("planted_images supports 2 to 4 classes")
    patch = patch or max(4, round(size * 10 / 32))
    gen = torch.Generator().manual_seed(seed)
    x = _background(n, size, noise, smooth, gen)
    y = torch.randint(0, num_classes, (n,), generator=gen)
    mask = torch.zeros(n, size, size, dtype=torch.bool)
    stencils = _shapes(patch)
    rows = torch.randint(0, size - patch + 1, (n,), generator=gen)
    cols = torch.randint(0, size - patch + 1, (n,), generator=gen)
    for i in range(n):
        r, c, st = int(rows[i]), int(cols[i]), stencils[int(y[i])]
        region = x[i, :, r:r + patch, c:c + patch]
        x[i, :, r:r + patch, c:c + patch] = torch.where(st.bool(), torch.ones_like(region), region)
        mask[i, r:r + patch, c:c + patch] = True
    names = ["square", "plus", "cross", "checker"][:num_classes]
    if blank:
        empty = torch.rand(n, generator=gen) < 1.0 / (num_classes + 1)
        x[empty] = _background(int(empty.sum()), size, noise, smooth, gen)
        mask[empty] = False
        y = torch.where(empty, torch.full_like(y, num_classes), y)
        names = names + ["blank"]
    return PlantedSet(x, y, mask, names, "image")


def planted_tokens(n: int, *, length: int = 16, vocab_size: int = 60, num_classes: int = 2,
                   seed: int = 0) -> PlantedSet:
    """Token sequences of random distractors with one class-specific trigger token at a random place.

    Ids: 0 = padding, 1 = unknown, ``2..2+num_classes-1`` = triggers, the rest distractors.
    ``mask`` marks the trigger's position.
    """
    first = 2 + num_classes
    if vocab_size <= first + 1:
        raise ValueError("vocab_size too small for the distractors")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(first, vocab_size, (n, length), generator=gen)
    y = torch.randint(0, num_classes, (n,), generator=gen)
    pos = torch.randint(0, length, (n,), generator=gen)
    x[torch.arange(n), pos] = 2 + y
    mask = torch.zeros(n, length, dtype=torch.bool)
    mask[torch.arange(n), pos] = True
    return PlantedSet(x, y, mask, [f"trigger{i}" for i in range(num_classes)], "tokens")


def planted_series(n: int, *, length: int = 64, channels: int = 1, num_classes: int = 3, width: int = 8,
                   noise: float = 0.3, seed: int = 0) -> PlantedSet:
    """Gaussian-noise series (``N×T×C``) with one class-specific pulse at a random time.

    Pulses: class 0 a positive bump, 1 a negative bump, 2 a fast oscillation, 3 a step pair.
    ``mask`` marks the pulse's window.
    """
    if not 2 <= num_classes <= 4:
        raise ValueError("planted_series supports 2 to 4 classes")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, length, channels, generator=gen) * noise
    y = torch.randint(0, num_classes, (n,), generator=gen)
    start = torch.randint(0, length - width + 1, (n,), generator=gen)
    t = torch.linspace(0, 1, width)
    bump = torch.sin(torch.pi * t) * 2.0
    pulses = [bump, -bump, 2.0 * torch.sign(torch.sin(4 * torch.pi * t + 0.1)), torch.cat([torch.full((width // 2,), 2.0), torch.full((width - width // 2,), -2.0)])]
    mask = torch.zeros(n, length, dtype=torch.bool)
    for i in range(n):
        s = int(start[i])
        x[i, s:s + width, :] += pulses[int(y[i])][:, None]
        mask[i, s:s + width] = True
    return PlantedSet(x, y, mask, ["bump", "dip", "wiggle", "step"][:num_classes], "series")
