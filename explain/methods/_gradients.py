"""The gradient engine shared by integrated gradients, expected gradients, saliency and SmoothGrad.

Every method here is a weighted sum of input gradients at many points: ``Σ_r w_r · s_r ⊙ ∂f_c/∂x(p_r)``
over rows ``r`` (a path step, a noisy copy, a background draw), accumulated per sample. Rows from many
samples share each forward+backward pass. Token models are differentiated at the embedding.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np
import torch

from ..errors import InputShapeError
from ..model import ModelWrapper

RowFn = Callable[[torch.Tensor], Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def gauss_legendre(steps: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights of the ``steps``-point Gauss–Legendre rule on [0, 1]."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return torch.tensor((nodes + 1) / 2, dtype=torch.float32), torch.tensor(weights / 2, dtype=torch.float32)


def riemann_trapezoid(steps: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights of the trapezoid rule with ``steps`` points on [0, 1]."""
    nodes = torch.linspace(0, 1, steps)
    weights = torch.full((steps,), 1.0 / (steps - 1))
    weights[0] = weights[-1] = 0.5 / (steps - 1)
    return nodes, weights


def inputs_of(wrapper: ModelWrapper, x: torch.Tensor) -> torch.Tensor:
    """The tensor gradients are taken against: ``x`` itself, or its embeddings for token models."""
    if wrapper.input_kind == "tokens":
        with wrapper.session(grad=False):
            return wrapper.embed(x).detach().float().clone()
    return x


def weighted_gradient_sum(
    wrapper: ModelWrapper,
    x: torch.Tensor,
    target: torch.Tensor,
    n_rows: int,
    make_rows: RowFn,
    like: torch.Tensor,
    batch_size: Optional[int] = None,
    absolute: bool = False,
) -> torch.Tensor:
    """``acc[i] = Σ_{rows of i} weight · scale ⊙ grad`` (or ``|grad|`` with ``absolute``).

    ``make_rows(r)`` returns ``(sample index i, point, weight·scale)`` for row ids ``r``; points live in
    the space of ``like`` (inputs or embeddings).
    """
    acc = torch.zeros_like(like, dtype=torch.float32)
    tokens = wrapper.input_kind == "tokens"

    def run(sl: slice) -> None:
        r = torch.arange(sl.start, sl.stop, device=like.device)
        i, point, factor = make_rows(r)
        point = point.detach().requires_grad_(True)
        logits = wrapper.forward_embedded(x[i], point) if tokens else wrapper.forward(point)
        score = logits.gather(1, target[i][:, None]).sum()
        grad, = torch.autograd.grad(score, point)
        grad = grad.abs() if absolute else grad
        acc.index_add_(0, i, (factor * grad).float())

    with wrapper.session(grad=True):
        wrapper.batched(run, n_rows, batch_size=batch_size, desc="gradients")
    return acc


def reduce_to_map(kind: str, values: torch.Tensor, how: str = "sum") -> torch.Tensor:
    """Per-feature maps: over channels (images ``N×C×H×W`` → ``N×H×W``; series ``N×T×C`` → ``N×T``) or
    embedding dims (tokens ``N×T×D`` → ``N×T``) by ``sum``, ``max`` (of values) or ``norm``."""
    dim = 1 if kind == "image" else 2
    if how == "sum":
        return values.sum(dim)
    if how == "max":
        return values.amax(dim)
    return values.norm(dim=dim)


def expected_gradients(wrapper: ModelWrapper, xd: torch.Tensor, t: torch.Tensor, bg: Optional[torch.Tensor],
                       n_samples: int, seed: int, batch_size: Optional[int], backend: str) -> torch.Tensor:
    """Expected gradients ``E_{b,α}[(x − b) ⊙ ∇f(b + α(x − b))]`` reduced to a feature map (CPU)."""
    kind = wrapper.input_kind
    td = t.to(wrapper.device)
    if bg is None:
        bg = torch.full_like(xd[:1], wrapper.pad_id) if kind == "tokens" else torch.zeros_like(xd[:1])
    if backend == "captum":
        if kind == "tokens":
            raise InputShapeError("captum's GradientShap interpolates the inputs themselves, which token ids "
                                  "cannot be; use backend='xaiscope' (interpolates embeddings) for token models")
        from captum.attr import GradientShap
        with wrapper.session(grad=True), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            a = GradientShap(lambda inp: wrapper.forward(inp)).attribute(
                xd, baselines=bg, target=td, n_samples=n_samples, stdevs=0.0)
        return reduce_to_map(kind, a.detach().float()).cpu()
    gen = torch.Generator().manual_seed(seed)
    n = len(xd)
    pick = torch.randint(0, len(bg), (n, n_samples), generator=gen).to(wrapper.device)
    alpha = torch.rand(n, n_samples, generator=gen).to(wrapper.device)
    ex = inputs_of(wrapper, xd)
    eb = inputs_of(wrapper, bg)

    def rows(r: torch.Tensor):
        i, k = r // n_samples, r % n_samples
        b = eb[pick[i, k]]
        a = alpha[i, k].view(-1, *([1] * (ex.dim() - 1)))
        return i, b + a * (ex[i] - b), (ex[i] - b) / n_samples

    acc = weighted_gradient_sum(wrapper, xd, td, n * n_samples, rows, ex, batch_size)
    return reduce_to_map(kind, acc).cpu()
