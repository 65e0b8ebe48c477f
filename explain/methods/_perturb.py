"""The perturbation engine LIME and KernelSHAP share: build coalition inputs on the device, chunk
by chunk, and score them through the wrapper's batched forward path.

A coalition ``z`` (one bool per feature) keeps the features where ``z`` is True and replaces the rest
by a baseline; with several baselines per input (a SHAP background) the score is averaged over them.
Many inputs × many coalitions × many baselines go through each forward pass.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..model import ModelWrapper


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

    def run(sl: slice) -> torch.Tensor:
        r = torch.arange(sl.start, sl.stop, device=x.device)
        i, k, j = r // (s * b), (r // b) % s, r % b
        g = groups[i].reshape(len(r), -1)
        keep = z[i, k].gather(1, g.clamp_min(0)) | (g < 0)  # non-features (−1) are always kept
        keep = keep.reshape(groups[i].shape)  # R×H×W / R×T
        if kind == "image":
            keep = keep[:, None]
        elif kind == "series":
            keep = keep[:, :, None]
        rows = torch.where(keep, x[i], baselines[i, j])
        return score_outputs(wrapper.forward(rows), target[i], output)

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
