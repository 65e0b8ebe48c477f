"""The CAM family's shared engine. A variant supplies only ``channel_weights(activations, gradients)``.

Math (Grad-CAM, Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391):
``L = Σ_k α_k A^k`` with ``α_k = mean_{spatial} ∂y_c/∂A^k``. The map is kept signed (no ReLU)
and upsampled to the input's size; drawing code decides how to clip and scale it.

Vision Transformers: a block's ``N×(extra+P)×D`` output is laid out as ``N×D×h×w`` over the patch
tokens (class/register tokens dropped, see ``explain._patches``), so ``α_k`` is the gradient
averaged over the patch tokens and the map lives on the patch grid before upsampling.
"""

from __future__ import annotations

import warnings
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F

from .. import _layers
from .._patches import Reshape, apply_reshape, tokens_to_maps
from ..errors import UnsupportedModelError
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


def degenerate(maps: torch.Tensor, rel: float = 1e-3) -> torch.Tensor:
    """Per sample, 1.0 when a layer-resolution map is near-constant, else 0.0.

    Near-constant: fewer than two cells, or ``max - min ≤ rel · max|value|`` (an all-zero map too).
    Such a map says nothing about *where* the evidence is, however it is upsampled.
    Shape: ``N×(spatial)`` → ``N``.
    """
    flat = maps.flatten(1)
    if flat.shape[1] < 2:
        return torch.ones(flat.shape[0])
    spread = flat.amax(1) - flat.amin(1)
    scale = flat.abs().amax(1)
    return ((spread <= rel * scale) | (scale == 0)).float().cpu()


def _layout(wrapper: ModelWrapper, x: torch.Tensor, name: str, module, reshape: Optional[Reshape]):
    """The function bringing the layer's output (and its gradient) to ``N×C×(spatial)``."""
    length = x.shape[1] if wrapper.input_kind != "image" else None

    def to_maps(tensor: torch.Tensor) -> torch.Tensor:
        if reshape is not None:
            return apply_reshape(reshape, tensor, name)
        if wrapper.input_kind == "image" and tensor.dim() == 3:
            return tokens_to_maps(tensor, wrapper.model, x.shape[0], tuple(x.shape[2:]))[0]
        return _layers.to_channels_first(tensor, module, length)

    return to_maps


def cam(
    wrapper: ModelWrapper,
    x: torch.Tensor,
    target: Optional[torch.Tensor],
    size: Tuple[int, ...],
    channel_weights: ChannelWeights,
    layer: Optional[str] = None,
    batch_size: Optional[int] = None,
    progress: Optional[bool] = None,
    reshape: Optional[Reshape] = None,
) -> Tuple[torch.Tensor, torch.Tensor, str, torch.Tensor]:
    """Class activation maps for device inputs ``x``: (``N×size`` CPU maps, targets, layer name, degenerate).

    ``target=None`` explains the predicted class, read from the same forward pass. ``reshape``
    (default: the wrapper's ``cam_reshape``) maps the layer's output to ``N×C×h×w``; without it,
    token-shaped activations of image models are laid out on the patch grid (``explain._patches``).
    ``degenerate`` is 1.0 for each sample whose map is near-constant at the layer's resolution.
    """
    name, module = wrapper.target_layer(layer, x=x)
    reshape = reshape if reshape is not None else getattr(wrapper, "cam_reshape", None)
    t_dev = None if target is None else target.to(wrapper.device)
    to_maps = _layout(wrapper, x, name, module, reshape)

    def run(sl: slice) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with wrapper.capture((name, module), grad=True) as cap:
            logits = wrapper.forward(x[sl])
        if cap.output is None:
            raise UnsupportedModelError(f"layer {name!r} did not run during the forward pass; choose another layer=")
        t = logits.detach().argmax(dim=1) if t_dev is None else t_dev[sl]
        score = logits.gather(1, t[:, None]).sum()
        acts = to_maps(cap.output)
        grads = None
        if score.requires_grad:  # False when the score does not depend on the layer at all
            grads, = torch.autograd.grad(score, cap.output, allow_unused=True)
        if grads is None:
            grads = torch.zeros_like(cap.output)
        grads = to_maps(grads)
        maps = weighted_sum(acts.detach().float(), channel_weights(acts.detach().float(), grads.float()))
        return upsample(maps, size).cpu(), t.cpu(), degenerate(maps)

    with wrapper.session(grad=True):
        parts = wrapper.batched(run, x.shape[0], batch_size=batch_size, desc="cam", progress=progress)
    flags = torch.cat([p[2] for p in parts])
    if bool(flags.any()):
        warnings.warn(f"{int(flags.sum())} of {len(flags)} class activation maps at layer {name!r} are "
                      "near-constant and show no location; choose a layer with a larger output (layer=)",
                      stacklevel=3)
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), name, flags
