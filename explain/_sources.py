"""How each form of data is read: a batch split into inputs and labels, an ``(inputs, labels)``
pair told apart from a list of batches, tensors sliced into batches, and — for
:meth:`explain.data.DataStream.shard` — a subset of the samples of indexable data."""

from __future__ import annotations

from typing import Any, Callable, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, SequentialSampler

from .errors import EmptyDataError, InputShapeError


def as_tensor(v: Any, what: str) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        return v
    if isinstance(v, np.ndarray):
        return torch.from_numpy(v)
    try:
        return torch.as_tensor(v)
    except Exception as error:  # noqa: BLE001 - re-raised as a clear message
        raise InputShapeError(f"{what}: expected a tensor or array, got {type(v).__name__}") from error


def split_batch(batch: Any) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    if isinstance(batch, dict):
        x = batch.get("inputs", batch.get("input_ids", batch.get("x")))
        y = batch.get("labels", batch.get("label", batch.get("y")))
        if x is None:
            raise InputShapeError(f"a batch dict needs an 'inputs' (or 'input_ids'/'x') key, got keys {sorted(batch)}")
        return as_tensor(x, "inputs"), None if y is None else as_tensor(y, "labels")
    if isinstance(batch, (tuple, list)):
        if len(batch) == 0:
            raise EmptyDataError("a batch is empty")
        x = as_tensor(batch[0], "inputs")
        y = as_tensor(batch[1], "labels") if len(batch) > 1 and batch[1] is not None else None
        return x, y
    return as_tensor(batch, "inputs"), None


class Zip(Dataset):
    """``(inputs[i], labels[i])`` items from a map-style Dataset of inputs and a label tensor."""

    def __init__(self, inputs: Any, labels: torch.Tensor) -> None:
        self.inputs, self.labels = inputs, labels

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int):
        return self.inputs[i], self.labels[i]


def is_lazy_pair(data: Any) -> bool:
    """``(Dataset of inputs, labels)``: inputs read on access, labels in memory."""
    return (isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], Dataset)
            and hasattr(data[0], "__len__") and (data[1] is None or isinstance(data[1], (torch.Tensor, np.ndarray))))


def is_pair(data: Any) -> bool:
    """``(inputs, labels)`` rather than a list of two batches: labels are one value per sample."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        return False
    a, b = data
    if not isinstance(a, (torch.Tensor, np.ndarray)):
        return False
    if isinstance(b, (torch.Tensor, np.ndarray)):
        # two input batches share a rank ≥ 2; labels are N or N×1
        return not (b.ndim >= 2 and b.ndim == a.ndim and tuple(b.shape[1:]) != (1,))
    return True


def slices(xs: torch.Tensor, ys: Optional[torch.Tensor], size: int) -> Callable[[], Iterator]:
    return lambda: ((xs[i:i + size], None if ys is None else ys[i:i + size]) for i in range(0, len(xs), size))


def contiguous_runs(xs: torch.Tensor, ys: Optional[torch.Tensor], size: int) -> Callable[[List[int]], Iterator]:
    """Batches of the samples at sorted ``indices`` of in-memory tensors, as views where they are contiguous."""
    def read(indices: List[int]) -> Iterator:
        for a in range(0, len(indices), size):
            chunk = indices[a:a + size]
            if chunk[-1] - chunk[0] == len(chunk) - 1:
                sl = slice(chunk[0], chunk[-1] + 1)
                yield xs[sl], None if ys is None else ys[sl]
            else:
                yield xs[chunk], None if ys is None else ys[chunk]
    return read


def sequential_map_loader(loader: DataLoader) -> bool:
    """A DataLoader that reads a sized map-style dataset in order, one ``batch_size`` at a time."""
    return (not isinstance(loader.dataset, IterableDataset) and hasattr(loader.dataset, "__len__")
            and isinstance(loader.sampler, SequentialSampler) and loader.batch_size is not None
            and not loader.drop_last)


def loader_like(loader: DataLoader, dataset: Dataset, size: int) -> DataLoader:
    """A DataLoader over ``dataset`` with ``loader``'s reading settings (workers, collate, pinning)."""
    return DataLoader(dataset, batch_size=size, shuffle=False, num_workers=loader.num_workers,
                      collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, timeout=loader.timeout,
                      worker_init_fn=loader.worker_init_fn, persistent_workers=False)
