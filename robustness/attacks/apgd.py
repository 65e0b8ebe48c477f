"""APGD-CE, auto-PGD with the cross-entropy loss (Croce & Hein, 2020, https://arxiv.org/abs/2003.01690).

Math: step size ``η = 2ε`` halved at checkpoints ``w_j = ⌈p_j N⌉`` (``p_0 = 0``, ``p_1 = 0.22``,
``p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)``) when fewer than ``ρ = 0.75`` of the steps since
the last checkpoint raised the loss, or when neither step size nor best loss changed; then the
search restarts from the best point. Momentum: ``z = Π(x_k + η step(∇L)),
x_{k+1} = Π(x_k + α(z − x_k) + (1 − α)(x_k − x_{k−1}))`` with ``α = 0.75``. Over ``restarts`` random
starts, the first misclassifying point is kept, else the highest-loss one.
"""

from __future__ import annotations

import math
from typing import List

import torch

from ._base import normalized_step, project_l2, project_linf
from ._gradient import GradientAttack, clip, random_start


def checkpoints(steps: int) -> List[int]:
    """The iterations at which APGD may halve its step size."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({math.ceil(q * steps) for q in p[1:] if q <= 1})


class APGD(GradientAttack):
    """Auto-PGD with cross-entropy, ``restarts`` random starts of ``steps`` iterations.

    Example:
        >>> r = APGD(eps=8/255, steps=50).run(m, x, y, seed=0)   # doctest: +SKIP
    """

    name = "apgd"

    def __init__(self, eps: float = 8 / 255, *, steps: int = 50, restarts: int = 1, norm: str = "linf",
                 rho: float = 0.75, targeted: bool = False) -> None:
        super().__init__(eps, norm=norm, targeted=targeted)
        self.steps = steps
        self.restarts = restarts
        self.rho = rho

    def perturb(self, loss_grad, x0: torch.Tensor, eps: torch.Tensor, bounds, generator) -> torch.Tensor:
        project = project_linf if self.norm == "linf" else project_l2
        shape = (-1,) + (1,) * (x0.dim() - 1)
        best_adv = x0.clone()
        found = torch.zeros(len(x0), dtype=torch.bool, device=x0.device)
        best_loss_all = torch.full((len(x0),), -float("inf"), device=x0.device)
        marks = set(checkpoints(self.steps))
        for _ in range(max(1, self.restarts)):
            x = clip(random_start(x0, eps, self.norm, generator), bounds)
            loss, grad, fooled = loss_grad(x)
            self._keep(found, best_adv, x, fooled)
            eta = 2 * eps.clone()
            x_best, loss_best = x.clone(), loss.clone()
            x_prev = x.clone()
            increases = torch.zeros(len(x0), device=x0.device)
            last_mark, eta_reduced_last, loss_best_last = 0, torch.zeros(len(x0), dtype=torch.bool, device=x0.device), loss_best.clone()
            for k in range(self.steps):
                z = clip(project(x + eta * normalized_step(grad, self.norm), x0, eps), bounds)
                a = 0.75 if k > 0 else 1.0
                x_new = clip(project(x + a * (z - x) + (1 - a) * (x - x_prev), x0, eps), bounds)
                x_prev, x = x, x_new
                new_loss, grad, fooled = loss_grad(x)
                self._keep(found, best_adv, x, fooled)
                increases += (new_loss > loss).float()
                loss = new_loss
                better = loss > loss_best
                x_best[better], loss_best[better] = x[better], loss[better]
                if k + 1 in marks:
                    window = k + 1 - last_mark
                    cond1 = increases < self.rho * window
                    cond2 = (~eta_reduced_last) & (loss_best <= loss_best_last)
                    halve = cond1 | cond2
                    eta = torch.where(halve.view(shape), eta / 2, eta)
                    x = torch.where(halve.view(shape), x_best, x)
                    if bool(halve.any()):
                        _, g2, _ = loss_grad(x)
                        grad = torch.where(halve.view(shape), g2, grad)
                    eta_reduced_last, loss_best_last = halve, loss_best.clone()
                    increases.zero_()
                    last_mark = k + 1
            improve = (~found) & (loss_best > best_loss_all)
            best_adv[improve], best_loss_all[improve] = x_best[improve], loss_best[improve]
        return best_adv

    @staticmethod
    def _keep(found: torch.Tensor, best_adv: torch.Tensor, x: torch.Tensor, wrong: torch.Tensor) -> None:
        new = wrong & ~found
        best_adv[new] = x[new]
        found |= new
