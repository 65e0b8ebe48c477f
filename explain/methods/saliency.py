"""Saliency (Simonyan et al., 2013, https://arxiv.org/abs/1312.6034) and SmoothGrad (Smilkov et al.,
2017, https://arxiv.org/abs/1706.03825): cheap gradient maps.

Math: saliency ``S_j = max_c |∂f_c/∂x_{j,c}|`` (images and series: max over channels; tokens: the L2
norm of the embedding gradient). SmoothGrad averages ``|∇f|`` over ``n_samples`` copies of the input
with Gaussian noise of standard deviation ``noise · (max(x) − min(x))`` before the same reduction.
Both are unsigned.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from ..attribution import Attribution
from . import _features as feat
from ._common import Timer, begin
from ._gradients import inputs_of, reduce_to_map, weighted_gradient_sum


def _reduction(kind: str) -> str:
    return "norm" if kind == "tokens" else "max"


def saliency(model: Any, x: Any, target: Any = None, *, batch_size: Optional[int] = None) -> Attribution:
    """Gradient-magnitude maps, one forward+backward pass per input.

    Shape:
        ``values``: ``N×H×W`` (images) or ``N×T``; non-negative.

    Example:
        >>> a = explain.saliency(m, images)   # doctest: +SKIP
    """
    with Timer() as timer:
        wrapper, xd, t = begin(model, x, target)
        td = t.to(wrapper.device)
        ex = inputs_of(wrapper, xd)
        acc = weighted_gradient_sum(wrapper, xd, td, len(xd), lambda r: (r, ex[r], torch.ones_like(ex[r])), ex,
                                    batch_size, absolute=True)
        values = reduce_to_map(wrapper.input_kind, acc, _reduction(wrapper.input_kind)).cpu()
    return Attribution(values=values, method="saliency", target=t, params={}, seconds=timer.seconds)


def smoothgrad(model: Any, x: Any, target: Any = None, *, n_samples: int = 25, noise: float = 0.15, seed: int = 0,
               batch_size: Optional[int] = None) -> Attribution:
    """SmoothGrad: saliency averaged over noisy copies (noise added to embeddings for token models).

    Args:
        n_samples: noisy copies per input.
        noise: noise standard deviation as a fraction of each input's value range.
        seed: seeds the noise; the same seed gives the same numbers.

    Example:
        >>> a = explain.smoothgrad(m, images, n_samples=25, seed=0)   # doctest: +SKIP
    """
    n_samples = feat.as_int(n_samples, "n_samples", 1)
    with Timer() as timer:
        wrapper, xd, t = begin(model, x, target)
        td = t.to(wrapper.device)
        ex = inputs_of(wrapper, xd)
        flat = ex.flatten(1)
        sigma = (noise * (flat.amax(1) - flat.amin(1))).view(-1, *([1] * (ex.dim() - 1)))
        # One generator per sample, seeded alike: a sample's noise never depends on its batch-mates.
        eps = torch.stack([torch.randn((n_samples,) + tuple(ex.shape[1:]), generator=torch.Generator().manual_seed(seed))
                           for _ in range(len(ex))]).to(wrapper.device)

        def rows(r: torch.Tensor):
            i, k = r // n_samples, r % n_samples
            return i, ex[i] + sigma[i] * eps[i, k], torch.full_like(ex[i], 1.0 / n_samples)

        acc = weighted_gradient_sum(wrapper, xd, td, len(ex) * n_samples, rows, ex, batch_size, absolute=True)
        values = reduce_to_map(wrapper.input_kind, acc, _reduction(wrapper.input_kind)).cpu()
    params = {"n_samples": n_samples, "noise": noise, "seed": seed}
    return Attribution(values=values, method="smoothgrad", target=t, params=params, seconds=timer.seconds)
