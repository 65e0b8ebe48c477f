"""Trust results → figures: the cascading-randomisation strip and deletion/insertion curves.

Takes ``explain.metrics.MetricResult`` objects; computes nothing; never shows.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch

from . import figures
from ._png import plt


def randomization_strip(results: Dict[str, object], image: Optional[torch.Tensor] = None, cell: float = 1.35):
    """One row per method: the original map of one sample, then the map after each cascade step.

    ``results`` maps method name → randomisation ``MetricResult`` (``details["example_maps"]``).
    """
    names = list(results)
    cols = max(len(results[n].details["example_maps"]) for n in names)
    extra = 1 if image is not None and image.dim() == 3 else 0
    fig, axes = plt.subplots(len(names), cols + extra, figsize=(cell * (cols + extra), cell * len(names) + 0.4),
                             squeeze=False)
    for r, name in enumerate(names):
        res = results[name]
        maps = res.details["example_maps"]
        layers = ["original"] + [f"→ {lay}" for lay in res.details["layers"]]
        if extra:
            axes[r][0].imshow(figures._grey(image), cmap="gray")
            axes[r][0].set_title("input", fontsize=7)
            axes[r][0].axis("off")
        for c in range(cols):
            ax = axes[r][c + extra]
            ax.axis("off")
            if c >= len(maps):
                continue
            mp = figures.normalise(maps[c])
            if mp.dim() == 2:
                ax.imshow(mp.numpy(), cmap=figures.DIVERGING, vmin=-1, vmax=1)
            else:
                ax.imshow(mp[None].numpy(), cmap=figures.DIVERGING, vmin=-1, vmax=1, aspect="auto")
            sim = "" if c == 0 else f"\nρ={float(res.details['spearman'][c - 1][0]):.2f}"
            ax.set_title(f"{layers[c]}{sim}", fontsize=6)
        axes[r][0].text(-0.15, 0.5, f"{name} ({res.verdict})", transform=axes[r][0].transAxes, rotation=90,
                        ha="right", va="center", fontsize=7)
    fig.suptitle("maps as layers are randomised, top layer first (ρ: rank correlation with the original)", fontsize=8)
    fig.tight_layout()
    return fig


def deletion_insertion_curves(results: Dict[str, Dict[str, object]]):
    """Mean deletion and insertion curves per method (solid) against random order (dotted)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, which in zip(axes, ("deletion", "insertion")):
        for i, (name, pair) in enumerate(results.items()):
            res = pair.get(which)
            if res is None:
                continue
            frac = res.details["fractions"].numpy()
            col = colours[i % len(colours)]
            ax.plot(frac, res.details["curve"].mean(0).numpy(), color=col, label=f"{name} (AUC {res.aggregate:.2f})")
            ax.plot(frac, res.details["random_curve"].mean(0).numpy(), color=col, ls=":", lw=1)
        ax.set_xlabel(f"fraction of features {'removed' if which == 'deletion' else 'restored'}", fontsize=8)
        ax.set_ylabel("target probability", fontsize=8)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{which} ({'lower' if which == 'deletion' else 'higher'} = more faithful; dotted = random order)",
                     fontsize=8)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def agreement_matrix(matrix: torch.Tensor, names: List[str]):
    """Method × method rank correlation as a heat map."""
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(names), 0.8 + 0.6 * len(names)))
    ax.imshow(matrix.numpy(), cmap=figures.DIVERGING, vmin=-1, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{float(matrix[i, j]):.2f}", ha="center", va="center", fontsize=6)
    ax.set_title("agreement between methods (Spearman)", fontsize=8)
    fig.tight_layout()
    return fig
