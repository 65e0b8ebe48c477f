"""The CAM family's shared engine. A variant supplies only ``channel_weights(activations, gradients)``.

Math (Grad-CAM, Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391):
``L = Σ_k α_k A^k`` with ``α_k = mean_{spatial} ∂y_c/∂A^k``. The map is kept signed (no ReLU)
and upsampled to the input's size; drawing code decides how to clip and scale it.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F

from ..model import ModelWrapper

ChannelWeights = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def gradcam_weights(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Grad-CAM channel weights: gradients averaged over every non-channel axis. ``N×C×... → N×C``."""
    del activations
    return gradients.flatten(2).mean(dim=2)


def weighted_sum(activations: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``Σ_k w_k A^k`` per sample. Shape: ``N×C×(spatial)``, ``N×C`` → ``N×(spatial)``."""
    w = weights.reshape(*weights.shape, *([1] * (activations.dim() - 2)))
    return (w * activations).sum(dim=1)


def upsample(maps: torch.Tensor, size: Tuple[int, ...]) -> torch.Tensor:
    """Resize ``N×h×w`` maps to ``size`` bilinearly, or ``N×t`` maps linearly."""
    if tuple(maps.shape[1:]) == tuple(size):
        return maps
    mode = "bilinear" if len(size) == 2 else "linear"
    return F.interpolate(maps.unsqueeze(1), size=size, mode=mode, align_corners=False).squeeze(1)


def cam(
    wrapper: ModelWrapper,
    x: torch.Tensor,
    target: Optional[torch.Tensor],
    size: Tuple[int, ...],
    channel_weights: ChannelWeights,
    layer: Optional[str] = None,
    batch_size: Optional[int] = None,
    progress: Optional[bool] = None,
) -> Tuple[torch.Tensor, torch.Tensor, str]:
    """Class activation maps for device inputs ``x``: (``N×size`` CPU maps, targets, layer name).

    ``target=None`` explains the predicted class, read from the same forward pass.
    """
    name, module = wrapper.target_layer(layer)
    length = x.shape[1] if wrapper.input_kind != "image" else None
    t_dev = None if target is None else target.to(wrapper.device)

    def run(sl: slice) -> Tuple[torch.Tensor, torch.Tensor]:
        with wrapper.capture((name, module), grad=True) as cap:
            logits = wrapper.forward(x[sl])
        t = logits.detach().argmax(dim=1) if t_dev is None else t_dev[sl]
        score = logits.gather(1, t[:, None]).sum()
        acts = wrapper.activation_map(cap, length)
        grads = None
        if score.requires_grad:  # False when the score does not depend on the layer at all
            grads, = torch.autograd.grad(score, cap.output, allow_unused=True)
        if grads is None:
            grads = torch.zeros_like(cap.output)
        grads = wrapper.activation_map(type(cap)(cap.name, cap.module, grads), length)
        maps = weighted_sum(acts.detach().float(), channel_weights(acts.detach().float(), grads.float()))
        return upsample(maps, size).cpu(), t.cpu()

    with wrapper.session(grad=True):
        parts = wrapper.batched(run, x.shape[0], batch_size=batch_size, desc="cam", progress=progress)
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), name
