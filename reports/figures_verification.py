"""Verification results → figures: certified vs empirical robust accuracy over ε."""

from __future__ import annotations

from ._png import new_figure


def certified_curve(result, unit: str):
    """Certified (solid) and empirical robust (dashed) accuracy over ε; the band between is undecided."""
    fig, ax = new_figure(5.2, 3.6)
    eps, cert, emp = list(result.eps), list(result.certified), list(result.empirical)
    ax.fill_between(eps, cert, emp, color="#bbbbbb", alpha=0.6, hatch="//", label="unknown (neither proved nor broken)")
    ax.plot(eps, emp, marker="s", ls="--", color="#d55e00", label="empirical robust accuracy (attack)")
    ax.plot(eps, cert, marker="o", color="#0072b2", label=f"certified accuracy ({result.method})")
    ax.axhline(result.clean_accuracy, ls=":", color="gray", label="clean accuracy")
    ax.set_xlabel(f"budget ε ({unit})", fontsize=8)
    ax.set_ylabel("accuracy", fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=6)
    ax.set_title("certified vs empirical robust accuracy", fontsize=9)
    return fig
