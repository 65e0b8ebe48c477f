"""Robustness: robust accuracy vs ε per attack, corruption accuracy vs severity, adversarial examples."""

from __future__ import annotations

import torch

import robustness
from robustness.registry import DEFAULT_CORRUPTIONS

from .. import figures_robustness as figs
from .._png import to_png
from ..report import Check, Figure, ReportContext, Section, Table, Text, TokenStrips

DEFAULT_EPS = {"image": [0, 1 / 255, 2 / 255, 4 / 255, 8 / 255], "series": [0, 0.05, 0.1, 0.2, 0.4],
               "tokens": [0, 0.25, 0.5, 1.0]}
UNITS = {"image": "pixels in [0, 1]", "series": "channel std", "tokens": "embedding units"}


def _fmt_eps(e: float, kind: str) -> str:
    return f"{e * 255:.0f}/255" if kind == "image" and e > 0 else f"{e:g}"


def build(ctx: ReportContext) -> Section:
    cfg = ctx.config.get("robustness", {})
    m = ctx.wrapper
    kind = m.input_kind
    if ctx.y is None:
        return Section("robustness", "Robustness", blocks=[Text("No labels were given, so robustness cannot be measured.")])
    n = int(cfg.get("max_samples", 64))
    x, y = ctx.x[:n], ctx.y[:n]
    eps = [float(e) for e in cfg.get("eps", DEFAULT_EPS[kind])]
    methods = list(cfg.get("methods", ["fgsm", "pgd"]))
    steps = int(cfg.get("steps", 10))
    curves = {}
    for method in methods:
        params = {} if method == "fgsm" else {"steps": steps}
        curves[method] = robustness.robust_accuracy(m, (x, y), eps=eps, method=method, seed=ctx.seed,
                                                    minimal_eps=(method == "pgd"), bisect_steps=4, **params)
    blocks: list = [Text(f"{len(x)} samples; budgets in {UNITS[kind]}; PGD with {steps} steps and a random start.")]
    rows = [[name] + [f"{a:.1%}" for a in c.accuracy] for name, c in curves.items()]
    blocks.append(Table(["attack"] + [f"ε = {_fmt_eps(e, kind)}" for e in eps], rows, caption="Accuracy under attack"))
    blocks.append(Figure("robust-accuracy", to_png(figs.robust_curve(curves, UNITS[kind]), ctx.dpi),
                         "Robust accuracy vs ε", "accuracy under attack against the budget"))
    summary = {"eps": eps, "units": UNITS[kind], "attacks": {k: c.to_dict() for k, c in curves.items()}}
    pgd = curves.get("pgd")
    if pgd is not None and pgd.minimal_eps is not None:
        correct = ctx.wrapper.predict(x) == y
        mins = pgd.minimal_eps[correct]
        flipped = mins[torch.isfinite(mins)]
        share = len(flipped) / max(len(mins), 1)
        text = (f"Smallest PGD budget that flips a correct prediction (bisection): {share:.0%} of correct samples flip "
                f"within ε = {_fmt_eps(eps[-1], kind)}")
        if len(flipped):
            text += f"; among them the median budget is {_fmt_eps(float(flipped.median()), kind)}"
        blocks.append(Text(text + "."))
        summary["minimal_eps"] = {"flipped_share": share,
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

    blocks += _examples(ctx, m, x, y, eps, steps, summary)
    largest = eps[-1]
    worst = min(c.accuracy[-1] for c in curves.values())
    threshold = cfg.get("min_robust_accuracy", ctx.config.get("checks", {}).get("min_robust_accuracy"))
    text = f"robust accuracy @ ε={_fmt_eps(largest, kind)}: {worst:.0%}"
    if threshold is None:
        check = Check("robust accuracy", worst, "info", None, text)
    else:
        ok = worst >= float(threshold)
        check = Check("robust accuracy", worst, "pass" if ok else "fail", float(threshold),
                      f"{text} {'≥' if ok else '<'} {float(threshold):.0%}")
    return Section("robustness", "Robustness", blocks=blocks, summary=summary, checks=[check])


def _examples(ctx, m, x, y, eps, steps, summary) -> list:
    kind, names = m.input_kind, m.class_names
    if kind == "tokens":
        r = robustness.attack(m, x, y, "hotflip", max_tokens=int(ctx.config.get("robustness", {}).get("max_tokens", 3)))
        summary["hotflip"] = r.to_dict()
        blocks = [Text(f"Token substitution (HotFlip, ≤ {r.params['max_tokens']} tokens): {r.success_rate:.0%} of correct "
                       f"predictions flipped, {float(r.tokens_changed.float().mean()):.1f} tokens changed on average.")]
        for i in torch.nonzero(r.success).flatten()[:3].tolist():
            ids_before, ids_after = r.inputs[i].tolist(), r.adversarial[i].tolist()
            keep = [j for j, t in enumerate(ids_before) if t != m.pad_id]
            word = lambda t: ctx.vocab[t] if ctx.vocab and t < len(ctx.vocab) else str(t)  # noqa: E731
            changed = [1.0 if ids_before[j] != ids_after[j] else 0.0 for j in keep]
            blocks.append(TokenStrips(f"sample {i}: {names[int(r.clean_pred[i])]} → {names[int(r.adv_pred[i])]}",
                                      [word(ids_before[j]) + (f" → {word(ids_after[j])}" if ids_before[j] != ids_after[j] else "")
                                       for j in keep], [("changed tokens", changed, "")], 1.0, name=f"hotflip{i}"))
        return blocks
    r = robustness.attack(m, x, y, "pgd", eps=eps[-1], steps=steps, seed=ctx.seed)
    idx = torch.nonzero(r.success).flatten()[:3].tolist() or list(range(min(2, len(x))))
    fig = figs.adversarial_images(r, names, idx) if kind == "image" else figs.adversarial_series(r, names, idx)
    return [Figure("adversarial-examples", to_png(fig, ctx.dpi), "Adversarial examples (PGD at the largest ε)",
                   "clean input, amplified perturbation and adversarial input with predictions")]
