"""``Explorer``: an interactive view of one model in Jupyter, built on stock ipywidgets.

Pick a sample, a target class and a method to see the attribution; move the ε slider to attack
the sample; the OOD tab shows where the sample's score falls among in- and out-of-distribution
scores. Everything goes through the public API (``explain``/``robustness``) and is cached, so
going back to an earlier setting is instant. Needs the ``notebook`` extra (``pip install
'xaiscope[notebook]'``).

Example:
    >>> from reports.widgets import Explorer            # doctest: +SKIP
    >>> Explorer(m, (x, y), ood_data=x_ood)             # shows itself in a notebook cell
"""

from __future__ import annotations

import base64
import html
from typing import Any, Dict, List, Optional, Tuple

import explain
import robustness
from explain.data import collect
from explain.errors import OptionalDependencyError
from explain import check_wrapper
from explain.attention import attention_backend
from explain.registry import EXPLAINERS

from . import figures
from ._png import plt, to_png


def _widgets():
    try:
        import ipywidgets
    except ImportError as error:
        raise OptionalDependencyError("the Explorer needs ipywidgets: pip install 'xaiscope[notebook]'") from error
    return ipywidgets


def _img_html(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


class Explorer:
    """Interactive explorer for a wrapped model and a few samples.

    Args:
        model: an ``explain.ModelWrapper``.
        data: ``(inputs, labels)``, a ``Dataset`` or a ``DataLoader``; the first ``max_samples`` are shown.
        ood_data: optional out-of-distribution inputs for the OOD tab.
        methods: explainers in the dropdown (default: every registered one).
        vocab: id → word list for token models.
        eps_max: the ε slider's range (default 16/255 for images, 1.0 otherwise).
        method_params: per-method keyword arguments, e.g. ``{"lime": {"n_samples": 300}}``.

    Attributes:
        widget: the ipywidgets ``Tab`` (displayed when the Explorer is the cell's value).
        sample, target, method, eps: the controls; setting ``.value`` updates the views.
    """

    def __init__(self, model: Any, data: Any, *, ood_data: Any = None, methods: Optional[List[str]] = None,
                 vocab: Optional[List[str]] = None, eps_max: Optional[float] = None, max_samples: int = 64,
                 method_params: Optional[dict] = None, ood_method: str = "energy", feature_steps: int = 64) -> None:
        w = _widgets()
        self.model = check_wrapper(model)
        self.x, self.y = collect(data, max_samples=max_samples)
        self.model.check_inputs(self.x)
        self.ood_x = None if ood_data is None else collect(ood_data, max_samples=max_samples)[0]
        self.vocab = vocab
        self.method_params = method_params or {}
        self.ood_method = ood_method
        self._cache: Dict[Tuple, str] = {}
        self.computations = 0
        self.probs = self.model.probs(self.x)
        names = self.model.class_names
        kind = self.model.input_kind
        self.sample = w.IntSlider(value=0, min=0, max=len(self.x) - 1, description="sample")
        self.target = w.Dropdown(options=[("predicted", -1)] + [(n, i) for i, n in enumerate(names)], value=-1,
                                 description="target")
        options = list(methods or EXPLAINERS)
        if methods is None and attention_backend(self.model.model) is not None:
            options.append("attention")  # a transformer: its attention maps beside the attributions
        self.method = w.Dropdown(options=options, description="method")
        top = eps_max if eps_max is not None else (16 / 255 if kind == "image" else 1.0)
        self.eps = w.FloatSlider(value=0.0, min=0.0, max=top, step=top / 16, description="ε", readout_format=".4f")
        self.explain_view = w.HTML()
        self.attack_view = w.HTML()
        self.ood_view = w.HTML()
        self.header = w.HTML()
        explain_tab = w.VBox([w.HBox([self.sample, self.target, self.method]), self.header, self.explain_view])
        attack_tab = w.VBox([self.eps, self.attack_view])
        ood_tab = w.VBox([self.ood_view])
        self.feature_steps = int(feature_steps)
        self.class_view = w.HTML("<p>Open this tab to see what the selected class looks like to the model.</p>")
        self.widget = w.Tab(children=[explain_tab, attack_tab, ood_tab, w.VBox([self.class_view])])
        self.widget.observe(lambda _change: self._update_class(), names="selected_index")
        for i, title in enumerate(["Explain", "Attack", "Out-of-distribution", "Class"]):
            self.widget.set_title(i, title)
        for control in (self.sample, self.target, self.method):
            control.observe(lambda _change: self.refresh(), names="value")
        self.eps.observe(lambda _change: self._update_attack(), names="value")
        self._ood_scores = None
        self.refresh()

    # ---------------------------------------------------------------- views
    def refresh(self) -> None:
        """Recompute (or fetch from the cache) every view for the current controls."""
        i = int(self.sample.value)
        p = self.probs[i]
        pred = int(p.argmax())
        names = self.model.class_names
        truth = "" if self.y is None else f" · label: {html.escape(names[int(self.y[i])])}"
        self.header.value = (f"<b>sample {i}</b> · predicted: {html.escape(names[pred])} ({float(p[pred]):.0%})"
                             f"{truth}")
        self.explain_view.value = self._explanation(i, self._target(i), self.method.value)
        self._update_attack()
        self.ood_view.value = self._ood(i)
        self._update_class()

    def _target(self, i: int) -> int:
        return int(self.probs[i].argmax()) if self.target.value == -1 else int(self.target.value)

    def _cached(self, key: Tuple, compute) -> str:
        if key not in self._cache:
            self.computations += 1
            self._cache[key] = compute()
        return self._cache[key]

    def _explanation(self, i: int, target: int, method: str) -> str:
        def compute() -> str:
            if method == "attention":
                return self._attention(i)
            try:
                a = explain.run_explainer(method, self.model, self.x[i:i + 1], target, **self.method_params.get(method, {}))
            except explain.errors.ToolkitError as error:
                return f'<p style="color:#b42318">{html.escape(method)} failed: {html.escape(str(error))}</p>'
            title = f"{method} for class {self.model.class_names[target]}"
            kind = self.model.input_kind
            values = figures.normalise(a.values[0])
            if kind == "image":
                fig = figures.image_row(self.x[i], [values], [method], title)
            elif kind == "series":
                fig = figures.series_row(self.x[i], [values], [method], title)
            else:
                ids = self.x[i].tolist()
                keep = [j for j, t in enumerate(ids) if t != self.model.pad_id] or list(range(len(ids)))
                words = [self.vocab[ids[j]] if self.vocab and ids[j] < len(self.vocab) else str(ids[j]) for j in keep]
                fig = figures.token_strip(words, [values[keep]], [method], title)
            quality = " · ".join(f"{k} {float(v[0]):.3f}" for k, v in a.quality.items())
            return _img_html(to_png(fig), title) + f"<p>{a.seconds * 1000:.0f} ms {('· ' + quality) if quality else ''}</p>"
        return self._cached(("explain", i, target, method), compute)

    def _attention(self, i: int) -> str:
        from . import figures_attention
        maps = explain.attention(self.model, self.x[i:i + 1])
        kind = self.model.input_kind
        if kind == "image":
            fig = figures_attention.head_layer_grid(maps, 0, image=self.x[i])
        else:
            ids = self.x[i].tolist() if kind == "tokens" else []
            words = [self.vocab[t] if self.vocab and 0 <= t < len(self.vocab) else str(t) for t in ids]
            if maps.mask is not None:
                words = [word for word, real in zip(words, maps.mask[0].tolist()) if real] or words
            fig = figures_attention.head_layer_grid(maps, 0, tokens=words or None)
        return (_img_html(to_png(fig), "attention per layer and head")
                + f"<p>{html.escape(figures_attention.NOTE)} · {maps.seconds * 1000:.0f} ms</p>")

    def _update_attack(self) -> None:
        i, eps = int(self.sample.value), round(float(self.eps.value), 6)

        def compute() -> str:
            if self.y is None:
                return "<p>Labels are needed to attack.</p>"
            r = robustness.attack(self.model, self.x[i:i + 1], self.y[i:i + 1], "pgd", eps=eps, steps=10, seed=0)
            names = self.model.class_names
            change = (f"{html.escape(names[int(r.clean_pred[0])])} → {html.escape(names[int(r.adv_pred[0])])}"
                      + (" (flipped)" if bool(r.adv_pred[0] != r.clean_pred[0]) else " (unchanged)"))
            text = f"<p><b>PGD-10 at ε = {eps:.4f}</b>: {change}</p>"
            if self.model.input_kind == "image":
                from .figures_robustness import adversarial_images
                text += _img_html(to_png(adversarial_images(r, names, [0])), "adversarial example")
            elif self.model.input_kind == "series":
                from .figures_robustness import adversarial_series
                text += _img_html(to_png(adversarial_series(r, names, [0])), "adversarial series")
            else:
                text += f"<p>embedding-space perturbation, L∞ {float(r.linf[0]):.3f}</p>"
            return text + self._bounds(i, eps)
        self.attack_view.value = self._cached(("attack", i, eps), compute)

    #: bound method for the attack tab: IBP answers at interactive speed on any supported model;
    #: set ``explorer.bounds_method = "crown"`` (tighter, much slower on CNNs) for small models.
    bounds_method = "ibp"

    def _bounds(self, i: int, eps: float) -> str:
        """Certified logit bounds (``bounds_method``) for the sample at ε, or why there are none."""
        from explain.errors import UnsupportedModelError
        try:
            b = robustness.output_bounds(self.model, self.x[i:i + 1], eps, method=self.bounds_method, progress=False)
        except UnsupportedModelError as error:
            return f"<p>No certified bounds: {html.escape(str(error))}</p>"
        names = self.model.class_names
        cells = "".join(f"<tr><td>{html.escape(names[k])}</td><td>{float(b.lower[0, k]):.3f}</td>"
                        f"<td>{float(b.upper[0, k]):.3f}</td></tr>" for k in range(b.lower.shape[1]))
        return (f"<p><b>Certified logit bounds ({self.bounds_method.upper()}) at ε = {eps:.4f}</b></p><table><tr><th>class</th>"
                f"<th>lower</th><th>upper</th></tr>{cells}</table>")

    def _ood(self, i: int) -> str:
        if self.ood_x is None:
            return "<p>Pass ood_data to compare this sample with out-of-distribution inputs.</p>"
        if self._ood_scores is None:
            self.computations += 1
            det = robustness.ood_detector(self.ood_method).fit(self.model, (self.x, self.y))
            self._ood_scores = (det.score(self.x), det.score(self.ood_x))

        def compute() -> str:
            s_in, s_out = self._ood_scores
            fig, ax = plt.subplots(figsize=(5, 2.6))
            ax.hist(s_in.numpy(), bins=25, alpha=0.6, label="in-distribution")
            ax.hist(s_out.numpy(), bins=25, alpha=0.6, label="out-of-distribution", hatch="//")
            ax.axvline(float(s_in[i]), color="black", lw=2, label=f"sample {i}")
            ax.set_xlabel(f"{self.ood_method} score (higher = more OOD)", fontsize=8)
            ax.legend(fontsize=7)
            share = float((s_out <= s_in[i]).float().mean())
            return _img_html(to_png(fig), "OOD scores") + f"<p>{share:.0%} of the OOD inputs score at or below this sample.</p>"
        return self._cached(("ood", i), compute)

    def _update_class(self) -> None:
        """The Class tab (computed only while it is open): the target class's feature visualisation
        beside the samples scoring highest for it; dataset examples for sequence models."""
        if getattr(self, "widget", None) is None or self.widget.selected_index != 3:
            return
        c = self._target(int(self.sample.value))
        name = self.model.class_names[c]

        def compute() -> str:
            if self.model.input_kind != "image":
                ex = explain.dataset_examples(self.model, (self.x, self.y), classes=[c], k=3)
                rows = "".join(f"<li>sample {int(j)} · logit {float(v):.3g} · window {int(a)}–{int(b)}</li>"
                               for j, v, (a, b) in zip(ex.indices[0], ex.activation[0], ex.windows[0].tolist()))
                return f"<p><b>{html.escape(name)}</b>: the samples scoring highest</p><ul>{rows}</ul>"
            from .figures_training import class_visualisations_figure
            fv = explain.feature_visualization(self.model, classes=[c], steps=self.feature_steps, seed=0,
                                               data=(self.x, self.y), examples=3)
            fig = class_visualisations_figure(fv.images.numpy(), [name], fv.activation.tolist(), fv.examples.inputs.numpy())
            return _img_html(to_png(fig), f"what {name} looks like") + f"<p>{fv.seconds:.1f} s</p>"
        self.class_view.value = self._cached(("class", c), compute)

    # ---------------------------------------------------------------- display and export
    def _repr_mimebundle_(self, **kwargs: Any):
        return self.widget._repr_mimebundle_(**kwargs)

    def to_html(self) -> str:
        """The current state of every tab as one static, self-contained HTML page."""
        parts = [("Explain", self.header.value + self.explain_view.value), ("Attack", self.attack_view.value),
                 ("Out-of-distribution", self.ood_view.value)]
        body = "".join(f"<section><h2>{html.escape(t)}</h2>{v}</section>" for t, v in parts)
        return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>xaiscope explorer</title>"
                "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
                f"</head><body style='font-family:system-ui,sans-serif'>{body}</body></html>")
