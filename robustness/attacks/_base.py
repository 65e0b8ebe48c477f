"""What every attack shares: budgets in natural units, projections, the loss, and the result."""

from __future__ import annotations

import hashlib
import time
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F

from explain import check_wrapper

from explain.errors import InputShapeError, InputValueError, NonFiniteOutputError
from explain.model import ModelWrapper

from ..results import AttackResult

Eps = Union[float, torch.Tensor]


def per_sample(v: Eps, n: int, like: torch.Tensor) -> torch.Tensor:
    """A budget as an ``N×1×…`` tensor broadcastable against ``like``."""
    t = torch.as_tensor(v, dtype=like.dtype, device=like.device).flatten()
    if t.numel() == 1:
        t = t.expand(n)
    return t.view(n, *([1] * (like.dim() - 1)))


def project_linf(x_adv: torch.Tensor, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Closest point of the L∞ ball ``‖δ‖∞ ≤ eps`` around ``x`` (per sample)."""
    return x + torch.max(torch.min(x_adv - x, eps), -eps)


def l2_norms(v: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norms in float64: a float32 sum of squares overflows once entries pass ~1e19."""
    return v.flatten(1).double().norm(dim=1)


def project_l2(x_adv: torch.Tensor, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Closest point of the L2 ball ``‖δ‖₂ ≤ eps`` around ``x`` (per sample; the norm in float64)."""
    delta = x_adv - x
    norm = l2_norms(delta).view(-1, *([1] * (delta.dim() - 1)))
    scale = torch.clamp(eps.double() / norm.clamp_min(1e-12), max=1.0)
    return x + (delta.double() * scale).to(delta.dtype)


def clip_range(x: torch.Tensor, bounds: Optional[Tuple[float, float]]) -> torch.Tensor:
    """Clip to the valid input range (no-op without bounds)."""
    return x if bounds is None else x.clamp(bounds[0], bounds[1])


def normalized_step(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """Steepest-ascent direction of unit size: ``sign(g)`` for L∞, ``g/‖g‖₂`` for L2.

    A NaN/Inf gradient (finite logits, but e.g. a square root at 0 inside the model) raises
    ``NonFiniteOutputError`` for its rows: ``sign(NaN)`` is 0, which would silently freeze the step.
    The wrapper's batched path maps the rows to the samples of the user's batch.
    """
    if not bool(torch.isfinite(grad).all()):
        bad = (~torch.isfinite(grad)).flatten(1).any(1).nonzero().flatten().tolist()
        raise NonFiniteOutputError(bad, len(grad), what="the attack's loss gradients", scope="rows", derived=True)
    if norm == "linf":
        return grad.sign()
    scale = l2_norms(grad).clamp_min(1e-12).view(-1, *([1] * (grad.dim() - 1)))
    return (grad.double() / scale).to(grad.dtype)


def attack_loss(logits: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Per-sample loss to *increase*: cross-entropy to the label, or minus it to a target."""
    ce = F.cross_entropy(logits, labels, reduction="none")
    return -ce if targeted else ce


def input_scale(wrapper: ModelWrapper, x: torch.Tensor) -> torch.Tensor:
    """Unit of a series budget per channel (``N×1×C``).

    The wrapper's ``std`` if given; otherwise each series' own per-channel standard deviation over
    time, so a sample's budget never depends on the other samples in its batch.
    """
    if wrapper.std is not None:
        return wrapper.std.view(1, 1, -1).to(x.dtype).expand(len(x), 1, -1)
    return x.std(dim=1, keepdim=True).clamp_min(1e-8)


def embedding_scale(wrapper: ModelWrapper) -> float:
    """Unit of a token-embedding budget: the standard deviation of the embedding table's entries.

    Token budgets are relative to it: ``eps=0.5`` lets every embedding coordinate move by half the
    table's typical spread (for a BERT, whose entries have a std of about 0.04, that is about 0.02).
    """
    wrapper = check_wrapper(wrapper)
    weight = wrapper.embedding_layer()[1].weight.detach().float()
    return float(weight.std().clamp_min(1e-12))


def sample_seeds(x: torch.Tensor, seed: int) -> list:
    """One seed per sample, derived from ``seed`` and the sample's own values (not its position).

    Random starts drawn from these are the same whichever batch, order or chunk a sample arrives in.
    """
    rows = x.detach().cpu().contiguous()
    out = []
    for row in rows:
        h = hashlib.blake2b(row.numpy().tobytes(), digest_size=8, key=str(int(seed)).encode())
        out.append(int.from_bytes(h.digest(), "little") & ((1 << 63) - 1))
    return out


def check_budget(eps: Eps, norm: str) -> None:
    t = torch.as_tensor(eps, dtype=torch.float64)
    if bool((t < 0).any()) or not bool(torch.isfinite(t).all()):
        raise InputValueError(f"eps must be finite and ≥ 0, got {eps}")
    if norm not in ("linf", "l2"):
        raise InputShapeError(f"norm must be 'linf' or 'l2', got {norm!r}")


def finish(wrapper: ModelWrapper, method: str, params: dict, x: torch.Tensor, x_adv: torch.Tensor, labels: torch.Tensor,
           clean_pred: torch.Tensor, start: float, targeted_to: Optional[torch.Tensor] = None, **extra) -> AttackResult:
    """Predict on the adversarial inputs and package the result on the CPU.

    Perturbation norms are computed in float64, so budgets and perturbations up to float32's range
    (1e30 and beyond) give finite, exact norms. An adversarial input holding NaN/Inf (a NaN
    gradient inside an attack step) raises ``NonFiniteOutputError`` naming the samples.
    """
    if x_adv.dtype.is_floating_point and not bool(torch.isfinite(x_adv).all()):
        bad = (~torch.isfinite(x_adv)).flatten(1).any(1).nonzero().flatten().tolist()
        raise NonFiniteOutputError(bad, len(x_adv), what=f"the {method} attack's adversarial inputs (a NaN/Inf gradient in an attack step)",
                                   scope="batch", derived=True)
    adv_pred = wrapper.logits(x_adv).argmax(1) if "adv_pred" not in extra else extra.pop("adv_pred")
    labels, clean_pred = labels.cpu(), clean_pred.cpu()
    if targeted_to is not None:
        success = adv_pred == targeted_to.cpu()
    else:
        success = (clean_pred == labels) & (adv_pred != labels)
    if x.dtype.is_floating_point:
        delta = (x_adv.detach().double() - x.detach().double()).flatten(1).cpu()
        linf, l2 = delta.abs().amax(1), delta.norm(dim=1)
    else:
        linf = l2 = torch.zeros(len(x), dtype=torch.float64)
    return AttackResult(inputs=x.detach().cpu(), adversarial=x_adv.detach().cpu(), labels=labels, clean_pred=clean_pred,
                        adv_pred=adv_pred.cpu(), success=success, linf=extra.pop("linf", linf).double(), l2=extra.pop("l2", l2).double(),
                        method=method, params=params, seconds=time.perf_counter() - start, **extra)
