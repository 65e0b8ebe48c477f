"""Model-parameter randomisation test (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS
2018, https://arxiv.org/abs/1810.03292).

An explanation that explains the *model* must change when the model's learnt weights are destroyed.
Layers are re-initialised top first (``mode="cascading"``: the top layer, then the top two, ... until
every layer is random) or one at a time (``mode="independent"``), the method is re-run on the
randomised copy, and each new map is compared with the original one by Spearman rank correlation and
SSIM. xaiscope's maps are signed, and the comparison keeps the sign by default: a map whose evidence
flips from 'for' to 'against' has changed. ``absolute=True`` compares magnitudes only (the paper's
and Quantus's default), which is stricter for methods whose magnitude follows image structure.

Verdict: *passes* when the similarity after randomising every layer is clearly below what two runs
of the same method on the same, untouched model give. For a deterministic method two runs agree
exactly (baseline 1), and "clearly" means: the paired 95 % bootstrap interval of
``baseline − randomised`` (mean over samples) lies entirely above ``margin`` (default 0.2 on the
rank-correlation scale, where 1 = same ranking and 0 = unrelated).

Stochastic methods (those taking ``seed``) are run a second time with ``seed + 1``, and their
seed-to-seed agreement ``b`` is below 1: sampling noise lowers every correlation of their maps,
the one with the randomised model's map as much as the one between seeds. Spearman's correction
for attenuation divides it out: the similarity of the method's *expected* maps on the two models is
about ``randomised / b``, and the verdict asks that it be ``margin`` below 1 — the paired interval
of ``(1 − margin) × b − randomised`` must lie entirely above 0. With ``b = 1`` this is the
deterministic rule exactly; a method whose maps are pure noise (``b ≈ 0``) cannot pass, and an
input-only method fails because its map on the randomised model agrees with the original as well
as a second seed does.

Randomisation works on a deep copy of the model; the user's model is never modified. Each layer is
re-initialised by its own ``reset_parameters()`` under ``torch.manual_seed(seed)`` inside a forked
RNG state (the global generator is left as it was) — the convention Quantus uses.

Label randomisation (the paper's second test) needs retraining the model and is out of scope.
"""

from __future__ import annotations

import copy
from typing import Any, List, Optional, Sequence

import torch
from torch import nn

from ..attribution import Attribution
from ..errors import InputShapeError, LayerNotFoundError
from ..methods._common import Timer, begin
from ._common import Method, explainer_of, flat_map, replay_params, ssim
from ._result import MetricResult, bootstrap_interval, nanmean, spearman_rows

__all__ = ["randomization", "randomizable_layers", "MARGIN"]

MARGIN = 0.2


def randomizable_layers(net: nn.Module) -> List[str]:
    """Names of the modules with their own parameters and a ``reset_parameters()``, top (output) first."""
    names = [n for n, mod in net.named_modules()
             if hasattr(mod, "reset_parameters") and any(True for _ in mod.parameters(recurse=False))]
    return names[::-1]


def _checkpoints(n_layers: int, steps: Optional[int]) -> List[int]:
    """Indices of the cascade steps to evaluate: all, or ``steps`` spread from the top layer to all."""
    if steps is None or steps >= n_layers:
        return list(range(n_layers))
    if steps <= 1:
        return [n_layers - 1]
    picks = torch.linspace(0, n_layers - 1, steps).round().long().tolist()
    return sorted(set(int(i) for i in picks))


def _reset(module: nn.Module, seed: int, device: torch.device) -> None:
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        with torch.no_grad():
            module.reset_parameters()


