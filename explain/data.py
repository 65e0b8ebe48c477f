"""Accepting data the ways users hold it: ``(inputs, labels)`` tensors, a ``Dataset`` or a ``DataLoader``."""

from __future__ import annotations

from typing import Any, Iterator, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .errors import EmptyDataError, InputShapeError

__all__ = ["iter_batches", "collect"]


def _as_tensor(v: Any, what: str) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        return v
    if isinstance(v, np.ndarray):
        return torch.from_numpy(v)
    try:
        return torch.as_tensor(v)
    except Exception as error:  # noqa: BLE001 - re-raised as a clear message
        raise InputShapeError(f"{what}: expected a tensor or array, got {type(v).__name__}") from error


def _split(batch: Any) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    if isinstance(batch, dict):
        x = batch.get("inputs", batch.get("input_ids", batch.get("x")))
        y = batch.get("labels", batch.get("label", batch.get("y")))
        if x is None:
            raise InputShapeError(f"a batch dict needs an 'inputs' (or 'input_ids'/'x') key, got keys {sorted(batch)}")
        return _as_tensor(x, "inputs"), None if y is None else _as_tensor(y, "labels")
    if isinstance(batch, (tuple, list)):
        if len(batch) == 0:
            raise EmptyDataError("a batch is empty")
        x = _as_tensor(batch[0], "inputs")
        y = _as_tensor(batch[1], "labels") if len(batch) > 1 and batch[1] is not None else None
        return x, y
    return _as_tensor(batch, "inputs"), None


def iter_batches(data: Any, batch_size: int = 256) -> Iterator[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """Yield ``(inputs, labels)`` batches (labels may be ``None``) from any supported data form.

    ``data`` is an ``(inputs, labels)`` pair of tensors/arrays, a bare inputs tensor, a ``Dataset``
    of ``(x, y)`` items, or a ``DataLoader``.

    Raises:
        EmptyDataError: when no sample is found.
        InputShapeError: when inputs and labels disagree in length.
    """
    seen = 0
    if isinstance(data, DataLoader):
        source: Any = data
    elif isinstance(data, Dataset):
        source = DataLoader(data, batch_size=batch_size, shuffle=False)
    elif isinstance(data, (tuple, list)) and len(data) == 2 and not isinstance(data[0], (int, float)):
        xs = _as_tensor(data[0], "inputs")
        ys = None if data[1] is None else _as_tensor(data[1], "labels").flatten()
        if ys is not None and len(ys) != len(xs):
            raise InputShapeError(f"inputs hold {len(xs)} samples but labels hold {len(ys)}")
        source = ((xs[i:i + batch_size], None if ys is None else ys[i:i + batch_size])
                  for i in range(0, len(xs), batch_size))
    elif isinstance(data, (torch.Tensor, np.ndarray)):
        xs = _as_tensor(data, "inputs")
        source = ((xs[i:i + batch_size], None) for i in range(0, len(xs), batch_size))
    else:
        raise InputShapeError(
            f"data: expected an (inputs, labels) pair, a tensor, a Dataset or a DataLoader, got {type(data).__name__}")
    for batch in source:
        x, y = _split(batch)
        if len(x) == 0:
            continue
        seen += len(x)
        yield x, (None if y is None else y.long().flatten())
    if seen == 0:
        raise EmptyDataError("data holds no samples")


def collect(data: Any, max_samples: Optional[int] = None, batch_size: int = 256) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """All (or the first ``max_samples``) inputs and labels of ``data`` as two tensors."""
    xs, ys = [], []
    n = 0
    for x, y in iter_batches(data, batch_size):
        xs.append(x)
        ys.append(y)
        n += len(x)
        if max_samples is not None and n >= max_samples:
            break
    x = torch.cat(xs)
    y = None if any(v is None for v in ys) else torch.cat(ys)
    if max_samples is not None:
        x = x[:max_samples]
        y = None if y is None else y[:max_samples]
    return x, y
