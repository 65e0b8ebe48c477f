"""``output_bounds``: certified bounds on a model's logits (or margins) over an L∞ ball."""

from __future__ import annotations

import time
from typing import Any, Optional

import torch

from explain import check_wrapper
from explain.errors import InputShapeError, InputValueError, NonFiniteOutputError

from ..attacks._base import input_scale
from .engine import crown_spec, ibp, intermediate_bounds
from .graph import trace_graph
from .results import OutputBounds

__all__ = ["output_bounds", "METHODS"]

METHODS = ("ibp", "crown", "alpha-crown")


def _check(method: str, norm: str, spec: str, eps: Any, intermediate: str = "crown") -> float:
    if method not in METHODS:
        raise InputValueError(f"method must be one of {METHODS}, got {method!r}")
    if norm != "linf":
        raise InputValueError(f"only norm='linf' is supported for output bounds, got {norm!r}")
    if intermediate not in ("crown", "ibp"):
        raise InputValueError(f"intermediate must be 'crown' or 'ibp', got {intermediate!r}")
    if spec not in ("logits", "margin"):
        raise InputValueError(f"spec must be 'logits' or 'margin', got {spec!r}")
    e = float(eps)
    if not e >= 0 or e == float("inf"):
        raise InputValueError(f"eps must be finite and ≥ 0, got {eps}")
    return e


def _box(wrapper, graph, xs: torch.Tensor, eps: float, scale: Optional[torch.Tensor]):
    """The input box in the graph's input space: natural units, or embeddings for tokens."""
    kind = wrapper.input_kind
    if kind == "tokens":
        emb = graph.center[graph.input]
        movable = (xs != wrapper.pad_id).unsqueeze(-1).to(emb.dtype)
        return emb - eps * movable, emb + eps * movable
    radius = eps * scale if scale is not None else eps
    lo, hi = xs - radius, xs + radius
    if wrapper.valid_range is not None:
        lo, hi = lo.clamp(*wrapper.valid_range), hi.clamp(*wrapper.valid_range)
    return lo, hi


def _spec(labels: Optional[torch.Tensor], k: int, n: int, device) -> torch.Tensor:
    eye = torch.eye(k, device=device)
    if labels is None:
        return eye.unsqueeze(1).expand(k, n, k).clone()
    e_y = eye[labels.to(device)]                                 # N×K
    return (e_y.unsqueeze(0) - eye.unsqueeze(1)).contiguous()    # K×N×K, row j: e_y − e_j


def bound_batch(wrapper, xs: torch.Tensor, eps: float, method: str, labels: Optional[torch.Tensor],
                scale: Optional[torch.Tensor], alpha_steps: int, max_memory: int, intermediate: str = "crown",
                progress: Optional[bool] = False):
    """Bounds ``N×K`` for one device batch (inside a session)."""
    extra = {wrapper.mask_arg: xs != wrapper.pad_id} if wrapper.input_kind == "tokens" and wrapper.mask_arg else {}
    graph = trace_graph(wrapper, xs, extra)
    lo, hi = _box(wrapper, graph, xs, eps, scale)
    box = ibp(graph, lo, hi)
    out_l, out_u = box[graph.output]
    n, k = out_l.shape
    if labels is not None:
        y = labels.to(out_l.device)
        ibp_l = out_l.gather(1, y[:, None]) - out_u
        ibp_u = out_u.gather(1, y[:, None]) - out_l
        ibp_l[torch.arange(n), y] = 0.0
        ibp_u[torch.arange(n), y] = 0.0
    else:
        ibp_l, ibp_u = out_l, out_u
    if method == "ibp":
        return ibp_l, ibp_u
    bounds, bw = intermediate_bounds(graph, lo, hi, intermediate, max_memory, progress)
    low, up = crown_spec(bw, _spec(labels, k, n, lo.device), alpha_steps if method == "alpha-crown" else 0)
    return torch.maximum(low, ibp_l), torch.minimum(up, ibp_u)


