"""Result → matplotlib figure. Computing never happens here; figures never ``show``.

Signed attributions use one symmetric diverging scale per row (``RdBu_r``: red = evidence for the
class, blue = against; colour-blind safe), magnitudes a sequential one (``viridis``).
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
import torch

from ._png import new_figure, plt

DIVERGING = "RdBu_r"
SEQUENTIAL = "viridis"


def symmetric_limit(maps: Sequence[torch.Tensor]) -> float:
    """The largest absolute value over ``maps`` (robust: 99.5th percentile), at least a tiny epsilon."""
    vals = torch.cat([m.detach().abs().flatten().float() for m in maps]) if maps else torch.zeros(1)
    lim = float(torch.quantile(vals, 0.995)) if vals.numel() > 1 else float(vals.max())
    return max(lim, 1e-12)


def normalise(m: torch.Tensor) -> torch.Tensor:
    """Scale a map by its own robust largest ``|value|`` to [-1, 1], so methods in different units
    (gradients, score drops, surrogate weights) share one colour scale while keeping their sign."""
    return (m.detach().float() / symmetric_limit([m])).clamp(-1, 1)


def _grey(image: torch.Tensor) -> np.ndarray:
    img = image.detach().float().cpu()
    return img.mean(0).numpy() if img.dim() == 3 else img.numpy()


def image_row(image: torch.Tensor, maps: List[torch.Tensor], titles: List[str], input_title: str,
              notes: Optional[List[str]] = None, cell: float = 1.9):
    """One gallery row: the input, then each attribution over the greyed input on a shared signed scale."""
    n = len(maps) + 1
    fig, axes = plt.subplots(1, n, figsize=(cell * n + 0.6, cell + 0.55), squeeze=False)
    axes = axes[0]
    img = image.detach().float().cpu()
    shown = img.permute(1, 2, 0).numpy() if img.shape[0] == 3 else img[0].numpy()
    axes[0].imshow(np.clip(shown, 0, 1), cmap=None if img.shape[0] == 3 else "gray", vmin=0, vmax=1)
    axes[0].set_title("input", fontsize=8)
    fig.suptitle(input_title, fontsize=8, x=0.02, ha="left")
    lim = symmetric_limit(maps)
    mappable = None
    grey = _grey(image)
    for ax, m, title, note in zip(axes[1:], maps, titles, notes or [""] * len(maps)):
        ax.imshow(grey, cmap="gray", vmin=0, vmax=1, alpha=0.55)
        mappable = ax.imshow(m.detach().float().cpu().numpy(), cmap=DIVERGING, vmin=-lim, vmax=lim, alpha=0.75)
        ax.set_title(title, fontsize=8)
        if note:
            ax.set_xlabel(note, fontsize=7)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if mappable is not None:
        bar = fig.colorbar(mappable, ax=list(axes[1:]), fraction=0.025, pad=0.02)
        bar.ax.tick_params(labelsize=6)
        bar.set_label("attribution (− against · + for)", fontsize=6)
    return fig


def series_row(series: torch.Tensor, maps: List[torch.Tensor], titles: List[str], input_title: str,
               notes: Optional[List[str]] = None):
    """The signal (``T×C``) on top, each method's attribution shaded beneath on a shared signed scale."""
    k = len(maps)
    fig, axes = plt.subplots(k + 1, 1, figsize=(7.0, 1.3 + 0.75 * k), sharex=True,
                             gridspec_kw={"height_ratios": [2.2] + [1] * k}, squeeze=False)
    axes = axes[:, 0]
    s = series.detach().float().cpu().numpy()
    t = np.arange(s.shape[0])
    for c in range(s.shape[1]):
        axes[0].plot(t, s[:, c], lw=1.0)
    axes[0].set_title(input_title, fontsize=8)
    axes[0].tick_params(labelsize=6)
    lim = symmetric_limit(maps)
    for ax, m, title, note in zip(axes[1:], maps, titles, notes or [""] * k):
        v = m.detach().float().cpu().numpy()[None, :]
        ax.imshow(v, aspect="auto", cmap=DIVERGING, vmin=-lim, vmax=lim, extent=(-0.5, len(t) - 0.5, 0, 1))
        ax.plot(t, 0.5 + 0.45 * v[0] / lim, color="black", lw=0.6)
        ax.set_yticks([])
        ax.set_ylabel(title, fontsize=7, rotation=0, ha="right", va="center")
        if note:
            ax.text(1.0, 0.5, " " + note, transform=ax.transAxes, fontsize=6, va="center")
        ax.tick_params(labelsize=6)
    axes[-1].set_xlabel("time step", fontsize=7)
    return fig


