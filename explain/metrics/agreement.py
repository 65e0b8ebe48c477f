"""Agreement between methods: how alike do different explainers rank the same features?"""

from __future__ import annotations

from typing import Dict, Mapping

import torch

from ..attribution import Attribution
from ..errors import InputShapeError
from ..methods._common import Timer
from ._common import flat_map
from ._result import MetricResult, nanmean, spearman_rows

__all__ = ["agreement"]


def agreement(attributions: Mapping[str, Attribution], *, absolute: bool = False) -> MetricResult:
    """Method × method Spearman rank correlation, averaged over the samples all methods explain.

    Args:
        attributions: name → ``Attribution`` of the same samples (same ``values`` shape).
        absolute: compare absolute maps (ignores sign conventions).

    Returns:
        ``MetricResult`` (``metric="agreement"``, ``method`` = the names joined by ``","``) whose
        ``details["matrix"]`` is the ``K×K`` mean correlation, ``details["methods"]`` the order,
        ``details["per_sample"]`` ``K×K×N``; ``values`` = each sample's mean off-diagonal correlation.

    Raises:
        InputShapeError: fewer than two methods, or maps of different shapes.

    Example:
        >>> r = explain.metrics.agreement({"gradcam": a1, "occlusion": a2})   # doctest: +SKIP
        >>> r.details["matrix"]
    """
    names = list(attributions)
    if len(names) < 2:
        raise InputShapeError(f"agreement needs at least two methods, got {names}")
    shapes = {tuple(a.values.shape) for a in attributions.values()}
    if len(shapes) != 1:
        raise InputShapeError(f"all attributions must explain the same samples; got value shapes {sorted(shapes)}")
    with Timer() as timer:
        maps = [flat_map(a.values.abs() if absolute else a.values) for a in attributions.values()]
        k, n = len(names), maps[0].shape[0]
        per = torch.ones(k, k, n)
        for i in range(k):
            for j in range(i + 1, k):
                per[i, j] = per[j, i] = spearman_rows(maps[i], maps[j])
        off = ~torch.eye(k, dtype=torch.bool)
        values = per[off].view(k * (k - 1), n).nanmean(0)
        matrix = torch.tensor([[nanmean(per[i, j]) for j in range(k)] for i in range(k)])
    details: Dict = {"methods": names, "matrix": matrix, "per_sample": per}
    return MetricResult("agreement", ",".join(names), values, nanmean(values), {"absolute": absolute},
                        timer.seconds, details=details)
