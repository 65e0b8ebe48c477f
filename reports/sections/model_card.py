"""Model card: architecture, parameters, weights, input, normalisation, classes, device, versions,
config, and the warnings raised while the report was built."""

from __future__ import annotations

import json
import platform

import torch

import explain
from robustness import distributed as dist

from ..report import ReportContext, Section, Table, Text

CONFIG_KEYS: dict[str, str] = {}
CHECK_KEYS: dict[str, str] = {}


def library_versions() -> dict:
    import importlib.metadata as md
    out = {"python": platform.python_version()}
    for name in ("xaiscope", "torch", "numpy", "captum", "scikit-learn", "lime", "shap", "matplotlib", "jinja2"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def reproducibility(wrapper) -> dict:
    """Whether the numbers are bit-reproducible at this seed, and the batch size the passes used."""
    mode = explain.deterministic_mode()
    if wrapper.batch_size is not None:
        size, how = wrapper.batch_size, "fixed on the wrapper"
    elif mode["deterministic"]:
        size, how = mode["batch_size"], "fixed by the deterministic mode"
    else:
        size, how = None, "chosen by timing; results agree across sizes to about 1e-5 relative"
    return {"deterministic": mode["deterministic"], "batch_size": size, "batch_size_choice": how,
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled()}


def build(ctx: ReportContext) -> Section:
    d = ctx.wrapper.describe()
    repro = reproducibility(ctx.wrapper)
    shape = list(ctx.x.shape[1:])
    weights = getattr(ctx.wrapper, "weights_source", None)  # set by whoever loaded the model (the CLI)
    rows = [
        ["architecture", d["architecture"]],
        ["parameters", f"{d['parameters']:,}"],
        *([["weights", weights]] if weights else []),
        ["input kind", d["input_kind"]],
        ["input shape (one sample)", "×".join(map(str, shape))],
        ["classes", f"{d['num_classes']}: " + ", ".join(d["class_names"][:20]) + (" …" if len(d["class_names"]) > 20 else "")],
        *([["output", "binary classifier (single logit, shown as two classes)" if d.get("task") is None else
            f"binary classifier: task {d['task']} of a multi-label model (one logit, shown as two classes)"]]
          if d.get("binary") else []),
        ["normalisation", "none" if d["mean"] is None and d["std"] is None else f"mean {d['mean']}, std {d['std']}"],
        ["device / precision", f"{d['device']} / {d['precision']}"],
        ["target layer (CAM)", d["target_layer"] or "—"],
        ["feature layer (head)", d["feature_layer"] or "—"],
        ["evaluation samples", str(ctx.cache.get("n_evaluated", len(ctx.x)))],
        ["seed", str(ctx.seed)],
        ["deterministic mode", ("on: the same seed gives the same numbers, bit for bit" if repro["deterministic"]
                                else "off: the same seed gives the same numbers to about 1e-5 relative")],
        ["batch size", f"{repro['batch_size'] or 'automatic'} ({repro['batch_size_choice']})"],
        ["processes (world size)", str(dist.rank_and_world()[1])],
    ]
    versions = library_versions()
    blocks = [
        Table(["property", "value"], rows, caption="Model", sortable=False),
        Table(["library", "version"], [[k, v or "not installed"] for k, v in versions.items()],
              caption="Library versions", sortable=False),
        Table(["configuration"], [[json.dumps(ctx.config, indent=1, sort_keys=True, default=str)]],
              caption="Configuration that produced this report", sortable=False),
    ]
    if weights and weights.startswith("untrained"):
        blocks.insert(0, Text(f"This model runs on {weights}: every number below describes a model that "
                              "learnt nothing.", kind="warning"))
    summary = {"model": d, "input_shape": shape, "samples": ctx.cache.get("n_evaluated", len(ctx.x)), "seed": ctx.seed,
               "reproducibility": repro, "versions": versions, "world_size": dist.rank_and_world()[1],
               "weights": weights}
    return Section("model_card", "Model card", blocks=blocks, summary=summary)


def add_warnings(sections, messages) -> None:
    """List the warnings raised while the report was built in the model card (``summary["warnings"]``)."""
    card = next((s for s in sections if s.id == "model_card" and s.error is None), None)
    if card is None:
        return
    card.summary["warnings"] = list(messages)
    if messages:
        card.blocks.append(Table(["warning"], [[m] for m in messages], caption="Warnings raised while this report "
                                 "was built", sortable=False))
