"""The public robustness entry points: ``attack``, ``robust_accuracy`` and ``corruption_accuracy``."""

from __future__ import annotations

import math
import numbers
import time
import warnings
import zlib
from typing import Any, Iterable, Optional, Sequence

import torch

from explain.data import stream
from explain.errors import EmptyDataError, InputShapeError, InputValueError, NonFiniteOutputError, UnknownMethodError
from explain import check_wrapper

from . import distributed as dist
from ._sharded_stream import gather_batches, rounds
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
                    bisect_steps: int = 5, batch_size: int = 256, **params: Any) -> RobustAccuracyResult:
    """Accuracy under attack at each budget, and each sample's minimal flipping budget.

    Inside a ``torch.distributed`` process group every rank passes the same data and attacks every
    W-th batch of the stream (reading only those when the data is indexable: tensors, a ``Dataset``,
    an unshuffled ``DataLoader``); the minimal budgets are gathered back in sample order, so every
    rank returns the same result, equal to a single process's (random starts are seeded per sample).

    The curve cannot rise with the budget: a sample fooled at one budget counts as fooled at every
    larger one (the adversarial input lies inside the larger ball too). With ``minimal_eps`` each
    correctly classified sample's smallest flipping budget is also bisected between the sweep's
    budgets, and the curve is read off those minimal budgets, so the two always agree:
    ``accuracy[k]`` is the share of samples whose minimal budget exceeds ``eps[k]``.

    The data is streamed in batches of ``batch_size`` (see :func:`explain.data.stream`): only one
    batch of inputs is in memory at a time, plus one minimal budget per sample. Every sample's
    random start is seeded from the sample itself, so the numbers do not depend on how ``data``
    was batched.

    Args:
        data: ``(inputs, labels)``, a ``Dataset``, a ``DataLoader`` or any iterable of
            ``(inputs, labels)`` batches (a generator works: one pass is enough).
        eps: budgets in the attack's unit (see :func:`attack`); ``None`` picks the registry's sweep
            for the input kind, or for token embeddings one chosen from the model
            (:func:`robustness.sweep.default_budgets`).
        method: an attack name; the default, APGD, adapts its own step size.
        minimal_eps: bisect each sample's minimal budget in ``[0, max(eps)]`` (``inf`` when even
            ``max(eps)`` does not flip it; 0 for samples already misclassified). Count budgets
            (hotflip) report the number of tokens the attack actually substituted.
        batch_size: samples attacked together; source batches are split or joined to this size.
        **params: the attack's parameters; the registry's defaults fill the gaps (e.g. 50 APGD
            steps, 20 PGD steps).

    Returns:
        ``RobustAccuracyResult`` (non-increasing ``accuracy`` over ascending ``eps``).

    Raises:
        InputShapeError: no labels, no budgets, an attack that does not fit the input kind, or
            batches of the wrong form.
        InputValueError: a budget that is negative, NaN or infinite (or not whole, for count budgets).
        NonFiniteOutputError: the model's logits are NaN/Inf for some samples (or for their attacked
            copies); ``indices`` count from the data's first sample.
        EmptyDataError: ``data`` holds no samples.
        UnknownMethodError: ``method`` is not registered.

    Warns:
        UserWarning: no correctly classified sample flips at any budget (``flipped_share == 0``),
            which real models rarely allow: the model may ignore its input or the attack may fail
            on it (masked gradients).

    Shape:
        inputs: the wrapper's kind, ``N×…``; labels: ``N``; ``minimal_eps``: ``N``.

    Example:
        >>> c = robustness.robust_accuracy(m, (x, y), eps=[0, 2/255, 8/255], method="pgd")   # doctest: +SKIP
        >>> c.accuracy, c.median_minimal_eps
    """
    start = time.perf_counter()
    wrapper = check_wrapper(model)
    spec = attack_spec(method)
    spec.check_kind(method, wrapper.input_kind)
    if eps is not None:
        eps = sorted(_budgets(eps, spec.budget == "count", method))
        if not eps:
            raise InputShapeError("eps: give at least one budget")
    parts = []
    for b, x, y in rounds(stream(data, batch_size, max_samples=max_samples)):
        try:
            if b is not None:
                if y is None:
                    raise InputShapeError("robust_accuracy needs labels: pass (inputs, labels) or batches of (inputs, labels)")
                x = wrapper.check_inputs(x)
                y = wrapper.check_labels(y, x)
            if eps is None:  # chosen from the first batch (rank 0's), before any sample is attacked
                chosen = sorted(float(e) for e in default_budgets(wrapper, x, y, method, seed=seed, params=params)) \
                    if b == 0 else None
                eps = dist.gather_objects(chosen)[0]
            if b is not None:
                parts.append((b, minimal_budgets(wrapper, x, y, method, eps, seed=seed, params=params,
                                                 bisect_steps=bisect_steps if minimal_eps else 0)))
        except NonFiniteOutputError as error:  # indices of the data, not of the batch
            raise _in_data(error, (b or 0) * batch_size) from error
    mins = gather_batches(parts, torch.zeros(0))
    accs = curve_from_minimal(mins, eps)
    correct = mins > 0
    full = {**spec.defaults, **params}
    result = RobustAccuracyResult(eps=eps, accuracy=accs, clean_accuracy=float(correct.float().mean()), method=method,
                                params={**full, "seed": seed, "bisect_steps": bisect_steps if minimal_eps else 0},
                                minimal_eps=mins, seconds=time.perf_counter() - start, n=len(mins),
                                unit=spec.units.get(wrapper.input_kind, ""), label=spec.label(full))
    if result.flipped_share == 0.0 and eps[-1] > 0:
        warnings.warn(f"{method} flipped none of the {int(correct.sum())} correctly classified samples up to the "
                      f"largest budget ({eps[-1]:g} {result.unit}): the model may ignore its input (untrained or "
                      "constant outputs) or the attack may be failing on it (masked gradients); check the clean "
                      "predictions, then try larger budgets or another attack", stacklevel=2)
    return result


