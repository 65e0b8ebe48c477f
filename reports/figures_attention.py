"""``AttentionMaps`` → matplotlib figures: a head×layer grid, heat strips over tokens, maps over images.

Attention weights are non-negative, so they use a sequential scale (``viridis``), never the signed
diverging scale of attributions — a reader should not take them for evidence for or against a class.
"""

from __future__ import annotations

from typing import List, Optional

import torch

from ._png import plt
from .figures import SEQUENTIAL, _grey

NOTE = "attention weights: where tokens look, not what moved the score"


def _show_image(ax, image: torch.Tensor, heat: torch.Tensor) -> object:
    ax.imshow(_grey(image), cmap="gray", vmin=0, vmax=1, alpha=0.6)
    return ax.imshow(heat.float().numpy(), cmap=SEQUENTIAL, alpha=0.65, vmin=0)


def head_layer_grid(maps, i: int, *, image: Optional[torch.Tensor] = None, tokens: Optional[List[str]] = None,
                    cell: float = 1.25):
    """One sample's attention, one cell per layer (rows) and head (columns), plus a rollout column.

    Images: the query row (class token, or mean over queries) over the patch grid, on the image.
    Tokens and series: the full ``T×T`` query × key matrix (padded tokens left out).
    """
    w = maps.weights[i]  # L×H×T×T
    layers, heads = int(w.shape[0]), int(w.shape[1])
    fig, axes = plt.subplots(layers, heads + 1, figsize=(cell * (heads + 1) + 0.8, cell * layers + 0.6),
                             squeeze=False)
    keep = None
    if maps.mask is not None:
        keep = [j for j, real in enumerate(maps.mask[i].tolist()) if real] or list(range(w.shape[-1]))
    for layer in range(layers):
        for head in range(heads + 1):
            ax = axes[layer, head]
            rollout = head == heads
            if rollout and layer != layers - 1:
                ax.axis("off")
                continue
            if maps.grid is not None:
                heat = maps.image_map(layer=None if rollout else layer, head=None if rollout else head)[i] \
                    if image is not None else maps.scores(None if rollout else layer, None if rollout else head)[i]
                if image is not None:
                    _show_image(ax, image, heat)
                else:
                    ax.imshow(heat.numpy(), cmap=SEQUENTIAL)
            else:
                mat = maps.rollout()[i] if rollout else w[layer, head]
                if keep is not None:
                    mat = mat[keep][:, keep]
                ax.imshow(mat.numpy(), cmap=SEQUENTIAL, vmin=0)
            labels = tokens is not None and len(tokens) <= 24 and maps.grid is None
            if labels and head == 0:
                ax.set_yticks(range(len(tokens)), tokens, fontsize=5)
            else:
                ax.set_yticks([])
            if labels and layer == layers - 1:
                ax.set_xticks(range(len(tokens)), tokens, fontsize=5, rotation=90)
            else:
                ax.set_xticks([])
            ax.set_title("rollout" if rollout else f"L{layer} H{head}", fontsize=7)
    fig.suptitle(f"attention per layer and head · {NOTE}", fontsize=8, x=0.02, ha="left")
    return fig


def attention_strips(tokens: List[str], maps, i: int, title: str = ""):
    """Heat strips over the words: one per layer (heads averaged, query row) and one for rollout."""
    rows = [(f"layer {layer}", maps.scores(layer=layer)[i]) for layer in range(maps.weights.shape[1])]
    rows.append(("rollout", maps.scores()[i]))
    keep = list(range(len(tokens)))
    if maps.mask is not None:
        keep = [j for j, real in enumerate(maps.mask[i].tolist()) if real] or keep
    fig, ax = plt.subplots(figsize=(min(12.0, 0.55 * len(keep) + 1.8), 0.42 * len(rows) + 0.7))
    cmap = plt.get_cmap(SEQUENTIAL)
    for r, (name, values) in enumerate(rows):
        v = values[keep].float()
        v = v / max(float(v.max()), 1e-12)
        y = len(rows) - r - 1
        ax.text(-0.6, y, name, ha="right", va="center", fontsize=7)
        for x, (j, value) in enumerate(zip(keep, v.tolist())):
            colour = cmap(value)
            light = 0.2126 * colour[0] + 0.7152 * colour[1] + 0.0722 * colour[2] < 0.5
            ax.text(x, y, tokens[j], ha="center", va="center", fontsize=7, color="white" if light else "black",
                    bbox={"facecolor": colour, "edgecolor": "none", "pad": 1.5})
    ax.set_xlim(-0.6, len(keep))
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_title((title + " · " if title else "") + NOTE, fontsize=8)
    ax.axis("off")
    return fig


def rollout_on_image(image: torch.Tensor, maps, i: int, title: str = ""):
    """Attention rollout of one image sample over its greyed input."""
    fig, ax = plt.subplots(figsize=(2.6, 2.9))
    mappable = _show_image(ax, image, maps.image_map()[i])
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or "attention rollout", fontsize=8)
    bar = fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.02)
    bar.ax.tick_params(labelsize=6)
    return fig


def rollout_values(maps) -> torch.Tensor:
    """Rollout per sample as the report's gallery shows it: ``N×H×W`` for images, ``N×T`` otherwise."""
    return (maps.image_map() if maps.grid is not None else maps.scores()).float()
