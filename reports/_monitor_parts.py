"""Pieces of :class:`reports.Monitor` that are not scheduling or probing: reading a step's numbers
(scalars, the gradient norm) and the terminal / notebook views.

A step's loss and gradient norm stay tensors until its record is written (:func:`resolve_steps`
turns all of them into numbers at once): reading a CUDA tensor's value waits for the GPU, and
doing that at every step would stall the training loop.
"""

from __future__ import annotations

import datetime as _dt
import math
import sys
from typing import Any, List, Optional, Sequence, Union

import torch

import explain
from explain.errors import InputShapeError
from robustness import probes as P

from .history import save_array

__all__ = ["gradient_norm", "gradient_norm_tensor", "resolve_steps"]


def _scalar(value: Any) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.numel() != 1:
            raise InputShapeError(f"expected a scalar (one number), got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputShapeError(f"expected a number, got {type(value).__name__}") from None


def _tensor_scalar(value: Any) -> Any:
    """A one-number tensor stays a (detached) tensor, read later by :func:`resolve_steps`; anything
    else becomes a float now."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise InputShapeError(f"expected a scalar (one number), got a tensor of shape {tuple(value.shape)}")
        return value.detach()
    return _scalar(value)


#: up to this many gradient numbers in all, one norm of their concatenation is cheaper than one
#: norm per tensor (small models, where per-call costs dominate); above it the copy is not
CAT_NUMEL = 1 << 16


def gradient_norm_tensor(params: List[torch.nn.Parameter]) -> Optional[torch.Tensor]:
    """The global L2 norm of the gradients of ``params``, as a 0-d tensor on their device (not read).

    Parameters without a gradient are skipped; ``None`` when none has one.

    Shape:
        returns a 0-d tensor.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return None
    if any(g.requires_grad for g in grads):  # gradients of gradients (create_graph=True): stay out of the graph
        grads = [g.detach() for g in grads]
    first = grads[0]
    same = all(g.device == first.device and g.dtype == first.dtype for g in grads)
    if same and first.dtype in (torch.float32, torch.float64) and sum(g.numel() for g in grads) <= CAT_NUMEL:
        return torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grads]))
    if same and first.dtype in (torch.float32, torch.float64) and hasattr(torch, "_foreach_norm"):
        norms = torch._foreach_norm(grads)  # one fused call, no per-tensor Python work
    else:
        norms = [g.float().norm().to(first.device) for g in grads]
    return torch.linalg.vector_norm(torch.stack(norms))


def gradient_norm(model: torch.nn.Module) -> Optional[float]:
    """The global L2 norm of the parameters' current gradients (``None`` when none has a gradient).

    Example:
        >>> loss.backward(); gradient_norm(net)     # doctest: +SKIP
        0.83
    """
    norm = gradient_norm_tensor(list(model.parameters()))
    return None if norm is None else float(norm)


def resolve_steps(records: List[dict], keys: Sequence[str] = ("loss", "grad_norm")) -> None:
    """Replace the tensor values under ``keys`` in ``records`` by floats, in place, reading all at once.

    One ``stack`` and one ``tolist`` per key instead of one device read per step.
    """
    for key in keys:
        held = [r for r in records if isinstance(r.get(key), torch.Tensor)]
        if not held:
            continue
        tensors = [r[key] for r in held]
        try:
            values = torch.stack(tensors).reshape(-1).tolist()
            if len(values) != len(tensors):
                raise RuntimeError("not one number per tensor")
        except RuntimeError:  # tensors on different devices or of different shapes
            values = [float(t) for t in tensors]
        for r, v in zip(held, values):
            r[key] = v


