"""Results of bounding and verification: frozen dataclasses with CPU tensors and ``to_dict()``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, List, Optional

import torch

__all__ = ["OutputBounds", "VerificationResult", "CertifiedAccuracyResult", "STATUSES"]

STATUSES = ("verified", "violated", "unknown")


@dataclass(frozen=True)
class OutputBounds:
    """Certified lower/upper bounds ``N×K`` on the logits (``spec="logits"``) or on the margins
    ``logit_y − logit_j`` (``spec="margin"``; column ``y`` is 0) over the ε-ball of each input.

    Unpacks as ``lo, hi = robustness.output_bounds(...)``.
    """

    lower: torch.Tensor
    upper: torch.Tensor
    method: str
    eps: float
    norm: str
    spec: str
    seconds: float
    labels: Optional[torch.Tensor] = None
    params: dict = field(default_factory=dict)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter((self.lower, self.upper))

    def __len__(self) -> int:
        return len(self.lower)

    @property
    def width(self) -> torch.Tensor:
        """``upper − lower`` per sample and output (``N×K``)."""
        return self.upper - self.lower

    def to_dict(self) -> dict:
        return {"method": self.method, "eps": float(self.eps), "norm": self.norm, "spec": self.spec,
                "seconds": self.seconds, "n": len(self), "mean_width": float(self.width.mean()),
                "lower": self.lower.tolist(), "upper": self.upper.tolist(), "params": self.params}


@dataclass(frozen=True)
class VerificationResult:
    """Per sample: ``"verified"`` (every certified margin ``logit_y − logit_j`` is positive),
    ``"violated"`` (a counterexample inside the ball, re-checked by a plain forward pass) or
    ``"unknown"``.

    Attributes:
        status: one string per sample. margins: certified lower bounds ``N×K`` of ``logit_y − logit_j``
            (``+inf`` in column ``y``). certified_margin: their minimum per sample (``N``).
        labels, clean_pred: ``LongTensor N``.
        counterexamples: inputs ``N×…`` (the adversarial input where violated, else the clean one; for
            token models, embeddings). adv_pred, adv_margin: prediction and ``logit_y − max_j logit_j`` there.
        seconds: ``{"bounds": …, "attack": …, "total": …}``.
    """

    status: List[str]
    margins: torch.Tensor
    labels: torch.Tensor
    clean_pred: torch.Tensor
    counterexamples: torch.Tensor
    adv_pred: torch.Tensor
    adv_margin: torch.Tensor
    method: str
    eps: float
    norm: str
    seconds: dict
    params: dict = field(default_factory=dict)
    inputs: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return len(self.status)

    @property
    def certified_margin(self) -> torch.Tensor:
        return self.margins.min(dim=1).values

    def mask(self, status: str) -> torch.Tensor:
        """Boolean ``N`` mask of the samples with ``status``."""
        return torch.tensor([s == status for s in self.status], dtype=torch.bool)

    @property
    def counts(self) -> dict:
        return {s: sum(1 for v in self.status if v == s) for s in STATUSES}

    @property
    def violated_indices(self) -> List[int]:
        return [i for i, s in enumerate(self.status) if s == "violated"]

    def to_dict(self) -> dict:
        cm = self.certified_margin
        return {"method": self.method, "eps": float(self.eps), "norm": self.norm, "n": len(self), "counts": self.counts,
                "status": list(self.status), "certified_margin": [None if not torch.isfinite(v) else float(v) for v in cm],
                "counterexamples": [{"index": i, "label": int(self.labels[i]), "adv_pred": int(self.adv_pred[i]),
                                     "adv_margin": float(self.adv_margin[i])} for i in self.violated_indices],
                "seconds": dict(self.seconds), "params": self.params}


@dataclass(frozen=True)
class CertifiedAccuracyResult:
    """Per budget: clean accuracy, certified accuracy (verified and correct) and empirical robust
    accuracy (no counterexample found). Between the last two lies the *unknown* band.

    Sweeps are monotone by construction: a sample certified at ε is certified at every smaller ε
    (the balls are nested), and a counterexample at ε is one at every larger ε.
    """

    eps: List[float]
    clean_accuracy: float
    certified: List[float]
    empirical: List[float]
    counts: List[dict]
    method: str
    n: int
    seconds: float
    params: dict = field(default_factory=dict)
    verifications: List[VerificationResult] = field(default_factory=list, repr=False)

    @property
    def unknown(self) -> List[float]:
        return [e - c for e, c in zip(self.empirical, self.certified)]

    def to_dict(self) -> dict:
        return {"method": self.method, "eps": list(map(float, self.eps)), "clean_accuracy": self.clean_accuracy,
                "certified_accuracy": list(self.certified), "empirical_robust_accuracy": list(self.empirical),
                "unknown": self.unknown, "counts": list(self.counts), "n": self.n, "seconds": self.seconds,
                "params": self.params}
