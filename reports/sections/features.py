"""What the classes look like: one feature visualisation per class, beside the real samples that
score highest for it (image models); for sequence models the top-scoring samples and the token
n-gram / time window that drives each class.

Off unless the configuration has a ``[features]`` table (or the section is asked for by name):
it costs ``steps`` forward+backward passes per class.
"""

from __future__ import annotations

import explain

from .. import figures_training as figs
from .._png import to_png
from ..report import Figure, ReportContext, Section, Table, Text

CONFIG_KEYS = {
    "classes": "class indices to show (default: the first 10)",
    "steps": "optimisation steps per class (default 64)",
    "examples": "top-scoring real samples shown per class (default 3)",
    "window": "sequence models: width of the n-gram / time window (default 5)",
}
CHECK_KEYS: dict = {}


def applies(ctx: ReportContext) -> bool:
    """On by default only when the configuration has a ``features`` table."""
    return "features" in ctx.config


def build(ctx: ReportContext) -> Section:
    cfg = ctx.config.get("features", {})
    m = ctx.wrapper
    names = m.class_names or [str(i) for i in range(int(ctx.wrapper.logits(ctx.x[:1]).shape[1]))]
    classes = [int(c) for c in cfg.get("classes", range(min(10, len(names))))]
    k = int(cfg.get("examples", 3))
    if m.input_kind == "image":
        fv = explain.feature_visualization(m, classes=classes, steps=int(cfg.get("steps", 64)), seed=ctx.seed,
                                           data=(ctx.x, ctx.y), examples=k)
        fig = figs.class_visualisations_figure(fv.images.numpy(), [names[c] for c in classes], fv.activation.tolist(),
                                               fv.examples.inputs.numpy())
        blocks = [Text(f"Each row: an input optimised for {fv.params['steps']} steps to raise the class's logit "
                       "(Fourier parameterisation, random jitter/scale/rotation, total-variation penalty), then the "
                       f"{k} real samples with the highest logit for that class. Took {fv.seconds:.1f} s."),
                  Figure("classes", to_png(fig, ctx.dpi), "What the classes look like", "class visualisations")]
        return Section("features", "What the classes look like", blocks=blocks, summary=fv.to_dict())
    ex = explain.dataset_examples(m, (ctx.x, ctx.y), classes=classes, k=k, window=int(cfg.get("window", 5)))
    rows = []
    for i, c in enumerate(classes):
        for j in range(ex.indices.shape[1]):
            s, e = (int(v) for v in ex.windows[i, j])
            sample = ex.inputs[i, j]
            if m.input_kind == "tokens":
                ids = sample[s:e].tolist()
                shown = " ".join(ctx.vocab[t] if ctx.vocab and t < len(ctx.vocab) else str(t) for t in ids)
            else:
                shown = ", ".join(f"{v:.3g}" for v in sample[s:e, 0].tolist())
            rows.append([names[c], int(ex.indices[i, j]), f"{float(ex.activation[i, j]):.3g}", f"{s}–{e}", shown])
    blocks = [Text("Optimised token ids or series are not readable, so this shows, per class, the real samples "
                   "with the highest logit and the window where the Grad-CAM map for that class peaks."),
              Table(["class", "sample", "logit", "window", "content"], rows, caption="Top-scoring samples per class")]
    return Section("features", "What the classes look like", blocks=blocks, summary=ex.to_dict())
