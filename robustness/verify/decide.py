"""``verify`` (verified / violated / unknown per sample) and ``certified_accuracy`` over budgets."""

from __future__ import annotations

import dataclasses
import inspect
import time
from typing import Any, Optional, Sequence

import torch

from explain import check_wrapper
from explain.data import stream
from explain.errors import EmptyDataError, InputShapeError

from .. import distributed as dist
from ..attacks._base import input_scale
from ..evaluate import make_attack
from ..registry import ATTACKS
from .bounds import output_bounds
from .results import CertifiedAccuracyResult, VerificationResult

__all__ = ["verify", "certified_accuracy"]

_TOL = 1e-6


def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``logit_y − max_{j≠y} logit_j`` per sample (negative ⇔ misclassified)."""
    other = logits.clone()
    other[torch.arange(len(y)), y] = float("-inf")
    return logits.gather(1, y[:, None]).squeeze(1) - other.max(1).values


def _recheck(wrapper, x: torch.Tensor, cand: torch.Tensor, y: torch.Tensor, eps: float, scale) -> tuple:
    """Plain forward pass on candidates; a counterexample must be inside the ball and misclassified."""
    with wrapper.session(grad=False):
        if wrapper.input_kind == "tokens":
            xd = x.to(wrapper.device)
            logits = torch.cat(wrapper.batched(
                lambda sl: wrapper.forward_embedded(xd[sl], cand[sl].to(wrapper.device)).cpu(), len(x)))
            emb = torch.cat(wrapper.batched(lambda sl: wrapper.embed(xd[sl]).float().cpu(), len(x)))
            inside = ((cand - emb).abs() <= eps + _TOL).flatten(1).all(1)
        else:
            logits = wrapper.logits(cand)
            radius = eps * scale.cpu() if scale is not None else eps
            inside = ((cand - x).abs() <= radius + _TOL).flatten(1).all(1)
            if wrapper.valid_range is not None:
                lo, hi = wrapper.valid_range
                inside &= ((cand >= lo - _TOL) & (cand <= hi + _TOL)).flatten(1).all(1)
    margin = _margin(logits, y)
    return inside & (margin < 0), logits.argmax(1), margin


def verify(model: Any, x: Any, y: Any, eps: float, method: str = "crown", *, attacks: Sequence[str] = ("pgd", "apgd"),
           attack_steps: int = 20, seed: int = 0, alpha_steps: int = 20, batch_size: int = 16,
           max_memory: int = 2 ** 30, intermediate: str = "crown", progress: Optional[bool] = None
           ) -> VerificationResult:
    """Prove or refute, per sample, that no input within ``eps`` changes the predicted class from ``y``.

    Bounds the margins ``logit_y − logit_j`` with ``method``; a sample whose every certified margin
    is positive is ``"verified"``. The others are attacked (``attacks`` in order, each on the samples
    still open, inside the same ball); a candidate that a plain forward pass confirms to be inside the
    ball and misclassified makes the sample ``"violated"``. A misclassified clean input is its own
    counterexample. Everything else is ``"unknown"``.

    Args:
        model: an ``explain.ModelWrapper``.
        x, y: a batch and its labels.
        eps: the L∞ budget in natural units (see :func:`output_bounds`).
        method: ``"ibp"``, ``"crown"`` or ``"alpha-crown"``.
        attacks: registered attack names tried for counterexamples (``"pgd"``, ``"apgd"``, ``"fgsm"``).
        attack_steps: steps per attack; seed: their random start.
        intermediate: hidden-layer bounds for CROWN / α-CROWN, ``"crown"`` or ``"ibp"`` (CROWN-IBP,
            faster and looser; see :func:`output_bounds`).

    Returns:
        ``VerificationResult`` with statuses, certified margins, counterexamples and timings.

    Shape:
        x: ``N×…``; y: ``N``; margins: ``N×K``.

    Raises:
        UnsupportedOperationError: an op of the model cannot be bounded.

    Example:
        >>> v = robustness.verify(m, x, y, eps=1/255, method="crown")   # doctest: +SKIP
        >>> v.counts
        {'verified': 12, 'violated': 3, 'unknown': 1}
    """
    start = time.perf_counter()
    wrapper = check_wrapper(model)
    x = wrapper.check_inputs(x).cpu()
    y = wrapper.check_labels(y, x).cpu()
    if len(y) != len(x):
        raise InputShapeError(f"labels: expected {len(x)} labels (one per input), got {len(y)}")
    b = output_bounds(wrapper, x, eps, method, spec="margin", labels=y, alpha_steps=alpha_steps,
                      batch_size=batch_size, max_memory=max_memory, intermediate=intermediate, progress=progress)
    t_bounds = time.perf_counter() - start
    margins = b.lower.clone()
    margins[torch.arange(len(y)), y] = float("inf")
    verified = margins.min(1).values > 0
    clean = wrapper.logits(x)
    clean_pred = clean.argmax(1)
    scale = input_scale(wrapper, wrapper.prepare(x)) if wrapper.input_kind == "series" else None
    if wrapper.input_kind == "tokens":
        with wrapper.session(grad=False):
            cand = torch.cat(wrapper.batched(lambda sl: wrapper.embed(x[sl].to(wrapper.device)).float().cpu(), len(x)))
    else:
        cand = x.clone().float()
    violated, adv_pred, adv_margin = _recheck(wrapper, x, cand, y, eps, scale)
    t0 = time.perf_counter()
    for name in attacks:
        todo = (~verified & ~violated).nonzero().flatten()
        if len(todo) == 0 or eps == 0:
            break
        takes_steps = name in ATTACKS and "steps" in inspect.signature(ATTACKS[name].__init__).parameters
        kw = {"steps": attack_steps} if takes_steps else {}
        r = make_attack(name, eps=eps, **kw).run(wrapper, x[todo], y[todo], seed=seed)
        found = r.adversarial_embeddings if wrapper.input_kind == "tokens" else r.adversarial
        trial = cand.clone()
        trial[todo] = found.float().cpu()
        ok, pred, marg = _recheck(wrapper, x[todo], trial[todo], y[todo], eps, scale)
        hit = todo[ok]
        cand[hit] = trial[hit]
        violated[hit] = True
        adv_pred[hit], adv_margin[hit] = pred[ok], marg[ok]
    t_attack = time.perf_counter() - t0
    status = ["verified" if v else "violated" if w else "unknown" for v, w in zip(verified.tolist(), violated.tolist())]
    return VerificationResult(status, margins, y, clean_pred, cand, adv_pred, adv_margin, method, float(eps), "linf",
                              {"bounds": t_bounds, "attack": t_attack, "total": time.perf_counter() - start},
                              {"attacks": list(attacks), "attack_steps": attack_steps, "seed": seed, **b.params},
                              inputs=x)


def certified_accuracy(model: Any, data: Any, eps: Sequence[float] = (0, 1 / 255, 2 / 255), method: str = "crown", *,
                       max_samples: Optional[int] = None, seed: int = 0, progress: Optional[bool] = None,
                       chunk_size: int = 256, **params: Any) -> CertifiedAccuracyResult:
    """Clean, certified and empirical robust accuracy at each budget.

    Certified accuracy counts samples verified at ε; empirical robust accuracy counts samples for
    which no counterexample was found. The gap between them is the share nobody could decide.

    Args:
        model: an ``explain.ModelWrapper``.
        data: ``(inputs, labels)``, a ``Dataset``, a ``DataLoader`` or any iterable of
            ``(inputs, labels)`` batches (one pass; see :func:`explain.data.stream`).
        eps: budgets in natural units; method: the bound method.
        max_samples: use only the first samples.
        chunk_size: samples read from ``data`` and verified together (source batches are split
            or joined to this size); only per-sample counts are kept across chunks.
        **params: passed to :func:`verify` (``attacks``, ``attack_steps``, ``alpha_steps``, ...).

    Inside a ``torch.distributed`` process group every rank passes the same data and verifies its
    own block of each chunk; the counts are all-reduced and the first chunk's verifications joined
    in sample order, so every rank returns the same result.

    Returns:
        ``CertifiedAccuracyResult`` (budgets ascending). Its ``verifications`` hold the per-budget
        results of the first chunk only (the first ``chunk_size`` samples, counterexamples
        included), so memory does not grow with the data.

    Raises:
        InputShapeError: no labels, or batches of the wrong form.
        InputValueError: labels outside the model's classes.
        EmptyDataError: ``data`` holds no samples.

    Shape:
        inputs: the wrapper's kind, ``N×…``; labels: ``N``.

    Example:
        >>> ca = robustness.certified_accuracy(m, (x, y), eps=[0, 1/255, 2/255])   # doctest: +SKIP
        >>> ca.certified, ca.empirical
    """
    start = time.perf_counter()
    wrapper = check_wrapper(model)
    budgets = sorted(float(e) for e in eps)
    clean_hits, n = 0, 0
    cert_n = [0] * len(budgets)
    viol_n = [0] * len(budgets)
    runs: list = []
    for b, (x, y) in enumerate(stream(data, chunk_size, max_samples=max_samples)):
        if y is None:
            raise InputShapeError("certified_accuracy needs labels: pass (inputs, labels) or batches of (inputs, labels)")
        x = wrapper.check_inputs(x)
        y = wrapper.check_labels(y, x)
        part = dist.local_range(len(x))  # in a process group each rank verifies its block of the chunk
        x, y = x[part], y[part]
        n += len(x)
        if not len(x):
            runs += [None] * len(budgets) if b == 0 else []
            continue
        clean_hits += int((wrapper.predict(x) == y).sum())
        cert = torch.ones(len(x), dtype=torch.bool)
        viol = torch.zeros(len(x), dtype=torch.bool)
        for k, e in enumerate(budgets):
            v = verify(wrapper, x, y, e, method, seed=seed, progress=progress, **params)
            if b == 0:
                runs.append(v)  # the first batch's verifications (with counterexamples) are kept
            cert &= v.mask("verified")
            viol |= v.mask("violated")
            cert &= ~viol
            cert_n[k] += int(cert.sum())
            viol_n[k] += int(viol.sum())
    if dist.active():
        totals = dist.all_reduce_sum(torch.tensor([n, clean_hits, *cert_n, *viol_n], dtype=torch.float64))
        n, clean_hits = int(totals[0]), int(totals[1])
        cert_n = [int(v) for v in totals[2:2 + len(budgets)]]
        viol_n = [int(v) for v in totals[2 + len(budgets):]]
        runs = [_joined(list(per_rank)) for per_rank in zip(*dist.gather_objects(runs))]
    if n == 0:
        raise EmptyDataError("certified_accuracy needs at least one sample")
    share = lambda k: float(torch.tensor(float(k), dtype=torch.float32) / n)  # noqa: E731 - a float32 mean's rounding
    clean_acc = share(clean_hits)
    certified = [share(c) for c in cert_n]
    empirical = [share(n - v) for v in viol_n]
    counts = [{"verified": c, "violated": v, "unknown": n - c - v} for c, v in zip(cert_n, viol_n)]
    return CertifiedAccuracyResult(budgets, clean_acc, certified, empirical, counts, method, n,
                                   time.perf_counter() - start, {"seed": seed, **params}, runs)


def _joined(parts: list) -> VerificationResult:
    """One budget's verifications of consecutive blocks (``None`` for an empty block), as one result."""
    parts = [p for p in parts if p is not None]
    first = parts[0]
    cat = lambda name: torch.cat([getattr(p, name) for p in parts])  # noqa: E731
    return dataclasses.replace(
        first, status=[st for p in parts for st in p.status], margins=cat("margins"), labels=cat("labels"),
        clean_pred=cat("clean_pred"), counterexamples=cat("counterexamples"), adv_pred=cat("adv_pred"),
        adv_margin=cat("adv_margin"), inputs=None if first.inputs is None else cat("inputs"),
        seconds={k: max(p.seconds.get(k, 0.0) for p in parts) for k in first.seconds})
