"""Sharded evaluation over ``torch.distributed`` process groups (launched with ``torchrun``).

Every rank receives the same data; each works on one contiguous block of sample indices
(:func:`shard_indices`) of data held in memory, or on every W-th batch of streamed data (see
``robustness._sharded_stream``), and the parts are combined by all-reduce (sums and counts) or
gathered back into sample order (:func:`gather_in_order`). Every sample is evaluated exactly once, also when
the world size does not divide the number of samples, and no sample is padded or duplicated.
Outside a process group (or with a world of one) every helper is a no-op, so the same code runs
in one process and in many.

Collectives time out (``XAISCOPE_DIST_TIMEOUT`` seconds, default 600) instead of hanging, and any
failure inside one raises :class:`explain.errors.DistributedError`, marked ``secondary`` because
the cause is another process: the process that failed first reports its own error.

Example:
    >>> from robustness import distributed as dist
    >>> dist.shard_indices(10, rank=2, world=3)
    range(7, 10)
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from typing import Any, List, Optional, Tuple

import torch

from explain.errors import DistributedError, InputValueError

__all__ = ["init_from_env", "rank_and_world", "active", "is_main", "shard_indices", "local_range", "all_reduce_sum",
           "gather_in_order", "gather_rows", "gather_objects", "agree_on_errors", "announce_failure", "failures_announced", "traffic", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 600.0
_TRAFFIC = {"all_reduce": 0, "gather": 0}
_CONTROL: dict = {}
_HANDLED = [0]  # failures announced before the last agreement; newer ones stop pending collectives


def _timeout() -> float:
    raw = os.environ.get("XAISCOPE_DIST_TIMEOUT")
    try:
        return float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        raise InputValueError(f"XAISCOPE_DIST_TIMEOUT must be a number of seconds, got {raw!r}") from None


def init_from_env(timeout: Optional[float] = None, backend: Optional[str] = None) -> Tuple[int, int]:
    """Join the process group ``torchrun`` describes in the environment, if any.

    Nothing happens when the group is already initialised or when the environment holds no
    ``WORLD_SIZE``/``RANK`` (a plain single process). The backend is NCCL when CUDA is present and
    gloo otherwise; collectives time out after ``timeout`` seconds (default: the environment's
    ``XAISCOPE_DIST_TIMEOUT`` or 600).

    Args:
        timeout: seconds a collective may wait for the other processes.
        backend: ``"gloo"`` or ``"nccl"`` (default: chosen from the device).

    Returns:
        ``(rank, world_size)``; ``(0, 1)`` outside a process group.

    Raises:
        DistributedError: the process group could not be formed (wrong address, peers missing).

    Example:
        >>> rank, world = init_from_env()   # doctest: +SKIP
    """
    import torch.distributed as td

    if td.is_available() and not td.is_initialized() and "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        seconds = float(timeout) if timeout is not None else _timeout()
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        try:
            td.init_process_group(backend=backend, timeout=_dt.timedelta(seconds=seconds))
        except Exception as error:  # noqa: BLE001 - every rendezvous failure becomes one readable error
            raise DistributedError(f"could not join the process group (rank {os.environ.get('RANK')} of "
                                   f"{os.environ.get('WORLD_SIZE')}, backend {backend}): {error}; check "
                                   "MASTER_ADDR/MASTER_PORT or torchrun's --rdzv-endpoint") from error
    return rank_and_world()


def rank_and_world() -> Tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group, ``(0, 1)`` without one."""
    import torch.distributed as td

    if td.is_available() and td.is_initialized():
        return td.get_rank(), td.get_world_size()
    return 0, 1


def active() -> bool:
    """True inside an initialised process group of more than one process."""
    return rank_and_world()[1] > 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the process that writes files."""
    return rank_and_world()[0] == 0


def shard_indices(n: int, rank: Optional[int] = None, world: Optional[int] = None) -> range:
    """The contiguous block of sample indices ``rank`` evaluates out of ``n``.

    The first ``n % world`` ranks take one sample more than the others, so every sample falls in
    exactly one block, blocks follow each other in rank order (gathering them restores sample
    order) and none is padded.

    Args:
        n: number of samples.
        rank, world: default: this process's.

    Returns:
        A ``range`` of indices (empty when ``n < world`` for the last ranks).

    Raises:
        InputValueError: a negative ``n`` or a rank outside ``0..world-1``.

    Example:
        >>> [list(shard_indices(5, r, 3)) for r in range(3)]
        [[0, 1], [2, 3], [4]]
    """
    if rank is None or world is None:
        rank, world = rank_and_world()
    if n < 0 or world < 1 or not 0 <= rank < world:
        raise InputValueError(f"shard_indices needs n ≥ 0 and 0 ≤ rank < world, got n={n}, rank={rank}, world={world}")
    base, extra = divmod(int(n), int(world))
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def local_range(n: int) -> slice:
    """This process's block of ``n`` samples as a slice (all of them outside a process group)."""
    r = shard_indices(n)
    return slice(r.start, r.stop)


def _device() -> torch.device:
    import torch.distributed as td

    if td.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _store():
    """The process group's key-value store (where failures are announced), or None if unreachable."""
    try:
        from torch.distributed.distributed_c10d import _get_default_store
        return _get_default_store()
    except Exception:  # noqa: BLE001 - without a store, collectives still time out instead of hanging
        return None


_FAILURE_KEY = "xaiscope/failures"


def announce_failure() -> None:
    """Tell the other processes that this one failed, so their pending collectives stop at once."""
    store = _store() if active() else None
    if store is not None:
        try:
            store.add(_FAILURE_KEY, 1)
        except Exception:  # noqa: BLE001 - best effort: the collective timeout still applies
            pass


