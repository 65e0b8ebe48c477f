"""Figures of a training run and of feature visualisations. Drawing only; numbers come from the history.

Colours: lines from matplotlib's default (colour-blind-friendly ``tab10``) with distinct markers, so
no curve is told apart by colour alone; maps use the shared diverging scale of ``figures``.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
from matplotlib.ticker import MaxNLocator

from ._png import plt
from .figures import DIVERGING

MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
#: probe values on a 0..1 "higher is better" scale, drawn together
UNIT_PROBES = ["accuracy", "precision", "recall", "f1", "robust_accuracy", "ood_auroc", "explanation_rank_correlation"]


def _series(records: Sequence[dict], key: str, x_key: str = "epoch"):
    pts = [(r.get(x_key), r.get(key)) for r in records if r.get(key) is not None and r.get(x_key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def curves_figure(steps: Sequence[dict], epochs: Sequence[dict]):
    """Loss (per step and epoch mean), learning rate and gradient norm against the step."""
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 2.8))
    for ax, key, title in zip(axes, ("loss", "lr", "grad_norm"), ("loss", "learning rate", "gradient norm")):
        xs, ys = _series(steps, key, "step")
        if xs:
            ax.plot(xs, ys, lw=0.7, alpha=0.45, color="#4c72b0", label="per step")
        ex, ey = _series(epochs, key, "step")
        if ex:
            ax.plot(ex, ey, marker="o", ms=3.5, lw=1.4, color="#dd8452", label="epoch mean" if key != "lr" else "epoch end")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        if key == "loss" and ys and min(ys) > 0 and max(ys) / max(min(ys), 1e-12) > 30:
            ax.set_yscale("log")
        if not xs and not ex:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, fontsize=8)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def probes_figure(epochs: Sequence[dict]):
    """Probe values over epochs: the 0..1 scores together (one marker each), ECE on its own axis."""
    fig, (ax, ax_ece) = plt.subplots(1, 2, figsize=(10.5, 3.0), gridspec_kw={"width_ratios": [2.2, 1]})
    probes = [{**(e.get("probes") or {}), "epoch": e.get("epoch")} for e in epochs]
    drawn = 0
    for i, key in enumerate(UNIT_PROBES):
        xs, ys = _series(probes, key)
        if xs:
            ax.plot(xs, ys, marker=MARKERS[i % len(MARKERS)], ms=4, lw=1.2, label=key.replace("_", " "))
            drawn += 1
    ax.set_ylim(-0.05, 1.05) if drawn else None
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_title("probes (higher is better)", fontsize=9)
    ax.tick_params(labelsize=7)
    if drawn:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    xs, ys = _series(probes, "ece")
    if xs:
        ax_ece.plot(xs, ys, marker="o", ms=4, color="#c44e52")
    ax_ece.set_title("expected calibration error (lower is better)", fontsize=9)
    for a in (ax, ax_ece):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_ece.set_xlabel("epoch", fontsize=8)
    ax_ece.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def progress_figure(records: Sequence[dict]):
    """The live view: loss and the probes so far, from the monitor's in-memory records."""
    steps = [r for r in records if r.get("type") == "step"]
    epochs = [r for r in records if r.get("type") == "epoch"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9.0, 2.8))
    xs, ys = _series(steps, "loss", "step")
    ax.plot(xs, ys, lw=0.7, alpha=0.5, color="#4c72b0")
    ex, ey = _series(epochs, "loss", "step")
    ax.plot(ex, ey, marker="o", ms=3.5, color="#dd8452")
    ax.set_title(f"loss · epoch {epochs[-1]['epoch'] if epochs else 0}", fontsize=9)
    probes = [{**(e.get("probes") or {}), "epoch": e.get("epoch")} for e in epochs]
    for i, key in enumerate(UNIT_PROBES):
        px, py = _series(probes, key)
        if px:
            ax2.plot(px, py, marker=MARKERS[i % len(MARKERS)], ms=4, label=key.replace("_", " "))
    ax2.set_ylim(-0.05, 1.05)
    ax2.set_title("probes", fontsize=9)
    if ax2.lines:
        ax2.legend(fontsize=6, loc="lower right")
    for a in (ax, ax2):
        a.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def _show_input(ax, sample: np.ndarray) -> None:
    if sample.ndim == 3:
        img = np.transpose(sample, (1, 2, 0)) if sample.shape[0] == 3 else sample[0]
        ax.imshow(np.clip(img, 0, 1), cmap=None if sample.shape[0] == 3 else "gray", vmin=0, vmax=1)
    else:
        ax.plot(sample.reshape(sample.shape[0], -1), lw=0.8)


def map_strip_figure(samples: np.ndarray, maps: List[np.ndarray], epochs: List[int], kind: str,
                     labels: Optional[List[str]] = None):
    """One row per tracked sample: the input, then its map at each epoch (each map scaled by its own
    largest |value|, signed diverging colours). Sequences: one heat strip per sample, epochs as rows."""
    n = samples.shape[0]
    if kind == "image":
        cols = len(maps) + 1
        fig, axes = plt.subplots(n, cols, figsize=(1.25 * cols + 0.4, 1.3 * n + 0.3), squeeze=False)
        for i in range(n):
            _show_input(axes[i, 0], samples[i])
            axes[i, 0].set_ylabel(labels[i] if labels else f"sample {i}", fontsize=7)
            for j, (m, e) in enumerate(zip(maps, epochs)):
                v = m[i].astype(np.float32)
                lim = max(float(np.abs(v).max()), 1e-12)
                axes[i, j + 1].imshow(v, cmap=DIVERGING, vmin=-lim, vmax=lim)
                if i == 0:
                    axes[i, j + 1].set_title(f"epoch {e}", fontsize=7)
        axes[0, 0].set_title("input", fontsize=7)
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.tight_layout()
        return fig
    fig, axes = plt.subplots(n, 1, figsize=(8.0, 0.35 * len(maps) * n + 0.6 * n + 0.3), squeeze=False)
    for i in range(n):
        grid = np.stack([m[i].astype(np.float32) / max(float(np.abs(m[i]).max()), 1e-12) for m in maps])
        ax = axes[i, 0]
        ax.imshow(grid, aspect="auto", cmap=DIVERGING, vmin=-1, vmax=1, interpolation="nearest")
        ax.set_yticks(range(len(epochs)), [f"epoch {e}" for e in epochs], fontsize=6)
        ax.set_title(labels[i] if labels else f"sample {i}", fontsize=7, loc="left")
        ax.tick_params(labelsize=6)
    axes[-1, 0].set_xlabel("position", fontsize=7)
    fig.tight_layout()
    return fig


def class_visualisations_figure(images: np.ndarray, names: List[str], activation: Sequence[float],
                                examples: Optional[np.ndarray] = None):
    """One row per class: its optimised image, then the real samples that score highest for it."""
    k = images.shape[0]
    extra = 0 if examples is None else examples.shape[1]
    fig, axes = plt.subplots(k, 1 + extra, figsize=(1.45 * (1 + extra) + 0.6, 1.45 * k + 0.3), squeeze=False)
    for i in range(k):
        _show_input(axes[i, 0], images[i])
        axes[i, 0].set_ylabel(names[i], fontsize=7)
        axes[i, 0].set_xlabel(f"logit {activation[i]:.3g}", fontsize=6)
        for j in range(extra):
            _show_input(axes[i, j + 1], examples[i, j])
    axes[0, 0].set_title("visualisation", fontsize=7)
    for j in range(extra):
        axes[0, j + 1].set_title(f"real #{j + 1}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig
