"""The performance section: macro averages over the classes that occur, as scikit-learn computes them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, precision_score, recall_score

import explain
from reports.report import ReportContext, Text
from reports.sections import performance


class FixedLogits(torch.nn.Module):
    """Returns the logits stored for each input index (the input is the index)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", logits)

    def forward(self, x):
        return self.table[x[:, 0, 0].long()]


def section_for(pred: np.ndarray, y: np.ndarray, k: int):
    logits = torch.nn.functional.one_hot(torch.as_tensor(pred), k).float() * 5
    m = explain.ModelWrapper(FixedLogits(logits), "series", device="cpu", class_names=[f"c{i}" for i in range(k)])
    x = torch.arange(len(y)).float().view(-1, 1, 1)
    return performance.build(ReportContext(m, x, torch.as_tensor(y)))


def test_a_perfect_classifier_on_a_set_missing_classes_has_macro_f1_one():
    y = np.array([0, 1, 2, 3] * 4)  # 16 samples, classes 4 and 5 absent
    sec = section_for(y, y, 6)
    assert sec.summary["macro_f1"] == pytest.approx(1.0)
    assert sec.summary["absent_classes"] == ["c4", "c5"]
    warnings = [b.text for b in sec.blocks if isinstance(b, Text) and b.kind == "warning"]
    assert any("c4, c5" in w for w in warnings)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macro_scores_match_scikit_learn_over_the_classes_that_occur(seed):
    gen = np.random.default_rng(seed)
    y = gen.integers(0, 4, 40)
    pred = np.where(gen.random(40) < 0.6, y, gen.integers(0, 5, 40))  # class 5 never occurs, 4 only predicted
    sec = section_for(pred, y, 6)
    present = sorted(set(y) | set(pred))
    for key, fn in (("macro_f1", f1_score), ("macro_precision", precision_score), ("macro_recall", recall_score)):
        expected = fn(y, pred, labels=present, average="macro", zero_division=0)
        assert sec.summary[key] == pytest.approx(expected), key
    assert "c5" in sec.summary["absent_classes"] and "c4" not in sec.summary["absent_classes"]
