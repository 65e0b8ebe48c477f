"""The one batched path: chunks, CUDA out-of-memory halving, progress bars."""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from .errors import OutOfMemoryError


def _is_oom(error: BaseException) -> bool:
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def run_in_chunks(fn: Callable[[slice], Any], n: int, size: int, *, desc: str = "forward",
                  progress: Optional[bool] = None, on_shrink: Optional[Callable[[int], None]] = None,
                  where: str = "the device") -> list:
    """``[fn(slice) for each chunk of range(n)]``, halving the chunk size on out-of-memory errors."""
    size = max(1, min(int(size), max(n, 1)))
    results = []
    bar = _progress(n, desc, progress)
    start = 0
    try:
        while start < n:
            stop = min(start + size, n)
            try:
                results.append(fn(slice(start, stop)))
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


def _progress(total: int, desc: Optional[str], enabled: Optional[bool]):
    """A tqdm bar for long work; ``enabled=None`` shows it only on a terminal and for big jobs."""
    if enabled is False or (enabled is None and total < 2048):
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, desc=desc, unit="sample", leave=False, disable=None if enabled is None else False)

