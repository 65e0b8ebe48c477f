"""Input validation for every input kind: what was expected, what arrived."""

from __future__ import annotations

import warnings
from typing import Any, Optional, Tuple

import numpy as np
import torch

from .errors import EmptyDataError, InputShapeError, InputValueError


def validate_inputs(x: Any, kind: str, *, name: str = "inputs", mean: Optional[torch.Tensor] = None,
                    std: Optional[torch.Tensor] = None, valid_range: Optional[Tuple[float, float]] = None,
                    vocab: Optional[int] = None) -> torch.Tensor:
    """Check a batch of ``kind`` inputs and return it as a tensor (device unchanged).

    Images: float ``N×C×H×W``; series: float ``N×T×C``; tokens: integer ``N×T`` ids below ``vocab``.
    Float inputs must be finite; values outside ``valid_range`` only warn (normalised inputs passed
    by mistake are the usual cause).
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise InputShapeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if kind == "tokens":
        if x.dtype.is_floating_point or x.dtype == torch.bool or x.is_complex():
            raise InputShapeError(f"{name}: token models take integer ids (LongTensor N×T), got dtype {x.dtype}")
        if x.dim() != 2:
            raise InputShapeError(f"{name}: expected token ids of shape N×T, got shape {tuple(x.shape)}")
    else:
        if not x.dtype.is_floating_point:
            raise InputShapeError(f"{name}: {kind} inputs must be floating point, got dtype {x.dtype}")
        want = 4 if kind == "image" else 3
        layout = "N×C×H×W" if kind == "image" else "N×T×C"
        if x.dim() != want:
            hint = " (add a batch dimension with x.unsqueeze(0))" if x.dim() == want - 1 else ""
            raise InputShapeError(f"{name}: expected a {kind} batch of shape {layout}, got shape {tuple(x.shape)}{hint}")
        channels = x.shape[1] if kind == "image" else x.shape[2]
        for stat, label in ((mean, "mean"), (std, "std")):
            if stat is not None and stat.numel() not in (1, channels):
                raise InputShapeError(
                    f"{name}: {channels} channels but {label} has {stat.numel()} values; "
                    f"expected {layout} with C={stat.numel()}")
    if x.shape[0] == 0:
        raise EmptyDataError(f"{name}: the batch is empty (shape {tuple(x.shape)})")
    if kind != "tokens":
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise InputValueError(f"{name}: {bad} values are NaN or Inf; expected finite values")
        if valid_range is not None:
            lo, hi = valid_range
            if float(x.min()) < lo - 1e-3 or float(x.max()) > hi + 1e-3:
                warnings.warn(
                    f"{name}: values span [{float(x.min()):.3g}, {float(x.max()):.3g}] but the valid range is "
                    f"[{lo}, {hi}]; pass natural units (normalisation happens inside the wrapper)",
                    stacklevel=4)
    else:
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or (vocab is not None and hi >= vocab):
            raise InputValueError(f"{name}: token ids span [{lo}, {hi}] but the embedding has {vocab} rows")
    return x
