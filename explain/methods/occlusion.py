"""Occlusion sensitivity: how much the target score drops when a window of the input is replaced
by a baseline (Zeiler & Fergus, 2014, https://arxiv.org/abs/1311.2901).

Math: for window ``p``, ``s_p = f_c(x) − f_c(x with window p set to the baseline)``; a feature's
attribution is the mean ``s_p`` over the windows that cover it.

Windows: image patches over all channels; single tokens (or runs of tokens) replaced by the
baseline id; time windows over all channels for series. Every (input, window) pair is one row of a
batched forward pass through the wrapper; each chunk's window masks are made on the device as
the chunk runs, so memory follows the chunk size, never the number of windows.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import torch

from ..attribution import Attribution
from ..errors import InputShapeError
from ._common import Timer, Window, as_pair, begin, feature_size, spread, window_count, window_masks

#: Image sides up to this many pixels get the classic 8-pixel window; larger sides get
#: ``ceil(side / WINDOWS_PER_SIDE)`` pixels, so a default map never has more than about
#: ``(2 · WINDOWS_PER_SIDE)²`` ≈ 3,100 windows, whatever the image's size.
WINDOWS_PER_SIDE = 28


def _defaults(kind: str, size: tuple, window: Optional[Window], stride: Optional[Window]):
    dims = len(size)
    if window is None and kind == "image":  # 8 px up to 224 px sides, then a fixed number of windows per side
        window = tuple(max(8, -(-s // WINDOWS_PER_SIDE)) for s in size)
    elif window is None:
        window = 1 if kind == "tokens" else max(1, size[0] // 16)
    w = as_pair(window, dims, "window")
    w = tuple(min(a, s) for a, s in zip(w, size))
    if stride is None:
        stride = tuple(max(1, a // 2) for a in w) if kind != "tokens" else w
    return w, as_pair(stride, dims, "stride")


def occlusion(
    model: Any,
    x: Any,
    target: Any = None,
    *,
    window: Optional[Window] = None,
    stride: Optional[Window] = None,
    baseline: Union[float, int, torch.Tensor, None] = None,
    batch_size: Optional[int] = None,
    progress: Optional[bool] = None,
) -> Attribution:
    """Occlusion sensitivity maps.

    Args:
        model: an ``explain.ModelWrapper``.
        x: a batch in the wrapper's input kind.
        target: class per sample; default the predicted class.
        window: window size — ``int`` or ``(h, w)`` pixels for images, tokens (default 1) or time
            steps (default ``T // 16``). Images default to 8 pixels on sides up to 224 px and to
            ``ceil(side / 28)`` pixels on larger sides (147 on 4096 px), so with the default stride
            a map has at most about 55 windows per side (≈ 3,100 forward passes per image) on
            any image size.
        stride: step between windows (default half the window; the window for tokens).
        baseline: the replacement value in natural units (default 0), a tensor shaped like one
            input, or for tokens the replacement id (default the wrapper's ``pad_id``). Padding (and
            the wrapper's special ids) is never occluded and gets attribution 0.
        batch_size: perturbed inputs per forward pass (default: the wrapper's, or chosen automatically).
        progress: show a progress bar.

    Shape:
        ``values``: ``N×H×W`` (images) or ``N×T``.

    Example:
        >>> a = explain.occlusion(m, images, window=8, stride=4)   # doctest: +SKIP
    """
    with Timer() as timer:
        wrapper, xd, t = begin(model, x, target, lazy=True)
        kind = wrapper.input_kind
        size = feature_size(wrapper, xd)
        w, st = _defaults(kind, size, window, stride)
        n, p = xd.shape[0], window_count(size, w, st)
        if kind == "tokens":
            base = torch.as_tensor(wrapper.pad_id if baseline is None else baseline, device=wrapper.device)
            if base.dtype.is_floating_point:
                raise InputShapeError(f"baseline for token models must be a token id, got {baseline!r}")
        else:
            base = torch.as_tensor(0.0 if baseline is None else baseline, dtype=xd.dtype, device=wrapper.device)
            if base.dim() > 0 and tuple(base.shape) != tuple(xd.shape[1:]):
                raise InputShapeError(f"baseline: expected a scalar or shape {tuple(xd.shape[1:])}, got {tuple(base.shape)}")

        keep = wrapper.special_mask(xd) if kind == "tokens" else None  # padding and [CLS]/[SEP] stay

        def masked(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
            m = window_masks(size, w, st, cols)  # only this chunk's masks, never all P at once
            m = m[:, None] if kind == "image" else (m[:, :, None] if kind == "series" else m & ~keep[rows])
            if kind == "tokens" or rows[0] != rows[-1]:
                return torch.where(m, base, xd[rows])
            return torch.where(m, base, xd[int(rows[0])][None])  # one input: broadcast it, no copy per row

        def run(sl: slice) -> torch.Tensor:
            flat = torch.arange(sl.start, sl.stop, device=wrapper.device)
            rows, cols = flat // p, flat % p
            logits = wrapper.forward(masked(rows, cols))
            return logits.gather(1, t_dev[rows, None]).squeeze(1)

        with wrapper.session(grad=False):
            clean_logits = torch.cat(wrapper.batched(lambda sl: wrapper.forward(xd[sl]), n, batch_size=batch_size,
                                                     shape=xd.shape[1:]))
            t = clean_logits.argmax(dim=1).cpu() if t is None else t
            t_dev = t.to(wrapper.device)
            clean = clean_logits.gather(1, t_dev[:, None])  # N×1
            scores = torch.cat(wrapper.batched(run, n * p, batch_size=batch_size, desc="occlusion", progress=progress,
                                               shape=xd.shape[1:]))
        drops = clean - scores.view(n, p)
        values = spread(drops, size, w, st)
        if keep is not None:  # padding and special tokens are never features: attribution exactly 0
            values = torch.where(keep.to(values.device), torch.zeros_like(values), values)
        values = values.cpu()
    params = {"window": list(w), "stride": list(st),
              "baseline": float(base) if base.dim() == 0 else "tensor", "windows": p}
    return Attribution(values=values, method="occlusion", target=t, params=params, seconds=timer.seconds)
