"""Performance: accuracy, macro and per-class precision/recall/F1, confusion matrix, calibration.

Every number here is read off two sums over samples, the confusion counts and the calibration
bins' (count, correct, confidence), so inside a process group each rank counts its own batches
of the streamed data and the sums are all-reduced.

Macro averages run over the classes that occur in the labels or the predictions (scikit-learn's
``labels=``): a class absent from both has no precision or recall to average, and counting it as 0
would report 80 % macro-F1 for a perfect classifier on a set missing a fifth of the classes. The
absent classes are listed in the report.

The confusion counts never take ``K×K`` memory (:mod:`reports.sections._confusion`): with more than
50 classes the figure shows a reduced view and ``summary.json`` stores the non-zero cells
(``confusion_sparse``) instead of the dense ``confusion_matrix``.
"""

from __future__ import annotations

import numpy as np
import torch

from explain.errors import NonFiniteOutputError
from robustness import distributed as dist

from .. import figures
from .._png import to_png
from ..report import Check, Figure, ReportContext, Section, Table, Text
from ._confusion import confusion_counts

CONFIG_KEYS: dict[str, str] = {}
CHECK_KEYS: dict[str, str] = {"min_accuracy": "fail when accuracy is below this",
              "min_macro_f1": "fail when macro-F1 is below this",
              "max_ece": "fail when the expected calibration error is above this"}


def local_predictions(ctx: ReportContext):
    """Probabilities for this process's block of the evaluation samples (all of them in one process), cached."""
    if "local_probs" not in ctx.cache:
        part = dist.local_range(len(ctx.x))
        ctx.cache["local_probs"] = torch.softmax(ctx.wrapper.logits(ctx.x[part]), dim=1) if part.stop > part.start \
            else torch.zeros(0, len(ctx.wrapper.class_names))
    return ctx.cache["local_probs"]


def predicted(ctx: ReportContext):
    """``(predicted class, its probability)`` for every evaluation sample, gathered in sample order and cached."""
    if "predicted" not in ctx.cache:
        probs = local_predictions(ctx)
        conf, pred = probs.max(1) if len(probs) else (torch.zeros(0), torch.zeros(0, dtype=torch.long))
        both = dist.gather_in_order(torch.stack([pred.double(), conf.double()], dim=1), len(ctx.x))
        ctx.cache["predicted"] = (both[:, 0].long(), both[:, 1].float())
    return ctx.cache["predicted"]


def scores_from_counts(cm: np.ndarray):
    """Per-class precision, recall, F1 and support from a confusion matrix (rows: labels), 0 where undefined."""
    return scores_from_totals(np.diag(cm), cm.sum(0), cm.sum(1))


def scores_from_totals(tp: np.ndarray, predicted_n: np.ndarray, support: np.ndarray):
    """:func:`scores_from_counts` from per-class true positives, prediction counts and support."""
    tp, predicted_n, support = tp.astype(float), predicted_n.astype(float), support.astype(float)
    p = np.divide(tp, predicted_n, out=np.zeros_like(tp), where=predicted_n > 0)
    r = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f = np.divide(2 * p * r, p + r, out=np.zeros_like(tp), where=(p + r) > 0)
    return p, r, f, support.astype(int)


def _threshold(checks, name, value, threshold, higher_is_better, text):
    if threshold is None:
        checks.append(Check(name, value, "info", None, text))
        return
    ok = value >= threshold if higher_is_better else value <= threshold
    rel = "≥" if higher_is_better else "≤"
    checks.append(Check(name, value, "pass" if ok else "fail", threshold,
                        f"{text} ({'meets' if ok else 'misses'} {rel} {threshold:.3g})"))


def outcomes(ctx: ReportContext) -> tuple:
    """``(labels, predicted class, confidence)`` of this process's evaluated samples.

    ``build_report`` streams the data once in a single process and leaves every evaluated sample's
    outcome in ``ctx.cache["outcomes"]`` (they may cover more samples than ``ctx.x`` holds); in a
    process group, or without that cache, they come from this process's block of ``ctx.x``.
    """
    out = ctx.cache.get("outcomes")
    if out is not None:
        return out["y"], out["pred"], out["conf"]
    probs = local_predictions(ctx)
    conf, pred = probs.max(1) if len(probs) else (torch.zeros(0), torch.zeros(0, dtype=torch.long))
    return (None if ctx.y is None else ctx.y[dist.local_range(len(ctx.x))]), pred, conf


