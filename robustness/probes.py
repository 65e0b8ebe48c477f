"""Cheap probes of a model during training, and the guard that keeps training state untouched.

Each probe is a plain function of a wrapped model and a small fixed probe set; it returns JSON-able
numbers (and, for the explanation probe, the maps). ``reports.Monitor`` calls them at epoch ends
inside :func:`preserved_training_state`, which puts back everything a probe could disturb: module
``training`` flags, ``requires_grad``, parameter gradient buffers, the autograd mode and the random
number generators of Python, NumPy and torch (CPU and CUDA).

Example:
    >>> with preserved_training_state(net):                                   # doctest: +SKIP
    ...     scores = classification_probe(m, x_probe, y_probe)
    >>> scores["accuracy"], scores["ece"]
"""

from __future__ import annotations

import contextlib
import random
import time
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
from torch import nn

import explain
from explain import check_wrapper
from explain.errors import InputShapeError

from .evaluate import attack
from .ood import evaluate_ood

__all__ = ["preserved_training_state", "classification_metrics", "expected_calibration_error", "rank_correlation",
           "classification_probe", "explanation_probe", "robustness_probe", "ood_probe", "DEFAULT_PROBE_EPS"]

#: The robust-accuracy probe's budget per input kind (pixels; per-channel σ; embedding units).
DEFAULT_PROBE_EPS = {"image": 2 / 255, "series": 0.1, "tokens": 0.1}


