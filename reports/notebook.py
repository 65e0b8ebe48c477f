"""Rich notebook display of results, without widgets.

Results live in ``explain`` and ``robustness`` and hold no drawing code; this module teaches
IPython to show them as HTML (with inline PNGs). It registers itself when ``reports`` is imported
inside a running IPython kernel; :func:`register` does it by hand.

Example:
    >>> import reports.notebook; reports.notebook.register()   # doctest: +SKIP
    >>> explain.gradcam(m, x)                                   # the cell shows the maps
"""

from __future__ import annotations

import base64
import html
from typing import Any, Optional

import torch

from . import figures, figures_ood, figures_robustness
from ._png import plt, to_png


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(rows, header) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def attribution_html(attr: Any, limit: int = 8) -> str:
    """An ``Attribution`` as HTML: a header line and its first maps on a signed colour scale."""
    n = min(len(attr), limit)
    maps = [figures.normalise(attr.values[i]) for i in range(n)]
    if attr.values.dim() == 3:
        fig, axes = plt.subplots(1, n, figsize=(1.6 * n, 1.8), squeeze=False)
        for ax, mp, i in zip(axes[0], maps, range(n)):
            ax.imshow(mp.numpy(), cmap=figures.DIVERGING, vmin=-1, vmax=1)
            ax.set_title(f"#{i} → class {int(attr.target[i])}", fontsize=7)
            ax.axis("off")
    else:
        fig, ax = plt.subplots(figsize=(7, 0.35 * n + 0.6))
        ax.imshow(torch.stack(maps).numpy(), aspect="auto", cmap=figures.DIVERGING, vmin=-1, vmax=1)
        ax.set_yticks(range(n), [f"#{i} → {int(attr.target[i])}" for i in range(n)], fontsize=7)
        ax.set_xlabel("position", fontsize=7)
    head = (f"<b>{html.escape(attr.method)}</b> · {len(attr)} samples · values {tuple(attr.values.shape)} · "
            f"{attr.seconds:.2f} s" + (f" · layer {html.escape(attr.layer)}" if attr.layer else ""))
    quality = "".join(f" · {html.escape(k)} mean {float(v.float().mean()):.3f}" for k, v in attr.quality.items())
    return f"<div>{head}{quality}<br>{_img(to_png(fig), attr.method + ' maps')}</div>"


def attack_html(result: Any) -> str:
    """An ``AttackResult`` as HTML: its headline numbers and, for images/series, a few examples."""
    d = result.to_dict()
    rows = [[k, f"{v:.4g}" if isinstance(v, float) else v] for k, v in d.items() if k != "params"]
    out = f"<div><b>{html.escape(result.method)}</b> attack{_table(rows, ['', 'value'])}"
    idx = [int(i) for i in result.success.nonzero().flatten()[:3]] or [0]
    names = [str(i) for i in range(int(max(result.clean_pred.max(), result.adv_pred.max())) + 1)]
    if result.inputs.dim() == 4:
        out += _img(to_png(figures_robustness.adversarial_images(result, names, idx)), "adversarial examples")
    elif result.inputs.dim() == 3 and result.inputs.dtype.is_floating_point:
        out += _img(to_png(figures_robustness.adversarial_series(result, names, idx)), "adversarial series")
    return out + "</div>"


def curve_html(result: Any) -> str:
    """Robust-accuracy or corruption results as a small figure."""
    if hasattr(result, "eps"):
        fig = figures_robustness.robust_curve({result.method: result}, "budget")
    else:
        fig = figures_robustness.corruption_curves(result)
    return f"<div>{_img(to_png(fig), 'accuracy curve')}</div>"


def ood_html(evaluation: Any) -> str:
    """An ``OODEvaluation`` as a metrics table with its ROC curves."""
    rows = [[k, f"{r.auroc:.3f}", f"{r.aupr_in:.3f}", f"{r.aupr_out:.3f}", f"{r.fpr95:.1%}"] for k, r in evaluation.methods.items()]
    table = _table(rows, ["detector", "AUROC", "AUPR-In", "AUPR-Out", "FPR@95%TPR"])
    roc = _img(to_png(figures_ood.roc_figure(evaluation)), "ROC curves") if evaluation.methods else ""
    return f"<div>{table}{roc}</div>"


def metric_html(result: Any) -> str:
    """An ``explain.metrics.MetricResult`` as HTML: its headline, verdict, interval and cost."""
    rows = [["aggregate", f"{result.aggregate:.4g}" + (" (lower is better)" if not result.higher_is_better else "")],
            ["verdict", result.verdict or "—"],
            ["interval", "—" if result.interval is None else f"{result.interval[0]:.3g} … {result.interval[1]:.3g}"],
            ["samples", len(result)], ["seconds", f"{result.seconds:.2f}"]]
    rows += [[k, v] for k, v in result.params.items() if not isinstance(v, dict)]
    return f"<div><b>{html.escape(result.metric)}</b> of {html.escape(result.method)}{_table(rows, ['', 'value'])}</div>"


def verification_html(result: Any) -> str:
    """A ``VerificationResult`` as HTML: verdict counts and one row per sample."""
    rows = [[i, st, int(result.labels[i]), f"{float(result.certified_margin[i]):.4g}",
             int(result.adv_pred[i]) if st == "violated" else ""] for i, st in enumerate(result.status[:20])]
    counts = " · ".join(f"{k} {v}" for k, v in result.counts.items())
    return (f"<div><b>verify</b> ({html.escape(result.method)}, ε = {result.eps:.4g}) · {counts} · "
            f"{result.seconds.get('total', 0):.2f} s"
            f"{_table(rows, ['sample', 'status', 'label', 'certified margin', 'counterexample class'])}</div>")


def bounds_html(result: Any) -> str:
    """``OutputBounds`` as HTML: the interval per sample and output (first rows)."""
    rows = [[i] + [f"[{float(lo):.3g}, {float(hi):.3g}]" for lo, hi in zip(result.lower[i], result.upper[i])]
            for i in range(min(len(result), 10))]
    head = ["sample"] + [str(k) for k in range(result.lower.shape[1])]
    return (f"<div><b>{html.escape(result.method)}</b> bounds on {html.escape(result.spec)} · ε = {result.eps:.4g} · "
            f"mean width {float(result.width.mean()):.4g}{_table(rows, head)}</div>")


def certified_html(result: Any) -> str:
    """A ``CertifiedAccuracyResult`` as its certified-vs-empirical figure."""
    from . import figures_verification
    return f"<div>{_img(to_png(figures_verification.certified_curve(result, 'budget')), 'certified accuracy')}</div>"


def register(ip: Optional[Any] = None) -> bool:
    """Register the HTML formatters with IPython; returns False outside IPython."""
    if ip is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        ip = get_ipython()
    if ip is None:
        return False
    import robustness
    from explain import Attribution
    fmt = ip.display_formatter.formatters["text/html"]
    fmt.for_type(Attribution, attribution_html)
    fmt.for_type(robustness.AttackResult, attack_html)
    fmt.for_type(robustness.RobustAccuracyResult, curve_html)
    fmt.for_type(robustness.CorruptionResult, curve_html)
    fmt.for_type(robustness.OODEvaluation, ood_html)
    from explain.metrics import MetricResult
    fmt.for_type(MetricResult, metric_html)
    fmt.for_type(robustness.VerificationResult, verification_html)
    fmt.for_type(robustness.OutputBounds, bounds_html)
    fmt.for_type(robustness.CertifiedAccuracyResult, certified_html)
    return True
