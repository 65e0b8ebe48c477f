"""The one batched path: chunks, an automatic batch size, CUDA out-of-memory halving, progress bars.

Automatic batch size (:class:`BatchTuner`), so every method runs at the model's best throughput
without the user tuning anything:

* **CPU** — small batches are often fastest (caches), and how small depends on the model. The first
  chunks of real work run at candidate sizes 8, 16, 32, … (each twice: the first call at a new
  shape pays one-time set-up costs, the second is timed); measuring stops after two candidates in a
  row lose to the best so far, or at the largest candidate, and the fastest per-sample time wins.
  Nothing is computed twice — the measurement *is* the work — so its cost is bounded by running a
  few hundred rows at sub-optimal sizes.
* **CUDA** — the largest batch that fits is usually fastest: start at :data:`CUDA_START` and
  halve on out-of-memory.

The choice is cached per key (the wrapper adds its device, the per-sample input shape and whether
gradients are on), so later calls go straight to the best size. An explicit ``batch_size`` (per call
or on the wrapper) always wins.

Rows never interact, but a kernel's summation order can depend on the batch size, so without a fixed
size results agree across batch sizes to about 1e-5 relative (float32 rounding), not bit for bit:
the same seeded call twice on one wrapper may differ at that level, because the first call measures
candidate sizes and the second uses the winner. :func:`deterministic` fixes the size (no timing at
all) and turns on torch's deterministic algorithms while it runs; the command line's ``--seed`` uses it.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import time
from typing import Any, Callable, Dict, Hashable, Iterator, List, Optional, Sequence

import torch

from .errors import InputValueError, OutOfMemoryError


def _is_oom(error: BaseException) -> bool:
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


CPU_CANDIDATES = (8, 16, 32, 64, 128, 256)
CUDA_START = 1024
MAX_CHUNK_ELEMENTS = 2 ** 26  # candidates whose input chunk would exceed this many numbers are skipped
DETERMINISTIC_BATCH = 32  # the chunk size of automatic batching inside deterministic()

_FIXED: contextvars.ContextVar[Optional[int]] = contextvars.ContextVar("xaiscope_deterministic_batch", default=None)


@contextlib.contextmanager
def deterministic(batch_size: int = DETERMINISTIC_BATCH) -> Iterator[None]:
    """Bit-identical results for the same seed: a fixed batch size and torch's deterministic algorithms.

    Inside the block every forward/backward pass whose batch size would be chosen automatically
    runs in chunks of ``batch_size`` (an explicit ``batch_size`` per call or on the wrapper still
    wins; it is fixed too), ``torch.use_deterministic_algorithms(True, warn_only=True)`` is on, cuDNN
    is deterministic and does not benchmark. Everything is restored on exit, also on an exception.
    Operations that have no deterministic implementation (some CUDA kernels) warn instead of
    failing. The same seeded call then gives the same bits on the same machine and software.

    Without it, results agree across batch sizes to about 1e-5 relative (float32 rounding), and
    the automatic size is chosen by timing, so two identical seeded calls can differ at that level.

    Args:
        batch_size: the chunk size used where the size would be automatic (default 32).

    Raises:
        InputValueError: ``batch_size`` is not a whole number ≥ 1.

    Example:
        >>> with explain.deterministic():                       # doctest: +SKIP
        ...     a = explain.lime(m, x, seed=0)
        ...     b = explain.lime(m, x, seed=0)                   # torch.equal(a.values, b.values)
    """
    from .errors import InputValueError
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputValueError(f"deterministic(batch_size=...) must be a whole number ≥ 1, got {batch_size!r}")
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    token = _FIXED.set(int(batch_size))
    try:
        if cublas is None:  # deterministic cuBLAS needs a fixed workspace
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        yield
    finally:
        _FIXED.reset(token)
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]
        if cublas is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def deterministic_mode() -> dict:
    """``{"deterministic": bool, "batch_size": int or None}``: whether :func:`deterministic` is active
    here, and the fixed batch size it set (reports record it for reproducibility)."""
    size = _FIXED.get()
    return {"deterministic": size is not None, "batch_size": size}


class BatchTuner:
    """Chooses chunk sizes by measuring throughput on the first chunks of real work (see module doc).

    Args:
        device_type: ``"cpu"``, ``"cuda"``, … (CUDA and other accelerators: largest that fits).
        candidates: CPU sizes to try, ascending.
        clock: a monotonic clock in seconds (tests pass a fake one).

    Example:
        >>> tuner = BatchTuner("cpu")
        >>> size = tuner.next_size("k", remaining=1000)   # 8: the first candidate
    """

    def __init__(self, device_type: str, candidates: Sequence[int] = CPU_CANDIDATES,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.device_type = device_type
        self.candidates = tuple(sorted(int(c) for c in candidates))
        self.clock = clock
        self.best: Dict[Hashable, int] = {}
        self.cap: Dict[Hashable, int] = {}
        self._timings: Dict[Hashable, Dict[int, List[float]]] = {}

    def _tries(self, key: Hashable, row_numel: Optional[int]) -> tuple:
        limit = self.cap.get(key)
        sizes = [c for c in self.candidates if (limit is None or c <= limit)
                 and (row_numel is None or c * row_numel <= MAX_CHUNK_ELEMENTS)]
        if sizes:
            return tuple(sizes)
        # rows so large that even the smallest candidate is over the limit: as many as fit (at least 1)
        fit = self.candidates[0] if row_numel is None else max(1, MAX_CHUNK_ELEMENTS // max(row_numel, 1))
        return (max(1, min(self.candidates[0], limit or self.candidates[0], fit)),)

    def next_size(self, key: Hashable, remaining: int, row_numel: Optional[int] = None) -> int:
        """The size of the next chunk for ``key`` (never more than ``remaining``)."""
        if key in self.best:
            return max(1, min(self.best[key], remaining))
        if self.device_type != "cpu":
            return max(1, min(self.cap.get(key, CUDA_START), remaining))
        timings = self._timings.setdefault(key, {})
        for size in self._tries(key, row_numel):
            if len(timings.get(size, [])) < 2:
                if size <= remaining:
                    return size
                # too few rows left to measure this candidate: the best so far (or all that is left)
                measured = {c: t[-1] for c, t in timings.items() if len(t) >= 2}
                return min(min(measured, key=measured.get), remaining) if measured else remaining
        self._decide(key)
        return max(1, min(self.best[key], remaining))

    def record(self, key: Hashable, size: int, seconds: float, row_numel: Optional[int] = None) -> None:
        """Note that a chunk of ``size`` rows took ``seconds``; may settle the choice for ``key``."""
        if key in self.best or self.device_type != "cpu":
            return
        tries = self._tries(key, row_numel)
        if size not in tries:  # a short last chunk: not a measurement of any candidate
            return
        self._timings.setdefault(key, {}).setdefault(size, []).append(seconds / size)
        done = [c for c in tries if len(self._timings[key].get(c, [])) >= 2]
        if len(done) == len(tries):
            self._decide(key)
            return
        per = {c: self._timings[key][c][-1] for c in done}
        fastest = min(per.values(), default=0.0)
        if len(done) >= 3 and per[done[-1]] > fastest and per[done[-2]] > fastest:
            self._decide(key)  # two larger candidates in a row lost: stop measuring

    def _decide(self, key: Hashable) -> None:
        measured = {c: t[-1] for c, t in self._timings.get(key, {}).items() if len(t) >= 2}
        if measured:
            self.best[key] = min(measured, key=measured.get)
        else:
            self.best[key] = self._tries(key, None)[0]

    def shrink(self, key: Hashable, size: int) -> None:
        """After out-of-memory at ``2·size``: never try more than ``size`` again for ``key``."""
        self.cap[key] = min(self.cap.get(key, size), size)
        if key in self.best:
            self.best[key] = min(self.best[key], size)
        for c in list(self._timings.get(key, {})):
            if c > size:
                del self._timings[key][c]


def run_in_chunks(fn: Callable[[slice], Any], n: int, size: Optional[int], *, desc: str = "forward",
                  progress: Optional[bool] = None, on_shrink: Optional[Callable[[int], None]] = None,
                  where: str = "the device", tuner: Optional[BatchTuner] = None, key: Hashable = None,
                  row_numel: Optional[int] = None, unit: str = "sample") -> list:
    """``[fn(slice) for each chunk of range(n)]``, halving the chunk size on out-of-memory errors.

    The chunking behind :meth:`ModelWrapper.batched`, public for computations that run over rows
    without a wrapper (bound propagation's backward passes). With ``size=None`` a ``tuner`` picks
    every chunk's size under ``key`` (see :class:`BatchTuner`), except inside :func:`deterministic`,
    which fixes it.

    Raises:
        InputValueError: neither ``size`` nor ``tuner`` is given (outside the deterministic mode).
        OutOfMemoryError: even a chunk of one row does not fit.

    Example:
        >>> parts = explain.run_in_chunks(lambda sl: x[sl].sum(1), len(x), 64)   # doctest: +SKIP
    """
    if size is None:
        size = _FIXED.get()  # deterministic(): a fixed size, never a timed choice
    if size is None and tuner is None:
        raise InputValueError("run_in_chunks needs a chunk size (a whole number ≥ 1) or a tuner")
    fixed = None if size is None else max(1, min(int(size), max(n, 1)))
    results = []
    bar = _progress(n, desc, progress, unit)
    start = 0
    try:
        while start < n:
            size = fixed if fixed is not None else tuner.next_size(key, n - start, row_numel)
            stop = min(start + size, n)
            try:
                began = time.perf_counter() if tuner is None else tuner.clock()
                results.append(fn(slice(start, stop)))
                if fixed is None:
                    tuner.record(key, stop - start, tuner.clock() - began, row_numel)
            except Exception as error:  # noqa: BLE001 - only OOM is handled, everything else re-raised
                if not _is_oom(error):
                    raise
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                if size == 1:
                    raise OutOfMemoryError(
                        f"out of memory on {where} even with a batch of 1 ({desc}); "
                        "try precision='bf16', a smaller input or another device") from error
                size = max(1, size // 2)
                if fixed is not None:
                    fixed = size
                else:
                    tuner.shrink(key, size)
                if on_shrink is not None:
                    on_shrink(size)
                continue
            if bar is not None:
                bar.update(stop - start)
            start = stop
    finally:
        if bar is not None:
            bar.close()
    return results


def _progress(total: int, desc: Optional[str], enabled: Optional[bool], unit: str = "sample"):
    """A tqdm bar for long work; ``enabled=None`` shows it only on a terminal and for big jobs."""
    if enabled is False or (enabled is None and total < 2048):
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, desc=desc, unit=unit, leave=False, disable=None if enabled is None else False)

