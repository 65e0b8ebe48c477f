"""OOD evaluation results: metrics, scores and ROC curves per detector; CPU tensors, ``to_dict()``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch


@dataclass(frozen=True)
class OODMethodResult:
    """One detector on in- and out-of-distribution data. Scores: higher = more OOD."""

    name: str
    auroc: float
    aupr_in: float
    aupr_out: float
    fpr95: float
    threshold: float
    scores_in: torch.Tensor
    scores_out: torch.Tensor
    roc: Tuple[List[float], List[float]]
    seconds: float
    params: dict = field(default_factory=dict)

    def to_dict(self, include_scores: bool = False) -> dict:
        out = {"name": self.name, "auroc": self.auroc, "aupr_in": self.aupr_in, "aupr_out": self.aupr_out,
               "fpr95": self.fpr95, "threshold": self.threshold, "seconds": self.seconds, "params": self.params,
               "convention": "higher score = more out-of-distribution"}
        if include_scores:
            out["scores_in"] = self.scores_in.tolist()
            out["scores_out"] = self.scores_out.tolist()
        return out


@dataclass(frozen=True)
class OODEvaluation:
    """Every detector's result, the data sizes and the split.

    ``fit_indices``/``test_indices`` index ``in_data``: the samples that fitted the detectors and
    the in-distribution test samples (``None`` when separate ``fit_data`` was given); ``split`` says
    how they were drawn and ``seed`` seeds it.
    """

    methods: Dict[str, OODMethodResult]
    n_fit: int
    n_in: int
    n_out: int
    errors: Dict[str, str] = field(default_factory=dict)
    fit_indices: Optional[torch.Tensor] = None
    test_indices: Optional[torch.Tensor] = None
    split: str = "given"
    seed: int = 0

    @property
    def best(self) -> Optional[OODMethodResult]:
        """The detector with the highest AUROC."""
        return max(self.methods.values(), key=lambda r: r.auroc) if self.methods else None

    def to_dict(self) -> dict:
        return {"n_fit": self.n_fit, "n_in": self.n_in, "n_out": self.n_out, "errors": dict(self.errors),
                "split": self.split, "seed": self.seed,
                "fit_indices": None if self.fit_indices is None else self.fit_indices.tolist(),
                "test_indices": None if self.test_indices is None else self.test_indices.tolist(),
                "methods": {k: v.to_dict() for k, v in self.methods.items()}}
