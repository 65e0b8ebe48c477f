"""Faithfulness under random perturbations: Bhatt et al.'s faithfulness correlation and captum's
infidelity (Yeh et al.).

Both work on input *elements* — every pixel of every channel (the map is shared by a pixel's
channels), every token, every time step of every channel — as Quantus and captum do.

- Faithfulness correlation (Bhatt, Weller & Moura, IJCAI 2020, https://arxiv.org/abs/2005.00631):
  for ``n_runs`` random subsets ``S`` of ``subset_size`` elements, replace ``x_S`` by the baseline and
  correlate (Pearson, over runs) ``Σ_{i∈S} a_i`` with ``f(x) − f(x with x_S replaced)``. Higher = better.
- Infidelity (Yeh et al., NeurIPS 2019, https://arxiv.org/abs/1901.09392; captum's definition):
  ``E_I [(I·a − (f(x) − f(x − I)))²]`` with Gaussian noise ``I ~ N(0, σ²)``; with ``normalize=True``
  the attribution is first scaled by the least-squares factor ``β = E[(I·a)Δf] / E[(I·a)²]`` (so
  the arbitrary scale of a map does not count). Lower = better. Continuous inputs only.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from ..attribution import Attribution
from ..errors import InputShapeError
from ..methods._common import Timer, begin
from ..methods._perturb import score_outputs
from ._common import method_baseline, method_groups
from ._result import MetricResult, nanmean, pearson_rows

__all__ = ["faithfulness_correlation", "infidelity", "element_attributions"]


def element_attributions(values: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
    """The map broadcast to every input element: ``N×H×W → N×C×H×W``; ``N×T → N×T×C`` for series."""
    if kind == "image":
        return values[:, None].expand_as(x)
    if kind == "series":
        return values[:, :, None].expand_as(x)
    return values


def faithfulness_correlation(
    model: Any,
    x: Any,
    attribution: Attribution,
    target: Any = None,
    *,
    n_runs: int = 100,
    subset_size: Optional[int] = None,
    baseline: Any = None,
    subsets: Optional[torch.Tensor] = None,
    output: str = "probability",
    seed: int = 0,
    batch_size: Optional[int] = None,
) -> MetricResult:
    """Faithfulness correlation of Bhatt et al. (2020) per sample.

    Args:
        model: an ``explain.ModelWrapper``.
        x: the batch ``attribution`` explains.
        attribution: the explanation to judge.
        target: class per sample; default ``attribution.target``.
        n_runs: random subsets per sample.
        subset_size: elements per subset; default 10 % of the elements (at least 1).
        baseline: what replaced elements become; default the method's own baseline.
        subsets: explicit element indices ``N×n_runs×subset_size`` into the flattened input (for
            exact comparisons); overrides ``n_runs``, ``subset_size`` and ``seed``.
        output: ``"probability"`` (default) or ``"logit"``.
        seed: seeds the subsets.

    Returns:
        ``MetricResult`` with the Pearson correlation per sample (NaN when the output never moved).

    Shape:
        x: ``N×C×H×W`` / ``N×T`` / ``N×T×C``; ``subsets``: ``N×R×s`` indices into ``x[i].flatten()``.

    Example:
        >>> r = explain.metrics.faithfulness_correlation(m, x, explain.integrated_gradients(m, x))  # doctest: +SKIP
    """
    wrapper, xd, t = begin(model, x, attribution.target if target is None else target)
    with Timer() as timer:
        n = len(xd)
        flat_x = xd.reshape(n, -1)
        d = flat_x.shape[1]
        a = element_attributions(attribution.values.float().to(wrapper.device), xd, wrapper.input_kind).reshape(n, -1)
        groups = method_groups(wrapper, xd, attribution.method, attribution.params)
        base = method_baseline(wrapper, xd, attribution.method, attribution.params, groups, baseline).reshape(n, -1)
        if subsets is None:
            s = int(subset_size) if subset_size is not None else max(1, round(0.1 * d))
            if not 1 <= s <= d:
                raise InputShapeError(f"subset_size must be in [1, {d}], got {s}")
            gen = torch.Generator().manual_seed(seed)
            subsets = torch.stack([torch.rand(n, d, generator=gen).topk(s, dim=1).indices for _ in range(int(n_runs))], 1)
        subsets = torch.as_tensor(subsets).long().to(wrapper.device)
        if subsets.dim() != 3 or subsets.shape[0] != n or int(subsets.max()) >= d:
            raise InputShapeError(f"subsets: expected indices N×R×s below {d} with N = {n}, got {tuple(subsets.shape)}")
        r = subsets.shape[1]
        td = t.to(wrapper.device)

        def run(sl: slice) -> torch.Tensor:
            rows = torch.arange(sl.start, sl.stop, device=wrapper.device)
            i, k = rows // r, rows % r
            pert = flat_x[i].clone()
            idx = subsets[i, k]
            pert.scatter_(1, idx, base[i].gather(1, idx))
            return score_outputs(wrapper.forward(pert.view(len(rows), *xd.shape[1:])), td[i], output)

        with wrapper.session(grad=False):
            row = xd.shape[1:]  # the model's own input shape: the batch size tuned for it applies
            fx = score_outputs(torch.cat(wrapper.batched(lambda sl: wrapper.forward(xd[sl]), n, batch_size=batch_size,
                                                         shape=row)), td, output)
            fp = torch.cat(wrapper.batched(run, n * r, batch_size=batch_size, desc="faithfulness", shape=row)).view(n, r)
        sums = a[torch.arange(n, device=a.device)[:, None, None], subsets].sum(2)
        corr = pearson_rows(sums, fx[:, None] - fp).cpu()
    params = {"n_runs": r, "subset_size": int(subsets.shape[2]), "output": output, "seed": seed,
              "baseline": "method" if baseline is None else "custom"}
    return MetricResult("faithfulness_correlation", attribution.method, corr, nanmean(corr), params, timer.seconds)


def infidelity(
    model: Any,
    x: Any,
    attribution: Attribution,
    target: Any = None,
    *,
    n_perturb: int = 10,
    noise_std: float = 0.1,
    normalize: bool = True,
    noise: Optional[torch.Tensor] = None,
    output: str = "logit",
    seed: int = 0,
    batch_size: Optional[int] = None,
) -> MetricResult:
    """Infidelity (captum's definition) per sample; lower = more faithful.

    Args:
        model: an ``explain.ModelWrapper`` of an image or series model.
        x: the batch ``attribution`` explains.
        attribution: the explanation to judge.
        target: class per sample; default ``attribution.target``.
        n_perturb: noise draws per sample.
        noise_std: σ of the Gaussian perturbation in natural units.
        normalize: scale the attribution by its least-squares factor first (captum's ``normalize``).
        noise: explicit perturbations ``I`` (``(N·n_perturb)×…``, sample-major, as captum lays them
            out); overrides ``noise_std``/``seed``.
        output: ``"logit"`` (default, as captum uses the model's raw output) or ``"probability"``.

    Raises:
        InputShapeError: token inputs (ids cannot be perturbed by noise).

    Shape:
        ``noise``: ``(N·n_perturb)×C×H×W`` / ``(N·n_perturb)×T×C``; ``values``: ``N``.

    Example:
        >>> r = explain.metrics.infidelity(m, x, explain.saliency(m, x), noise_std=0.05)  # doctest: +SKIP
    """
    wrapper, xd, t = begin(model, x, attribution.target if target is None else target)
    if wrapper.input_kind == "tokens":
        raise InputShapeError("infidelity perturbs inputs with Gaussian noise; token ids cannot be perturbed — "
                              "use deletion/insertion or faithfulness_correlation for token models")
    with Timer() as timer:
        n, s = len(xd), int(n_perturb)
        if noise is None:
            gen = torch.Generator().manual_seed(seed)
            noise = torch.randn((n * s,) + tuple(xd.shape[1:]), generator=gen) * float(noise_std)
        noise = torch.as_tensor(noise, dtype=xd.dtype).to(wrapper.device)
        if tuple(noise.shape[1:]) != tuple(xd.shape[1:]) or noise.shape[0] % n:
            raise InputShapeError(f"noise: expected shape {(n * s,) + tuple(xd.shape[1:])}, got {tuple(noise.shape)}")
        s = noise.shape[0] // n
        a = element_attributions(attribution.values.float().to(wrapper.device), xd, wrapper.input_kind)
        td = t.to(wrapper.device)

        def run(sl: slice) -> torch.Tensor:
            rows = torch.arange(sl.start, sl.stop, device=wrapper.device)
            i = rows // s
            return score_outputs(wrapper.forward(xd[i] - noise[rows]), td[i], output)

        with wrapper.session(grad=False):
            row = xd.shape[1:]  # the model's own input shape: the batch size tuned for it applies
            fx = score_outputs(torch.cat(wrapper.batched(lambda sl: wrapper.forward(xd[sl]), n, batch_size=batch_size,
                                                         shape=row)), td, output)
            fp = torch.cat(wrapper.batched(run, n * s, batch_size=batch_size, desc="infidelity", shape=row)).view(n, s)
        ia = (noise.view(n, s, -1).double() * a.reshape(n, 1, -1).double()).sum(2)  # N×S
        df = (fx[:, None] - fp).double()
        if normalize:
            beta = (ia * df).mean(1) / (ia * ia).mean(1)
            beta = torch.where(torch.isfinite(beta), beta, torch.ones_like(beta))
            ia = ia * beta[:, None]
        inf = ((ia - df) ** 2).mean(1).float().cpu()
    params = {"n_perturb": s, "noise_std": float(noise_std), "normalize": normalize, "output": output, "seed": seed}
    return MetricResult("infidelity", attribution.method, inf, nanmean(inf), params, timer.seconds,
                        higher_is_better=False)
