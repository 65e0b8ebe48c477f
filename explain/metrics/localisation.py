"""Localisation against ground-truth masks: does the explanation point where the evidence is?

- Pointing game (Zhang et al., 2018, https://arxiv.org/abs/1608.00507): 1 when the map's maximum
  lies inside the mask, else 0.
- Relevance mass (Arras et al., 2022, https://arxiv.org/abs/2003.07258): the share of positive
  relevance that falls inside the mask, ``Σ_{i∈M} a_i⁺ / Σ_i a_i⁺`` (as Quantus's
  ``RelevanceMassAccuracy`` on non-negative maps).

Samples with an empty mask (e.g. the planted sets' "blank" class) get NaN and are left out of the mean.
"""

from __future__ import annotations

from typing import Any

import torch

from ..attribution import Attribution
from ..errors import InputShapeError
from ..methods._common import Timer
from ._result import MetricResult, nanmean

__all__ = ["pointing_game", "relevance_mass"]


def _check(attribution: Attribution, mask: Any) -> torch.Tensor:
    m = torch.as_tensor(mask).bool().cpu()
    if tuple(m.shape) != tuple(attribution.values.shape):
        raise InputShapeError(f"mask: expected shape {tuple(attribution.values.shape)} (like the attribution "
                              f"values), got {tuple(m.shape)}")
    return m


def pointing_game(attribution: Attribution, mask: Any) -> MetricResult:
    """1 per sample when the map's maximum falls inside ``mask``, 0 otherwise (NaN for empty masks).

    Args:
        attribution: the explanation to judge.
        mask: bool ground truth shaped like ``attribution.values`` (True where the evidence is).

    Raises:
        InputShapeError: the mask's shape differs from the map's.

    Shape:
        mask: ``N×H×W`` / ``N×T``; ``values``: ``N``.

    Example:
        >>> r = explain.metrics.pointing_game(explain.gradcam(m, d.x), d.mask)   # doctest: +SKIP
    """
    with Timer() as timer:
        m = _check(attribution, mask).flatten(1)
        idx = attribution.values.flatten(1).float().argmax(1, keepdim=True)
        hit = m.gather(1, idx).squeeze(1).float()
        hit = torch.where(m.any(1), hit, torch.full_like(hit, float("nan")))
    return MetricResult("pointing_game", attribution.method, hit, nanmean(hit), {}, timer.seconds)


def relevance_mass(attribution: Attribution, mask: Any) -> MetricResult:
    """Share of positive relevance inside ``mask`` per sample (NaN for empty masks or all-negative maps).

    Args:
        attribution: the explanation to judge.
        mask: bool ground truth shaped like ``attribution.values``.

    Raises:
        InputShapeError: the mask's shape differs from the map's.

    Example:
        >>> r = explain.metrics.relevance_mass(explain.gradcam(m, d.x), d.mask)   # doctest: +SKIP
    """
    with Timer() as timer:
        m = _check(attribution, mask).flatten(1)
        pos = attribution.values.flatten(1).double().clamp_min(0)
        total = pos.sum(1)
        share = ((pos * m).sum(1) / total).float()
        share = torch.where(m.any(1) & (total > 0), share, torch.full_like(share, float("nan")))
    return MetricResult("relevance_mass", attribution.method, share, nanmean(share), {}, timer.seconds)