def _budgets(eps: Any, whole: bool, method: str) -> list:
    """The budgets as floats; each must be a finite number ≥ 0 (a whole number for count budgets)."""
    if isinstance(eps, (numbers.Real, torch.Tensor)) and not (isinstance(eps, torch.Tensor) and eps.dim() > 0):
        eps = [eps]
    out = []
    for e in eps:
        if isinstance(e, bool) or not isinstance(e, (numbers.Real, torch.Tensor)) or \
                (isinstance(e, torch.Tensor) and e.numel() != 1):
            raise InputValueError(f"eps: every budget must be a number, got {e!r} in {list(eps)!r}")
        v = float(e)
        if not math.isfinite(v) or v < 0:
            raise InputValueError(f"eps: every budget must be a finite number ≥ 0, got {v:g} in {list(map(float, eps))}")
        if whole and v != int(v):
            raise InputValueError(f"eps: {method}'s budget is a whole number of substituted tokens ≥ 0, got {v:g}")
        out.append(v)
    return out


def _severities(severities: Any, names: list, table: dict) -> list:
    """Severities as ints; each a whole number from 0 (no corruption) to the corruptions' highest level."""
    top = min((len(table[n].levels) for n in names), default=5)
    out = []
    for s in list(severities):
        ok = not isinstance(s, bool) and isinstance(s, numbers.Real) and math.isfinite(float(s)) and float(s) == int(s)
        if not ok or not 0 <= int(s) <= top:
            raise InputValueError(f"severities must be whole numbers from 0 (unchanged) to {top}, got {s!r} "
                                  f"in {list(severities)!r}")
        out.append(int(s))
    return out


def _in_data(error: NonFiniteOutputError, offset: int, *, derived: bool = False, of: str = "of the data"):
    """A batch-scope error moved to the streamed data's positions (``offset`` samples before the batch)."""
    if error.scope != "batch":
        return error
    return error.moved([offset + i for i in error.indices], offset + error.total, scope="data",
                       derived=error.derived or derived, of=of)


def _share(hits: int, n: int) -> float:
    """``hits / n`` rounded as a float32 mean of 0/1 outcomes (the number an in-memory mean gives)."""
    return float(torch.tensor(float(hits), dtype=torch.float32) / n)


