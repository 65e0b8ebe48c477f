"""Accepting data the ways users hold it, and streaming it in fixed-size batches.

``data`` may be an ``(inputs, labels)`` pair of tensors or arrays (the inputs may also be a
map-style ``Dataset`` of single inputs, read on access), a bare inputs tensor, a ``Dataset`` (items ``(x, y)`` or ``x``), a ``DataLoader``, or any iterable of batches — ``(x, y)``
pairs, bare ``x`` tensors or dicts with an ``inputs``/``input_ids``/``x`` key. :func:`stream`
turns any of them into a :class:`DataStream` that yields ``(inputs, labels)`` batches of exactly
``batch_size`` samples (the last may be shorter), whatever the batching of the source. Results
computed batch by batch therefore do not depend on how the user batched the data: a
``DataLoader`` with batch size 7 gives the same batches, and so the same numbers, as tensors.

Only one source batch plus one output batch is held at a time; nothing concatenates the data set.

Example:
    >>> s = stream(DataLoader(ds, batch_size=7), batch_size=256)   # doctest: +SKIP
    >>> for x, y in s: ...                                        # batches of 256
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, RandomSampler, Subset

from ._sources import (Zip, as_tensor, contiguous_runs, is_lazy_pair, is_pair, loader_like, sequential_map_loader, slices,
                       split_batch)
from .errors import EmptyDataError, InputShapeError, SinglePassDataError

__all__ = ["DataStream", "stream", "iter_batches", "collect", "is_reiterable"]

Batch = Tuple[torch.Tensor, Optional[torch.Tensor]]


def is_reiterable(data: Any) -> bool:
    """True unless ``data`` is a one-shot iterator (``iter(data) is data``, e.g. a generator)."""
    try:
        return iter(data) is not data
    except TypeError:
        return True  # not iterable at all: stream() reports that


class DataStream:
    """Data as ``(inputs, labels)`` batches of exactly ``batch_size`` samples (labels may be ``None``).

    Each ``for`` loop over the stream is one pass over the data. Tensors, Datasets, DataLoaders and
    lists can be passed over any number of times; a one-shot iterator (a generator) only once, and
    a second pass raises :class:`~explain.errors.SinglePassDataError`.

    Attributes:
        batch_size: samples per yielded batch (the last may be shorter).
        max_samples: stop after this many samples (``None``: all).
        name: what the data is called in error messages (``"data"``, ``"ood_data"``, ...).
        reiterable: whether the stream can be passed over more than once.
        n_seen: samples yielded by the last complete pass (``None`` before one).
    """

    def __init__(self, data: Any, batch_size: int = 256, *, max_samples: Optional[int] = None,
                 name: str = "data") -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputShapeError(f"batch_size must be a positive integer, got {batch_size!r}")
        if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, int)
                                        or max_samples < 1):
            raise InputShapeError(f"max_samples must be a positive integer or None, got {max_samples!r}")
        self.batch_size = batch_size
        self.max_samples = max_samples
        self.name = name
        self.n_seen: Optional[int] = None
        self._passes = 0
        self.reiterable = True
        # map-style sources can read any samples on demand: ``(length, read)`` with ``read(indices)``
        # yielding those samples' batches, so a process reads only its own share (see :meth:`shard`)
        self._indexed: Optional[Tuple[int, Callable[[List[int]], Iterator]]] = None
        self._shuffled = False
        self._source = self._make_source(data)

    def __repr__(self) -> str:
        return (f"DataStream(batch_size={self.batch_size}, max_samples={self.max_samples}, name={self.name!r}, "
                f"reiterable={self.reiterable})")

    def _make_source(self, data: Any) -> Callable[[], Iterator]:
        size = self.batch_size
        if isinstance(data, DataStream):
            self.reiterable = data.reiterable
            return lambda: iter(data)
        if isinstance(data, DataLoader):
            self._shuffled = isinstance(getattr(data.batch_sampler, "sampler", data.sampler), RandomSampler)
            if sequential_map_loader(data):  # the user's loader settings (workers, collate) on any subset
                self._indexed = (len(data.dataset), lambda idx: iter(loader_like(data, Subset(data.dataset, idx), size)))
            return lambda: iter(data)
        if isinstance(data, IterableDataset):
            return lambda: iter(DataLoader(data, batch_size=size))
        if isinstance(data, Dataset):
            self._index_dataset(data)
            return lambda: iter(DataLoader(data, batch_size=size, shuffle=False))
        if is_lazy_pair(data):
            inputs, labels = data
            if labels is None:
                self._index_dataset(inputs)
                return lambda: iter(DataLoader(inputs, batch_size=size, shuffle=False))
            labels = as_tensor(labels, f"{self.name} labels").flatten()
            if len(labels) != len(inputs):
                raise InputShapeError(f"inputs hold {len(inputs)} samples but labels hold {len(labels)}")
            zipped = Zip(inputs, labels)
            self._index_dataset(zipped)
            return lambda: iter(DataLoader(zipped, batch_size=size, shuffle=False))
        if is_pair(data):
            xs = as_tensor(data[0], f"{self.name} inputs")
            ys = None if data[1] is None else as_tensor(data[1], f"{self.name} labels").flatten()
            if ys is not None and len(ys) != len(xs):
                raise InputShapeError(f"inputs hold {len(xs)} samples but labels hold {len(ys)}")
            self._indexed = (len(xs), contiguous_runs(xs, ys, size))
            return slices(xs, ys, size)
        if isinstance(data, (torch.Tensor, np.ndarray)):
            xs = as_tensor(data, f"{self.name} inputs")
            self._indexed = (len(xs), contiguous_runs(xs, None, size))
            return slices(xs, None, size)
        if isinstance(data, dict):
            return lambda: iter([data])
        if isinstance(data, (str, bytes)) or not hasattr(data, "__iter__"):
            raise InputShapeError(
                f"{self.name}: expected an (inputs, labels) pair, a tensor, a Dataset, a DataLoader or an iterable "
                f"of (inputs, labels) batches, got {type(data).__name__}")
        if not is_reiterable(data):
            self.reiterable = False
            return lambda: data
        return lambda: iter(data)

    def _index_dataset(self, ds: Dataset) -> None:
        if hasattr(ds, "__len__"):
            self._indexed = (len(ds), lambda idx: iter(DataLoader(Subset(ds, idx), batch_size=self.batch_size,
                                                                  shuffle=False)))

    @property
    def n_samples(self) -> Optional[int]:
        """Samples one pass yields, when known without reading (indexable data), else ``None``."""
        if self._indexed is None:
            return None
        return self._indexed[0] if self.max_samples is None else min(self._indexed[0], self.max_samples)

    @property
    def indexable(self) -> bool:
        """True when any sample can be read on its own (tensors, a sized ``Dataset``, an unshuffled
        ``DataLoader`` over one): :meth:`shard` then reads only the process's own batches."""
        return self._indexed is not None

    def shard(self, rank: int, world: int) -> Iterator[Tuple[int, torch.Tensor, Optional[torch.Tensor]]]:
        """One pass over this process's batches: ``(batch number, inputs, labels)`` for every batch
        whose number ``i`` has ``i % world == rank``.

        Every batch falls to exactly one process and, the batches being those of a plain pass, the
        processes together see every sample once, whatever ``world`` is. Indexable data
        (:attr:`indexable`) is read only where this process's batches lie; any other source (a
        generator, an ``IterableDataset``, a shuffling or custom-batched ``DataLoader``) is read whole
        by every process, each keeping its own batches, so every process must see it in the same
        order.

        Raises:
            InputShapeError: ``rank`` outside ``0..world-1``, or a shuffling ``DataLoader`` with more
                than one process (each would read its own order).

        Example:
            >>> [i for i, x, y in stream(torch.zeros(10, 2), batch_size=3).shard(1, 2)]
            [1, 3]
        """
        if not 0 <= rank < world:
            raise InputShapeError(f"shard needs 0 ≤ rank < world, got rank {rank} of {world}")
        if self._shuffled and world > 1:
            raise InputShapeError(f"{self.name} is a shuffling DataLoader (shuffle=True): each of the {world} processes "
                                  "would read the samples in its own order, so some would be evaluated twice and "
                                  "others never; pass a DataLoader without shuffle, or its Dataset")
        if self._indexed is None:
            return ((i, x, y) for i, (x, y) in enumerate(self) if i % world == rank)
        n, read = self.n_samples, self._indexed[1]
        size = self.batch_size
        own = list(range(rank, -(-n // size), world))
        if n == 0:
            raise EmptyDataError(f"{self.name} holds no samples")
        if not own:
            return iter(())
        part = DataStream(read([i for b in own for i in range(b * size, min(b * size + size, n))]), size, name=self.name)
        return ((b, x, y) for b, (x, y) in zip(own, part))

    def require_passes(self, passes: int, what: str) -> "DataStream":
        """Fail now, with advice, when ``what`` must read the data ``passes`` times and cannot.

        Raises:
            SinglePassDataError: ``passes > 1`` on a one-shot iterator.
        """
        if passes > 1 and not self.reiterable:
            raise SinglePassDataError(
                f"{what} reads {self.name} {passes} times, but it arrived as a one-shot iterator "
                f"({type(self).__name__} over a generator) that can be read only once; pass a DataLoader, a Dataset "
                "or a list of batches instead")
        return self

    def select(self, indices: Any) -> "DataStream":
        """The samples at ``indices`` (positions in this stream, any order; kept in stream order).

        The result is a stream too: each pass reads this stream once and keeps the chosen samples,
        in batches of ``batch_size``.

        Shape:
            indices: ``K`` (``LongTensor`` or a list of ints).
        """
        keep = torch.zeros(0, dtype=torch.bool)
        idx = torch.as_tensor(indices, dtype=torch.long).flatten()
        if len(idx):
            keep = torch.zeros(int(idx.max()) + 1, dtype=torch.bool)
            keep[idx] = True
        parent = self

        class _Selected:
            def __iter__(self):
                start = 0
                for x, y in parent:
                    m = keep[start:start + len(x)]
                    start += len(x)
                    if m.any():
                        m = torch.cat([m, torch.zeros(len(x) - len(m), dtype=torch.bool)]) if len(m) < len(x) else m
                        yield x[m], None if y is None else y[m]
                    if start >= len(keep):
                        break

        out = DataStream(_Selected(), self.batch_size, name=self.name)
        out.reiterable = self.reiterable
        return out

    def __iter__(self) -> Iterator[Batch]:
        if not self.reiterable and self._passes >= 1:
            raise SinglePassDataError(
                f"{self.name} arrived as a one-shot iterator (a generator) and was already read once; pass a "
                "DataLoader, a Dataset or a list of batches, which can be read again")
        self._passes += 1
        return self._batches()

    def _check(self, i: int, x: torch.Tensor, y: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        where = f"{self.name}, batch {i}"
        if x.dim() == 0:
            raise InputShapeError(f"{where}: inputs need a leading batch dimension, got a single number; each item "
                                  "of the iterable must be a batch (inputs, labels) with inputs shaped N×…")
        if y is None:
            return None
        if y.dim() > 1 and not (y.dim() == 2 and y.shape[1] == 1):
            raise InputShapeError(f"{where}: expected one class label per sample (shape N), got labels shaped "
                                  f"{tuple(y.shape)}")
        y = y.flatten()
        if len(y) != len(x):
            raise InputShapeError(f"{where}: {len(x)} inputs but {len(y)} labels; each batch needs one label per input")
        if y.is_floating_point() and not torch.equal(y, y.round()):
            raise InputShapeError(f"{where}: labels must be class indices (integers), got fractional values")
        return y.long()

    def _batches(self) -> Iterator[Batch]:
        size, limit = self.batch_size, self.max_samples
        pend_x: List[torch.Tensor] = []
        pend_y: List[Optional[torch.Tensor]] = []
        pending = seen = 0
        shape: Optional[tuple] = None
        dtype = None
        labelled: Optional[bool] = None

        def flush(final: bool):
            nonlocal pend_x, pend_y, pending
            if not pend_x:
                return
            x = pend_x[0] if len(pend_x) == 1 else torch.cat(pend_x)
            y = None if pend_y[0] is None else (pend_y[0] if len(pend_y) == 1 else torch.cat(pend_y))  # type: ignore[arg-type]
            stop = (len(x) // size) * size if not final else len(x)
            for a in range(0, stop, size):
                yield x[a:a + size], None if y is None else y[a:a + size]
            rest = len(x) - stop
            pend_x = [x[stop:]] if rest else []
            pend_y = [None if y is None else y[stop:]] if rest else []
            pending = rest

        for i, batch in enumerate(self._source()):
            x, y = split_batch(batch)
            y = self._check(i, x, y)
            if len(x) == 0:
                continue
            if labelled is None:
                labelled = y is not None
            elif labelled != (y is not None):
                raise InputShapeError(f"{self.name}, batch {i}: {'has' if y is not None else 'lacks'} labels but earlier "
                                      "batches did not; give labels with every batch or with none")
            per = tuple(x.shape[1:])
            if shape is not None and per != shape:
                if len(per) != len(shape) or per[1:] != shape[1:]:
                    raise InputShapeError(f"{self.name}, batch {i}: samples shaped {per} but earlier batches held "
                                          f"samples shaped {shape}; every sample must have the same shape (only "
                                          "the length, dimension 1 of a sequence, may change between batches)")
            if shape is not None and (per != shape or x.dtype != dtype):
                yield from flush(final=True)  # lengths changed: batches never mix them
            shape, dtype = per, x.dtype
            if limit is not None and seen + len(x) > limit:
                x = x[:limit - seen]
                y = None if y is None else y[:limit - seen]
            seen += len(x)
            if pending == 0 and len(x) == size:
                yield x, y  # already aligned: no copy
            else:
                pend_x.append(x)
                pend_y.append(y)
                pending += len(x)
                if pending >= size:
                    yield from flush(final=False)
            if limit is not None and seen >= limit:
                break
        yield from flush(final=True)
        if seen == 0:
            raise EmptyDataError(f"{self.name} holds no samples")
        self.n_seen = seen


def stream(data: Any, batch_size: int = 256, *, max_samples: Optional[int] = None, passes: int = 1,
           name: str = "data") -> DataStream:
    """``data`` in any supported form as a :class:`DataStream` of fixed-size batches.

    Args:
        data: an ``(inputs, labels)`` pair, an inputs tensor/array, a ``Dataset``, a ``DataLoader``, or
            any iterable of batches (``(x, y)``, bare ``x`` or dicts).
        batch_size: samples per yielded batch; source batches are split or joined to this size.
        max_samples: read at most this many samples (``None``: all).
        passes: how many times the caller will read the data; more than one on a one-shot
            iterator raises at once instead of silently seeing no data on the second pass.
        name: the data's name in error messages.

    Returns:
        A re-iterable (unless built on a one-shot iterator) ``DataStream``.

    Raises:
        InputShapeError: a form that is not data, a bad ``batch_size``/``max_samples``; while
            iterating, a batch without a batch dimension, labels that are not one class index per
            sample, samples whose shape changes, or labels on some batches only.
        EmptyDataError: while iterating, when no sample is found.
        SinglePassDataError: ``passes > 1`` on a one-shot iterator, or a second pass over one.

    Shape:
        yielded inputs: ``B×…`` with ``B ≤ batch_size``; labels: ``B`` (``LongTensor``) or ``None``.

    Example:
        >>> s = stream((torch.zeros(10, 3), torch.zeros(10)), batch_size=4)
        >>> [len(x) for x, _ in s]
        [4, 4, 2]
    """
    return DataStream(data, batch_size, max_samples=max_samples, name=name).require_passes(
        passes, f"this call ({passes} passes)")


def iter_batches(data: Any, batch_size: int = 256, *, name: str = "data") -> Iterator[Batch]:
    """Yield ``(inputs, labels)`` batches (labels may be ``None``) of ``batch_size`` samples: one pass of
    :func:`stream`.

    Raises:
        EmptyDataError: when no sample is found.
        InputShapeError: when inputs and labels disagree in length, or ``data`` is not data.

    Example:
        >>> [len(x) for x, _ in iter_batches(torch.zeros(5, 2), batch_size=2)]
        [2, 2, 1]
    """
    return iter(DataStream(data, batch_size, name=name))


def collect(data: Any, max_samples: Optional[int] = None, batch_size: int = 256,
            *, name: str = "data") -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """All (or the first ``max_samples``) inputs and labels of ``data`` as two tensors.

    Only the first ``max_samples`` are read from a stream, so this is also how to take a bounded
    head of a large data set.

    Raises:
        EmptyDataError: when no sample is found.
        InputShapeError: see :func:`stream`.

    Example:
        >>> x, y = collect((torch.zeros(10, 3), torch.arange(10)), max_samples=4)
        >>> x.shape, y.tolist()
        (torch.Size([4, 3]), [0, 1, 2, 3])
    """
    xs, ys = [], []
    for x, y in DataStream(data, batch_size, max_samples=max_samples, name=name):
        xs.append(x)
        ys.append(y)
    x = xs[0] if len(xs) == 1 else torch.cat(xs)
    y = None if ys[0] is None else (ys[0] if len(ys) == 1 else torch.cat(ys))  # type: ignore[arg-type]
    return x, y
