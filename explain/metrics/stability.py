"""Stability of explanations: max-sensitivity under small input noise, and seed-to-seed agreement of
stochastic methods.

- Max-sensitivity (Yeh et al., NeurIPS 2019, https://arxiv.org/abs/1901.09392; captum's
  ``sensitivity_max`` definition): ``max_j ‖e(x + δ_j) − e(x)‖ / ‖e(x)‖`` over ``n_perturb`` draws
  ``δ_j ~ U[−r, r]`` per element (``‖e(x)‖ = 0`` counts as 1). Lower = more stable. All perturbed
  copies of all samples go through the explainer as one batch. Image inputs are clipped to the
  wrapper's valid range after the noise is added.
- Seed agreement: Spearman rank correlation between the maps of two runs with seeds ``s`` and
  ``s + 1`` (LIME, SHAP sampling, SmoothGrad). Higher = more stable.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from ..attribution import Attribution
from ..errors import InputShapeError
from ..methods._common import Timer, begin
from ._common import Method, explainer_of, flat_map, replay_params
from ._result import MetricResult, nanmean, spearman_rows

__all__ = ["sensitivity", "seed_agreement"]


def sensitivity(
    model: Any,
    x: Any,
    method: Method = "gradcam",
    target: Any = None,
    *,
    attribution: Optional[Attribution] = None,
    params: Optional[dict] = None,
    n_perturb: int = 10,
    radius: float = 0.02,
    noise: Optional[torch.Tensor] = None,
    seed: int = 0,
) -> MetricResult:
    """Max-sensitivity of an explanation method (captum's ``sensitivity_max``), per sample.

    Args:
        model: an ``explain.ModelWrapper`` of an image or series model.
        x: a batch in the wrapper's input kind.
        method: a registered explainer name or an explainer function.
        target: class per sample (kept fixed under the noise); default ``attribution.target`` or predicted.
        attribution: the explanation of ``x`` (computed when absent).
        params: explainer keyword arguments (default: those recorded on ``attribution``).
        n_perturb: noise draws per sample.
        radius: half-width ``r`` of the uniform noise, natural units.
        noise: explicit ``δ`` (``(N·n_perturb)×…``, sample-major as captum lays it out).
        seed: seeds the noise.

    Raises:
        InputShapeError: token inputs (ids cannot take additive noise).

    Shape:
        ``noise``: ``(N·n_perturb)×C×H×W`` / ``(N·n_perturb)×T×C``; ``values``: ``N``.

    Example:
        >>> r = explain.metrics.sensitivity(m, x, method="gradcam", radius=0.02)   # doctest: +SKIP
    """
    name, fn = explainer_of(method)
    wrapper, xd, t = begin(model, x, attribution.target if (attribution is not None and target is None) else target)
    if wrapper.input_kind == "tokens":
        raise InputShapeError("sensitivity adds uniform noise to the inputs; token ids cannot take noise — "
                              "use seed_agreement or randomization for token models")
    kw = replay_params(fn, attribution, params)
    if attribution is None:
        attribution = fn(wrapper, xd, t, **kw)
    name = attribution.method if not callable(method) else name
    with Timer() as timer:
        n, s = len(xd), int(n_perturb)
        if noise is None:
            gen = torch.Generator().manual_seed(seed)
            noise = (torch.rand((n * s,) + tuple(xd.shape[1:]), generator=gen) * 2 - 1) * float(radius)
        noise = torch.as_tensor(noise, dtype=xd.dtype).to(wrapper.device)
        if tuple(noise.shape[1:]) != tuple(xd.shape[1:]) or noise.shape[0] % n:
            raise InputShapeError(f"noise: expected shape {(n * s,) + tuple(xd.shape[1:])}, got {tuple(noise.shape)}")
        s = noise.shape[0] // n
        xp = xd.repeat_interleave(s, dim=0) + noise
        if wrapper.valid_range is not None and wrapper.input_kind == "image":
            xp = xp.clamp(*wrapper.valid_range)
        e0 = flat_map(attribution.values).double()
        ep = flat_map(fn(wrapper, xp, t.repeat_interleave(s), **kw).values).double()
        norm0 = e0.norm(dim=1)
        norm0 = torch.where(norm0 == 0, torch.ones_like(norm0), norm0)
        ratio = (ep - e0.repeat_interleave(s, dim=0)).norm(dim=1).view(n, s) / norm0[:, None]
        values = ratio.max(dim=1).values.float()
    p = {"n_perturb": s, "radius": float(radius), "seed": seed,
         "explainer_params": {k: v for k, v in kw.items() if not isinstance(v, torch.Tensor)}}
    return MetricResult("sensitivity", name, values, nanmean(values), p, timer.seconds, higher_is_better=False)


def seed_agreement(
    model: Any,
    x: Any,
    method: Method = "lime",
    target: Any = None,
    *,
    attribution: Optional[Attribution] = None,
    params: Optional[dict] = None,
    seed: Optional[int] = None,
) -> MetricResult:
    """Spearman agreement of a stochastic method's maps under two seeds (``seed`` and ``seed + 1``).

    Args:
        model: an ``explain.ModelWrapper``.
        x: a batch in the wrapper's input kind.
        method: a registered explainer name or function that takes ``seed=``.
        attribution: the first run (its recorded seed is used); computed when absent.
        params: explainer keyword arguments (default: those recorded on ``attribution``).
        seed: the first seed (default the attribution's, else 0).

    Raises:
        InputShapeError: the method takes no ``seed``.

    Example:
        >>> r = explain.metrics.seed_agreement(m, x, method="lime", params={"n_samples": 500})  # doctest: +SKIP
    """
    import inspect

    name, fn = explainer_of(method)
    try:
        takes_seed = "seed" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes_seed = False
    if not takes_seed:
        raise InputShapeError(f"{name} takes no seed, so its runs do not vary; seed agreement is for stochastic "
                              "methods such as lime, shap or smoothgrad")
    wrapper, xd, t = begin(model, x, attribution.target if (attribution is not None and target is None) else target)
    kw = replay_params(fn, attribution, params)
    s0 = int(seed if seed is not None else kw.get("seed", 0))
    if attribution is None or seed is not None:
        attribution = fn(wrapper, xd, t, **{**kw, "seed": s0})
    name = attribution.method if not callable(method) else name
    with Timer() as timer:
        again = fn(wrapper, xd, t, **{**kw, "seed": s0 + 1})
        values = spearman_rows(flat_map(attribution.values), flat_map(again.values))
    p = {"seeds": [s0, s0 + 1], "explainer_params": {k: v for k, v in kw.items() if not isinstance(v, torch.Tensor)}}
    return MetricResult("seed_agreement", name, values, nanmean(values), p, timer.seconds,
                        details={"second_run": again.values})
