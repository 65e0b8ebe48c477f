"""FGSM, the fast gradient sign method (Goodfellow et al., 2015, https://arxiv.org/abs/1412.6572).

Math: ``x_adv = clip(x + ε · sign(∇_x L(f(x), y)))`` (L∞) or ``x + ε · ∇/‖∇‖₂`` (L2).
"""

from __future__ import annotations

import torch

from ._base import normalized_step
from ._gradient import GradientAttack, clip


class FGSM(GradientAttack):
    """One gradient step of size ``eps``.

    Example:
        >>> r = FGSM(eps=8/255).run(m, x, y)   # doctest: +SKIP
    """

    name = "fgsm"

    def perturb(self, loss_grad, x0: torch.Tensor, eps: torch.Tensor, bounds, generator) -> torch.Tensor:
        _, grad, _ = loss_grad(x0)
        return clip(x0 + eps * normalized_step(grad, self.norm), bounds)
