"""The public robustness entry points: ``attack``, ``robust_accuracy`` and ``corruption_accuracy``."""

from __future__ import annotations

import time
import zlib
from typing import Any, Iterable, Optional, Sequence

import torch

from explain.data import collect
from explain.errors import InputShapeError, UnknownMethodError
from explain import check_wrapper

from . import distributed as dist
from .attacks._base import sample_seeds
from .registry import CORRUPTIONS, DEFAULT_CORRUPTIONS, attack_spec
from .results import AttackResult, CorruptionResult, RobustAccuracyResult
from .sweep import curve_from_minimal, default_budgets, make_attack, minimal_budgets

__all__ = ["attack", "robust_accuracy", "corruption_accuracy", "make_attack"]


def attack(model: Any, x: Any, y: Any, method: str = "pgd", *, eps: Optional[float] = None, seed: int = 0,
           target: Any = None, **params: Any) -> AttackResult:
    """Attack a batch.

    Args:
        model: an ``explain.ModelWrapper``.
        x, y: inputs in the wrapper's kind and their labels.
        method: a name from ``robustness.registry.ATTACK_SPECS`` (``"fgsm"``, ``"pgd"``, ``"apgd"``
            on images, series and token embeddings; ``"hotflip"`` on token ids).
        eps: the budget in the attack's unit (``ATTACK_SPECS[method].units``): pixels in [0, 1] for
            images, per-channel standard deviations for series, standard deviations of the
            embedding table's entries for token embeddings, a number of substituted tokens for
            hotflip. ``None``: the attack's own default (8/255 for the gradient attacks).
        seed: seeds the random start; the same seed gives the same result.
        target: a class (or one per sample) for a targeted attack.
        **params: the attack's own parameters (``steps``, ``alpha``, ``norm``, ``random_start``,
            ``restarts``, ``max_tokens``, ...).

    Returns:
        ``AttackResult`` (adversarial inputs, predictions, success mask, norms, seconds).

    Raises:
        InputShapeError: inputs of the wrong shape or kind, or not one label per input.
        InputValueError: labels outside the model's classes (the message names them), a negative budget.
        UnknownMethodError: an unknown ``method``.

    Example:
        >>> r = robustness.attack(m, x, y, method="pgd", eps=8/255, steps=10, seed=0)   # doctest: +SKIP
        >>> r.robust_accuracy
    """
    spec = attack_spec(method)
    if eps is not None:
        params[spec.budget_param] = eps
    return make_attack(method, **params).run(model, x, y, target=target, seed=seed)


def robust_accuracy(model: Any, data: Any, eps: Optional[Sequence[float]] = None, method: str = "apgd",
                    *, seed: int = 0, max_samples: Optional[int] = None, minimal_eps: bool = True,
                    bisect_steps: int = 5, **params: Any) -> RobustAccuracyResult:
    """Accuracy under attack at each budget, and each sample's minimal flipping budget.

    Inside a ``torch.distributed`` process group every rank passes the same data and attacks its
    own block of samples; the minimal budgets are gathered back in sample order, so every rank
    returns the same result, equal to a single process's (random starts are seeded per sample).

    The curve cannot rise with the budget: a sample fooled at one budget counts as fooled at every
    larger one (the adversarial input lies inside the larger ball too). With ``minimal_eps`` each
    correctly classified sample's smallest flipping budget is also bisected between the sweep's
    budgets, and the curve is read off those minimal budgets, so the two always agree:
    ``accuracy[k]`` is the share of samples whose minimal budget exceeds ``eps[k]``.

    Args:
        data: ``(inputs, labels)``, a ``Dataset`` or a ``DataLoader``.
        eps: budgets in the attack's unit (see :func:`attack`); ``None`` picks the registry's sweep
            for the input kind, or for token embeddings one chosen from the model
            (:func:`robustness.sweep.default_budgets`).
        method: an attack name; the default, APGD, adapts its own step size.
        minimal_eps: bisect each sample's minimal budget in ``[0, max(eps)]`` (``inf`` when even
            ``max(eps)`` does not flip it; 0 for samples already misclassified). Count budgets
            (hotflip) report the number of tokens the attack actually substituted.
        **params: the attack's parameters; the registry's defaults fill the gaps (e.g. 50 APGD
            steps, 20 PGD steps).

    Returns:
        ``RobustAccuracyResult`` (non-increasing ``accuracy`` over ascending ``eps``).

    Raises:
        InputShapeError: no labels, no budgets, or an attack that does not fit the input kind.
        UnknownMethodError: ``method`` is not registered.

    Example:
        >>> c = robustness.robust_accuracy(m, (x, y), eps=[0, 2/255, 8/255], method="pgd")   # doctest: +SKIP
        >>> c.accuracy, c.median_minimal_eps
    """
    start = time.perf_counter()
    wrapper = check_wrapper(model)
    x, y = collect(data, max_samples=max_samples)
    if y is None:
        raise InputShapeError("robust_accuracy needs labels: pass (inputs, labels)")
    spec = attack_spec(method)
    spec.check_kind(method, wrapper.input_kind)
    x = wrapper.check_inputs(x)
    y = wrapper.check_labels(y, x)
    if eps is None:
        eps = default_budgets(wrapper, x, y, method, seed=seed, params=params)
    eps = sorted(float(e) for e in eps)
    if not eps:
        raise InputShapeError("eps: give at least one budget")
    part = dist.local_range(len(x))  # inside a process group each rank attacks its own block
    if part.stop > part.start:
        local = minimal_budgets(wrapper, x[part], y[part], method, eps, seed=seed, params=params,
                                bisect_steps=bisect_steps if minimal_eps else 0)
    else:
        local = torch.zeros(0)
    mins = dist.gather_in_order(local, len(x))
    accs = curve_from_minimal(mins, eps)
    correct = mins > 0
    full = {**spec.defaults, **params}
    return RobustAccuracyResult(eps=eps, accuracy=accs, clean_accuracy=float(correct.float().mean()), method=method,
                                params={**full, "seed": seed, "bisect_steps": bisect_steps if minimal_eps else 0},
                                minimal_eps=mins, seconds=time.perf_counter() - start, n=len(x),
                                unit=spec.units.get(wrapper.input_kind, ""), label=spec.label(full))


