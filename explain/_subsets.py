"""Reading only some samples of indexable data: the parts of :meth:`explain.data.DataStream.shard`
that know how each kind of source reads a subset of its samples."""

from __future__ import annotations

from typing import Callable, Iterator, List, Optional

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, SequentialSampler


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
