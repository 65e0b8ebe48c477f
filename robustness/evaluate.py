"""The public robustness entry points: ``attack``, ``robust_accuracy`` and ``corruption_accuracy``."""

from __future__ import annotations

import inspect
import time
from typing import Any, Iterable, Optional, Sequence

import torch

from explain.data import collect
from explain.errors import InputShapeError, UnknownMethodError
from explain import check_wrapper

from .registry import ATTACKS, CORRUPTIONS, DEFAULT_CORRUPTIONS
from .results import AttackResult, CorruptionResult, RobustAccuracyResult

__all__ = ["attack", "robust_accuracy", "corruption_accuracy", "make_attack"]


def make_attack(method: str, **params: Any):
    """An attack object from its registry name and constructor parameters."""
    if method not in ATTACKS:
        raise UnknownMethodError(f"unknown attack {method!r}; available: {', '.join(ATTACKS)}")
    cls = ATTACKS[method]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise InputShapeError(f"attack {method!r} does not take {unknown}; it takes {sorted(accepted)}")
    return cls(**params)


def attack(model: Any, x: Any, y: Any, method: str = "pgd", *, eps: float = 8 / 255, seed: int = 0,
           target: Any = None, **params: Any) -> AttackResult:
    """Attack a batch.

    Args:
        model: an ``explain.ModelWrapper``.
        x, y: inputs in the wrapper's kind and their labels.
        method: ``"fgsm"``, ``"pgd"``, ``"apgd"`` (images, series, token embeddings) or ``"hotflip"`` (tokens).
        eps: the budget — pixels for images, per-channel standard deviations for series, embedding
            units for token embeddings (unused by hotflip, which takes ``max_tokens``).
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
    if method == "hotflip":
        return make_attack(method, **params).run(model, x, y, target=target, seed=seed)
    return make_attack(method, eps=eps, **params).run(model, x, y, target=target, seed=seed)


def _bisect(wrapper, atk, x, y, correct, hi: float, steps: int, seed: int) -> torch.Tensor:
    n = len(x)
    lo_e = torch.zeros(n)
    hi_e = torch.full((n,), float(hi))
    flipped_at_hi = ~atk.run(wrapper, x, y, seed=seed, eps=hi_e).adv_pred.eq(y) & correct
    for _ in range(steps):
        mid = (lo_e + hi_e) / 2
        fooled = atk.run(wrapper, x, y, seed=seed, eps=mid).adv_pred.ne(y)
        hi_e = torch.where(fooled, mid, hi_e)
        lo_e = torch.where(fooled, lo_e, mid)
    out = torch.where(flipped_at_hi, hi_e, torch.full((n,), float("inf")))
    return torch.where(correct, out, torch.zeros(n))


def robust_accuracy(model: Any, data: Any, eps: Sequence[float] = (0, 2 / 255, 4 / 255, 8 / 255), method: str = "pgd",
                    *, seed: int = 0, max_samples: Optional[int] = None, minimal_eps: bool = True,
                    bisect_steps: int = 5, **params: Any) -> RobustAccuracyResult:
    """Accuracy under attack at each budget, and each sample's minimal flipping budget (bisection).

    Args:
        data: ``(inputs, labels)``, a ``Dataset`` or a ``DataLoader``.
        eps: budgets (see :func:`attack` for units).
        minimal_eps: also bisect, per correctly classified sample, the smallest budget in
            ``[0, max(eps)]`` that flips it (``inf`` when even ``max(eps)`` does not; 0 for samples
            already misclassified).

    Example:
        >>> c = robustness.robust_accuracy(m, (x, y), eps=[0, 2/255, 8/255], method="pgd")   # doctest: +SKIP
        >>> c.accuracy, c.median_minimal_eps
    """
    start = time.perf_counter()
    wrapper = check_wrapper(model)
    x, y = collect(data, max_samples=max_samples)
    if y is None:
        raise InputShapeError("robust_accuracy needs labels: pass (inputs, labels)")
    wrapper.check_inputs(x)
    y = wrapper.check_labels(y, x)
    eps = [float(e) for e in eps]
    if not eps:
        raise InputShapeError("eps: give at least one budget")
    clean = wrapper.predict(x)
    correct = clean == y
    accs = []
    for e in eps:
        if e == 0:
            accs.append(float(correct.float().mean()))
            continue
        accs.append(attack(wrapper, x, y, method, eps=e, seed=seed, **params).robust_accuracy)
    mins = None
    if minimal_eps and method != "hotflip" and max(eps) > 0:
        mins = _bisect(wrapper, make_attack(method, eps=max(eps), **params), x, y, correct, max(eps), bisect_steps, seed)
    return RobustAccuracyResult(eps=eps, accuracy=accs, clean_accuracy=float(correct.float().mean()), method=method,
                                params={**params, "seed": seed, "bisect_steps": bisect_steps}, minimal_eps=mins,
                                seconds=time.perf_counter() - start, n=len(x))


def corruption_accuracy(model: Any, data: Any, corruptions: Optional[Iterable[str]] = None,
                        severities: Sequence[int] = (1, 2, 3, 4, 5), *, seed: int = 0,
                        max_samples: Optional[int] = None) -> CorruptionResult:
    """Accuracy on corrupted copies of the data, per corruption and severity.

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
    clean = float((wrapper.predict(x) == y).float().mean())
    ids = ({"pad_id": wrapper.pad_id, "unk_id": wrapper.unk_id, "keep": wrapper.special_mask(x)}
           if wrapper.input_kind == "tokens" else {})
    acc = {}
    for i, name in enumerate(names):
        row = []
        for s in severities:
            gen = torch.Generator().manual_seed(seed * 1000 + i * 10 + int(s))
            xc = table[name].apply(x, int(s), gen, **ids)
            row.append(float((wrapper.predict(xc) == y).float().mean()))
        acc[name] = row
    return CorruptionResult(clean_accuracy=clean, severities=[int(s) for s in severities], accuracy=acc, seed=seed,
                            seconds=time.perf_counter() - start, n=len(x))
