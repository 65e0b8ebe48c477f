"""Robustness results → figures: accuracy-vs-budget curves and adversarial examples."""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from ._png import new_figure, plt

MARKERS = ["o", "s", "^", "D", "v", "P"]


def robust_curve(curves: Dict[str, object], unit: str):
    """Accuracy vs budget, one line per attack, the clean accuracy dashed."""
    fig, ax = new_figure(5.2, 3.6)
    clean = None
    for i, (name, c) in enumerate(curves.items()):
        ax.plot(c.eps, c.accuracy, marker=MARKERS[i % len(MARKERS)], label=name)
        clean = c.clean_accuracy
    if clean is not None:
        ax.axhline(clean, ls="--", color="gray", label="clean accuracy")
    ax.set_xlabel(f"budget ε ({unit})", fontsize=8)
    ax.set_ylabel("accuracy under attack", fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    ax.set_title("robust accuracy vs ε", fontsize=9)
    return fig


def corruption_curves(result):
    """Accuracy vs severity, one line per corruption, the clean accuracy dashed."""
    fig, ax = new_figure(5.2, 3.6)
    for i, (name, accs) in enumerate(result.accuracy.items()):
        ax.plot(result.severities, accs, marker=MARKERS[i % len(MARKERS)], label=name)
    ax.axhline(result.clean_accuracy, ls="--", color="gray", label="clean")
    ax.set_xlabel("severity", fontsize=8)
    ax.set_ylabel("accuracy", fontsize=8)
    ax.set_xticks(result.severities)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=6, ncol=2)
    ax.set_title("accuracy under corruptions", fontsize=9)
    return fig


def adversarial_images(result, names: List[str], indices: List[int], sample_ids: Optional[List[int]] = None):
    """Rows: clean input, perturbation (amplified to the full range), adversarial input.

    ``indices`` are rows of ``result``; ``sample_ids`` (default: the same) are the numbers the titles
    give them, e.g. their positions in the evaluated data when ``result`` holds a subset.
    """
    k = len(indices)
    ids = list(indices) if sample_ids is None else list(sample_ids)
    fig, axes = plt.subplots(k, 3, figsize=(5.4, 1.8 * k + 0.3), squeeze=False)
    for r, i in enumerate(indices):
        clean, adv = result.inputs[i].float(), result.adversarial[i].float()
        delta = adv - clean
        amp = float(delta.abs().max()) or 1.0
        show = lambda t: (t.permute(1, 2, 0).numpy() if t.shape[0] == 3 else t[0].numpy())  # noqa: E731
        cmap = None if clean.shape[0] == 3 else "gray"
        axes[r, 0].imshow(np.clip(show(clean), 0, 1), cmap=cmap, vmin=0, vmax=1)
        axes[r, 0].set_title(f"sample {ids[r]} · clean: {names[int(result.clean_pred[i])]}", fontsize=7)
        axes[r, 1].imshow(np.clip(show(0.5 + 0.5 * delta / amp), 0, 1), cmap=cmap, vmin=0, vmax=1)
        axes[r, 1].set_title(f"perturbation ×{0.5 / amp:.0f}", fontsize=7)
        axes[r, 2].imshow(np.clip(show(adv), 0, 1), cmap=cmap, vmin=0, vmax=1)
        axes[r, 2].set_title(f"adversarial: {names[int(result.adv_pred[i])]}", fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig


def adversarial_series(result, names: List[str], indices: List[int], sample_ids: Optional[List[int]] = None):
    """Clean and adversarial signals overlaid, one panel per sample (``sample_ids`` as in
    :func:`adversarial_images`)."""
    k = len(indices)
    ids = list(indices) if sample_ids is None else list(sample_ids)
    fig, axes = plt.subplots(k, 1, figsize=(6.5, 1.5 * k + 0.3), squeeze=False)
    for r, i in enumerate(indices):
        ax = axes[r, 0]
        clean, adv = result.inputs[i].float().numpy(), result.adversarial[i].float().numpy()
        ax.plot(clean[:, 0], lw=1.0, label=f"clean: {names[int(result.clean_pred[i])]}")
        ax.plot(adv[:, 0], lw=1.0, ls="--", label=f"adversarial: {names[int(result.adv_pred[i])]}")
        ax.legend(fontsize=6, loc="upper right")
        ax.set_title(f"sample {ids[r]}", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    return fig
