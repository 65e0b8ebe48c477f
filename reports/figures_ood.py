"""OOD results → figures: ROC curves and in- vs out-of-distribution score histograms."""

from __future__ import annotations

import numpy as np

from ._png import new_figure, plt


def roc_figure(evaluation):
    """ROC curves (OOD as positive), one line per detector, with the chance diagonal."""
    fig, ax = new_figure(4.6, 4.0)
    for name, r in evaluation.methods.items():
        fpr, tpr = r.roc
        ax.plot(fpr, tpr, label=f"{name} (AUROC {r.auroc:.3f})")
    ax.plot([0, 1], [0, 1], ls=":", color="gray", label="chance")
    ax.set_xlabel("false positive rate (in-distribution flagged)", fontsize=8)
    ax.set_ylabel("true positive rate (OOD flagged)", fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("ROC curves", fontsize=9)
    return fig


def histograms(evaluation):
    """Per detector: score histograms of in- and out-of-distribution data and the calibrated threshold."""
    k = len(evaluation.methods)
    cols = min(3, k)
    rows = int(np.ceil(k / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.4 * rows), squeeze=False)
    for ax, (name, r) in zip(axes.flat, evaluation.methods.items()):
        s_in, s_out = r.scores_in.numpy(), r.scores_out.numpy()
        lo, hi = float(min(s_in.min(), s_out.min())), float(max(s_in.max(), s_out.max()))
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 30)
        ax.hist(s_in, bins=bins, alpha=0.6, label="in-distribution", color="#4c72b0")
        ax.hist(s_out, bins=bins, alpha=0.6, label="out-of-distribution", color="#dd8452", hatch="//")
        ax.axvline(r.threshold, color="black", ls="--", lw=1, label="threshold (95 % kept)")
        ax.set_title(f"{name}: AUROC {r.auroc:.3f}", fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[k:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.supxlabel("score (higher = more out-of-distribution)", fontsize=8)
    fig.tight_layout()
    return fig
