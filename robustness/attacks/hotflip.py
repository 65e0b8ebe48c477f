"""HotFlip-style token substitution (Ebrahimi et al., 2018, https://arxiv.org/abs/1712.06751).

Math: swapping token ``t`` for vocabulary row ``v`` changes the loss by about
``(E_v − e_t) · ∂L/∂e_t`` (first order). Each round ranks every (position, word) pair by that estimate,
verifies the ``candidates`` best by a forward pass, applies the one with the highest true loss, and
stops for a sample once its prediction changes or ``max_tokens`` positions were changed. The
wrapper's padding, unknown and special ids (``pad_id``, ``unk_id``, ``special_ids``) are never
replaced nor inserted.

Budget: a whole number of substituted tokens (``max_tokens``), reported per sample in
``tokens_changed``.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from explain.errors import InputShapeError, InputValueError
from explain import check_wrapper

from ..results import AttackResult
from ._base import attack_loss, finish


class HotFlip:
    """Gradient-guided substitution of at most ``max_tokens`` tokens per input.

    Example:
        >>> r = HotFlip(max_tokens=2).run(m, ids, y)   # doctest: +SKIP
        >>> r.tokens_changed, r.success_rate
    """

    name = "hotflip"

    def __init__(self, max_tokens: int = 3, *, candidates: int = 8, targeted: bool = False) -> None:
        self.max_tokens = max_tokens
        self.candidates = candidates
        self.targeted = targeted

    def __repr__(self) -> str:
        return f"HotFlip(max_tokens={self.max_tokens}, candidates={self.candidates}, targeted={self.targeted})"

    def run(self, model: Any, x: Any, y: Any, *, target: Any = None, seed: int = 0, eps: Any = None) -> AttackResult:
        """Attack token ids ``x`` (``N×T``) with labels ``y``. ``seed`` is unused (deterministic).

        Args:
            eps: if given, overrides ``max_tokens`` (a whole number of tokens).

        Raises:
            InputShapeError: the wrapper's input kind is not ``"tokens"``, or labels do not match.
            InputValueError: the token budget is not a whole number ≥ 0.
        """
        start = time.perf_counter()
        wrapper = check_wrapper(model)
        budget = self.max_tokens if eps is None else eps
        if float(budget) != int(float(budget)) or float(budget) < 0:
            raise InputValueError(f"hotflip's budget is a whole number of substituted tokens ≥ 0, got {budget}")
        budget = int(float(budget))
        if wrapper.input_kind != "tokens":
            raise InputShapeError(f"hotflip substitutes tokens; this wrapper's input kind is {wrapper.input_kind!r} "
                                  "— use 'pgd', 'fgsm' or 'apgd'")
        x = wrapper.check_inputs(x)
        y = wrapper.check_labels(y, x)
        targeted = target is not None or self.targeted
        goal = wrapper.resolve_target(x, target) if target is not None else y
        clean_pred = wrapper.logits(x).argmax(1)
        xd = wrapper.prepare(x)
        emb = wrapper.embedding_layer()[1].weight.detach().float()
        vocab = emb.shape[0]
        k = max(1, int(self.candidates))
        special = torch.tensor(sorted({wrapper.pad_id, *wrapper.special_ids}
                                      | ({wrapper.unk_id} if wrapper.unk_id is not None else set())), dtype=torch.long)
        special = special[(special >= 0) & (special < vocab)].to(wrapper.device)

        def chunk(sl: slice) -> torch.Tensor:
            ids, goals = xd[sl].clone(), goal[sl].to(wrapper.device)
            original = ids.clone()
            active = torch.ones(len(ids), dtype=torch.bool, device=ids.device)
            banned_words = torch.zeros(vocab, dtype=torch.bool, device=ids.device)
            banned_words[special] = True
            with wrapper.session(grad=True):
                for _ in range(budget):
                    if not bool(active.any()):
                        break
                    e = wrapper.embed(ids).detach().float().requires_grad_(True)
                    logits = wrapper.forward_embedded(ids, e)
                    pred = logits.argmax(1)
                    active &= (pred != goals) if targeted else (pred == goals)
                    if not bool(active.any()):
                        break
                    loss = attack_loss(logits, goals, targeted)
                    g, = torch.autograd.grad(loss.sum(), e)
                    gain = g @ emb.T - (g * e.detach()).sum(-1, keepdim=True)  # N×T×V first-order loss change
                    blocked = wrapper.special_mask(ids) | (ids != original)
                    gain = gain.masked_fill(blocked[:, :, None], -float("inf"))
                    gain = gain.masked_fill(banned_words[None, None, :], -float("inf"))
                    gain.scatter_(2, ids[:, :, None], -float("inf"))
                    top = gain.flatten(1).topk(k, dim=1).indices  # N×k
                    pos, word = top // vocab, top % vocab
                    trial = ids[:, None, :].repeat(1, k, 1)
                    trial.scatter_(2, pos[:, :, None], word[:, :, None])
                    with torch.no_grad():
                        tl = wrapper.forward(trial.flatten(0, 1))
                        true_loss = attack_loss(tl, goals.repeat_interleave(k), targeted).view(-1, k)
                    finite = torch.isfinite(gain.flatten(1).gather(1, top))
                    true_loss = true_loss.masked_fill(~finite, -float("inf"))
                    best = true_loss.argmax(1)
                    choose = active & finite.any(1)
                    rows = torch.arange(len(ids), device=ids.device)
                    ids[choose] = trial[rows, best][choose]
            return ids

        adv = torch.cat(wrapper.batched(chunk, len(xd), desc="hotflip"))
        changed = (adv != xd).sum(1).cpu()
        params = {"max_tokens": budget, "candidates": k, "targeted": targeted, "budget_unit": "substituted tokens"}
        return finish(wrapper, self.name, params, xd, adv, y, clean_pred, start, targeted_to=goal if targeted else None,
                      tokens_changed=changed, linf=changed.float(), l2=changed.float().sqrt())
