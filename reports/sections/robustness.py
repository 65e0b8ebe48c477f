"""Robustness: robust accuracy vs budget per attack, corruption accuracy vs severity, adversarial examples.

Everything attack-specific (input kinds, budget unit, default budgets and parameters, how to name
the attack on the curve) is read from ``robustness.registry.ATTACK_SPECS``; this module never tests
an attack's name.
"""

from __future__ import annotations

import inspect

import torch

import robustness
from robustness.registry import DEFAULT_CORRUPTIONS, attack_spec, attacks_for
from robustness.sweep import default_budgets

from .. import figures_robustness as figs
from .._png import to_png
from ..report import Check, Figure, ReportContext, Section, Table, Text, TokenStrips

CONFIG_KEYS: dict[str, str] = {
    "methods": "attacks drawn as accuracy-vs-budget curves (default: the registry's report attacks for the input kind)",
    "eps": "budgets for the ε-ball attacks, in their unit (default: the registry's, or chosen from the model for tokens)",
    "budgets": "per-attack budgets, {attack: [budgets]}, overriding eps (e.g. hotflip: [0, 1, 2, 4] tokens)",
    "max_tokens": "largest number of substituted tokens for count-budget attacks (budgets 0..max_tokens)",
    "steps": "iterations for every attack that takes steps (default: each attack's registry default)",
    "params": "per-attack constructor parameters, {attack: {name: value}}",
    "bisect_steps": "bisection steps for each sample's minimal flipping budget (default 4)",
    "max_samples": "samples attacked (default 64)",
    "corruptions": "corruption names for the input kind (default: the registry's list; [] skips them)",
    "severities": "corruption severities 1..5 (default all)",
    "min_robust_accuracy": "fail when the lowest robust accuracy at the largest budget is below this",
}
CHECK_KEYS: dict[str, str] = {"min_robust_accuracy": "fail when the lowest robust accuracy at the largest budget is below this"}


def _fmt(e: float, kind: str, budget: str) -> str:
    if budget == "count":
        return f"{e:g}"
    return f"{e * 255:.3g}/255" if kind == "image" and e > 0 else f"{e:.3g}"


def _params(spec, method: str, cfg: dict) -> dict:
    params = dict(cfg.get("params", {}).get(method, {}))
    if "steps" in cfg and "steps" in inspect.signature(spec.cls.__init__).parameters:
        params.setdefault("steps", int(cfg["steps"]))
    return params


def _budgets(ctx, spec, method: str, cfg: dict, x, y, params: dict):
    if method in cfg.get("budgets", {}):
        return [float(b) for b in cfg["budgets"][method]]
    if spec.budget == "count":
        if "max_tokens" in cfg:
            return [float(b) for b in range(int(cfg["max_tokens"]) + 1)]
        return None  # the registry's sweep
    if "eps" in cfg:
        return [float(e) for e in cfg["eps"]]
    return default_budgets(ctx.wrapper, x, y, method, seed=ctx.seed, params=params)