def output_bounds(model: Any, x: Any, eps: float, method: str = "crown", norm: str = "linf", *,
                  spec: str = "logits", labels: Any = None, alpha_steps: int = 20, batch_size: int = 16,
                  max_memory: int = 2 ** 30, intermediate: str = "crown", progress: Optional[bool] = None
                  ) -> OutputBounds:
    """Certified bounds on the logits for every input within ``eps`` of each sample.

    The wrapper's normalisation is part of the bounded graph, so ``eps`` is in natural units:
    pixels for images (the ball is clipped to the valid range), each channel's standard deviation for
    series (the wrapper's ``std``, else the batch's, as the attacks use), embedding units for tokens
    (the ball is around each non-padding token's embedding).

    Args:
        model: an ``explain.ModelWrapper`` whose model ``torch.fx`` can trace.
        x: a batch in the wrapper's input kind.
        eps: the L∞ budget.
        method: ``"ibp"`` (fast, loose), ``"crown"`` (backward linear relaxation with adaptive ReLU
            slopes) or ``"alpha-crown"`` (CROWN with optimised slopes; ``alpha_steps`` Adam steps).
        norm: ``"linf"`` (the only one supported).
        spec: ``"logits"`` (bounds on each logit) or ``"margin"`` (bounds on ``logit_y − logit_j``
            with ``y = labels``; much tighter than subtracting logit bounds).
        labels: the classes ``y`` for ``spec="margin"`` (default: the predicted classes).
        batch_size: samples bounded together; max_memory: bytes of CROWN's backward matrices
            (``K × layer size`` per sample) kept at once — larger layers are bounded in chunks.
        intermediate: bounds of the hidden layers that CROWN and α-CROWN relax: ``"crown"`` (the
            tighter of CROWN and IBP; one backward pass per unstable neuron, neurons with disjoint
            receptive fields sharing a pass) or ``"ibp"`` (CROWN-IBP: IBP boxes, one backward pass
            per sample — much faster on deep CNNs, looser).
        progress: show a progress bar over samples and over CROWN's backward passes (``None``: only
            for long runs).

    Returns:
        ``OutputBounds``; unpacks as ``lo, hi``.

    Shape:
        x: ``N×…``; lo, hi: ``N×K`` (CPU).

    Raises:
        UnsupportedOperationError: an op of the model cannot be bounded (names the op and the node).
        UnsupportedModelError: the model cannot be traced.
        InputValueError: an unknown method, norm or spec, or a negative budget.
        NonFiniteOutputError: a bound is NaN or Inf (the model overflows near those samples).

    Example:
        >>> lo, hi = robustness.output_bounds(m, x, eps=1/255, method="crown")   # doctest: +SKIP
        >>> bool((lo <= m.logits(x)).all())
        True
    """
    start = time.perf_counter()
    e = _check(method, norm, spec, eps, intermediate)
    wrapper = check_wrapper(model)
    x = wrapper.check_inputs(x)
    n = len(x)
    y = None
    if spec == "margin":
        y = wrapper.resolve_target(x, labels)
    xd = wrapper.prepare(x)
    scale = input_scale(wrapper, xd) if wrapper.input_kind == "series" else None
    if int(batch_size) < 1:
        raise InputShapeError(f"batch_size must be at least 1, got {batch_size}")

    def run(sl: slice):
        lab = None if y is None else y[sl]
        return tuple(t.detach().cpu() for t in bound_batch(wrapper, xd[sl], e, method, lab, scale,
                                                               alpha_steps, max_memory, intermediate, progress))

    with wrapper.session(grad=False):
        parts = wrapper.batched(run, n, batch_size=batch_size, desc=f"bounds ({method})", progress=progress)
    lo = torch.cat([p[0] for p in parts])
    hi = torch.cat([p[1] for p in parts])
    bad = ~(torch.isfinite(lo) & torch.isfinite(hi))
    if bool(bad.any()):  # an overflowing model: an infinite or NaN bound is never reported as a bound
        raise NonFiniteOutputError(bad.any(1).nonzero().flatten().tolist(), n, what=f"the {method} output bounds",
                                   scope="batch")
    params = {"alpha_steps": alpha_steps} if method == "alpha-crown" else {}
    if method != "ibp" and intermediate != "crown":
        params["intermediate"] = intermediate
    return OutputBounds(lo, hi, method, e, norm, spec, time.perf_counter() - start, y, params)
