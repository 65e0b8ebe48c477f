"""The engine of the gradient attacks (FGSM, PGD, APGD): one driver, one ``perturb`` per attack.

The driver moves inputs into the attack's space, where the budget ``eps`` is measured:

* images — natural units (pixels in [0, 1]), clipped to the wrapper's ``valid_range``;
* series — units of each channel's standard deviation (the wrapper's ``std`` if given, else the
  series' own std over time), so ``eps=0.1`` means 0.1 σ per channel;
* tokens — the embedding space of the model's embedding layer, in units of the standard deviation
  of the embedding table's entries (``embedding_scale``), so ``eps=0.5`` means half the table's
  typical spread per coordinate whatever the model's scale (padding positions never move).

A sample's result never depends on its batch-mates: budgets, scales and random starts are per sample.

It runs the attack chunk by chunk through the wrapper's batched path, inside a ``session`` that
restores the model's state, and predicts on the result.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional, Tuple

import torch

from explain.errors import InputShapeError
from explain import check_wrapper

from ..results import AttackResult
from ._base import attack_loss, check_budget, clip_range, embedding_scale, finish, input_scale, per_sample, sample_seeds

LossGrad = Callable[[torch.Tensor], Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
"""``loss_grad(z) -> (per-sample loss, its gradient, success mask)``."""


class GradientAttack:
    """Base class: the constructor stores parameters; :meth:`run` attacks a batch.

    Subclasses implement ``perturb(loss_grad, x0, eps, bounds, generator) -> x_adv`` on tensors in
    the attack space, where ``loss_grad(z)`` returns the per-sample loss, its gradient and whether
    ``z`` already fools the model (misclassified, or classified as the target).
    """

    name = "gradient"

    def __init__(self, eps: float = 8 / 255, *, norm: str = "linf", targeted: bool = False) -> None:
        self.eps = eps
        self.norm = norm
        self.targeted = targeted

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"

    def params(self) -> dict:
        return {k: (float(v) if isinstance(v, float) else v) for k, v in vars(self).items()
                if isinstance(v, (int, float, str, bool)) or v is None}

    def perturb(self, loss_grad: LossGrad, x0: torch.Tensor, eps: torch.Tensor, bounds, generator) -> torch.Tensor:
        raise NotImplementedError

    def run(self, model: Any, x: Any, y: Any, *, target: Any = None, seed: int = 0,
            eps: Optional[Any] = None) -> AttackResult:
        """Attack ``x`` (labels ``y``); ``target`` makes a targeted attack; ``eps`` may be per sample.

        Shape:
            x: the wrapper's input kind, ``N×…``; y: ``N``; result tensors on the CPU.
        """
        start = time.perf_counter()
        wrapper = check_wrapper(model)
        x = wrapper.check_inputs(x)
        y = wrapper.check_labels(y, x)
        budget = self.eps if eps is None else eps
        check_budget(budget, self.norm)
        targeted = target is not None or self.targeted
        goal = wrapper.resolve_target(x, target) if target is not None else y
        xd = wrapper.prepare(x)
        n = len(xd)
        kind = wrapper.input_kind
        eps_all = torch.as_tensor(budget, dtype=torch.float32).flatten()
        eps_all = eps_all.expand(n) if eps_all.numel() == 1 else eps_all
        if len(eps_all) != n:
            raise InputShapeError(f"eps: expected one budget or {n}, got {len(eps_all)}")
        clean_pred = wrapper.logits(x).argmax(1)

        emb_unit = embedding_scale(wrapper) if kind == "tokens" else None

        def chunk(sl: slice) -> torch.Tensor:
            xs, goals = xd[sl], goal[sl].to(wrapper.device)
            gens = [torch.Generator(device="cpu").manual_seed(s) for s in sample_seeds(xs, seed)]
            if kind == "tokens":
                with wrapper.session(grad=False):
                    space = wrapper.embed(xs).detach().float() / emb_unit
                movable = (~wrapper.special_mask(xs)).unsqueeze(-1).float()
                bounds = None
                to_model = lambda z, ids=xs: wrapper.forward_embedded(ids, z * emb_unit)  # noqa: E731
                scale = None
            else:
                scale = input_scale(wrapper, xs) if kind == "series" else None
                space = xs / scale if scale is not None else xs
                movable = None
                bounds = None if kind == "series" else wrapper.valid_range
                to_model = (lambda z, s=scale: wrapper.forward(z * s)) if scale is not None else wrapper.forward

            def loss_grad(z: torch.Tensor):
                z = z.detach().requires_grad_(True)
                logits = to_model(z)
                loss = attack_loss(logits, goals, targeted)
                grad, = torch.autograd.grad(loss.sum(), z)
                if movable is not None:
                    grad = grad * movable
                pred = logits.detach().argmax(1)
                return loss.detach(), grad.detach(), (pred == goals) if targeted else (pred != goals)

            e = per_sample(eps_all[sl].to(wrapper.device), len(space), space)
            with wrapper.session(grad=True):
                adv = self.perturb(loss_grad, space, e, bounds, gens)
            if movable is not None:
                adv = space + (adv - space) * movable
            if scale is not None:
                adv = adv * scale
            if emb_unit is not None:
                adv = adv * emb_unit
            return adv.detach()

        advs = torch.cat(wrapper.batched(chunk, n, desc=self.name))
        params = {**self.params(), "seed": seed, "space": {"image": "pixels", "series": "std units",
                                                           "tokens": "embedding std units"}[kind]}
        if eps is not None:
            params["eps"] = "per-sample" if torch.as_tensor(eps).numel() > 1 else float(torch.as_tensor(eps))
        if kind == "tokens":
            params["embedding_std"] = emb_unit
            with wrapper.session(grad=False):
                clean_emb = torch.cat(wrapper.batched(lambda sl: wrapper.embed(xd[sl]).float(), n))
                adv_pred = torch.cat(wrapper.batched(lambda sl: wrapper.forward_embedded(xd[sl], advs[sl]).argmax(1).cpu(), n))
            delta = ((advs - clean_emb) / emb_unit).flatten(1).cpu()
            return finish(wrapper, self.name, params, xd, xd, y, clean_pred, start,
                          targeted_to=goal if targeted else None, adv_pred=adv_pred, linf=delta.abs().amax(1),
                          l2=delta.norm(dim=1), adversarial_embeddings=advs.cpu())
        return finish(wrapper, self.name, params, xd, advs, y, clean_pred, start, targeted_to=goal if targeted else None)


def random_start(x0: torch.Tensor, eps: torch.Tensor, norm: str, generators) -> torch.Tensor:
    """A uniform point of the L∞ ball, or a uniform-radius point of the L2 ball, around ``x0``.

    ``generators`` holds one ``torch.Generator`` per sample, so each sample's start depends only on
    its own generator (never on its batch-mates or its position).
    """
    shape = x0.shape[1:]
    view = (-1,) + (1,) * (x0.dim() - 1)
    if norm == "linf":
        u = torch.stack([torch.rand(shape, generator=g) for g in generators]).to(x0.device, x0.dtype)
        return x0 + (2 * u - 1) * eps
    d = torch.stack([torch.randn(shape, generator=g) for g in generators]).to(x0.device, x0.dtype)
    d = d / d.flatten(1).norm(dim=1).clamp_min(1e-12).view(view)
    r = torch.stack([torch.rand((), generator=g) for g in generators]).to(x0.device, x0.dtype).view(view)
    return x0 + d * r * eps


def clip(z: torch.Tensor, bounds) -> torch.Tensor:
    return clip_range(z, bounds)
