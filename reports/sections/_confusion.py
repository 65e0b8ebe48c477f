"""Confusion counts that stay small whatever the number of classes.

Nothing here is ``K×K``: per-class totals are three ``K``-vectors and the confusion matrix is kept
as its non-zero cells (at most one per sample). Up to :data:`DENSE_MAX_CLASSES` classes the full
matrix is drawn and stored as before; above that the figure shows a reduced view — the classes
that occur in the labels or predictions when there are at most :data:`DENSE_MAX_CLASSES` of them,
otherwise the :data:`VIEW_CLASSES` most confused ones — the report says which, and
``summary.json`` holds the sparse form (``[true, predicted, count]`` cells) instead of ``K²`` numbers.
A model declaring 10,000 classes would otherwise need 10⁸ cells (800 MB) to report three classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch

from robustness import distributed as dist

#: Up to this many classes the confusion matrix is dense (``K×K``) in the figure and the summary.
DENSE_MAX_CLASSES = 50
#: The most-confused view shows this many classes when more than DENSE_MAX_CLASSES occur.
VIEW_CLASSES = 30


@dataclass(frozen=True)
class ConfusionCounts:
    """Confusion counts over all processes: per-class totals and the non-zero cells.

    Shape:
        ``tp``, ``support``, ``predicted``: ``K``; ``cells``: ``M×3`` (true, predicted, count), sorted.
    """

    k: int
    tp: np.ndarray
    support: np.ndarray
    predicted: np.ndarray
    cells: np.ndarray

    @property
    def total(self) -> int:
        return int(self.support.sum())

    @property
    def correct(self) -> int:
        return int(self.tp.sum())

    def present(self) -> List[int]:
        """Classes that occur in the labels or the predictions."""
        return np.flatnonzero(self.support + self.predicted > 0).tolist()

    def dense(self, classes: Optional[List[int]] = None) -> np.ndarray:
        """The matrix over ``classes`` (default all ``K``; rows: labels, columns: predictions)."""
        classes = list(range(self.k)) if classes is None else list(classes)
        pos = np.full(self.k, -1, dtype=np.int64)
        pos[classes] = np.arange(len(classes))
        out = np.zeros((len(classes), len(classes)), dtype=np.int64)
        t, p, c = (self.cells[:, i] for i in range(3)) if len(self.cells) else (np.zeros(0, np.int64),) * 3
        inside = (pos[t] >= 0) & (pos[p] >= 0)
        np.add.at(out, (pos[t[inside]], pos[p[inside]]), c[inside])
        return out

    def view(self) -> tuple:
        """``(classes shown, how they were chosen)``: all, the present ones, or the most confused.

        Most confused: ranked by the errors a class takes part in (as label or as prediction),
        ties broken by class index.
        """
        if self.k <= DENSE_MAX_CLASSES:
            return list(range(self.k)), "all"
        present = self.present()
        if len(present) <= DENSE_MAX_CLASSES:
            return present, "present"
        errors = self.support + self.predicted - 2 * self.tp
        order = sorted(present, key=lambda i: (-int(errors[i]), i))
        return sorted(order[:VIEW_CLASSES]), "most_confused"

    def describe(self, names: List[str]) -> str:
        """One sentence saying what the reduced view shows ('' when it shows every class)."""
        shown, how = self.view()
        if how == "all":
            return ""
        if how == "present":
            return (f"The model declares {self.k:,} classes; the confusion matrix shows only the {len(shown)} that "
                    "occur in the labels or predictions (every other row and column is zero).")
        outside = int(self.total - self.dense(shown).sum())
        return (f"The model declares {self.k:,} classes and {len(self.present()):,} occur; the confusion matrix "
                f"shows the {len(shown)} most confused (most errors as label or prediction). {outside:,} of the "
                f"{self.total:,} samples fall outside it; summary.json lists every non-zero cell.")

    def note(self) -> Optional[str]:
        """A figure's caption for the reduced view (``None`` when it shows every class)."""
        shown, how = self.view()
        if how == "all":
            return None
        which = "those that occur" if how == "present" else "the most confused"
        return f"{len(shown)} of {self.k:,} classes: {which}"

    def to_summary(self, names: List[str]) -> dict:
        """The sparse form for ``summary.json``: class count, the classes drawn, every non-zero cell."""
        shown, how = self.view()
        return {"n_classes": self.k, "view": how, "shown_classes": [names[i] for i in shown],
                "cells": [[names[int(t)], names[int(p)], int(c)] for t, p, c in self.cells]}


def confusion_counts(y: torch.Tensor, pred: torch.Tensor, k: int) -> ConfusionCounts:
    """Count this process's ``(label, prediction)`` pairs and sum them over all processes.

    Cost: ``O(n + K)`` memory, never ``K²``.
    """
    y, pred = y.reshape(-1).long().cpu(), pred.reshape(-1).long().cpu()
    totals = torch.stack([torch.bincount(y[y == pred], minlength=k), torch.bincount(y, minlength=k),
                          torch.bincount(pred, minlength=k)]).double()
    tp, support, predicted = dist.all_reduce_sum(totals).round().long().numpy()
    code, count = torch.unique(y * k + pred, return_counts=True)
    rows, _ = dist.gather_rows(torch.stack([code, count], 1))
    code, inv = torch.unique(rows[:, 0], return_inverse=True)
    count = torch.zeros(len(code), dtype=torch.long).index_add_(0, inv, rows[:, 1])
    cells = torch.stack([code // k, code % k, count], 1).numpy() if len(code) else np.zeros((0, 3), np.int64)
    return ConfusionCounts(k, tp, support, predicted, cells)
