"""Can these maps be trusted? One row per explanation method: model-randomisation verdict,
deletion/insertion AUC against random order, stability and the method's own quality numbers, each
with a pass/warn chip and a plain reading; a cascading-randomisation strip and the curves.

The computation lives in :func:`trust_results` and is cached in ``ctx.cache["trust"]``, so the
explanations gallery can mark methods that failed a check without running anything twice; a
failure here never breaks the gallery (it simply shows no marks).
"""

from __future__ import annotations

import time
from typing import Dict, List

import torch

import explain
from explain.errors import InputValueError
from explain.registry import get_explainer
from robustness import distributed as dist

from .. import figures_trust as figs
from .._png import to_png
from ._adapt import adapted
from ..report import Check, Figure, ReportContext, Section, Table, Text
from .explanations import DEFAULT_METHODS

CONFIG_KEYS: Dict[str, str] = {
    "methods": "explainers to judge (default: the [explanations] methods)",
    "samples": "samples the metrics run on (default 16; 8 in quick mode)",
    "quick": "cheaper settings for large models: fewer samples, one randomisation step, no sensitivity",
    "steps": "points on the deletion/insertion curves (default 20)",
    "n_random": "random orders per sample for the deletion/insertion comparison (default 2, ≥ 1; one order "
                "serves both curves, so 2 cost 78 model evaluations per sample at 20 steps; 1 saves 19 but widens "
                "the bootstrap interval by 15-25 %)",
    "randomization_steps": "cascade steps evaluated, top layer to all layers (default 2; steps before the last "
                           "run on the strip's one sample, as the verdict reads the last step only; 1 in quick mode)",
    "sensitivity_perturbations": "noise draws for max-sensitivity (default 3; 0 turns it off)",
    "sensitivity_radius": "half-width of the uniform noise for max-sensitivity (default 0.02)",
    "params": "per-method explainer parameters (default: those of [explanations])",
}
CHECK_KEYS: Dict[str, str] = {
    "require_sanity": "fail the report when a method fails the model-randomisation test",
    "min_deletion_gain": "smallest acceptable deletion gain over random order (AUC units, e.g. 0.05)",
}

GRADIENT_METHODS = ("gradcam", "integrated_gradients", "saliency", "smoothgrad")


def _settings(ctx: ReportContext) -> dict:
    cfg = dict(ctx.config.get("trust", {}))
    quick = bool(cfg.get("quick", False))
    exp = ctx.config.get("explanations", {})
    if int(cfg.get("n_random", 1)) < 1:
        raise InputValueError(f"[trust] n_random: expected at least 1 random order (the deletion verdict compares "
                              f"with it), got {cfg['n_random']}; leave it out for the default 2")
    return {
        "methods": list(cfg.get("methods", exp.get("methods", DEFAULT_METHODS))),
        "samples": int(cfg.get("samples", 8 if quick else 16)),
        "quick": quick,
        "steps": int(cfg.get("steps", 10 if quick else 20)),
        "n_random": int(cfg.get("n_random", 1 if quick else 2)),
        "randomization_steps": cfg.get("randomization_steps", 1 if quick else None),
        "sensitivity_perturbations": int(cfg.get("sensitivity_perturbations", 0 if quick else 3)),
        "sensitivity_radius": float(cfg.get("sensitivity_radius", 0.02)),
        "params": {**exp.get("params", {}), **cfg.get("params", {})},
    }


def trust_results(ctx: ReportContext) -> dict:
    """Compute (once per report) every trust metric for every configured method.

    Returns ``{"settings", "x", "methods": {name: {...}}, "failures", "agreement"}``; re-raises a
    cached exception so the caller that did not compute it still sees the failure.
    """
    cached = ctx.cache.get("trust")
    if isinstance(cached, BaseException):
        raise cached
    if cached is not None:
        return cached
    try:
        out = _compute(ctx)
    except Exception as error:  # noqa: BLE001 - cached so the trust section reports it as its own failure
        ctx.cache["trust"] = error
        raise
    ctx.cache["trust"] = out
    return out


