"""Explanations gallery: rows = samples (correct and misclassified), columns = methods."""

from __future__ import annotations

import dataclasses
from typing import List

import torch

from explain.attention import attention, attention_backend
from explain.registry import get_explainer

from .. import figures, figures_attention
from .._png import to_png
from ._adapt import adapted
from ..report import Figure, ReportContext, Section, Table, Text, TokenStrips
from robustness import distributed as dist

from .performance import predicted

CONFIG_KEYS: dict[str, str] = {"methods": "explainers in the gallery (names from explain.available_explainers())",
               "params": "per-explainer parameters, {method: {name: value}}",
               "samples": "rows in the gallery"}
CHECK_KEYS: dict[str, str] = {}

DEFAULT_METHODS = ["gradcam", "occlusion", "lime", "shap", "integrated_gradients"]


def choose_samples(pred: torch.Tensor, y, k: int, seed: int) -> torch.Tensor:
    """Up to ``k`` indices: misclassified samples first (up to half), then correct ones, seeded."""
    gen = torch.Generator().manual_seed(seed)
    n = len(pred)
    order = torch.randperm(n, generator=gen)
    if y is None:
        return order[:k]
    wrong = order[(pred[order] != y[order])]
    right = order[(pred[order] == y[order])]
    take_wrong = wrong[: max(k // 2, k - len(right))]
    return torch.cat([right[: k - len(take_wrong)], take_wrong])


SHORT = {"r2": "R²", "efficiency_gap": "eff. gap", "completeness_gap": "compl. gap"}


def _note(attr, i: int) -> str:
    """Cost and trust of one cell, e.g. ``"397 ms · R² 0.79"``; a near-constant map says so."""
    parts = [f"{attr.seconds / max(len(attr), 1) * 1000:.0f} ms"]
    for key, values in attr.quality.items():
        if key == "degenerate":
            parts += ["⚠ constant map: no location"] if float(values[i]) > 0 else []
            continue
        parts.append(f"{SHORT.get(key, key)} {float(values[i]):.2f}")
    return " · ".join(parts)


def build(ctx: ReportContext) -> Section:
    cfg = ctx.config.get("explanations", {})
    methods: List[str] = list(cfg.get("methods", DEFAULT_METHODS))
    params = cfg.get("params", {})
    k = int(cfg.get("samples", 6))
    m = ctx.wrapper
    pred, conf = predicted(ctx)
    names = m.class_names  # after a forward pass: known even without class_names
    idx = choose_samples(pred, ctx.y, k, ctx.seed)
    x = ctx.x[idx]
    blocks: list = []
    results, failures = _explain_shared(m, ctx.x, pred, idx, methods, params)
    for method, error in failures.items():
        blocks.append(Text(f"{method} could not be computed: {error}", kind="warning"))
    ok = [mt for mt in methods if mt in results]
    attn = None
    if attention_backend(m.model) is not None and cfg.get("attention", True):
        try:  # a transformer model: an "attention rollout" column beside the attributions
            attn = attention(m, x)
        except Exception as error:  # noqa: BLE001 - the gallery stands without it
            blocks.append(Text(f"attention maps could not be computed: {type(error).__name__}: {error}", kind="warning"))
    from .trust import failed_checks  # the trust section computes; the gallery only marks its failures
    marks = failed_checks(ctx)
    cost = [[mt, results[mt].layer or "—", f"{results[mt].seconds:.2f}",
             f"{results[mt].seconds / len(x) * 1000:.0f}",
             ", ".join(f"{q} mean {float(v.float().mean()):.3f}" for q, v in results[mt].quality.items()) or "—"]
            for mt in ok]
    blocks.append(Table(["method", "layer", "seconds", "ms / sample", "trust measures"], cost,
                        caption="What each explanation cost"))
    summary = {"samples": [], "methods": ok, "failures": failures, "failed_trust_checks": marks,
               "seconds": {mt: results[mt].seconds for mt in ok}}
    if len(idx) < k:
        adapted(summary, blocks, f"the gallery shows {len(idx)} row(s) instead of {k}, as only {len(ctx.x)} "
                                 "sample(s) were kept")
    for row, i in enumerate(idx.tolist()):
        p = int(pred[i])
        truth = None if ctx.y is None else int(ctx.y[i])
        verdict = "" if truth is None else ("correct" if truth == p else f"MISCLASSIFIED (true: {names[truth]})")
        title = f"sample {i}: predicted {names[p]} ({float(conf[i]):.0%}) {verdict}".strip()
        maps = [figures.normalise(results[mt].values[row]) for mt in ok]
        notes = [_note(results[mt], row) + (f" · ⚠ failed {', '.join(marks[mt])}" if mt in marks else "") for mt in ok]
        shown = list(ok)
        if attn is not None:
            rolled = figures_attention.rollout_values(attn)[row]
            maps.append(figures.normalise(rolled - rolled.min()))  # relative: 0 = least attended
            notes.append("attention, not attribution")
            shown.append("attention rollout")
        summary["samples"].append({"index": i, "predicted": p, "label": truth, "confidence": float(conf[i]),
                                   "quality": {mt: {q: float(v[row]) for q, v in results[mt].quality.items()} for mt in ok}})
        if not shown:
            continue
        if m.input_kind == "image":
            fig = figures.image_row(ctx.x[i], maps, shown, title, notes)
            blocks.append(Figure(f"sample{i}", to_png(fig, ctx.dpi), "", f"attributions for sample {i}: {title}"))
        elif m.input_kind == "series":
            fig = figures.series_row(ctx.x[i], maps, shown, title, notes)
            blocks.append(Figure(f"sample{i}", to_png(fig, ctx.dpi), "", f"attributions for sample {i}: {title}"))
        else:
            ids = ctx.x[i].tolist()
            keep = [j for j, t in enumerate(ids) if t != m.pad_id] or list(range(len(ids)))
            vocab = ctx.vocab
            tokens = [vocab[ids[j]] if vocab and ids[j] < len(vocab) else str(ids[j]) for j in keep]
            kept = [figures.normalise(mp[keep]) for mp in maps]
            lim = figures.symmetric_limit(kept)
            png = to_png(figures.token_strip(tokens, kept, shown, title), ctx.dpi)
            rows = [(mt, v.tolist(), note) for mt, v, note in zip(shown, kept, notes)]
            blocks.append(TokenStrips(title, tokens, rows, lim, png=png, name=f"sample{i}"))
    if attn is not None and len(idx):
        blocks += _attention_blocks(ctx, attn, idx)
        summary["attention"] = {"backend": attn.backend, "layers": attn.layers, "shape": list(attn.weights.shape)}
    if len(idx) == 0:
        blocks.append(Text("No samples to explain."))
    return Section("explanations", "Explanations", blocks=blocks, summary=summary)


def _explain_shared(m, xs: torch.Tensor, pred: torch.Tensor, idx: torch.Tensor, methods: List[str], params: dict):
    """Every method on the chosen samples; inside a process group each rank explains its block of them.

    Returns ``(results, failures)``: an ``Attribution`` per method over all of ``idx`` in order, and
    the error of each method that failed on any rank.
    """
    part = dist.shard_indices(len(idx))
    mine = idx[part.start:part.stop]
    local: dict = {}
    for method in methods:
        if not len(mine):
            local[method] = None
            continue
        try:
            local[method] = get_explainer(method)(m, xs[mine], pred[mine], **params.get(method, {}))
        except Exception as error:  # noqa: BLE001 - one failing method must not hide the others
            local[method] = f"{type(error).__name__}: {error}"
    blocks = dist.gather_objects(local)
    results, failures = {}, {}
    for method in methods:
        parts = [b[method] for b in blocks if b[method] is not None]
        errors = [p for p in parts if isinstance(p, str)]
        if errors:
            failures[method] = errors[0]
        elif len(parts) == 1:
            results[method] = parts[0]
        elif parts:
            first = parts[0]
            results[method] = dataclasses.replace(
                first, values=torch.cat([a.values for a in parts]), target=torch.cat([a.target for a in parts]),
                seconds=sum(a.seconds for a in parts),
                quality={q: torch.cat([a.quality[q] for a in parts]) for q in first.quality})
    return results, failures


def _attention_blocks(ctx: ReportContext, attn, idx: torch.Tensor) -> list:
    """Per layer and head attention of the first gallery sample, and what attention maps mean."""
    i = int(idx[0])
    text = Text("Attention maps show how strongly each token (or image patch) mixes in the others, per layer "
                "and head; rollout (Abnar & Zuidema, 2020) follows that mixing through the layers. They are not "
                "attributions: they ignore the values, the MLPs and the classifier, and they do not say what "
                "moved the score. Where rollout and the gradient methods above disagree, trust the methods "
                "that are checked against the model's output.")
    if ctx.wrapper.input_kind == "image":
        fig = figures_attention.head_layer_grid(attn, 0, image=ctx.x[i])
    else:
        ids = ctx.x[i].tolist()
        vocab = ctx.vocab
        words = [vocab[t] if vocab and 0 <= t < len(vocab) else str(t) for t in ids]
        if ctx.wrapper.input_kind == "tokens":
            keep = attn.mask[0].tolist() if attn.mask is not None else [True] * len(words)
            words = [w for w, k in zip(words, keep) if k] or words
        fig = figures_attention.head_layer_grid(attn, 0, tokens=words if ctx.wrapper.input_kind == "tokens" else None)
        if ctx.wrapper.input_kind == "tokens":
            strips = figures_attention.attention_strips([vocab[t] if vocab and 0 <= t < len(vocab) else str(t)
                                                         for t in ids], attn, 0, f"sample {i}")
            text = [text, Figure(f"attention-strips{i}", to_png(strips, ctx.dpi), "",
                                 f"attention per layer and rollout over the words of sample {i}")]
    text = text if isinstance(text, list) else [text]
    return [*text, Figure(f"attention{i}", to_png(fig, ctx.dpi), "",
                         f"attention per layer and head for sample {i}")]
