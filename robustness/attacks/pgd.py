"""PGD, projected gradient descent (Madry et al., 2018, https://arxiv.org/abs/1706.06083).

Math: ``x_{k+1} = Π_{B(x, ε) ∩ range}(x_k + α · step(∇L(x_k)))`` with ``step = sign`` (L∞) or
``∇/‖∇‖₂`` (L2), from a random point of the ball (``random_start=True``) or from ``x``. The last
iterate is returned, as in the reference implementations.
"""

from __future__ import annotations

from typing import Optional

import torch

from ._base import normalized_step, project_l2, project_linf
from ._gradient import GradientAttack, clip, random_start


class PGD(GradientAttack):
    """``steps`` projected gradient steps of size ``alpha`` (default ``2.5 · eps / steps``).

    Example:
        >>> r = PGD(eps=8/255, steps=10).run(m, x, y, seed=0)   # doctest: +SKIP
        >>> r.robust_accuracy
    """

    name = "pgd"

    def __init__(self, eps: float = 8 / 255, *, steps: int = 10, alpha: Optional[float] = None, norm: str = "linf",
                 random_start: bool = True, targeted: bool = False) -> None:
        super().__init__(eps, norm=norm, targeted=targeted)
        self.steps = steps
        self.alpha = alpha
        self.random_start = random_start

    def perturb(self, loss_grad, x0: torch.Tensor, eps: torch.Tensor, bounds, generator) -> torch.Tensor:
        alpha = eps * 2.5 / max(self.steps, 1) if self.alpha is None else torch.full_like(eps, self.alpha)
        project = project_linf if self.norm == "linf" else project_l2
        x = clip(random_start(x0, eps, self.norm, generator), bounds) if self.random_start else x0.clone()
        for _ in range(self.steps):
            _, grad, _ = loss_grad(x)
            x = clip(project(x + alpha * normalized_step(grad, self.norm), x0, eps), bounds)
        return x
