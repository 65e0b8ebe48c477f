"""The perturbation engine LIME and KernelSHAP share: build coalition inputs on the device, chunk
by chunk, and score them through the wrapper's batched forward path.

A coalition ``z`` (one bool per feature) keeps the features where ``z`` is True and replaces the rest
by a baseline; with several baselines per input (a SHAP background) the score is averaged over them.
Many inputs × many coalitions × many baselines go through each forward pass; the perturbed inputs
(and their masks) exist for one chunk at a time only.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..model import ModelWrapper

#: Feature maps with more elements than this (64×64) are perturbed one input at a time in each chunk.
PER_INPUT_ABOVE = 4096


def score_outputs(logits: torch.Tensor, target: torch.Tensor, output: str) -> torch.Tensor:
    """The explained scalar per row: the target's softmax probability or its raw logit."""
    if output == "probability":
        return torch.softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
    return logits.gather(1, target[:, None]).squeeze(1)


def evaluate_coalitions(
    wrapper: ModelWrapper,
    x: torch.Tensor,
    groups: torch.Tensor,
    z: torch.Tensor,
    baselines: torch.Tensor,
    target: torch.Tensor,
    *,
    output: str = "probability",
    batch_size: Optional[int] = None,
    desc: str = "perturbations",
    progress: Optional[bool] = None,
) -> torch.Tensor:
    """Scores of every coalition: ``N×S``.

    Shape:
        x: ``N×…`` device inputs; groups: ``N×H×W`` or ``N×T`` feature ids (device);
        z: ``N×S×F`` bool coalitions; baselines: ``N×B×…`` replacement values (``B`` ≥ 1);
        target: ``N`` classes (device).
    """
    n, s = z.shape[0], z.shape[1]
    b = baselines.shape[1]
    if z.shape[2] == 0:  # no sample has a feature: every coalition is the input itself
        z = torch.ones(n, s, 1, dtype=torch.bool, device=z.device)
    kind = wrapper.input_kind

    per_input = groups[0].numel() > PER_INPUT_ABOVE

    def perturbed(i, k: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """Rows for coalitions ``k`` and baselines ``j`` of inputs ``i``: an index tensor, or one
        ``int`` (then the input, its feature ids and a single baseline broadcast instead of being copied)."""
        one = isinstance(i, int)
        g = groups[i].reshape(1 if one else len(k), -1)
        keep = z[i][k] if one else z[i, k]
        keep = keep.gather(1, g.clamp_min(0).expand(len(k), -1)) | (g < 0)  # non-features (−1) are always kept
        keep = keep.reshape(len(k), *groups.shape[1:])  # R×H×W / R×T
        if kind == "image":
            keep = keep[:, None]
        elif kind == "series":
            keep = keep[:, :, None]
        if one:
            return torch.where(keep, x[i:i + 1], baselines[i, :1] if b == 1 else baselines[i][j])
        return torch.where(keep, x[i], baselines[i, j])

    def run(sl: slice) -> torch.Tensor:
        # rows are (input i, coalition k, baseline j), i slowest; masks exist for this chunk only
        r = torch.arange(sl.start, sl.stop, device=x.device)
        i_all = r // (s * b)
        if not per_input:  # small maps: the whole chunk at once
            return score_outputs(wrapper.forward(perturbed(i_all, (r // b) % s, r % b)), target[i_all], output)
        parts = []  # large maps: input by input, so only the R perturbed rows (plus R bytes per pixel) exist
        for i in torch.unique_consecutive(i_all).tolist():
            ri = r[i_all == i]
            parts.append(perturbed(i, (ri // b) % s, ri % b))
        rows = parts[0] if len(parts) == 1 else torch.cat(parts)
        return score_outputs(wrapper.forward(rows), target[i_all], output)

    with wrapper.session(grad=False):
        scores = torch.cat(wrapper.batched(run, n * s * b, batch_size=batch_size, desc=desc, progress=progress,
                                           shape=x.shape[1:]))
    return scores.view(n, s, b).mean(dim=2)


def full_and_empty(wrapper: ModelWrapper, x: torch.Tensor, groups: torch.Tensor, baselines: torch.Tensor,
                   target: torch.Tensor, output: str, batch_size: Optional[int] = None):
    """``f(x)`` and ``E_b f(x with every feature off)`` per input (``N`` each).

    Non-features (padding) stay as they are in the 'empty' coalition too, so efficiency is measured
    against the input the coalitions actually move towards.
    """
    n, f = x.shape[0], max(1, int(groups.max()) + 1)
    z = torch.zeros(n, 2, f, dtype=torch.bool, device=x.device)
    z[:, 0] = True
    both = evaluate_coalitions(wrapper, x, groups.to(x.device), z, baselines, target, output=output,
                               batch_size=batch_size, desc="shap")
    return both[:, 0], both[:, 1]
