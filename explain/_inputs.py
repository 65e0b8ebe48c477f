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
    Float inputs must be finite, and stay finite when cast to float32 (the dtype every forward pass
    runs in): a float64 value beyond ±3.4e38 would become Inf there, so it is refused here. Values
    outside ``valid_range`` only warn (normalised inputs passed by mistake are the usual cause).
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
        _check_float32_range(x, name)
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


_F32_MAX = float(torch.finfo(torch.float32).max)


def _check_float32_range(x: torch.Tensor, name: str) -> None:
    """Refuse values that overflow to Inf when cast to float32 (only wider dtypes can hold them)."""
    if x.dtype == torch.float32 or torch.finfo(x.dtype).max <= _F32_MAX:
        return
    lo, hi = torch.aminmax(x)
    if float(lo) >= -_F32_MAX and float(hi) <= _F32_MAX:
        return
    over = x.abs() > _F32_MAX
    bad = int(over.sum())
    samples = over.reshape(len(x), -1).any(1).nonzero().flatten().tolist()
    shown = ", ".join(map(str, samples[:10])) + (", ..." if len(samples) > 10 else "")
    raise InputValueError(
        f"{name}: {bad} values of dtype {x.dtype} lie outside the float32 range ±{_F32_MAX:.3g} (largest magnitude "
        f"{max(abs(float(lo)), abs(float(hi))):.3g}, samples {shown}) and would become Inf when cast to float32 for "
        "the model; rescale the inputs to natural units")


def validate_labels(y: Any, n: Optional[int], num_classes: Optional[int], *, name: str = "labels") -> torch.Tensor:
    """Check class labels and return them as a flat CPU ``LongTensor``.

    Labels must be integer class indices (floats with whole values are accepted), one per sample
    (``n``), each in ``[0, num_classes - 1]`` when ``num_classes`` is known.

    Raises:
        InputShapeError: not a tensor/array/sequence, one-hot or 2-D labels, or a count other than ``n``.
        InputValueError: NaN, fractional values, or labels outside the model's classes.
    """
    if isinstance(y, np.ndarray):
        y = torch.from_numpy(y)
    if not isinstance(y, torch.Tensor):
        try:
            y = torch.as_tensor(y)
        except Exception as error:  # noqa: BLE001 - re-raised as one message
            raise InputShapeError(f"{name}: expected class indices (a tensor, array or list of ints), "
                                  f"got {type(y).__name__}") from error
    if y.is_complex() or y.dtype == torch.bool:
        raise InputShapeError(f"{name}: expected integer class indices, got dtype {y.dtype}")
    if y.dim() == 2 and y.shape[1] > 1 and (n is None or y.shape[0] == n):
        raise InputShapeError(f"{name}: expected one class index per sample (shape N), got shape {tuple(y.shape)}; "
                              "for one-hot or score labels pass labels.argmax(1)")
    y = y.detach().flatten().cpu()
    if n is not None and y.numel() != n:
        raise InputShapeError(f"{name}: expected {n} labels (one per input), got {y.numel()}")
    if y.dtype.is_floating_point:
        if not bool(torch.isfinite(y).all()):
            raise InputValueError(f"{name}: labels hold NaN or Inf; expected class indices")
        if not bool((y == y.round()).all()):
            raise InputValueError(f"{name}: labels must be whole class indices, got fractional values "
                                  f"{sorted(set(y[y != y.round()].tolist()))[:5]}")
    y = y.long()
    if y.numel() == 0:
        return y
    bad = (y < 0) if num_classes is None else ((y < 0) | (y >= num_classes))
    if bool(bad.any()):
        values = sorted(set(y[bad].tolist()))
        shown = ", ".join(map(str, values[:10])) + (", ..." if len(values) > 10 else "")
        valid = "≥ 0" if num_classes is None else f"in [0, {num_classes - 1}] ({num_classes} classes)"
        count = int(bad.sum())
        raise InputValueError(f"{name}: {count} label{' is' if count == 1 else 's are'} outside the model's classes: {shown}; "
                              f"labels must be class indices {valid}")
    return y


class LabelChecks:
    """Mixin for ``ModelWrapper``: labels and targets checked against the model's classes."""

    def check_labels(self, y: Any, x: Any = None, *, name: str = "labels") -> torch.Tensor:
        """Validate class labels against this model's classes; return them as a flat CPU ``LongTensor``.

        Args:
            y: one class index per sample (tensor, array or list).
            x: the inputs the labels belong to: their count must match, and when the number of
                classes is not known yet one forward pass on ``x[:1]`` learns it.
            name: how the labels are called in error messages.

        Shape:
            y: ``N``; x: ``N×…``; returns ``N``.

        Raises:
            InputShapeError: wrong count or one-hot/2-D labels.
            InputValueError: labels outside ``[0, num_classes - 1]`` (the message names them), NaN,
                or fractional values.

        Example:
            >>> y = m.check_labels([0, 1, 1], x)   # doctest: +SKIP
        """
        n = None if x is None else len(x)
        if self._num_classes is None and x is not None and n:
            self.logits(x[:1])  # learn the number of classes from the model's output
        return validate_labels(y, n, self._num_classes, name=name)

    def resolve_target(self, x: Any, target: Any = None) -> torch.Tensor:
        """One class index per sample: the predicted class when ``target`` is ``None``.

        Accepts an int (one class for all), a sequence or a tensor of ``N`` ints.
        """
        n = len(x)
        if target is None:
            return self.predict(x)
        t = torch.as_tensor(target).long().flatten().cpu()
        if t.numel() == 1:
            t = t.expand(n).clone()
        if t.numel() != n:
            raise InputShapeError(f"target: expected one class or {n} classes (one per sample), got {t.numel()}")
        if self._num_classes is None:
            self.logits(x[:1])
        k = self._num_classes
        if k is not None and (int(t.min()) < 0 or int(t.max()) >= k):
            raise InputValueError(f"target: class indices must be in [0, {k - 1}], got {t.tolist()[:10]}")
        return t
