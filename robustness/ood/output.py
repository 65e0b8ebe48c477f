"""Output-based detectors: they read only the logits. Scores: higher = more out-of-distribution."""

from __future__ import annotations

from typing import Optional

import torch

from ..attacks._base import input_scale
from ._base import Detector


def msp_score(logits: torch.Tensor) -> torch.Tensor:
    """Maximum softmax probability, negated (Hendrycks & Gimpel, 2017, https://arxiv.org/abs/1610.02136).

    Math: ``s(x) = −max_k softmax(f(x))_k``.
    """
    return -torch.softmax(logits.float(), dim=1).amax(dim=1)


def maxlogit_score(logits: torch.Tensor) -> torch.Tensor:
    """Maximum logit, negated (Hendrycks et al., 2022, https://arxiv.org/abs/1911.11132). ``s = −max_k f_k``."""
    return -logits.float().amax(dim=1)


def energy_score(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Free energy (Liu et al., 2020, https://arxiv.org/abs/2010.03759). ``E(x) = −T · logsumexp(f(x)/T)``."""
    return -temperature * torch.logsumexp(logits.float() / temperature, dim=1)


class _OutputDetector(Detector):
    def _score(self, x: torch.Tensor) -> torch.Tensor:
        return self._from_logits(self.model_.logits(x))


class MSP(_OutputDetector):
    """Maximum softmax probability. Example: ``ood_detector("msp").fit(m, data).score(x)``."""

    name = "msp"

    def _from_logits(self, logits):
        return msp_score(logits)


class MaxLogit(_OutputDetector):
    """Maximum logit. Example: ``ood_detector("maxlogit").fit(m, data).score(x)``."""

    name = "maxlogit"

    def _from_logits(self, logits):
        return maxlogit_score(logits)


class Energy(_OutputDetector):
    """Energy score at ``temperature``. Example: ``ood_detector("energy", temperature=1).fit(m, data)``."""

    name = "energy"

    def __init__(self, temperature: float = 1.0) -> None:
        self.temperature = temperature

    def _from_logits(self, logits):
        return energy_score(logits, self.temperature)


class ODIN(Detector):
    """ODIN (Liang et al., 2018, https://arxiv.org/abs/1706.02690): temperature scaling plus a small
    input step that raises the top softmax score; in-distribution inputs gain more than OOD ones.

    Math: ``x̃ = x + ε · sign(∇_x log max_k softmax(f(x)/T)_k)``, ``s(x) = −max_k softmax(f(x̃)/T)_k``.
    Images step in natural units; series in units of each channel's std (the wrapper's ``std``, else
    the series' own std over time — never the batch's, so a score does not depend on batch-mates);
    token models step in the embedding space.
    """

    name = "odin"

    def __init__(self, temperature: float = 1000.0, eps: float = 0.0014) -> None:
        self.temperature = temperature
        self.eps = eps

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model_
        xd = m.prepare(x)
        kind = m.input_kind
        t = self.temperature

        def run(sl: slice) -> torch.Tensor:
            xs = xd[sl]
            if kind == "tokens":
                with torch.no_grad():
                    z0 = m.embed(xs).float()
                fwd = lambda z: m.forward_embedded(xs, z)  # noqa: E731
                scale: Optional[torch.Tensor] = None
            else:
                z0, fwd = xs, m.forward
                scale = input_scale(m, xs) if kind == "series" else None
            z = z0.detach().clone().requires_grad_(True)
            top = torch.log_softmax(fwd(z) / t, dim=1).amax(dim=1).sum()
            grad, = torch.autograd.grad(top, z)
            step = self.eps * grad.sign() * (scale if scale is not None else 1.0)
            with torch.no_grad():
                return msp_score(fwd(z0 + step) / t).cpu()

        with m.session(grad=True):
            return torch.cat(m.batched(run, len(xd), desc="odin"))