def token_strip(tokens: List[str], maps: List[torch.Tensor], titles: List[str], input_title: str):
    """Words with a signed background colour per method (a PNG twin of the HTML strip)."""
    k = len(maps)
    fig, ax = new_figure(min(12.0, 0.55 * len(tokens) + 1.5), 0.45 * k + 0.6)
    lim = symmetric_limit(maps)
    cmap = plt.get_cmap(DIVERGING)
    for r, (m, title) in enumerate(zip(maps, titles)):
        y = k - r - 1
        ax.text(-0.5, y, title, ha="right", va="center", fontsize=7)
        for i, (tok, v) in enumerate(zip(tokens, m.tolist())):
            ax.text(i, y, tok, ha="center", va="center", fontsize=7,
                    bbox={"facecolor": cmap(0.5 + 0.5 * v / lim), "edgecolor": "none", "pad": 1.5})
    ax.set_xlim(-0.6, len(tokens))
    ax.set_ylim(-0.7, k - 0.3)
    ax.set_title(input_title, fontsize=8)
    ax.axis("off")
    return fig


def token_colour(value: float, limit: float) -> str:
    """CSS for a token's signed attribution: diverging background, text dark or light for contrast."""
    r, g, b, _ = plt.get_cmap(DIVERGING)(0.5 + 0.5 * max(-1.0, min(1.0, value / limit)))
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    text = "#ffffff" if luminance < 0.5 else "#1d232b"
    return f"background:rgb({int(r * 255)},{int(g * 255)},{int(b * 255)});color:{text}"


def confusion_figure(matrix: np.ndarray, class_names: List[str], note: Optional[str] = None):
    """Counts and row-normalised confusion matrices side by side.

    ``matrix`` may be a reduced view (the classes that occur, or the most confused) of a larger
    matrix: ``class_names`` then names its rows and ``note`` (e.g. "3 of 10,000 classes: those that
    occur") is printed above the plots so the figure never passes for the whole matrix.
    """
    k = len(class_names)
    size = min(4.5, 1.4 + 0.32 * k)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 0.8, size))
    norm = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    for ax, data, title, fmt in ((axes[0], matrix, "counts", "d"), (axes[1], norm, "row-normalised (recall)", ".2f")):
        ax.imshow(data, cmap=SEQUENTIAL)
        ax.set_title(title, fontsize=9)
        ax.set_xticks(range(k), class_names, rotation=90 if k > 4 else 0, fontsize=7)
        ax.set_yticks(range(k), class_names, fontsize=7)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        if k <= 12:
            hi = data.max() if data.size else 1
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, format(data[i, j], fmt), ha="center", va="center", fontsize=6,
                            color="black" if data[i, j] > 0.6 * hi else "white")
    if note:
        fig.suptitle(note, fontsize=8)
    fig.tight_layout()
    return fig


def reliability_figure(bin_conf: np.ndarray, bin_acc: np.ndarray, bin_count: np.ndarray, ece: float):
    """Reliability diagram: accuracy per confidence bin against the diagonal, with the ECE."""
    fig, ax = new_figure(4.2, 3.6)
    edges = np.linspace(0, 1, len(bin_acc) + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    filled = bin_count > 0
    ax.bar(centres[filled], bin_acc[filled], width=1 / len(bin_acc), edgecolor="black", color="#4c72b0",
           alpha=0.8, label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.set_xlabel("confidence", fontsize=8)
    ax.set_ylabel("accuracy", fontsize=8)
    ax.set_title(f"reliability (ECE = {ece:.3f})", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    return fig