def failures_announced() -> int:
    """How many failures processes have announced so far (0 outside a process group)."""
    store = _store() if active() else None
    if store is None:
        return 0
    try:
        return int(store.add(_FAILURE_KEY, 0))
    except Exception:  # noqa: BLE001
        return 0


def _guard(what: str, fn, *args):
    """Run a collective asynchronously and wait for it, stopping early when another process failed."""
    rank, world = rank_and_world()
    try:
        if failures_announced() > _HANDLED[0]:
            raise DistributedError(f"{what} not started on rank {rank} of {world}: another process failed",
                                   secondary=True)
        work = fn(*args, async_op=True)
        while not work.is_completed():
            time.sleep(0.005)
            if failures_announced() > _HANDLED[0]:
                raise DistributedError(f"{what} stopped on rank {rank} of {world}: another process failed",
                                       secondary=True)
        work.wait()
    except DistributedError:
        raise
    except Exception as error:  # noqa: BLE001 - a peer that died or timed out, in whatever form the backend says it
        raise DistributedError(f"{what} failed on rank {rank} of {world}: another process stopped or did not answer "
                               f"within the timeout ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})",
                               secondary=True) from error


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``t`` over all processes (``t`` itself outside a process group).

    The input is not modified; the result is on ``t``'s device with ``t``'s dtype.

    Shape:
        any; every process must pass the same shape.

    Raises:
        DistributedError: another process failed or the collective timed out.

    Example:
        >>> counts = all_reduce_sum(torch.bincount(pred, minlength=k))   # doctest: +SKIP
    """
    if not active():
        return t.clone()
    import torch.distributed as td

    buf = t.detach().to(_device()).clone()
    _guard("all-reduce", td.all_reduce, buf)
    _TRAFFIC["all_reduce"] += buf.numel() * buf.element_size()
    return buf.to(t.device)


def gather_in_order(local: torch.Tensor, n: int) -> torch.Tensor:
    """Per-sample results of every block, concatenated in sample order, on every process.

    Args:
        local: this process's results for its block :func:`shard_indices` ``(n)``, first dimension
            the block's length.
        n: the total number of samples.

    Returns:
        ``N×…`` on the CPU (``local`` itself outside a process group).

    Shape:
        local: ``len(block)×…``; result: ``n×…``.

    Raises:
        DistributedError: another process failed or the collective timed out.
        InputValueError: ``local`` does not hold one row per sample of this block.
    """
    block = shard_indices(n)
    if len(local) != len(block):
        raise InputValueError(f"gather_in_order: expected {len(block)} rows for samples {block.start}..{block.stop - 1}, "
                              f"got {len(local)}")
    if not active():
        return local.detach().cpu()
    import torch.distributed as td

    _, world = rank_and_world()
    longest = len(shard_indices(n, 0, world))
    buf = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=_device())
    buf[: len(local)] = local.detach().to(buf.device)
    parts = [torch.empty_like(buf) for _ in range(world)]
    _guard("gather", td.all_gather, parts, buf)
    _TRAFFIC["gather"] += buf.numel() * buf.element_size() * world
    return torch.cat([p[: len(shard_indices(n, r, world))].cpu() for r, p in enumerate(parts)])


def gather_rows(local: torch.Tensor) -> Tuple[torch.Tensor, List[int]]:
    """Every process's rows, concatenated in rank order, when blocks may differ in length.

    Returns:
        ``(rows, lengths)``: all rows on the CPU and each process's number of rows.

    Shape:
        local: ``M_r×…`` (the trailing shape must agree); rows: ``(Σ M_r)×…``.
    """
    if not active():
        return local.detach().cpu(), [len(local)]
    import torch.distributed as td

    lengths = [int(v) for v in gather_objects(len(local))]
    buf = torch.zeros((max(lengths), *local.shape[1:]), dtype=local.dtype, device=_device())
    buf[: len(local)] = local.detach().to(buf.device)
    parts = [torch.empty_like(buf) for _ in lengths]
    _guard("gather", td.all_gather, parts, buf)
    _TRAFFIC["gather"] += buf.numel() * buf.element_size() * len(lengths)
    return torch.cat([p[:k].cpu() for p, k in zip(parts, lengths)]), lengths


def gather_objects(obj: Any) -> List[Any]:
    """One picklable object from every process, in rank order (``[obj]`` outside a process group)."""
    if not active():
        return [obj]
    import torch.distributed as td

    out: List[Any] = [None] * rank_and_world()[1]
    try:
        td.all_gather_object(out, obj, _control_group())
    except Exception as error:  # noqa: BLE001 - a peer that died or timed out
        raise DistributedError(f"object gather failed on rank {rank_and_world()[0]}: another process stopped or did "
                               f"not answer within the timeout ({type(error).__name__})", secondary=True) from error
    return out


def _control_group():
    """A gloo group beside the default one, so error agreement never mixes with a data collective."""
    import torch.distributed as td

    key = id(td.group.WORLD)
    if key not in _CONTROL:
        _CONTROL.clear()
        _CONTROL[key] = td.new_group(backend="gloo", timeout=_dt.timedelta(seconds=_timeout()))
    return _CONTROL[key]


def agree_on_errors(error: Any) -> List[Any]:
    """Every process's error (or ``None``) at a section boundary, in rank order.

    All processes call it after a unit of work, whether it failed or not, so all of them learn
    the same outcome and take the same next step.
    """
    out = gather_objects(error)
    _HANDLED[0] = failures_announced()
    return out


def traffic() -> dict:
    """Bytes this process has sent into all-reduces and received from gathers so far."""
    return dict(_TRAFFIC)
