"""A model declaring thousands of classes: the confusion view and summary stay small, the numbers stay sklearn's."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

import explain
import reports
from reports import figures
from reports.sections import _confusion


class FixedLogits(torch.nn.Module):
    """Returns the logits stored for each input index (the input is the index)."""

    def __init__(self, pred: np.ndarray, k: int) -> None:
        super().__init__()
        self.k = k
        self.register_buffer("pred", torch.as_tensor(pred).long())

    def forward(self, x):
        p = self.pred[x[:, 0, 0].long()]
        logits = torch.zeros(len(p), self.k)
        logits[torch.arange(len(p)), p] = 5.0
        return logits


def report_for(tmp_path, y: np.ndarray, pred: np.ndarray, k: int, monkeypatch):
    drawn = []
    real = figures.confusion_figure

    def spy(matrix, class_names, note=None):
        drawn.append((np.array(matrix), list(class_names), note))
        return real(matrix, class_names, note)

    monkeypatch.setattr(figures, "confusion_figure", spy)
    m = explain.ModelWrapper(FixedLogits(pred, k), "series", device="cpu", class_names=[f"c{i}" for i in range(k)])
    x = torch.arange(len(y)).float().view(-1, 1, 1)
    start = time.perf_counter()
    rep = reports.build_report(m, (x, torch.as_tensor(y)), sections=["performance"], out=tmp_path / "r",
                               max_samples=None)
    seconds = time.perf_counter() - start
    assert rep is not None
    return json.loads((tmp_path / "r" / "summary.json").read_text()), drawn, seconds


def test_ten_thousand_declared_classes_with_three_present(tmp_path, monkeypatch):
    k, present = 10_000, np.array([3, 42, 9_999])
    gen = np.random.default_rng(0)
    y = present[gen.integers(0, 3, 300)]
    pred = np.where(gen.random(300) < 0.7, y, present[gen.integers(0, 3, 300)])
    summary, drawn, seconds = report_for(tmp_path, y, pred, k, monkeypatch)
    perf = summary["sections"]["performance"]["summary"]
    assert seconds < 45, seconds  # the dense matrix took minutes and gigabytes
    assert (tmp_path / "r" / "summary.json").stat().st_size < 400_000  # the dense matrix alone: 10⁸ numbers
    assert perf["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert perf["macro_f1"] == pytest.approx(f1_score(y, pred, labels=present, average="macro"))
    assert "confusion_matrix" not in perf
    sparse = perf["confusion_sparse"]
    assert sparse["n_classes"] == k and sparse["view"] == "present"
    assert sparse["shown_classes"] == ["c3", "c42", "c9999"]
    ref = confusion_matrix(y, pred, labels=present)
    cells = {(t, p): c for t, p, c in sparse["cells"]}
    assert cells == {(f"c{present[i]}", f"c{present[j]}"): int(ref[i, j])
                     for i in range(3) for j in range(3) if ref[i, j]}
    (matrix, names, note), = drawn
    assert names == ["c3", "c42", "c9999"] and np.array_equal(matrix, ref)
    assert note == "3 of 10,000 classes: those that occur"
    html = (tmp_path / "r" / "index.html").read_text()
    assert "shows only the 3 that occur in the labels or predictions" in html


def test_many_present_classes_show_the_most_confused_and_store_every_cell(tmp_path, monkeypatch):
    k = 400
    gen = np.random.default_rng(1)
    y = gen.integers(0, 120, 2_000)
    noisy = gen.random(2_000) < np.linspace(0.05, 0.9, 120)[y]  # later classes are confused more often
    pred = np.where(noisy, gen.integers(0, 150, 2_000), y)
    summary, drawn, _ = report_for(tmp_path, y, pred, k, monkeypatch)
    perf = summary["sections"]["performance"]["summary"]
    labels = sorted(set(y) | set(pred))
    assert perf["macro_f1"] == pytest.approx(f1_score(y, pred, labels=labels, average="macro", zero_division=0))
    ref = confusion_matrix(y, pred, labels=list(range(k)))
    errors = ref.sum(0) + ref.sum(1) - 2 * np.diag(ref)
    expected = sorted(sorted(labels, key=lambda i: (-errors[i], i))[:_confusion.VIEW_CLASSES])
    sparse = perf["confusion_sparse"]
    assert sparse["view"] == "most_confused" and sparse["shown_classes"] == [f"c{i}" for i in expected]
    rebuilt = np.zeros((k, k), dtype=np.int64)
    for t, p, c in sparse["cells"]:
        rebuilt[int(t[1:]), int(p[1:])] = c
    assert np.array_equal(rebuilt, ref)  # the sparse form is the whole matrix
    (matrix, names, note), = drawn
    assert np.array_equal(matrix, ref[np.ix_(expected, expected)]) and note.startswith("30 of 400 classes")


def test_fifty_classes_or_fewer_keep_the_dense_matrix(tmp_path, monkeypatch):
    gen = np.random.default_rng(2)
    y, pred = gen.integers(0, 50, 200), gen.integers(0, 50, 200)
    summary, drawn, _ = report_for(tmp_path, y, pred, 50, monkeypatch)
    perf = summary["sections"]["performance"]["summary"]
    assert np.array_equal(np.array(perf["confusion_matrix"]), confusion_matrix(y, pred, labels=list(range(50))))
    assert "confusion_sparse" not in perf and drawn[0][2] is None and len(drawn[0][1]) == 50
