"""Training: loss and metric curves, probes over epochs, and the fixed samples' maps per epoch.

Built from a history that ``reports.Monitor`` wrote (``build_report(..., history=path)``,
``xaiscope report --history runs/exp1``); without one the section is left out.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np

from .. import figures_training as figs
from .._png import to_png
from ..history import TrainingHistory, read_history
from ..report import Check, Figure, ReportContext, Section, Table, Text

CONFIG_KEYS = {
    "strip_epochs": "at most this many epochs in the map strip (evenly spaced, the last one included; default 8)",
}
CHECK_KEYS = {
    "min_explanation_stability": "lowest acceptable rank correlation of the last epoch's maps with the epoch "
                                 "before (explanation drift)",
}


def applies(ctx: ReportContext) -> bool:
    """On by default only when a history was given."""
    return getattr(ctx, "history", None) is not None


def _fmt(v, pct: bool = False) -> str:
    if v is None:
        return "—"
    return f"{v:.1%}" if pct else f"{v:.4g}"


def _ranges(values: List[int]) -> str:
    """``[1, 2, 3, 7, 9, 10]`` → ``"1–3, 7, 9–10"``."""
    parts, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}–{v}")
            start = None
    return ", ".join(parts)


def _pick(n: int, most: int) -> List[int]:
    if n <= most:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, most)})


def history_section(h: TrainingHistory, config: Optional[dict] = None, checks_cfg: Optional[dict] = None,
                    dpi: int = 110) -> Section:
    """The section from a history read back; used by the report and by ``xaiscope monitor``."""
    cfg = config or {}
    meta, epochs = h.meta, h.epochs
    probes = h.probe_names()
    blocks: list = []
    last = epochs[-1] if epochs else {}
    lp = last.get("probes") or {}
    line = (f"{meta.get('model', 'model')} trained for {len(epochs)} epoch(s), {last.get('step', len(h.steps))} step(s); "
            f"probes: {', '.join(meta.get('probes') or []) or 'none'} on {meta.get('probe_size', 0)} fixed samples")
    if meta.get("explainer"):
        line += f"; explainer {meta['explainer']}"
    if meta.get("eps") is not None:
        line += f"; PGD-{meta.get('attack_steps')} at ε = {meta['eps']:.4g}"
    if meta.get("ood_detector"):
        line += f"; OOD detector {meta['ood_detector']}"
    blocks.append(Text(line + "."))
    probed = h.probed_epochs()
    if probes and epochs and len(probed) < len(epochs):
        every = meta.get("every")
        why = (f"every = 'auto': within a {float(meta.get('max_overhead') or 0.05):.0%} overhead budget, always the "
               "first and the last epoch" if every == "auto" else f"every {every} epoch(s)")
        blocks.append(Text(f"Probes ran at {len(probed)} of {len(epochs)} epochs ({why}): epoch(s) "
                           f"{_ranges(probed)}. Probe values and maps are drawn at those epochs only; the explanation "
                           "drift compares each probed epoch with the probed epoch before it."))
    if h.skipped:
        blocks.append(Text(f"{h.skipped} incomplete line(s) in the history were skipped (an interrupted run, or one "
                           "still writing).", kind="warning"))
    if not epochs:
        blocks.append(Text("No epoch has finished yet.", kind="warning"))
    total = sum(float(e.get("seconds") or 0) for e in epochs)
    probe_total = sum(float(e.get("probe_seconds") or 0) for e in epochs)
    cols = ["epoch", "loss", "lr", "grad norm", "seconds", "samples/s", "probe s"] + probes
    rows = [[e.get("epoch"), _fmt(e.get("loss")), _fmt(e.get("lr")), _fmt(e.get("grad_norm")), _fmt(e.get("seconds")),
             _fmt(e.get("samples_per_s")), _fmt(e.get("probe_seconds"))]
            + [_fmt((e.get("probes") or {}).get(p)) for p in probes] for e in epochs]
    if rows:
        blocks.append(Table(cols, rows, caption=f"Per epoch (probes took {probe_total:.1f} s of {total + probe_total:.1f} s)"))
    blocks.append(Figure("curves", to_png(figs.curves_figure(h.steps, epochs), dpi), "Loss, learning rate and gradient norm",
                         "loss, learning rate and gradient norm per step"))
    if probes:
        blocks.append(Figure("probes", to_png(figs.probes_figure(epochs), dpi), "Probes over epochs",
                             "probe values per epoch"))
    with_maps = [e for e in epochs if e.get("maps")]
    samples = h.samples()
    if with_maps and samples is not None:
        chosen = [with_maps[i] for i in _pick(len(with_maps), int(cfg.get("strip_epochs", 8)))]
        arrays = [h.array(e["maps"]) for e in chosen]
        kept = [(e, a) for e, a in zip(chosen, arrays) if a is not None]
        if kept:
            names = meta.get("class_names") or []
            labels = [f"label {names[t] if t < len(names) else t}" for t in (meta.get("sample_labels") or [])] or None
            fig = figs.map_strip_figure(samples, [a for _, a in kept], [int(e["epoch"]) for e, _ in kept],
                                        meta.get("input_kind", "image"), labels)
            rho = [_fmt(e["probes"].get("explanation_rank_correlation")) for e, _ in kept]
            blocks.append(Figure("maps", to_png(fig, dpi), f"{meta.get('explainer')} maps of the fixed samples per epoch "
                                 f"(rank correlation to the probed epoch before: {', '.join(rho)})",
                                 "explanation maps of fixed samples over epochs"))
    checks = []
    if lp.get("accuracy") is not None:
        checks.append(Check("final probe accuracy", lp["accuracy"], "info", None,
                            f"training probe accuracy {lp['accuracy']:.1%} after epoch {last.get('epoch')}"))
    limit = (checks_cfg or {}).get("min_explanation_stability")
    rho = lp.get("explanation_rank_correlation")
    if limit is not None and rho is not None:
        ok = rho >= float(limit)
        checks.append(Check("explanation stability", rho, "pass" if ok else "fail", float(limit),
                            f"explanation rank correlation to the epoch before {rho:.3f} "
                            f"({'meets' if ok else 'misses'} ≥ {float(limit):.3g})"))
    summary = {"folder": str(h.folder), "epochs": len(epochs), "steps": len(h.steps), "skipped_lines": h.skipped,
               "seconds": total, "probe_seconds": probe_total, "probes": probes, "probed_epochs": probed, "meta": meta,
               "per_epoch": [{k: v for k, v in e.items() if k != "type"} for e in epochs]}
    return Section("training", "Training", blocks=blocks, summary=summary, checks=checks)


def build(ctx: ReportContext) -> Section:
    path = getattr(ctx, "history", None)
    if path is None:
        return Section("training", "Training", blocks=[Text("No training history was given (history=...).")])
    return history_section(read_history(path), ctx.config.get("training", {}), ctx.config.get("checks", {}), ctx.dpi)


def history_report(history, out=None, *, config: Optional[dict] = None, dpi: int = 110):
    """A report holding only the Training section of a history (``xaiscope monitor runs/exp1``).

    Args:
        history: the folder ``reports.Monitor`` wrote (readable while training still runs).
        out: folder for ``index.html``, ``figures/`` and ``summary.json``; it must be new, empty or
            an earlier report (never a folder of other files). ``None`` builds without saving.

    Raises:
        EmptyDataError: no history there. InputShapeError: ``out`` holds files that are not a report.
    """
    import datetime as _dt
    from pathlib import Path

    from explain.errors import InputShapeError

    from ..build import Report
    h = read_history(history)
    cfg = config or {}
    section = history_section(h, cfg.get("training", {}), cfg.get("checks", {}), dpi)
    meta = {"xaiscope_version": h.meta.get("xaiscope_version", ""), "model": str(h.meta.get("model", "model")),
            "input_kind": h.meta.get("input_kind"), "num_classes": len(h.meta.get("class_names") or []) or None,
            "class_names": h.meta.get("class_names") or [], "samples": max(1, int(h.meta.get("probe_size") or 1)),
            "seed": int(h.meta.get("seed") or 0),
            "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "device": "",
            "history": str(h.folder), "config": cfg}
    report = Report(f"{h.meta.get('model', 'model')} — training run", [section], meta)
    if out is not None:
        target = Path(out)
        if target.is_dir() and any(target.iterdir()) and not (target / "summary.json").exists():
            raise InputShapeError(f"{target} holds files that are not an xaiscope report; choose a new folder with --out")
        report.save(target)
    return report