@contextlib.contextmanager
def preserved_training_state(model: nn.Module) -> Iterator[None]:
    """Run the block and put the training state back exactly as it was, also on error.

    Restores every module's ``training`` flag, every parameter's ``requires_grad`` and ``.grad``
    buffer (the same tensor object), the autograd mode, and the RNG states of Python's ``random``,
    NumPy's global generator, torch's CPU generator and every CUDA device's generator.
    Optimizers are never seen by the block, so their state cannot change.

    Example:
        >>> with preserved_training_state(net):     # doctest: +SKIP
        ...     net.eval(); net(x)                  # net is back in train mode afterwards
    """
    modes = [(m, m.training) for m in model.modules()]
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    grad_enabled = torch.is_grad_enabled()
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag, g in zip(params, flags, grads):
            p.requires_grad_(flag)
            p.grad = g
        torch.set_grad_enabled(grad_enabled)
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state_all(cuda_state)


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al. 2017, https://arxiv.org/abs/1706.04599).

    Math: ``ECE = Σ_b |B_b|/N · |acc(B_b) − conf(B_b)|``; a confidence of exactly 1 falls in the last bin.

    Shape:
        probs: ``N×K`` probabilities; labels: ``N``.
    """
    conf, pred = probs.max(dim=1)
    idx = (conf * bins).long().clamp(0, bins - 1)
    correct = (pred == labels).double()
    count = torch.bincount(idx, minlength=bins).double()
    acc = torch.bincount(idx, weights=correct, minlength=bins)
    mconf = torch.bincount(idx, weights=conf.double(), minlength=bins)
    return float((acc - mconf).abs().sum() / max(len(labels), 1))


def classification_metrics(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """Accuracy and macro precision / recall / F1 (a class without predictions or support scores 0).

    Shape:
        pred, labels: ``LongTensor N``.
    """
    k = int(num_classes)
    cm = torch.bincount(labels * k + pred, minlength=k * k).view(k, k).double()
    tp = cm.diag()
    predicted, support = cm.sum(0), cm.sum(1)
    precision = torch.where(predicted > 0, tp / predicted.clamp_min(1), torch.zeros_like(tp))
    recall = torch.where(support > 0, tp / support.clamp_min(1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp_min(1e-300), torch.zeros_like(tp))
    return {"accuracy": float(tp.sum() / max(len(labels), 1)), "precision": float(precision.mean()),
            "recall": float(recall.mean()), "f1": float(f1.mean())}


def _average_ranks(a: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    start = np.cumsum(counts) - counts
    return (start + (counts + 1) / 2.0)[inverse.reshape(-1)]


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation per sample between two batches of maps (ties get average ranks).

    A constant map has no ranking; its correlation is NaN.

    Shape:
        a, b: ``N×…`` (same shape); returns ``N``.
    """
    if a.shape != b.shape:
        raise InputShapeError(f"rank_correlation needs maps of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    out = []
    for u, v in zip(a.detach().flatten(1).double().cpu().numpy(), b.detach().flatten(1).double().cpu().numpy()):
        ru, rv = _average_ranks(u), _average_ranks(v)
        ru, rv = ru - ru.mean(), rv - rv.mean()
        den = float(np.sqrt((ru ** 2).sum() * (rv ** 2).sum()))
        out.append(float((ru * rv).sum() / den) if den > 0 else float("nan"))
    return torch.tensor(out, dtype=torch.float64)


def classification_probe(model: Any, x: torch.Tensor, y: torch.Tensor, *, bins: int = 15) -> dict:
    """Accuracy, macro precision / recall / F1 and ECE of ``model`` on a labelled probe set."""
    wrapper = check_wrapper(model)
    with torch.inference_mode():  # only numbers leave this pass, so autograd may skip all its bookkeeping
        probs = torch.softmax(wrapper.logits(x), dim=1)
    k = probs.shape[1]
    out = classification_metrics(probs.argmax(1), y.long(), k)
    out["ece"] = expected_calibration_error(probs, y.long(), bins)
    return out


def explanation_probe(model: Any, x: torch.Tensor, target: Any = None, *, method: str = "gradcam",
                      previous: Optional[torch.Tensor] = None, params: Optional[dict] = None) -> dict:
    """Explain a few fixed samples and compare the maps with the previous epoch's ("drift").

    Args:
        method: any registered explainer name (``explain.available_explainers()``).
        target: the class explained per sample (the labels keep drift apart from prediction changes).
        previous: the maps returned last time, or ``None`` on the first call.

    Returns:
        ``{"maps": N×… tensor, "rank_correlation": mean Spearman ρ to ``previous`` (None without one),
        "rank_correlation_per_sample": list, "seconds": float}``.
    """
    start = time.perf_counter()
    a = explain.run_explainer(method, model, x, target, **(params or {}))
    maps = a.values.detach().float().cpu()
    rho = None
    per = None
    if previous is not None and tuple(previous.shape) == tuple(maps.shape):
        r = rank_correlation(maps, previous)
        per = [None if v != v else float(v) for v in r.tolist()]
        valid = r[~torch.isnan(r)]
        rho = float(valid.mean()) if len(valid) else None
    return {"maps": maps, "rank_correlation": rho, "rank_correlation_per_sample": per,
            "seconds": time.perf_counter() - start}


def robustness_probe(model: Any, x: torch.Tensor, y: torch.Tensor, *, eps: Optional[float] = None,
                     steps: int = 5, method: str = "pgd", seed: int = 0) -> dict:
    """Robust accuracy at one budget with a short attack (PGD with ``steps`` steps by default).

    ``eps`` defaults to :data:`DEFAULT_PROBE_EPS` for the wrapper's input kind.
    """
    wrapper = check_wrapper(model)
    eps = DEFAULT_PROBE_EPS[wrapper.input_kind] if eps is None else float(eps)
    r = attack(wrapper, x, y, method=method, eps=eps, steps=int(steps), seed=seed)
    return {"robust_accuracy": r.robust_accuracy, "eps": eps, "steps": int(steps), "method": method}


def ood_probe(model: Any, x: torch.Tensor, y: Optional[torch.Tensor], ood_x: torch.Tensor, *,
              detector: str = "energy", fit: Optional[Sequence] = None) -> dict:
    """AUROC of one detector separating the probe set from a probe OOD set (higher = better).

    The detector is fitted on ``fit`` (default: the probe set itself) and scores both sets.
    """
    wrapper = check_wrapper(model)
    fit_pair = fit if fit is not None else (x, y)
    ev = evaluate_ood(wrapper, (x, y), ood_x, methods=[detector], fit_data=fit_pair)
    if detector in ev.errors:
        raise InputShapeError(f"the OOD probe's detector {detector!r} could not run: {ev.errors[detector]}")
    return {"ood_auroc": float(ev.methods[detector].auroc), "detector": detector}