def _compute(ctx: ReportContext) -> dict:
    """Every configured method's row; inside a process group the methods are shared out across the
    ranks (method ``i`` on rank ``i % W``) and the rows gathered, so every rank holds all of them."""
    s = _settings(ctx)
    m = ctx.wrapper
    x = ctx.x[: s["samples"]]
    target = m.predict(x)
    rank, world = dist.rank_and_world()
    local = {name: _judge(ctx, s, name, x, target) for name in s["methods"][rank::world]}
    judged: dict = {}
    for part in dist.gather_objects(local):
        judged.update(part)
    rows, failures, attrs = {}, {}, {}
    for name in s["methods"]:
        if isinstance(judged[name], str):
            failures[name] = judged[name]
        else:
            rows[name], attrs[name] = judged[name]
    agreement = explain.metrics.agreement(attrs) if len(attrs) >= 2 else None
    return {"settings": s, "x": x, "methods": rows, "failures": failures, "agreement": agreement}


def _judge(ctx: ReportContext, s: dict, name: str, x: torch.Tensor, target: torch.Tensor):
    """``(row, attribution)`` of one method, or its error as text (one failing method must not hide the others)."""
    m = ctx.wrapper
    masks = ctx.cache.get("masks")
    p = dict(s["params"].get(name, {}))
    try:
        a = get_explainer(name)(m, x, target, **p)
        row = {"explanation_seconds": a.seconds, "quality": {q: float(v.float().nanmean()) for q, v in a.quality.items()}}
        start = time.perf_counter()
        seeded = "seed" in a.params
        steps = s["randomization_steps"] if s["randomization_steps"] is not None else 2
        row["randomization"] = explain.metrics.randomization(  # the strip's intermediate steps: sample 0 only
            m, x, name, attribution=a, params=p, steps=int(steps), seed=ctx.seed, strip_samples=1)
        row["curves"] = explain.metrics.deletion_insertion(m, x, a, params=p, steps=s["steps"],
                                                           n_random=s["n_random"], seed=ctx.seed)
        if m.input_kind != "tokens" and s["sensitivity_perturbations"] > 0 and (
                name in GRADIENT_METHODS or not s["quick"]) and not seeded:
            row["sensitivity"] = explain.metrics.sensitivity(
                m, x, name, attribution=a, params=p, n_perturb=s["sensitivity_perturbations"],
                radius=s["sensitivity_radius"], seed=ctx.seed)
        if masks is not None:
            mk = torch.as_tensor(masks)[: len(x)]
            row["pointing_game"] = explain.metrics.pointing_game(a, mk)
            row["relevance_mass"] = explain.metrics.relevance_mass(a, mk)
        row["metric_seconds"] = time.perf_counter() - start
        return row, a
    except Exception as error:  # noqa: BLE001 - reported in the table in place of the row
        return f"{type(error).__name__}: {error}"


def failed_checks(ctx: ReportContext) -> Dict[str, List[str]]:
    """Method → names of the trust checks it failed (for the gallery's marks); ``{}`` if unavailable."""
    if "trust" not in ctx.cache.get("sections", ("trust",)):
        return {}
    try:
        res = trust_results(ctx)
    except Exception:  # noqa: BLE001 - the trust section shows its own failure; the gallery just has no marks
        return {}
    min_gain = ctx.config.get("checks", {}).get("min_deletion_gain")
    out: Dict[str, List[str]] = {}
    for name, row in res["methods"].items():
        bad = []
        if row["randomization"].verdict == "fails":
            bad.append("randomisation")
        dele = row["curves"]["deletion"]
        if dele.verdict != "better than random" or (min_gain is not None and dele.details["gain_aggregate"] < float(min_gain)):
            bad.append("deletion")
        if bad:
            out[name] = bad
    return out


def _chip(ok: bool, text: str) -> str:
    return f"{'PASS' if ok else 'WARN'} · {text}"


