"""Matplotlib figures to PNG bytes without a display (Agg), never ``plt.show``."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402


def to_png(fig: "matplotlib.figure.Figure", dpi: int = 110) -> bytes:
    """Render ``fig`` to PNG bytes and close it.

    Inside a process group only rank 0 writes the report, so the other ranks skip the rendering
    and return no bytes.
    """
    from robustness.distributed import is_main

    if not is_main():
        plt.close(fig)
        return b""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def new_figure(width: float = 6.0, height: float = 4.0):
    """A fresh ``(Figure, Axes)`` pair not attached to any GUI."""
    fig, ax = plt.subplots(figsize=(width, height))
    return fig, ax
