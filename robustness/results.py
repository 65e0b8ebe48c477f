"""Robustness results: plain frozen dataclasses with CPU tensors and ``to_dict()``; no drawing."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch


def _num(v: float) -> Optional[float]:
    return None if v is None or (isinstance(v, float) and (math.isnan(v) or math.isinf(v))) else float(v)


@dataclass(frozen=True)
class AttackResult:
    """One attack on a batch.

    Attributes:
        inputs: the clean inputs (CPU). adversarial: the adversarial inputs (ids for token attacks;
            for embedding-space attacks the ids are unchanged and ``adversarial_embeddings`` holds
            the perturbed embeddings).
        labels, clean_pred, adv_pred: ``LongTensor N``.
        success: the attack changed a correct prediction (untargeted) or reached the target class.
        linf, l2: per-sample perturbation norms in natural units (embedding units for embedding
            attacks; for token substitutions the number of changed tokens is in ``tokens_changed``),
            float64: computed from the float64 difference, so they neither overflow nor round away
            a perturbation that is tiny next to a large input.
    """

    inputs: torch.Tensor
    adversarial: torch.Tensor
    labels: torch.Tensor
    clean_pred: torch.Tensor
    adv_pred: torch.Tensor
    success: torch.Tensor
    linf: torch.Tensor
    l2: torch.Tensor
    method: str
    params: dict = field(default_factory=dict)
    seconds: float = 0.0
    tokens_changed: Optional[torch.Tensor] = None
    adversarial_embeddings: Optional[torch.Tensor] = None

    @property
    def clean_accuracy(self) -> float:
        return float((self.clean_pred == self.labels).float().mean())

    @property
    def robust_accuracy(self) -> float:
        """Share of samples still classified correctly under attack."""
        return float((self.adv_pred == self.labels).float().mean())

    @property
    def success_rate(self) -> float:
        """Share of initially correct samples whose prediction the attack changed."""
        correct = self.clean_pred == self.labels
        return float(self.success[correct].float().mean()) if bool(correct.any()) else 0.0

    def to_dict(self) -> dict:
        out = {"method": self.method, "params": self.params, "seconds": self.seconds, "n": len(self.labels),
               "clean_accuracy": self.clean_accuracy, "robust_accuracy": self.robust_accuracy,
               "success_rate": self.success_rate, "mean_linf": _num(float(self.linf.double().mean())),
               "mean_l2": _num(float(self.l2.double().mean()))}
        if self.tokens_changed is not None:
            out["mean_tokens_changed"] = float(self.tokens_changed.float().mean())
        return out


@dataclass(frozen=True)
class RobustAccuracyResult:
    """Accuracy under attack over ascending budgets, with per-sample minimal flipping budgets.

    ``accuracy`` never rises with ``eps`` and equals the share of samples whose ``minimal_eps``
    exceeds each budget. ``unit`` names the budget's unit, ``label`` the attack and its settings.
    """

    eps: List[float]
    accuracy: List[float]
    clean_accuracy: float
    method: str
    params: dict
    minimal_eps: Optional[torch.Tensor]
    seconds: float
    n: int
    unit: str = ""
    label: str = ""

    @property
    def median_minimal_eps(self) -> Optional[float]:
        """Median budget that flips a correctly classified sample (``inf`` counts as unflipped)."""
        if self.minimal_eps is None or len(self.minimal_eps) == 0:
            return None
        return float(self.minimal_eps.median())

    @property
    def flipped_share(self) -> Optional[float]:
        """Share of correctly classified samples that some budget of the sweep flips (``None`` if none is correct)."""
        if self.minimal_eps is None:
            return None
        mins = self.minimal_eps[self.minimal_eps > 0]
        return float(torch.isfinite(mins).float().mean()) if len(mins) else None

    def to_dict(self) -> dict:
        return {"method": self.method, "label": self.label, "unit": self.unit, "params": self.params,
                "eps": list(self.eps), "accuracy": list(self.accuracy),
                "clean_accuracy": self.clean_accuracy, "median_minimal_eps": _num(self.median_minimal_eps),
                "flipped_share": _num(self.flipped_share), "seconds": self.seconds, "n": self.n}


@dataclass(frozen=True)
class CorruptionResult:
    """Accuracy per corruption and severity."""

    clean_accuracy: float
    severities: List[int]
    accuracy: Dict[str, List[float]]
    seed: int
    seconds: float
    n: int

    @property
    def mean_accuracy(self) -> float:
        """Mean accuracy over every corruption and severity."""
        vals = [v for row in self.accuracy.values() for v in row]
        return float(sum(vals) / len(vals)) if vals else float("nan")

    def to_dict(self) -> dict:
        return {"clean_accuracy": self.clean_accuracy, "severities": list(self.severities),
                "accuracy": {k: list(v) for k, v in self.accuracy.items()}, "mean_accuracy": _num(self.mean_accuracy),
                "seed": self.seed, "seconds": self.seconds, "n": self.n}