def build(ctx: ReportContext) -> Section:
    res = trust_results(ctx)
    s, methods = res["settings"], res["methods"]
    checks_cfg = ctx.config.get("checks", {})
    require, min_gain = bool(checks_cfg.get("require_sanity", False)), checks_cfg.get("min_deletion_gain")
    blocks: list = [Text(
        f"Each method is judged on {len(res['x'])} samples. Randomisation: the maps are recomputed after the model's "
        "layers are re-initialised top first; a trustworthy map changes (rank correlation falls clearly below what two "
        "runs of the method give). Deletion: removing the features a map ranks first should hurt the prediction "
        "sooner than removing them in random order. Label randomisation needs retraining and is not run.")]
    for name, err in res["failures"].items():
        blocks.append(Text(f"{name}: trust measures could not be computed: {err}", kind="warning"))
    rows, checks, summary = [], [], {"settings": {k: v for k, v in s.items() if k != "params"}, "methods": {},
                                     "failures": res["failures"]}
    if len(res["x"]) < s["samples"]:
        adapted(summary, blocks, f"each method is judged on {len(res['x'])} sample(s) instead of {s['samples']}, "
                                 "as only these were kept; intervals over so few samples are wide")
    for name, row in methods.items():
        r, dele, ins = row["randomization"], row["curves"]["deletion"], row["curves"]["insertion"]
        base = float(r.details["baseline"].mean())
        rand_ok = r.verdict == "passes"
        twice = "twice" if base >= 1 - 1e-6 else "between seeds"
        rand_txt = _chip(rand_ok, f"ρ {r.aggregate:.2f} vs {base:.2f} {twice} — "
                         + ("the map depends on the learnt weights" if rand_ok else "the map barely changes when the weights are destroyed"))
        gain = dele.details["gain_aggregate"]
        del_ok = dele.verdict == "better than random" and (min_gain is None or gain >= float(min_gain))
        del_txt = _chip(del_ok, f"AUC {dele.aggregate:.2f} vs random {dele.details['random_aggregate']:.2f} "
                        f"(gain {gain:+.2f}, 95% CI {dele.interval[0]:+.2f}…{dele.interval[1]:+.2f})")
        ins_ok = ins.verdict == "better than random"
        ins_txt = _chip(ins_ok, f"AUC {ins.aggregate:.2f} vs random {ins.details['random_aggregate']:.2f}")
        if "sensitivity" in row:
            sens = row["sensitivity"]
            stab_txt = _chip(sens.aggregate < 0.5, f"max-sensitivity {sens.aggregate:.2f} (map change under ±{s['sensitivity_radius']:g} noise)")
        elif r.details["baseline_kind"].startswith("second run"):
            stab_txt = _chip(base >= 0.5, f"seed agreement ρ {base:.2f}")
        else:
            stab_txt = "—"
        quality = ", ".join(f"{q} {v:.3f}" for q, v in row["quality"].items()) or "—"
        if "pointing_game" in row:
            quality += f"; pointing game {row['pointing_game'].aggregate:.0%}, mass in mask {row['relevance_mass'].aggregate:.0%}"
        cost = f"{row['explanation_seconds']:.1f} s map · {row['metric_seconds']:.1f} s checks"
        rows.append([name, rand_txt, del_txt, ins_txt, stab_txt, quality, cost])
        status = "pass" if rand_ok else ("fail" if require else "warn")
        checks.append(Check(f"{name} randomisation", r.aggregate, status, None,
                            f"{name}: {'passes' if rand_ok else 'fails'} the randomisation sanity check"))
        if min_gain is not None:
            checks.append(Check(f"{name} deletion gain", gain, "pass" if del_ok else "fail", float(min_gain),
                                f"{name}: deletion gain {gain:+.2f} {'≥' if del_ok else '<'} {float(min_gain):.2f}"))
        summary["methods"][name] = {
            "explanation_seconds": row["explanation_seconds"], "metric_seconds": row["metric_seconds"],
            "randomization": r.to_dict(), "deletion": dele.to_dict(), "insertion": ins.to_dict(),
            "quality": row["quality"],
            **{k: row[k].to_dict() for k in ("sensitivity", "pointing_game", "relevance_mass") if k in row}}
    if rows:
        blocks.append(Table(["method", "randomisation", "deletion", "insertion", "stability", "quality", "cost"], rows,
                            caption="Can these maps be trusted?"))
        strip = {n: methods[n]["randomization"] for n in methods}
        blocks.append(Figure("randomization", to_png(figs.randomization_strip(strip, res["x"][0]), ctx.dpi),
                             "Cascading randomisation of one sample",
                             "each method's map as the model's layers are randomised, top first"))
        blocks.append(Figure("deletion-insertion", to_png(figs.deletion_insertion_curves(
            {n: methods[n]["curves"] for n in methods}), ctx.dpi), "Deletion and insertion curves",
            "target probability as features are removed or restored in attribution order and at random"))
    ag = res["agreement"]
    if ag is not None:
        blocks.append(Figure("agreement", to_png(figs.agreement_matrix(ag.details["matrix"], ag.details["methods"]), ctx.dpi),
                             "Agreement between methods", "method by method rank correlation"))
        summary["agreement"] = {"methods": ag.details["methods"], "matrix": ag.details["matrix"].tolist()}
    return Section("trust", "Can these maps be trusted?", blocks=blocks, summary=summary, checks=checks)
