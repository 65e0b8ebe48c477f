"""Out-of-distribution: metrics per detector, ROC curves, score histograms with the threshold."""

from __future__ import annotations

import torch

import robustness

from .. import figures_ood as figs
from .._png import to_png
from ..report import Check, Figure, ReportContext, Section, Table, Text
from ._adapt import adapted, skipped

MIN_SAMPLES = 4  # two to fit the detectors, two to test them

DEFAULT_METHODS = ["msp", "maxlogit", "energy", "mahalanobis", "knn", "vim"]

CONFIG_KEYS: dict[str, str] = {
    "methods": "OOD detectors to evaluate (default: msp, maxlogit, energy, mahalanobis, knn, vim)",
    "params": "per-detector constructor parameters, {detector: {name: value}}",
    "max_samples": "in-distribution and OOD samples used (default 256)",
    "fit_fraction": "share of each class of the in-distribution data that fits the detectors (default 0.5)",
    "min_auroc": "fail when the best detector's AUROC is below this",
    "max_fpr95": "fail when the best detector's FPR at 95% TPR is above this",
}
CHECK_KEYS: dict[str, str] = {"min_auroc": "fail when the best detector's AUROC is below this",
              "max_fpr95": "fail when the best detector's FPR at 95% TPR is above this"}


def synthetic_ood(x: torch.Tensor, kind: str, seed: int, wrapper=None) -> tuple:
    """A stand-in OOD set when the user gives none: noise images, random token ids, time-shuffled series.

    Token ids are drawn among the words seen in ``x`` (never the wrapper's padding, unknown or
    special ids), and padding stays where it was.
    """
    gen = torch.Generator().manual_seed(seed)
    if kind == "image":
        return torch.rand(x.shape, generator=gen), "uniform-noise images"
    if kind == "tokens":
        pad = 0 if wrapper is None else wrapper.pad_id
        unk = 1 if wrapper is None else wrapper.unk_id
        special = torch.tensor(sorted({pad, *(() if wrapper is None else wrapper.special_ids)}
                                      | ({unk} if unk is not None else set())), dtype=x.dtype)
        words = torch.unique(x[~torch.isin(x, special)])
        if len(words) == 0:
            words = torch.tensor([int(special.max()) + 1], dtype=x.dtype)
        ids = words[torch.randint(0, len(words), x.shape, generator=gen)]
        return torch.where(x == pad, x, ids), "random word ids at the same lengths"
    perm = torch.stack([torch.randperm(x.shape[1], generator=gen) for _ in range(len(x))])
    return torch.gather(x, 1, perm[:, :, None].expand_as(x)), "series with their time steps shuffled"


def _ranges(idx: torch.Tensor, limit: int = 12) -> str:
    """Sorted indices as compact ranges: ``0–3, 7, 9–12``, cut after ``limit`` runs."""
    runs, vals = [], idx.tolist()
    for v in vals:
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    text = ", ".join(f"{a}" if a == b else f"{a}–{b}" for a, b in runs[:limit])
    return text + (f", … ({len(runs) - limit} more runs)" if len(runs) > limit else "")