def build(ctx: ReportContext) -> Section:
    cfg = ctx.config.get("robustness", {})
    m = ctx.wrapper
    kind = m.input_kind
    if ctx.y is None:
        return Section("robustness", "Robustness", blocks=[Text("No labels were given, so robustness cannot be measured.")])
    n = int(cfg.get("max_samples", 64))
    x, y = ctx.x[:n], ctx.y[:n]
    methods = list(cfg.get("methods", attacks_for(kind, report=True)))
    for method in methods:
        attack_spec(method).check_kind(method, kind)
    bisect = int(cfg.get("bisect_steps", 4))
    curves, specs = {}, {}
    for method in methods:
        spec = specs[method] = attack_spec(method)
        params = _params(spec, method, cfg)
        budgets = _budgets(ctx, spec, method, cfg, x, y, params)
        curves[method] = robustness.robust_accuracy(m, (x, y), eps=budgets, method=method, seed=ctx.seed,
                                                    bisect_steps=bisect, **params)
    blocks: list = [Text(f"{len(x)} samples. A sample fooled at one budget counts as fooled at every larger one "
                         "(the adversarial input lies inside the larger ball too), so accuracy never rises with the "
                         "budget; each sample's smallest flipping budget is bisected between the budgets and agrees "
                         "with the curve.")]
    for method, c in curves.items():
        blocks.append(Text(f"{method}: {c.label}; budget in {c.unit}."))
    if kind == "tokens" and any(specs[k].budget == "eps" for k in curves):
        blocks.append(Text(f"Embedding budgets are relative to the embedding table's spread: ε = 1 moves every "
                           f"coordinate by one standard deviation of the table's entries "
                           f"({robustness.embedding_scale(m):.3g} for this model)."))
    summary: dict = {"attacks": {k: c.to_dict() for k, c in curves.items()}}
    by_unit: dict = {}
    for method, c in curves.items():
        by_unit.setdefault(c.unit, {})[method] = c
    for i, (unit, group) in enumerate(by_unit.items()):
        for method, c in group.items():
            spec = specs[method]
            blocks.append(Table([method] + [f"{'' if spec.budget == 'count' else 'ε = '}{_fmt(e, kind, spec.budget)}"
                                            for e in c.eps],
                                [["accuracy"] + [f"{a:.1%}" for a in c.accuracy]],
                                caption=f"Accuracy under {method} ({unit})"))
        name = "robust-accuracy" if i == 0 else f"robust-accuracy-{i}"
        blocks.append(Figure(name, to_png(figs.robust_curve(group, unit), ctx.dpi),
                             f"Robust accuracy vs budget ({unit})", "accuracy under attack against the budget"))
    summary["minimal_eps"] = {}
    for method, c in curves.items():
        if c.minimal_eps is None:
            continue
        spec = specs[method]
        correct = c.minimal_eps > 0
        mins = c.minimal_eps[correct]
        flipped = mins[torch.isfinite(mins)]
        share = len(flipped) / max(len(mins), 1)
        text = (f"{method}: {share:.0%} of correct samples flip within {_fmt(c.eps[-1], kind, spec.budget)} {c.unit}")
        if len(flipped):
            text += f"; among them the median minimal budget is {_fmt(float(flipped.median()), kind, spec.budget)}"
        elif len(mins):
            text += (": no correct prediction changed at any budget, which real models rarely allow. The model may "
                     "ignore its input (untrained or constant outputs) or the attack may be failing on it (masked "
                     "gradients); check the clean predictions and try larger budgets or another attack")
        blocks.append(Text(text + "."))
        summary["minimal_eps"][method] = {"flipped_share": share,
                                          "median_among_flipped": float(flipped.median()) if len(flipped) else None}

    corruptions = cfg.get("corruptions", DEFAULT_CORRUPTIONS[kind])
    severities = cfg.get("severities", [1, 2, 3, 4, 5])
    if corruptions:
        k = robustness.corruption_accuracy(m, (x, y), corruptions=corruptions, severities=severities, seed=ctx.seed)
        blocks.append(Table(["corruption"] + [f"severity {s}" for s in k.severities],
                            [[c] + [f"{a:.1%}" for a in accs] for c, accs in k.accuracy.items()],
                            caption=f"Accuracy under corruptions (clean: {k.clean_accuracy:.1%})"))
        blocks.append(Figure("corruptions", to_png(figs.corruption_curves(k), ctx.dpi), "Accuracy vs corruption severity",
                             "accuracy under each corruption by severity"))
        summary["corruptions"] = k.to_dict()

    checks = []
    if curves:
        worst_name = min(curves, key=lambda k: curves[k].accuracy[-1])
        worst = curves[worst_name]
        blocks += _examples(ctx, m, x, y, worst_name, worst, specs[worst_name], summary)
        text = (f"robust accuracy under {worst_name} at {_fmt(worst.eps[-1], kind, specs[worst_name].budget)} "
                f"{worst.unit}: {worst.accuracy[-1]:.0%}")
        threshold = cfg.get("min_robust_accuracy", ctx.config.get("checks", {}).get("min_robust_accuracy"))
        if threshold is None:
            checks.append(Check("robust accuracy", worst.accuracy[-1], "info", None, text))
        else:
            ok = worst.accuracy[-1] >= float(threshold)
            checks.append(Check("robust accuracy", worst.accuracy[-1], "pass" if ok else "fail", float(threshold),
                                f"{text} {'≥' if ok else '<'} {float(threshold):.0%}"))
    return Section("robustness", "Robustness", blocks=blocks, summary=summary, checks=checks)


def _examples(ctx, m, x, y, method, curve, spec, summary) -> list:
    """Adversarial examples from the strongest attack at its largest budget.

    Only the samples shown are attacked again: the first three whose minimal flipping budget (from
    the curve, already combined over every process) lies within the largest budget, or the first
    two when none flips. The curve holds the statistics of the whole set.
    """
    kind, names = m.input_kind, m.class_names
    params = {k: v for k, v in curve.params.items() if k not in ("seed", "bisect_steps")}
    mins = curve.minimal_eps if curve.minimal_eps is not None else torch.zeros(0)
    idx = torch.nonzero((mins > 0) & (mins <= curve.eps[-1])).flatten()[:3].tolist() or list(range(min(2, len(x))))
    r = robustness.attack(m, x[idx], y[idx], method, eps=curve.eps[-1], seed=ctx.seed, **params)
    summary["examples"] = {"method": method, "eps": curve.eps[-1], "samples": idx,
                           "flipped": [bool(v) for v in r.success.tolist()]}
    if r.tokens_changed is not None:
        blocks = [Text(f"Token substitution ({method}, ≤ {_fmt(curve.eps[-1], kind, spec.budget)} {curve.unit}) "
                       f"on samples the curve found flipping: {int(r.success.sum())} of {len(idx)} flipped, "
                       f"{float(r.tokens_changed.float().mean()):.1f} tokens substituted on average.")]
        for j in torch.nonzero(r.success).flatten()[:3].tolist():
            i = idx[j]
            ids_before, ids_after = r.inputs[j].tolist(), r.adversarial[j].tolist()
            keep = [p for p, t in enumerate(ids_before) if t != m.pad_id]
            word = lambda t: ctx.vocab[t] if ctx.vocab and t < len(ctx.vocab) else str(t)  # noqa: E731
            changed = [1.0 if ids_before[p] != ids_after[p] else 0.0 for p in keep]
            blocks.append(TokenStrips(f"sample {i}: {names[int(r.clean_pred[j])]} → {names[int(r.adv_pred[j])]}",
                                      [word(ids_before[p]) + (f" → {word(ids_after[p])}" if ids_before[p] != ids_after[p] else "")
                                       for p in keep], [("changed tokens", changed, "")], 1.0, name=f"token-attack{i}"))
        return blocks
    if kind not in ("image", "series"):
        share = curve.flipped_share if curve.flipped_share is not None else 0.0
        return [Text(f"{method} perturbs embeddings, which have no readable picture; {share:.0%} of correct "
                     f"predictions flipped at the largest budget.")]
    shown = list(range(len(idx)))
    draw = figs.adversarial_images if kind == "image" else figs.adversarial_series
    fig = draw(r, names, shown, sample_ids=idx)
    return [Figure("adversarial-examples", to_png(fig, ctx.dpi), f"Adversarial examples ({method} at the largest budget)",
                   "clean input, amplified perturbation and adversarial input with predictions")]