def meta_record(self: Any) -> dict:
    """The history's first record for a monitor: the model's facts and the probe settings (saves the
    tracked samples' array when the ``explanations`` probe is on)."""
    m = self.wrapper
    meta = {"type": "meta", "xaiscope_version": explain.__version__,
            "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "model": type(m.model).__name__, "input_kind": m.input_kind, "class_names": m.class_names,
            "probes": self.probes, "every": self.every, "epochs": self.epochs,
            "max_overhead": self.max_overhead if self.every == "auto" else None,
            "probe_size": 0 if self.x is None else len(self.x),
            "explainer": self.explainer if "explanations" in self.probes else None,
            "eps": (P.DEFAULT_PROBE_EPS[m.input_kind] if self.eps is None else self.eps)
            if "robustness" in self.probes else None,
            "attack_steps": self.attack_steps if "robustness" in self.probes else None,
            "ood_detector": self.ood_detector if "ood" in self.probes else None, "samples_file": None,
            "start_epoch": self.epoch, "seed": self.seed}
    if "explanations" in self.probes:
        xs = self.x[: self.explain_samples]
        meta["samples_file"] = "samples.npy"
        meta["sample_labels"] = None if self.y is None else self.y[: self.explain_samples].tolist()
        if self.folder is not None:
            save_array(self.folder, "samples.npy", xs.detach().cpu().numpy())
    return meta


def _in_notebook() -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _want_live(live: Union[str, bool]) -> bool:
    return _in_notebook() if live == "auto" else bool(live)


def _progress_bar(progress: Union[str, bool], live: bool, total: Optional[int], epoch: int):
    on = (not live and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()) if progress == "auto" else bool(progress)
    if not on:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=f"epoch {epoch}", leave=True, dynamic_ncols=True, unit="step")


class NormSchedule:
    """On which steps to read the gradient norm, so that reading it costs at most ``share`` of the
    training time: every step while one read costs at most ``share`` of a step, else every k-th step,
    k the smallest power of two (at most :attr:`MAX_EVERY`) that brings the amortised cost within
    ``share``. k is re-chosen from each read's measured cost and the step's duration, so it falls
    again when steps grow longer. ``share=None`` reads it on every step.

    Example:
        >>> sched = NormSchedule(0.01)
        >>> sched.measured(cost=3e-4, step_seconds=0.01)   # 3 % of a step
        >>> sched.every
        4
    """

    MAX_EVERY = 64

    def __init__(self, share: Optional[float]) -> None:
        self.share, self.every, self._since = share, 1, 0

    def due(self) -> bool:
        """Whether this step reads the norm (call once per written step)."""
        self._since += 1
        if self._since >= self.every:
            self._since = 0
            return True
        return False

    def measured(self, cost: float, step_seconds: float) -> None:
        """Re-choose ``every`` from one read's ``cost`` and the duration of the step it was read on."""
        if self.share is None or step_seconds <= 0:
            return
        need = cost / (self.share * step_seconds)
        self.every = 1 if need <= 1 else min(self.MAX_EVERY, 2 ** math.ceil(math.log2(need)))


def check_schedule(probes: Sequence[str], known: Sequence[str], every: Any, max_overhead: Any, grad_norm_share: Any, epochs: Any) -> None:
    """Reject monitor settings that cannot work, with what was expected (see :class:`reports.Monitor`).

    Raises:
        InputShapeError: unknown probes, or an ``every``/``max_overhead``/``grad_norm_share``/``epochs`` out of range.
    """
    unknown = [p for p in probes if p not in known]
    if unknown:
        raise InputShapeError(f"unknown probes {unknown}; available: {', '.join(known)}")
    if every not in ("auto", "epoch") and not (isinstance(every, int) and not isinstance(every, bool) and every >= 1):
        raise InputShapeError(f"every must be 'auto', 'epoch' or a positive number of epochs, got {every!r}")
    if not (isinstance(max_overhead, (int, float)) and 0 < max_overhead < 1):
        raise InputShapeError(f"max_overhead must be a fraction of the training time in (0, 1), got {max_overhead!r}; "
                              "e.g. 0.05 lets probes take 5 % of it")
    if grad_norm_share is not None and not (isinstance(grad_norm_share, (int, float)) and 0 < grad_norm_share < 1):
        raise InputShapeError(f"grad_norm_share must be a fraction in (0, 1) or None, got {grad_norm_share!r}")
    if epochs is not None and not (isinstance(epochs, int) and epochs >= 1):
        raise InputShapeError(f"epochs must be a positive number of epochs or None, got {epochs!r}")
