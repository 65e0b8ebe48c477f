"""Integrated gradients (Sundararajan et al., 2017, https://arxiv.org/abs/1703.01365).

Math: ``IG_j(x) = (x_j − x'_j) · ∫_0^1 ∂f_c(x' + α(x − x'))/∂x_j dα``, approximated by a
Gauss–Legendre (default) or trapezoid rule with ``steps`` points. Completeness:
``Σ_j IG_j = f_c(x) − f_c(x')`` up to the quadrature error, reported per sample as
``quality["completeness_gap"]``. Token models are integrated at the embedding (baseline: the pad
id's embedding) and summed over the embedding dimension; images over channels; series over channels.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import torch

from ..attribution import Attribution
from ..errors import InputShapeError
from . import _features as feat
from ._common import Timer, begin
from ._gradients import gauss_legendre, inputs_of, reduce_to_map, riemann_trapezoid, weighted_gradient_sum


def integrated_gradients(
    model: Any,
    x: Any,
    target: Any = None,
    *,
    steps: int = 50,
    baseline: Union[float, int, torch.Tensor, None] = None,
    method: str = "gausslegendre",
    backend: str = "xaiscope",
    batch_size: Optional[int] = None,
) -> Attribution:
    """Integrated gradients for a batch, ``steps`` path points per input in shared batches.

    Args:
        model: an ``explain.ModelWrapper``.
        x: a batch in the wrapper's input kind.
        target: class per sample; default the predicted class.
        steps: quadrature points on the straight path.
        baseline: the path's start in natural units (default 0), a tensor shaped like ``x`` or one
            input; for token models a token id (default the wrapper's ``pad_id``).
        method: ``"gausslegendre"`` (default) or ``"riemann_trapezoid"``.
        backend: ``"xaiscope"`` or ``"captum"`` (``IntegratedGradients`` / ``LayerIntegratedGradients``).

    Returns:
        ``Attribution`` with ``quality["completeness_gap"]`` = ``|Σ IG − (f(x) − f(x'))|`` on the logit.

    Shape:
        ``values``: ``N×H×W`` (images) or ``N×T``.

    Example:
        >>> a = explain.integrated_gradients(m, images, steps=50)   # doctest: +SKIP
    """
    steps = feat.as_int(steps, "steps", 2)
    rules = {"gausslegendre": gauss_legendre, "riemann_trapezoid": riemann_trapezoid}
    if method not in rules:
        raise InputShapeError(f"method must be one of {sorted(rules)}, got {method!r}")
    if backend not in ("xaiscope", "captum"):
        raise InputShapeError(f"backend must be 'xaiscope' or 'captum', got {backend!r}")
    with Timer() as timer:
        wrapper, xd, t = begin(model, x, target)
        kind = wrapper.input_kind
        td = t.to(wrapper.device)
        if kind == "tokens":
            base_ids = wrapper.baseline_ids(xd, wrapper.pad_id if baseline is None else int(baseline))
            start, end = inputs_of(wrapper, base_ids), inputs_of(wrapper, xd)
        else:
            b = torch.as_tensor(0.0 if baseline is None else baseline, dtype=xd.dtype).to(wrapper.device)
            if b.dim() > 0 and b.shape != xd.shape and b.shape != xd.shape[1:]:
                raise InputShapeError(f"baseline: expected a scalar, {tuple(xd.shape[1:])} or {tuple(xd.shape)}, "
                                      f"got {tuple(b.shape)}")
            start, end = b.expand_as(xd).contiguous(), xd
        if backend == "captum":
            acc = _captum_ig(wrapper, xd, td, start, steps, method)
        else:
            nodes, weights = (v.to(wrapper.device) for v in rules[method](steps))
            delta = end - start

            def rows(r: torch.Tensor):
                i, k = r // steps, r % steps
                a = nodes[k].view(-1, *([1] * (end.dim() - 1)))
                return i, start[i] + a * delta[i], weights[k].view_as(a) * delta[i]

            acc = weighted_gradient_sum(wrapper, xd, td, len(xd) * steps, rows, end, batch_size)
        values = reduce_to_map(kind, acc).cpu()
        with wrapper.session(grad=False):
            if kind == "tokens":
                f_x = wrapper.forward(xd).gather(1, td[:, None])[:, 0]
                f_b = wrapper.forward_embedded(xd, start).gather(1, td[:, None])[:, 0]
            else:
                f_x = wrapper.forward(end).gather(1, td[:, None])[:, 0]
                f_b = wrapper.forward(start).gather(1, td[:, None])[:, 0]
        gap = (values.double().flatten(1).sum(1) - (f_x - f_b).cpu().double()).abs().float()
    params = {"steps": steps, "method": method, "backend": backend,
              "baseline": "pad_id" if kind == "tokens" and baseline is None else
              (float(baseline) if isinstance(baseline, (int, float)) else ("tensor" if baseline is not None else 0.0))}
    return Attribution(values=values, method="integrated_gradients", target=t, params=params, seconds=timer.seconds,
                       quality={"completeness_gap": gap})


def _captum_ig(wrapper, xd, td, start, steps, method):
    from captum.attr import IntegratedGradients, LayerIntegratedGradients
    with wrapper.session(grad=True):
        if wrapper.input_kind == "tokens":
            layer = wrapper.embedding_layer()[1]
            base_ids = wrapper.baseline_ids(xd)
            lig = LayerIntegratedGradients(lambda ids: wrapper.forward(ids), layer)
            return lig.attribute(xd, baselines=base_ids, target=td, n_steps=steps, method=method).detach().float()
        ig = IntegratedGradients(lambda inp: wrapper.forward(inp))
        return ig.attribute(xd, baselines=start, target=td, n_steps=steps, method=method).detach().float()