def build(ctx: ReportContext) -> Section:
    cfg = ctx.config.get("ood", {})
    m = ctx.wrapper
    n = int(cfg.get("max_samples", 256))
    x, y = ctx.x[:n], None if ctx.y is None else ctx.y[:n]
    blocks: list = []
    if ctx.ood_x is None:
        ood, what = synthetic_ood(x, m.input_kind, ctx.seed, m)
        blocks.append(Text(f"No out-of-distribution data was given; as a stand-in the detectors face {what}. "
                           "Pass ood_data (or --ood-data) for a meaningful test.", kind="warning"))
    else:
        ood = ctx.ood_x[:n]
    methods = list(cfg.get("methods", DEFAULT_METHODS))
    fraction = float(cfg.get("fit_fraction", 0.5))
    if len(x) < MIN_SAMPLES:
        return skipped("ood", "Out-of-distribution",
                       f"{len(x)} sample(s) were kept; detecting out-of-distribution inputs needs at least "
                       f"{MIN_SAMPLES} (some to fit the detectors on, the others to test them)",
                       {"synthetic_ood": ctx.ood_x is None})
    strata = y if y is not None else m.predict(x).cpu()
    fit_idx, _ = robustness.ood.split_fit_test(strata, fraction, ctx.seed)
    if len(fit_idx) == 0:
        return skipped("ood", "Out-of-distribution",
                       f"each of the {len(x)} samples is the only one of its class, so the class-stratified split "
                       "leaves none to fit the detectors on", {"synthetic_ood": ctx.ood_x is None})
    notes: dict = {}
    params = {k: dict(v) for k, v in (cfg.get("params") or {}).items()}
    if "knn" in methods:
        k = int(params.get("knn", {}).get("k", robustness.ood.DETECTOR_SPECS["knn"].defaults.get("k", 10)))
        if k > len(fit_idx):
            params.setdefault("knn", {})["k"] = len(fit_idx)
            adapted(notes, blocks, f"knn uses k={len(fit_idx)} (the distance to the farthest fitting sample) instead of k={k}, "
                                   f"as only {len(fit_idx)} sample(s) fit the detectors")
    ev = robustness.evaluate_ood(m, (x, y), ood, methods=methods, params=params or None, seed=ctx.seed,
                                 fit_fraction=fraction)
    blocks.append(Text(f"Detectors fitted on {ev.n_fit} in-distribution samples, tested on {ev.n_in} in-distribution "
                       f"and {ev.n_out} out-of-distribution samples. Scores: higher = more out-of-distribution."))
    if ev.fit_indices is not None:
        blocks.append(Text(f"Split: a {ev.split} with seed {ev.seed}, so every class is in both parts. Fitted on "
                           f"samples {_ranges(ev.fit_indices)}; tested on samples {_ranges(ev.test_indices)} "
                           "(indices into the data; full lists in summary.json)."))
    rows = [[k, f"{r.auroc:.3f}", f"{r.aupr_in:.3f}", f"{r.aupr_out:.3f}", f"{r.fpr95:.1%}", f"{r.threshold:.4g}",
             f"{r.seconds:.2f}"] for k, r in ev.methods.items()]
    blocks.append(Table(["detector", "AUROC", "AUPR-In", "AUPR-Out", "FPR@95%TPR", "threshold", "seconds"], rows,
                        caption="Detection metrics (click a header to sort)"))
    for name, err in ev.errors.items():
        blocks.append(Text(f"{name} could not run: {err}", kind="warning"))
    if ev.methods:
        blocks.append(Figure("roc", to_png(figs.roc_figure(ev), ctx.dpi), "ROC curves", "ROC curve per detector"))
        blocks.append(Figure("histograms", to_png(figs.histograms(ev), ctx.dpi),
                             "Score histograms with the calibrated threshold", "in vs out score histograms"))
    checks = []
    best = ev.best
    if best is not None:
        checks.append(Check("best OOD AUROC", best.auroc, "info", None, f"best OOD AUROC {best.auroc:.3f} ({best.name})"))
        for key, attr, higher in (("min_auroc", "auroc", True), ("max_fpr95", "fpr95", False)):
            limit = cfg.get(key, ctx.config.get("checks", {}).get(key))
            if limit is None:
                continue
            value = getattr(best, attr)
            ok = value >= float(limit) if higher else value <= float(limit)
            checks.append(Check(f"OOD {attr}", value, "pass" if ok else "fail", float(limit),
                                f"OOD {attr} {value:.3f} ({best.name}) {'meets' if ok else 'misses'} "
                                f"{'≥' if higher else '≤'} {float(limit):.3g}"))
    summary = {**ev.to_dict(), "synthetic_ood": ctx.ood_x is None, **notes}
    return Section("ood", "Out-of-distribution", blocks=blocks, summary=summary, checks=checks)
