"""Pieces of :class:`reports.Monitor` that are not scheduling or probing: reading a step's numbers
(scalars, the gradient norm) and the terminal / notebook views."""

from __future__ import annotations

import sys
from typing import Any, Optional, Union

import torch

from explain.errors import InputShapeError

__all__ = ["gradient_norm"]


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


def gradient_norm(model: torch.nn.Module) -> Optional[float]:
    """The global L2 norm of the parameters' current gradients (``None`` when none has a gradient)."""
    grads = [p.grad.detach() for p in model.parameters() if p.grad is not None]
    if not grads:
        return None
    same = all(g.device == grads[0].device and g.dtype == grads[0].dtype for g in grads)
    if same and grads[0].dtype in (torch.float32, torch.float64) and hasattr(torch, "_foreach_norm"):
        return float(torch.stack(torch._foreach_norm(grads)).norm())  # one fused pass, no per-tensor calls
    return float(torch.stack([g.float().norm().to(grads[0].device) for g in grads]).norm())


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