def counts_from_outcomes(pred: torch.Tensor, conf: torch.Tensor, y: torch.Tensor, k: int, bins: int = 15) -> tuple:
    """Confusion counts (summed over all processes, never ``K×K``: :func:`confusion_counts`) and this
    process's calibration bins' sums, from per-sample predicted class and confidence alone.

    A NaN confidence (from NaN logits, whose argmax would read as class 0) is never counted: it
    raises ``NonFiniteOutputError`` naming the samples, and the section shows it as its failure box.
    The wrapper refuses NaN logits before they get here; this guards every other way in.
    """
    if len(conf) and not bool(torch.isfinite(conf).all()):
        bad = (~torch.isfinite(conf)).nonzero().flatten().tolist()
        raise NonFiniteOutputError(bad, len(conf), what="the predicted-class probabilities", scope="batch",
                                   of="of the evaluated samples")
    conf, pred = conf.double(), pred.long()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    idx = torch.clamp(torch.bucketize(conf, edges[1:-1], right=True), 0, bins - 1)
    sums = torch.zeros(3, bins, dtype=torch.float64)
    sums[0].index_add_(0, idx, torch.ones_like(conf))
    sums[1].index_add_(0, idx, (pred == y.long()).double())
    sums[2].index_add_(0, idx, conf)
    return confusion_counts(y, pred, k), sums


def build(ctx: ReportContext) -> Section:
    y, pred, conf = outcomes(ctx)
    names = ctx.wrapper.class_names
    if y is None:
        return Section("performance", "Performance", blocks=[Text("No labels were given, so accuracy cannot be measured.")],
                       summary={"labels": False})
    # confusion counts and calibration bins are sums: each process counts its block, then all-reduce
    cc, sums = counts_from_outcomes(pred, conf, y, len(names))  # totals and non-zero cells: never K×K
    sums = dist.all_reduce_sum(sums).numpy()
    labels = list(range(len(names)))
    present = cc.present()
    absent = sorted(set(labels) - set(present))
    total = max(cc.total, 1)
    acc = float(cc.correct / total)
    p, r, f, s = scores_from_totals(cc.tp, cc.predicted, cc.support)
    shown, view = cc.view()
    cm = cc.dense(shown)
    mp, mr, mf = (float(np.mean(v[present])) if present else 0.0 for v in (p, r, f))
    bcount = sums[0]
    bacc, bconf = sums[1] / np.maximum(bcount, 1), sums[2] / np.maximum(bcount, 1)
    ece = float(np.abs(sums[1] - sums[2]).sum() / total)
    cfg = ctx.config.get("checks", {})
    checks: list = []
    _threshold(checks, "accuracy", acc, cfg.get("min_accuracy"), True, f"accuracy {acc:.1%}")
    _threshold(checks, "macro F1", float(mf), cfg.get("min_macro_f1"), True, f"macro-F1 {mf:.3f}")
    _threshold(checks, "ECE", ece, cfg.get("max_ece"), False, f"ECE {ece:.3f}")
    occurs = set(present)
    listed = labels if view == "all" else present  # many classes: rows (and summary) for the ones that occur
    per_class = [[names[i], round(float(p[i]), 3), round(float(r[i]), 3), round(float(f[i]), 3), int(s[i])]
                 if i in occurs else [names[i], "—", "—", "—", 0] for i in listed]
    blocks = [
        Table(["metric", "value"], [["accuracy", f"{acc:.2%}"], ["macro precision", f"{mp:.3f}"],
                                    ["macro recall", f"{mr:.3f}"], ["macro F1", f"{mf:.3f}"],
                                    ["expected calibration error", f"{ece:.3f}"], ["samples", cc.total]],
              caption=f"Headline metrics (macro averages over the {len(present)} classes present in the labels "
                      "or predictions)", sortable=False),
        Table(["class", "precision", "recall", "F1", "support"], per_class,
              caption="Per class (click a header to sort)" if view == "all" else
              f"Per class, the {len(present)} classes that occur (click a header to sort)"),
        *([Text(f"{len(absent)} class(es) appear neither in the labels nor in the predictions and are left "
                 f"out of the macro averages: {', '.join(names[i] for i in absent[:50])}"
                 f"{f' and {len(absent) - 50:,} more' if len(absent) > 50 else ''}.", kind="warning")]
          if absent else []),
        *([Text(cc.describe(names))] if view != "all" else []),
        Figure("confusion", to_png(figures.confusion_figure(cm, [names[i] for i in shown], cc.note()), ctx.dpi),
               "Confusion matrix" if view == "all" else f"Confusion matrix ({cc.note()})",
               "confusion matrix, counts and row-normalised"),
        Figure("reliability", to_png(figures.reliability_figure(bconf, bacc, bcount, ece), ctx.dpi),
               "Reliability diagram", "accuracy per confidence bin"),
    ]
    summary = {"accuracy": acc, "macro_precision": float(mp), "macro_recall": float(mr), "macro_f1": float(mf),
               "ece": ece, "per_class": {names[i]: {"precision": float(p[i]), "recall": float(r[i]),
                                                     "f1": float(f[i]), "support": int(s[i])} for i in listed},
               "absent_classes": [names[i] for i in absent]}
    if view == "all":
        summary["confusion_matrix"] = cm.tolist()
    else:
        summary["confusion_sparse"] = cc.to_summary(names)
    return Section("performance", "Performance", blocks=blocks, summary=summary, checks=checks)