def corruption_accuracy(model: Any, data: Any, corruptions: Optional[Iterable[str]] = None,
                        severities: Sequence[int] = (1, 2, 3, 4, 5), *, seed: int = 0,
                        max_samples: Optional[int] = None, batch_size: int = 256) -> CorruptionResult:
    """Accuracy on corrupted copies of the data, per corruption and severity.

    The data is streamed in batches of ``batch_size`` samples (source batches are split or joined
    to that size, see :func:`explain.data.stream`); only correct counts are kept. Each sample's
    corruption is drawn from its own generator, seeded from ``seed``, the corruption, the severity
    and the sample's values, so a sample is corrupted the same way in any batch and on any rank.
    Inside a ``torch.distributed`` process group every rank passes the same data, evaluates every
    W-th batch, and the counts of correct predictions (and of samples) are all-reduced.

    Args:
        data: ``(inputs, labels)``, a ``Dataset``, a ``DataLoader`` or any iterable of
            ``(inputs, labels)`` batches (one pass).
        corruptions: names for the wrapper's input kind (default: all of them); see
            ``robustness.registry.CORRUPTIONS``.
        severities: 1 (mild) … 5 (strong).
        seed: seeds every corruption.
        max_samples: use only the first samples.
        batch_size: samples corrupted and classified together.

    Returns:
        ``CorruptionResult``: clean accuracy and accuracy per corruption and severity.

    Raises:
        InputShapeError: no labels, or batches of the wrong form.
        EmptyDataError: ``data`` holds no samples.
        UnknownMethodError: a corruption that is not registered for the input kind.
        InputValueError: a severity that is not a whole number from 0 to 5.
        NonFiniteOutputError: the model's logits are NaN/Inf for some samples or for their corrupted
            copies (the message names the corruption); ``indices`` count from the data's first sample.

    Shape:
        inputs: the wrapper's kind, ``N×…``; labels: ``N``.

    Example:
        >>> k = robustness.corruption_accuracy(m, (x, y), corruptions=["gaussian_noise", "blur"])   # doctest: +SKIP
        >>> k.accuracy["blur"]
    """
    start = time.perf_counter()
    wrapper = check_wrapper(model)
    table = CORRUPTIONS[wrapper.input_kind]
    names = list(corruptions) if corruptions is not None else DEFAULT_CORRUPTIONS[wrapper.input_kind]
    unknown = [c for c in names if c not in table]
    if unknown:
        raise UnknownMethodError(f"unknown {wrapper.input_kind} corruption(s) {unknown}; available: {', '.join(table)}")
    severities = _severities(severities, names, table)
    counts = torch.zeros(1 + len(names) * len(severities), dtype=torch.float64)
    n = 0
    for b, x, y in rounds(stream(data, batch_size, max_samples=max_samples)):
        if b is None:
            continue
        if y is None:
            raise InputShapeError("corruption_accuracy needs labels: pass (inputs, labels) or batches of (inputs, labels)")
        wrapper.check_inputs(x)
        y = wrapper.check_labels(y, x)
        n += len(x)
        ids = ({"pad_id": wrapper.pad_id, "unk_id": wrapper.unk_id, "keep": wrapper.special_mask(x)}
               if wrapper.input_kind == "tokens" else {})
        base = sample_seeds(x, seed)
        offset = b * batch_size
        try:
            local = [int((wrapper.predict(x) == y).sum())]
        except NonFiniteOutputError as error:
            raise _in_data(error, offset) from error
        for name in names:
            for s in severities:
                tag = zlib.crc32(f"{name}/{s}".encode())
                gens = [torch.Generator().manual_seed((sb ^ tag) & ((1 << 63) - 1)) for sb in base]
                xc = table[name].apply(x, s, gens, **ids)
                try:
                    local.append(int((wrapper.predict(xc) == y).sum()))
                except NonFiniteOutputError as error:  # the clean samples were finite: their corrupted copies
                    raise _in_data(error, offset, derived=True,
                                   of=f"of the data under {name} at severity {s}") from error
        counts += torch.tensor(local, dtype=torch.float64)
    n = int(dist.all_reduce_sum(torch.tensor([float(n)], dtype=torch.float64)).item())
    if n == 0:
        raise EmptyDataError("corruption_accuracy: the data holds no samples")
    total = [int(v) for v in dist.all_reduce_sum(counts)]
    acc = {name: [_share(h, n) for h in total[1 + i * len(severities): 1 + (i + 1) * len(severities)]]
           for i, name in enumerate(names)}
    return CorruptionResult(clean_accuracy=_share(total[0], n), severities=severities, accuracy=acc, seed=seed,
                            seconds=time.perf_counter() - start, n=n)
