"""Streamed data inside a process group: each process takes every W-th batch of the stream.

Batch ``i`` of a :class:`explain.data.DataStream` belongs to rank ``i % W``. The work is done in
*rounds* of W batches so that processes whose work includes a collective (KNN's sharded bank merges
every rank's queries) call it the same number of times: a process with no batch in the last round
still takes part in it. Per-sample results come back in stream order with :func:`gather_batches`.
Memory stays bounded by the batch: nothing here concatenates the data set.

Example:
    >>> parts = [(b, score(x)) for b, x, y in rounds(stream(loader, 256)) if b is not None]   # doctest: +SKIP
    >>> scores = gather_batches(parts, torch.zeros(0))
"""

from __future__ import annotations

from typing import Iterator, List, Optional, Tuple

import torch

from explain.data import DataStream

from . import distributed as dist

Round = Tuple[Optional[int], Optional[torch.Tensor], Optional[torch.Tensor]]


def rounds(s: DataStream) -> Iterator[Round]:
    """``(batch number, inputs, labels)`` of this process's batches, one per round, and
    ``(None, None, None)`` for a final round that holds no batch for it.

    Every process gets the same number of rounds, ``ceil(batches / W)``. Outside a process group
    every batch is yielded, numbered. Indexable data is read only where this process's batches
    lie (see :meth:`explain.data.DataStream.shard`); other sources are read whole by every process.
    """
    rank, world = dist.rank_and_world()
    if world == 1:
        yield from ((i, x, y) for i, (x, y) in enumerate(s))
        return
    own = 0
    if s.indexable:
        n = s.n_samples or 0
        total = -(-n // s.batch_size)
        for b, x, y in s.shard(rank, world):
            own += 1
            yield b, x, y
    else:
        total = 0
        for i, (x, y) in enumerate(s):
            total += 1
            if i % world == rank:
                own += 1
                yield i, x, y
    for _ in range(own, -(-total // world)):
        yield None, None, None


def batch_count(s: DataStream) -> int:
    """Batches in one pass of ``s``: from its length when indexable, else by reading it once (no model calls)."""
    if s.indexable:
        return -(-(s.n_samples or 0) // s.batch_size)
    return sum(1 for _ in s)


class OwnBatches:
    """This process's batches of ``s`` as ``(inputs, labels)``, re-iterable when ``s`` is.

    Used to fit a detector on each process's share, with its statistics combined across processes.
    """

    def __init__(self, s: DataStream) -> None:
        self.stream = s

    def __iter__(self):
        return ((x, y) for b, x, y in rounds(self.stream) if b is not None)


def gather_batches(parts: List[Tuple[int, torch.Tensor]], empty: torch.Tensor) -> torch.Tensor:
    """Every process's per-batch results, concatenated in batch (so sample) order, on every process.

    Args:
        parts: ``(batch number, rows)`` of this process's batches.
        empty: a zero-row tensor with the rows' trailing shape and dtype (for a process without batches).

    Returns:
        ``N×…`` on the CPU (the rows themselves, in order, outside a process group).
    """
    local = torch.cat([t.detach().cpu() for _, t in parts]) if parts else empty
    if not dist.active():
        return local
    rows, _ = dist.gather_rows(local)
    layout = dist.gather_objects([(b, len(t)) for b, t in parts])
    pieces, offset = [], 0
    for blocks in layout:
        for b, k in blocks:
            pieces.append((b, rows[offset:offset + k]))
            offset += k
    pieces.sort(key=lambda p: p[0])
    return torch.cat([p for _, p in pieces]) if pieces else empty
