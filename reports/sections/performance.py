"""Performance: accuracy, macro and per-class precision/recall/F1, confusion matrix, calibration.

Macro averages run over the classes that occur in the labels or the predictions (scikit-learn's
``labels=``): a class absent from both has no precision or recall to average, and counting it as 0
would report 80 % macro-F1 for a perfect classifier on a set missing a fifth of the classes. The
absent classes are listed in the report.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from .. import figures
from .._png import to_png
from ..report import Check, Figure, ReportContext, Section, Table, Text

CONFIG_KEYS: dict[str, str] = {}
CHECK_KEYS: dict[str, str] = {"min_accuracy": "fail when accuracy is below this",
              "min_macro_f1": "fail when macro-F1 is below this",
              "max_ece": "fail when the expected calibration error is above this"}


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15):
    """ECE with equal-width confidence bins (Guo et al. 2017, https://arxiv.org/abs/1706.04599).

    Math: ``ECE = Σ_b |B_b|/N · |acc(B_b) − conf(B_b)|``. Returns (ece, bin conf, bin acc, bin count).
    """
    return calibration_from_outcomes(probs.max(1), probs.argmax(1), labels, bins)


def calibration_from_outcomes(conf: np.ndarray, pred: np.ndarray, labels: np.ndarray, bins: int = 15):
    """:func:`expected_calibration_error` from per-sample confidence and prediction alone.

    This is all a streamed evaluation keeps (three numbers per sample), and it gives the same bins.

    Shape:
        conf, pred, labels: ``N``.
    """
    conf = np.asarray(conf)
    correct = (np.asarray(pred) == np.asarray(labels)).astype(float)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    count = np.bincount(idx, minlength=bins).astype(float)
    acc = np.bincount(idx, weights=correct, minlength=bins) / np.maximum(count, 1)
    mconf = np.bincount(idx, weights=conf, minlength=bins) / np.maximum(count, 1)
    ece = float(np.sum(count / len(conf) * np.abs(acc - mconf)))
    return ece, mconf, acc, count


def present_classes(y: np.ndarray, pred: np.ndarray) -> list:
    """Sorted class indices that occur in the labels or the predictions."""
    return sorted(set(np.asarray(y).tolist()) | set(np.asarray(pred).tolist()))


def predictions(ctx: ReportContext):
    """Probabilities for the evaluation samples, computed once per report and cached."""
    if "probs" not in ctx.cache:
        ctx.cache["probs"] = torch.softmax(ctx.wrapper.logits(ctx.x), dim=1)
    return ctx.cache["probs"]


def _threshold(checks, name, value, threshold, higher_is_better, text):
    if threshold is None:
        checks.append(Check(name, value, "info", None, text))
        return
    ok = value >= threshold if higher_is_better else value <= threshold
    rel = "≥" if higher_is_better else "≤"
    checks.append(Check(name, value, "pass" if ok else "fail", threshold,
                        f"{text} ({'meets' if ok else 'misses'} {rel} {threshold:.3g})"))


def outcomes(ctx: ReportContext) -> dict:
    """Per-sample label, prediction and confidence of every evaluated sample.

    ``build_report`` streams the data once and leaves them in ``ctx.cache["outcomes"]`` (they may
    cover more samples than ``ctx.x`` holds); otherwise they come from ``ctx.x``.
    """
    if ctx.cache.get("outcomes") is None:
        probs = predictions(ctx)
        conf, pred = probs.max(dim=1)
        ctx.cache["outcomes"] = {"y": ctx.y, "pred": pred, "conf": conf}
    return ctx.cache["outcomes"]


def build(ctx: ReportContext) -> Section:
    out = outcomes(ctx)
    pred = out["pred"].numpy()
    names = ctx.wrapper.class_names
    if out["y"] is None:
        return Section("performance", "Performance", blocks=[Text("No labels were given, so accuracy cannot be measured.")],
                       summary={"labels": False})
    y = out["y"].numpy()
    labels = list(range(len(names)))
    present = present_classes(y, pred)
    absent = [i for i in labels if i not in present]
    acc = float(accuracy_score(y, pred))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    mp, mr, mf, _ = precision_recall_fscore_support(y, pred, labels=present, average="macro", zero_division=0)
    cm = confusion_matrix(y, pred, labels=labels)
    ece, bconf, bacc, bcount = calibration_from_outcomes(out["conf"].numpy(), pred, y)
    cfg = ctx.config.get("checks", {})
    checks: list = []
    _threshold(checks, "accuracy", acc, cfg.get("min_accuracy"), True, f"accuracy {acc:.1%}")
    _threshold(checks, "macro F1", float(mf), cfg.get("min_macro_f1"), True, f"macro-F1 {mf:.3f}")
    _threshold(checks, "ECE", ece, cfg.get("max_ece"), False, f"ECE {ece:.3f}")
    per_class = [[names[i], round(float(p[i]), 3), round(float(r[i]), 3), round(float(f[i]), 3), int(s[i])]
                 if i in present else [names[i], "—", "—", "—", 0] for i in labels]
    blocks = [
        Table(["metric", "value"], [["accuracy", f"{acc:.2%}"], ["macro precision", f"{mp:.3f}"],
                                    ["macro recall", f"{mr:.3f}"], ["macro F1", f"{mf:.3f}"],
                                    ["expected calibration error", f"{ece:.3f}"], ["samples", len(y)]],
              caption=f"Headline metrics (macro averages over the {len(present)} classes present in the labels "
                      "or predictions)", sortable=False),
        Table(["class", "precision", "recall", "F1", "support"], per_class, caption="Per class (click a header to sort)"),
        *([Text(f"{len(absent)} class(es) appear neither in the labels nor in the predictions and are left "
                 f"out of the macro averages: {', '.join(names[i] for i in absent)}.", kind="warning")]
          if absent else []),
        Figure("confusion", to_png(figures.confusion_figure(cm, names), ctx.dpi), "Confusion matrix",
               "confusion matrix, counts and row-normalised"),
        Figure("reliability", to_png(figures.reliability_figure(bconf, bacc, bcount, ece), ctx.dpi),
               "Reliability diagram", "accuracy per confidence bin"),
    ]
    summary = {"accuracy": acc, "macro_precision": float(mp), "macro_recall": float(mr), "macro_f1": float(mf),
               "ece": ece, "per_class": {names[i]: {"precision": float(p[i]), "recall": float(r[i]),
                                                     "f1": float(f[i]), "support": int(s[i])} for i in labels},
               "confusion_matrix": cm.tolist(), "absent_classes": [names[i] for i in absent]}
    return Section("performance", "Performance", blocks=blocks, summary=summary, checks=checks)
