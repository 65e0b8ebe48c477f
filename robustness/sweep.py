"""Budget sweeps: robust accuracy that cannot rise with the budget, and minimal flipping budgets.

An adversarial input found at budget ε lies inside every larger ball, so a sample fooled at ε is
counted as fooled at every larger budget (successes are carried forward). Each sample's minimal
flipping budget is the smallest budget at which any run fooled it — the sweep's own budgets, the
bisection between them and, for count budgets, the number of edits actually used — and the curve
is read off those minima, so the curve and the minimal budgets agree by construction:
``accuracy[k] = share of samples whose minimal budget > eps[k]``.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch

from .registry import AttackSpec, attack_spec


def make_attack(method: str, **params):
    """An attack object from its registry name; the registry's default parameters fill the gaps.

    Raises:
        UnknownMethodError: ``method`` is not registered.
        InputShapeError: a parameter the attack does not take.
    """
    import inspect

    from explain.errors import InputShapeError

    spec = attack_spec(method)
    accepted = set(inspect.signature(spec.cls.__init__).parameters) - {"self"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise InputShapeError(f"attack {method!r} does not take {unknown}; it takes {sorted(accepted)}")
    return spec.cls(**{**spec.defaults, **params})


def minimal_budgets(wrapper, x: torch.Tensor, y: torch.Tensor, method: str, budgets: Sequence[float], *, seed: int,
                    params: dict, bisect_steps: int) -> torch.Tensor:
    """Each sample's smallest flipping budget found by the sweep over ``budgets`` (and bisection).

    Returns a CPU float tensor ``N``: 0 for samples misclassified already, ``inf`` for samples no
    budget up to ``max(budgets)`` flipped.

    Shape:
        x: the wrapper's input kind, ``N×…``; y: ``N``; result: ``N``.
    """
    spec = attack_spec(method)
    atk = make_attack(method, **params)
    correct = (wrapper.predict(x) == y).cpu()
    y = y.cpu()
    mins = torch.where(correct, torch.full((len(y),), math.inf), torch.zeros(len(y)))
    for e in sorted({float(b) for b in budgets if b > 0}):
        todo = torch.nonzero(correct & torch.isinf(mins)).flatten()
        if len(todo) == 0:
            break
        r = atk.run(wrapper, x[todo], y[todo], seed=seed, eps=e)
        fooled = r.adv_pred.cpu() != y[todo]
        used = r.tokens_changed.float() if spec.budget == "count" and r.tokens_changed is not None else torch.full((len(todo),), e)
        mins[todo[fooled]] = torch.minimum(used[fooled], torch.full((int(fooled.sum()),), e))
    if spec.budget == "eps" and bisect_steps > 0:
        mins = _bisect(wrapper, atk, x, y, correct, mins, max(budgets), bisect_steps, seed)
    return mins


def _bisect(wrapper, atk, x, y, correct, mins, top: float, steps: int, seed: int) -> torch.Tensor:
    """Narrow each correct sample's budget in ``[0, min(found, top)]``; keep only budgets that fooled."""
    idx = torch.nonzero(correct).flatten()
    if len(idx) == 0 or top <= 0:
        return mins
    lo = torch.zeros(len(idx))
    hi = torch.clamp(mins[idx], max=float(top))
    best = mins[idx].clone()
    for _ in range(steps):
        mid = (lo + hi) / 2
        fooled = atk.run(wrapper, x[idx], y[idx], seed=seed, eps=mid).adv_pred.cpu() != y[idx]
        best = torch.where(fooled, torch.minimum(best, mid), best)
        hi = torch.where(fooled, mid, hi)
        lo = torch.where(fooled, lo, mid)
    out = mins.clone()
    out[idx] = best
    return out


def curve_from_minimal(mins: torch.Tensor, budgets: Sequence[float]) -> List[float]:
    """Robust accuracy at each budget: the share of samples whose minimal budget exceeds it."""
    n = max(len(mins), 1)
    return [float((mins > float(e)).sum()) / n for e in budgets]


def _nice(v: float) -> float:
    return float(f"{v:.2g}")


def default_budgets(wrapper, x: torch.Tensor, y: torch.Tensor, method: str, *, seed: int = 0,
                    params: Optional[dict] = None, probe: int = 16, cap: float = 4.0) -> List[float]:
    """The budget sweep for ``method`` on this model: the registry's, or one chosen from the model.

    When the registry leaves the sweep open for the input kind (token embeddings, whose useful range
    depends on the model), the minimal flipping budgets of up to ``probe`` correctly classified
    samples are bisected in ``[0, cap]`` (``cap`` in the attack's unit) and the sweep runs from 0
    through five points spaced geometrically between their 10th and 90th percentiles, so the curve
    spans the range where the model actually breaks.

    Returns:
        Ascending budgets starting at 0.
    """
    spec: AttackSpec = attack_spec(method)
    kind = wrapper.input_kind
    spec.check_kind(method, kind)
    fixed = spec.sweep.get(kind)
    if fixed is not None:
        return [float(b) for b in fixed]
    correct = torch.nonzero((wrapper.predict(x) == y).cpu()).flatten()[:probe]
    if len(correct) == 0:
        return [0.0, cap / 8, cap / 4, cap / 2, cap]
    mins = minimal_budgets(wrapper, x[correct], y[correct], method, [cap / 4, cap], seed=seed, params=params or {},
                           bisect_steps=5)
    found = mins[torch.isfinite(mins) & (mins > 0)]
    if len(found) == 0:
        return [0.0, cap / 8, cap / 4, cap / 2, cap]
    lo, hi = float(torch.quantile(found, 0.1)), float(torch.quantile(found, 0.9))
    lo = max(lo, hi / 20, 1e-6)
    pts = torch.logspace(math.log10(lo), math.log10(max(hi, lo * 1.01)), 5).tolist()
    return [0.0] + sorted({_nice(p) for p in pts})
