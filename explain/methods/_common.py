"""Plumbing shared by the explainers: input checks, targets, timing, window masks."""

from __future__ import annotations

import math
import time
from typing import Any, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from ..errors import InputShapeError
from ..model import ModelWrapper, check_wrapper

Window = Union[int, Sequence[int]]


class Timer:
    """``with Timer() as t: ...; t.seconds``."""

    def __enter__(self) -> "Timer":
        self._start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self._start


def begin(model: Any, x: Any, target: Any, *, lazy: bool = False):
    """Validate wrapper, inputs (moved to the device) and targets (one per sample, CPU).

    With ``lazy=True`` a missing target stays ``None``: the caller takes the predicted class from a
    forward pass it runs anyway, saving one pass over the batch.
    """
    wrapper = check_wrapper(model)
    x = wrapper.check_inputs(x)
    t = None if (lazy and target is None) else wrapper.resolve_target(x, target)
    return wrapper, wrapper.prepare(x), t


def feature_size(wrapper: ModelWrapper, x: torch.Tensor) -> Tuple[int, ...]:
    """The attribution map's size: ``(H, W)`` for images, ``(T,)`` for tokens and series."""
    return tuple(x.shape[2:]) if wrapper.input_kind == "image" else (int(x.shape[1]),)


def as_pair(v: Window, dims: int, what: str) -> Tuple[int, ...]:
    t = (int(v),) * dims if isinstance(v, int) else tuple(int(a) for a in v)
    if len(t) != dims or min(t) < 1:
        raise InputShapeError(f"{what}: expected {dims} positive integer(s), got {v!r}")
    return t


def grid_shape(size: Sequence[int], window: Sequence[int], stride: Sequence[int]) -> Tuple[int, ...]:
    """Window positions per axis; the last window may hang over the edge (and is cropped)."""
    return tuple(max(1, math.ceil((s - w) / st) + 1) for s, w, st in zip(size, window, stride))


def window_count(size: Sequence[int], window: Sequence[int], stride: Sequence[int]) -> int:
    """``P``, the number of window positions (the product of :func:`grid_shape`)."""
    return math.prod(grid_shape(size, window, stride))


def window_masks(size: Sequence[int], window: Sequence[int], stride: Sequence[int],
                 index: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Boolean masks, True inside the window: one per window position (``P×H×W`` or ``P×T``).

    With ``index`` (window numbers in ``0..P−1``, row-major over the grid) only those masks are
    built (``R×H×W`` / ``R×T``, on ``index``'s device), so a caller can make each chunk's masks as
    it goes and never hold all ``P`` of them: on a 4096×4096 image ``P×H×W`` would not fit in any
    memory. Row ``r`` equals row ``index[r]`` of the full set.
    """
    grid = grid_shape(size, window, stride)
    device = index.device if index is not None else None
    if index is None:
        index = torch.arange(math.prod(grid))
    axes, rest = [], index.long()
    for s, w, st, g in reversed(list(zip(size, window, stride, grid))):  # last axis varies fastest
        starts = (rest % g) * st
        rest = rest // g
        idx = torch.arange(s, device=device)
        axes.insert(0, (idx[None, :] >= starts[:, None]) & (idx[None, :] < starts[:, None] + w))  # R×s
    if len(axes) == 1:
        return axes[0]
    a, b = axes
    return a[:, :, None] & b[:, None, :]


def spread(scores: torch.Tensor, size: Sequence[int], window: Sequence[int], stride: Sequence[int]) -> torch.Tensor:
    """Average per-window ``scores`` (``N×P``) back onto the features each window covers.

    Math: ``a_j = Σ_{p ∋ j} s_p / |{p ∋ j}|``; features that no window covers get 0.
    Shape: ``N×P`` → ``N×H×W`` (2-D) or ``N×T`` (1-D).
    """
    grid = grid_shape(size, window, stride)
    n = scores.shape[0]
    s = scores.reshape(n, 1, *grid).float()
    ones = torch.ones(1, 1, *window, dtype=s.dtype, device=s.device)
    conv = F.conv_transpose2d if len(size) == 2 else F.conv_transpose1d
    total = conv(s, ones, stride=tuple(stride))
    count = conv(torch.ones_like(s[:1]), ones, stride=tuple(stride))
    crop = (slice(None), 0) + tuple(slice(0, d) for d in size)
    total, count = total[crop], count[crop]
    return torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total))
