"""``MetricResult``, the one result type of every explanation-quality metric, and the small pure
statistics the metrics share (row-wise rank and Pearson correlation, paired bootstrap intervals).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import torch

from ..attribution import jsonable

__all__ = ["MetricResult", "rankdata", "pearson_rows", "spearman_rows", "bootstrap_interval"]


@dataclass(frozen=True)
class MetricResult:
    """Per-sample values of one quality metric for one explanation method, with provenance.

    Attributes:
        metric: ``"randomization"``, ``"deletion"``, ``"insertion"``, ``"faithfulness_correlation"``,
            ``"infidelity"``, ``"sensitivity"``, ``"seed_agreement"``, ``"pointing_game"``,
            ``"relevance_mass"`` or ``"agreement"``.
        method: the judged explainer's registry name (``"gradcam"``, ...).
        values: ``N`` float tensor, one value per sample (CPU).
        aggregate: the mean over samples (NaN-aware).
        params: the metric's parameters (steps, seed, layers, ...).
        seconds: wall time of the metric, *excluding* the explanation it judges when one was given.
        verdict: a plain-words verdict when the metric has one (``"passes"``/``"fails"``,
            ``"better than random"``/``"not better than random"``), else ``None``.
        interval: a 95 % interval for the headline number when one was computed, else ``None``.
        details: further tensors and numbers (curves, per-layer similarities, random-order AUCs).
        higher_is_better: how to read ``values``.
    """

    metric: str
    method: str
    values: torch.Tensor
    aggregate: float
    params: dict = field(default_factory=dict)
    seconds: float = 0.0
    verdict: Optional[str] = None
    interval: Optional[Tuple[float, float]] = None
    details: dict = field(default_factory=dict)
    higher_is_better: bool = True

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def passed(self) -> Optional[bool]:
        """True/False for a pass/fail verdict, ``None`` when the metric has no verdict."""
        if self.verdict is None:
            return None
        return self.verdict in ("passes", "better than random")

    def to_dict(self) -> dict:
        """JSON-able dict (NaN and ±inf become ``None``)."""
        return jsonable({
            "metric": self.metric, "method": self.method, "values": self.values,
            "aggregate": float(self.aggregate), "params": self.params, "seconds": round(float(self.seconds), 6),
            "verdict": self.verdict, "interval": None if self.interval is None else list(self.interval),
            "details": self.details, "higher_is_better": self.higher_is_better,
        })


def nanmean(v: torch.Tensor) -> float:
    v = v.double()
    ok = torch.isfinite(v)
    return float(v[ok].mean()) if bool(ok.any()) else float("nan")


def rankdata(a: torch.Tensor) -> torch.Tensor:
    """Row-wise ranks with ties given their average rank (as ``scipy.stats.rankdata``). ``N×D → N×D``."""
    a = a.double()
    n, d = a.shape
    order = a.argsort(dim=1, stable=True)
    sorted_a = a.gather(1, order)
    pos = torch.arange(d, dtype=torch.float64, device=a.device).expand(n, d)
    new = torch.ones_like(sorted_a, dtype=torch.bool)
    new[:, 1:] = sorted_a[:, 1:] != sorted_a[:, :-1]
    group = new.long().cumsum(1) - 1  # tie-group id per sorted position
    sums = torch.zeros(n, d, dtype=torch.float64, device=a.device).scatter_add_(1, group, pos)
    counts = torch.zeros(n, d, dtype=torch.float64, device=a.device).scatter_add_(1, group, torch.ones_like(pos))
    avg = (sums / counts.clamp_min(1)).gather(1, group) + 1.0
    return torch.empty_like(avg).scatter_(1, order, avg)


def pearson_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each row pair; NaN where a row is constant. ``N×D, N×D → N``."""
    a, b = a.double(), b.double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    den = (a.norm(dim=1) * b.norm(dim=1))
    r = (a * b).sum(1) / den
    return torch.where(den > 1e-12, r, torch.full_like(r, float("nan"))).float()


def spearman_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of each row pair (Pearson on average ranks). ``N×D, N×D → N``."""
    return pearson_rows(rankdata(a.flatten(1)), rankdata(b.flatten(1)))


def bootstrap_interval(diff: torch.Tensor, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> Tuple[float, float]:
    """Percentile bootstrap interval of the mean of paired differences ``diff`` (``N``)."""
    d = diff.double()[torch.isfinite(diff.double())]
    if len(d) == 0:
        return float("nan"), float("nan")
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(d), (n_boot, len(d)), generator=gen)
    means = d[idx].mean(1)
    lo, hi = torch.quantile(means, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)).tolist()
    return float(lo), float(hi)
