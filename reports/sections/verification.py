"""Certified robustness: certified vs empirical robust accuracy over ε, verdicts, counterexamples, bound widths."""

from __future__ import annotations

import time
from types import SimpleNamespace

import torch

import robustness
from explain.errors import UnsupportedModelError

from .. import figures_robustness as rfigs
from .. import figures_verification as figs
from .._png import to_png
from ..report import Check, Figure, ReportContext, Section, Table, Text

CONFIG_TABLE = "verify"  # the table this section reads: [verify]
CONFIG_KEYS = {
    "eps": "budgets to certify, in natural units (pixels in [0, 1], channel std, embedding units)",
    "method": "bound method: 'ibp' (default: fast, loose), 'crown' or 'alpha-crown' (tighter, slower on big CNNs)",
    "samples": "how many samples to verify (default 8)",
    "attack_steps": "steps of the PGD/APGD attacks that look for counterexamples",
    "intermediate": "hidden-layer bounds for crown / alpha-crown: 'crown' (default) or 'ibp' (CROWN-IBP: faster, looser)",
}
CHECK_KEYS = {
    "min_certified_accuracy": "lowest acceptable certified accuracy at the largest ε",
}

DEFAULT_EPS = {"image": [0, 1 / 255, 2 / 255], "series": [0, 0.01, 0.02], "tokens": [0, 0.01, 0.02]}
UNITS = {"image": "pixels in [0, 1]", "series": "channel std", "tokens": "embedding units"}


def _fmt(e: float, kind: str) -> str:
    return f"{e * 255:.3g}/255" if kind == "image" and e > 0 else f"{e:g}"


def build(ctx: ReportContext) -> Section:
    cfg = ctx.config.get("verify", {})
    m, kind = ctx.wrapper, ctx.wrapper.input_kind
    title = "Certified robustness"
    if ctx.y is None:
        return Section("verification", title, blocks=[Text("No labels were given, so nothing can be verified.")])
    n = int(cfg.get("samples", 8))
    x, y = ctx.x[:n], ctx.y[:n]
    eps = sorted(float(e) for e in cfg.get("eps", DEFAULT_EPS[kind]))
    method = str(cfg.get("method", "ibp"))
    steps = int(cfg.get("attack_steps", 20))
    extra = {"intermediate": str(cfg["intermediate"])} if "intermediate" in cfg else {}
    try:
        ca = robustness.certified_accuracy(m, (x, y), eps=eps, method=method, seed=ctx.seed, attack_steps=steps,
                                           **extra)
    except UnsupportedModelError as error:
        return Section("verification", title, blocks=[Text(f"Skipped: this model cannot be bounded — {error}",
                                                           kind="warning")],
                       summary={"supported": False, "reason": str(error)})
    blocks: list = [Text(f"{ca.n} samples; budgets in {UNITS[kind]}; bounds by {method}. A sample is verified when "
                         "the certified margin to every other class is positive, violated when an attack (PGD, then "
                         "APGD) finds an input in the ball that a plain forward pass misclassifies, unknown otherwise.")]
    blocks.append(Figure("certified-accuracy", to_png(figs.certified_curve(ca, UNITS[kind]), ctx.dpi),
                         "Certified vs empirical robust accuracy (shaded: unknown)",
                         "certified and empirical robust accuracy against the budget"))
    rows = [[_fmt(e, kind), f"{c:.0%}", f"{a:.0%}", k["verified"], k["violated"], k["unknown"]]
            for e, c, a, k in zip(ca.eps, ca.certified, ca.empirical, ca.counts)]
    blocks.append(Table(["ε", "certified", "empirical robust", "verified", "violated", "unknown"], rows,
                        caption=f"Verdicts per budget (clean accuracy {ca.clean_accuracy:.0%})"))
    summary = {"supported": True, **ca.to_dict(), "units": UNITS[kind]}
    blocks += _counterexamples(ctx, ca, kind)
    widths, wsum = _widths(m, x, y, eps[-1], method)
    blocks.append(Table(["method", "mean margin-bound width", "seconds"], widths,
                        caption=f"Bound widths per method at ε = {_fmt(eps[-1], kind)} ({min(len(x), 2)} samples)"))
    summary["bound_widths"] = wsum
    largest, cert = eps[-1], ca.certified[-1]
    threshold = cfg.get("min_certified_accuracy", ctx.config.get("checks", {}).get("min_certified_accuracy"))
    text = f"certified accuracy @ ε={_fmt(largest, kind)}: {cert:.0%}"
    if threshold is None:
        check = Check("certified accuracy", cert, "info", None, text)
    else:
        ok = cert >= float(threshold)
        check = Check("certified accuracy", cert, "pass" if ok else "fail", float(threshold),
                      f"{text} {'≥' if ok else '<'} {float(threshold):.0%}")
    return Section("verification", title, blocks=blocks, summary=summary, checks=[check])


def _counterexamples(ctx, ca, kind) -> list:
    v = next((r for r in reversed(ca.verifications) if r.violated_indices), None)
    if v is None:
        return [Text("No counterexample was found at any budget.")]
    idx = [i for i in v.violated_indices if v.clean_pred[i] == v.labels[i]][:3] or v.violated_indices[:3]
    names = ctx.wrapper.class_names
    if kind == "tokens":
        rows = [[i, names[int(v.labels[i])], names[int(v.adv_pred[i])], f"{float(v.adv_margin[i]):.3g}"] for i in idx]
        return [Table(["sample", "label", "counterexample predicted", "margin"], rows,
                      caption=f"Counterexamples in embedding space at ε = {v.eps:g}")]
    shown = SimpleNamespace(inputs=v.inputs, adversarial=v.counterexamples, clean_pred=v.clean_pred, adv_pred=v.adv_pred)
    fig = rfigs.adversarial_images(shown, names, idx) if kind == "image" else rfigs.adversarial_series(shown, names, idx)
    return [Figure("counterexamples", to_png(fig, ctx.dpi), f"Counterexamples at ε = {_fmt(v.eps, kind)} "
                   "(re-checked by a forward pass)", "clean input, perturbation and counterexample with predictions")]


def _widths(m, x, y, eps, method) -> tuple:
    """IBP and every method up to the configured one (CROWN and α-CROWN cost more on big CNNs)."""
    rows, out = [], {}
    xs, ys = x[:2], y[:2]
    order = ("ibp", "crown", "alpha-crown")
    for meth in order[: order.index(method) + 1] if method in order else order[:1]:
        t = time.perf_counter()
        b = robustness.output_bounds(m, xs, eps, meth, spec="margin", labels=ys)
        keep = torch.ones_like(b.lower, dtype=torch.bool)
        keep[torch.arange(len(ys)), ys] = False
        w = float(b.width[keep].mean())
        sec = time.perf_counter() - t
        rows.append([meth, f"{w:.4g}", f"{sec:.2f}"])
        out[meth] = {"mean_width": w, "seconds": sec}
    return rows, out