def randomization(
    model: Any,
    x: Any,
    method: Method = "gradcam",
    target: Any = None,
    *,
    attribution: Optional[Attribution] = None,
    params: Optional[dict] = None,
    mode: str = "cascading",
    layers: Optional[Sequence[str]] = None,
    steps: Optional[int] = None,
    absolute: bool = False,
    margin: float = MARGIN,
    seed: int = 0,
    quick: bool = False,
    strip_samples: Optional[int] = None,
) -> MetricResult:
    """Model-parameter randomisation test of one explanation method.

    Args:
        model: an ``explain.ModelWrapper``.
        x: a batch in the wrapper's input kind.
        method: a registered explainer name or an explainer function ``f(m, x, target, **params)``.
        target: class per sample; default ``attribution.target`` or the predicted class.
        attribution: the explanation to judge (its values are the original maps); computed when absent.
        params: keyword arguments for the explainer (default: those recorded on ``attribution``).
        mode: ``"cascading"`` (top layer first, accumulating) or ``"independent"`` (one layer at a time).
        layers: module names to randomise, top first (default :func:`randomizable_layers`).
        steps: evaluate only this many cascade steps, spread from the top layer to all layers
            (default all; ``quick=True`` uses 2: the top layer alone and every layer).
        absolute: compare absolute maps (Adebayo et al.'s and Quantus's default); default signed.
        margin: how far below the same-method-twice baseline the similarity must fall (see module doc).
        seed: seeds the re-initialisation.
        quick: fewer steps, for large models.
        strip_samples: evaluate the cascade steps before the last on the first ``strip_samples``
            samples only (their ``spearman``/``ssim`` entries for the other samples are NaN); the
            verdict reads the last step alone, so it is unchanged, and ``example_maps`` still shows
            every step. Ignored in ``"independent"`` mode and when an explainer parameter is a tensor.

    Returns:
        ``MetricResult`` with ``values`` = Spearman similarity after the last evaluated step (lower =
        the map depends more on the weights), ``verdict`` ``"passes"``/``"fails"``, and ``details``:
        ``layers`` (names per step), ``spearman`` and ``ssim`` (steps × N), ``baseline`` (N),
        ``example_maps`` (original + one map per step for sample 0).

    Raises:
        InputShapeError: an unknown ``mode``.
        LayerNotFoundError: a name in ``layers`` that is not a module of the model.

    Shape:
        x: ``N×C×H×W`` / ``N×T`` / ``N×T×C``; ``values``: ``N``.

    Example:
        >>> r = explain.metrics.randomization(m, x, method="gradcam")   # doctest: +SKIP
        >>> r.verdict, r.details["spearman"].mean(1)                     # per cascade step
    """
    if mode not in ("cascading", "independent"):
        raise InputShapeError(f"mode must be 'cascading' or 'independent', got {mode!r}")
    name, fn = explainer_of(method)
    wrapper, xd, t = begin(model, x, attribution.target if (attribution is not None and target is None) else target)
    kw = replay_params(fn, attribution, params)
    if attribution is None:
        attribution = fn(wrapper, xd, t, **kw)
    name = attribution.method if not callable(method) else name
    with Timer() as timer:
        original = attribution.values.float()
        mods = dict(wrapper.model.named_modules())
        names = list(layers) if layers is not None else randomizable_layers(wrapper.model)
        missing = [n for n in names if n not in mods]
        if missing:
            raise LayerNotFoundError(f"layers {missing} are not modules of the model; randomizable layers: "
                                     f"{', '.join(randomizable_layers(wrapper.model)[:12])}")
        if not names:
            raise LayerNotFoundError("the model has no layer with parameters and reset_parameters() to randomise")
        picks = _checkpoints(len(names), 2 if (quick and steps is None) else steps)
        twin = copy.copy(wrapper)
        twin.model = copy.deepcopy(wrapper.model)
        twin._session_depth = 0
        state = {k: v.clone() for k, v in twin.model.state_dict().items()} if mode == "independent" else None
        twin_mods = dict(twin.model.named_modules())
        prep = (lambda v: v.abs()) if absolute else (lambda v: v)
        subset = (strip_samples is not None and int(strip_samples) >= 1 and mode == "cascading"
                  and not any(isinstance(v, torch.Tensor) for v in kw.values()))
        sims, ssims, example = [], [], [original[0]]
        done = -1
        for step in picks:
            if mode == "cascading":
                for j in range(done + 1, step + 1):
                    _reset(twin_mods[names[j]], seed, wrapper.device)
                done = step
            else:
                twin.model.load_state_dict(state)
                _reset(twin_mods[names[step]], seed, wrapper.device)
            k = len(xd) if step == picks[-1] or not subset else min(int(strip_samples), len(xd))
            new = fn(twin, xd[:k], t[:k], **kw).values.float()
            pad = torch.full((len(xd) - k,), float("nan"))
            sims.append(torch.cat([spearman_rows(flat_map(prep(original[:k])), flat_map(prep(new))), pad]))
            ssims.append(torch.cat([ssim(prep(original[:k]), prep(new)), pad]))
            example.append(new[0])
        if "seed" in kw or _takes_seed(fn):
            again = fn(wrapper, xd, t, **{**kw, "seed": int(kw.get("seed", 0)) + 1}).values.float()
            baseline = spearman_rows(flat_map(prep(original)), flat_map(prep(again)))
            baseline_kind = "second run with seed + 1"
        else:
            baseline = torch.ones(len(original))
            baseline_kind = "deterministic: two runs agree exactly"
        final = sims[-1]
        lo, hi = bootstrap_interval(baseline - final, seed=seed)
        # attenuation-corrected test (see the module doc); for baseline 1 it is lo > margin
        clo, chi = bootstrap_interval((1 - margin) * baseline - final, seed=seed)
        verdict = "passes" if clo > 0 else "fails"
    details = {"layers": [names[i] for i in picks], "cascade_index": picks, "mode": mode,
               "spearman": torch.stack(sims), "ssim": torch.stack(ssims), "baseline": baseline,
               "baseline_kind": baseline_kind, "drop_interval": (lo, hi), "test_interval": (clo, chi),
               "example_maps": torch.stack(example)}
    p = {"mode": mode, "absolute": absolute, "margin": margin, "seed": seed, "steps": len(picks),
         "strip_samples": int(strip_samples) if subset else None,
         "layers_total": len(names), "explainer_params": {k: v for k, v in kw.items() if not isinstance(v, torch.Tensor)}}
    return MetricResult("randomization", name, final, nanmean(final), p, timer.seconds, verdict,
                        (lo, hi), details, higher_is_better=False)


def _takes_seed(fn) -> bool:
    import inspect
    try:
        return "seed" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