def corruption_accuracy(model: Any, data: Any, corruptions: Optional[Iterable[str]] = None,
                        severities: Sequence[int] = (1, 2, 3, 4, 5), *, seed: int = 0,
                        max_samples: Optional[int] = None) -> CorruptionResult:
    """Accuracy on corrupted copies of the data, per corruption and severity.

    Each sample's corruption is drawn from its own generator, seeded from ``seed``, the corruption,
    the severity and the sample's values, so a sample is corrupted the same way in any batch and
    on any rank. Inside a ``torch.distributed`` process group every rank passes the same data,
    evaluates its own block of samples, and the counts of correct predictions are all-reduced.

    Args:
        corruptions: names for the wrapper's input kind (default: all of them); see
            ``robustness.registry.CORRUPTIONS``.
        severities: 1 (mild) … 5 (strong).
        seed: seeds every corruption.

    Example:
        >>> k = robustness.corruption_accuracy(m, (x, y), corruptions=["gaussian_noise", "blur"])   # doctest: +SKIP
        >>> k.accuracy["blur"]
    """
    start = time.perf_counter()
    wrapper = check_wrapper(model)
    x, y = collect(data, max_samples=max_samples)
    if y is None:
        raise InputShapeError("corruption_accuracy needs labels: pass (inputs, labels)")
    wrapper.check_inputs(x)
    y = wrapper.check_labels(y, x)
    table = CORRUPTIONS[wrapper.input_kind]
    names = list(corruptions) if corruptions is not None else DEFAULT_CORRUPTIONS[wrapper.input_kind]
    unknown = [c for c in names if c not in table]
    if unknown:
        raise UnknownMethodError(f"unknown {wrapper.input_kind} corruption(s) {unknown}; available: {', '.join(table)}")
    part = dist.local_range(len(x))
    xs, ys = x[part], y[part]
    ids = ({"pad_id": wrapper.pad_id, "unk_id": wrapper.unk_id, "keep": wrapper.special_mask(xs)}
           if wrapper.input_kind == "tokens" else {})
    base = sample_seeds(xs, seed)
    counts = [int((wrapper.predict(xs) == ys).sum()) if len(xs) else 0]
    for name in names:
        for s in severities:
            if not len(xs):
                counts.append(0)
                continue
            tag = zlib.crc32(f"{name}/{int(s)}".encode())
            gens = [torch.Generator().manual_seed((b ^ tag) & ((1 << 63) - 1)) for b in base]
            xc = table[name].apply(xs, int(s), gens, **ids)
            counts.append(int((wrapper.predict(xc) == ys).sum()))
    total = dist.all_reduce_sum(torch.tensor(counts, dtype=torch.float64)) / max(len(x), 1)
    clean = float(total[0])
    acc = {name: [float(v) for v in total[1 + i * len(severities): 1 + (i + 1) * len(severities)]]
           for i, name in enumerate(names)}
    return CorruptionResult(clean_accuracy=clean, severities=[int(s) for s in severities], accuracy=acc, seed=seed,
                            seconds=time.perf_counter() - start, n=len(x))
