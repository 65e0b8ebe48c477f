"""Token-shaped activations of image models (Vision Transformers) as maps over the patch grid.

A ViT block's activation is ``N×(extra+P)×D``: ``extra`` class/register/distillation tokens
followed by ``P = h·w`` patch tokens in row-major order. CAM methods need ``N×D×h×w``. The grid
is found, in this order:

1. from the input size and the patch size (timm ``patch_embed.patch_size``, Hugging Face
   ``config.patch_size``, else the first ``Conv2d`` whose kernel equals its stride): ``h = H // p``,
   ``w = W // p`` — this also covers non-square grids;
2. from the number of prefix tokens the model declares (timm ``num_prefix_tokens``; Hugging Face
   configs: one class token, plus a distillation token for DeiT and ``num_register_tokens``) when the
   rest is a square;
3. otherwise the largest square ``s² ≤ T`` patch tokens, the ``T - s²`` tokens before them taken as
   extras.

Prefix tokens are assumed to come first, as in timm and Hugging Face. Unusual layouts (suffix
tokens, windowed or channels-last blocks) need ``reshape=``: a callable from the layer's output to
``N×C×h×w``.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Tuple

import torch
from torch import nn

from .errors import LayerNotFoundError

Reshape = Callable[[torch.Tensor], torch.Tensor]


def _pair(v) -> Tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return int(v[0]), int(v[-1])
    return int(v), int(v)


def patch_size(model: nn.Module) -> Optional[Tuple[int, int]]:
    """The patch size ``(ph, pw)`` of a ViT-like model, or ``None`` when it cannot be told."""
    embed = getattr(model, "patch_embed", None)
    if embed is not None and getattr(embed, "patch_size", None) is not None:
        return _pair(embed.patch_size)
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "patch_size", None) is not None:
        return _pair(config.patch_size)
    for _, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and tuple(module.kernel_size) == tuple(module.stride) \
                and max(module.stride) > 1:
            return _pair(module.stride)
    return None


def prefix_tokens(model: nn.Module) -> Optional[int]:
    """How many class/register/distillation tokens precede the patch tokens, if the model says."""
    n = getattr(model, "num_prefix_tokens", None)
    if isinstance(n, int):
        return n
    config = getattr(model, "config", None)
    if config is None or getattr(config, "patch_size", None) is None:
        return None
    kind = str(getattr(config, "model_type", ""))
    return 1 + int(kind.startswith("deit")) + int(getattr(config, "num_register_tokens", 0) or 0)


def token_grid(model: nn.Module, tokens: int, image_size: Tuple[int, int]) -> Tuple[int, int, int]:
    """``(extra, h, w)`` for ``tokens`` tokens of an image of ``image_size`` (rules in the module docstring).

    Raises:
        LayerNotFoundError: no grid fits (e.g. fewer tokens than one patch); pass ``reshape=``.
    """
    patch = patch_size(model)
    if patch is not None:
        h, w = image_size[0] // patch[0], image_size[1] // patch[1]
        if 0 < h * w <= tokens:
            return tokens - h * w, h, w
    extra = prefix_tokens(model)
    if extra is not None and tokens > extra:
        side = math.isqrt(tokens - extra)
        if side * side == tokens - extra:
            return extra, side, side
    side = math.isqrt(tokens)
    if side >= 1:
        return tokens - side * side, side, side
    raise LayerNotFoundError(f"cannot lay {tokens} tokens out on a patch grid; pass reshape= "
                             "(a callable from the layer's output to N×C×h×w)")


def tokens_to_maps(activation: torch.Tensor, model: nn.Module, batch: int,
                   image_size: Tuple[int, int]) -> Tuple[torch.Tensor, int]:
    """``N×(extra+P)×D`` (or ``(extra+P)×N×D``) → (``N×D×h×w`` patch-token maps, ``extra``).

    Shape:
        activation: ``N×T×D`` or ``T×N×D``; returns ``N×D×h×w`` with ``h·w = T - extra``.
    """
    if activation.shape[0] != batch and activation.shape[1] == batch:
        activation = activation.transpose(0, 1)
    extra, h, w = token_grid(model, int(activation.shape[1]), image_size)
    patches = activation[:, extra:extra + h * w]
    return patches.transpose(1, 2).reshape(activation.shape[0], activation.shape[2], h, w), extra


def apply_reshape(reshape: Reshape, tensor: torch.Tensor, name: str) -> torch.Tensor:
    """Call a user's ``reshape`` and check it returned ``N×C×h×w`` (or ``N×C×T``)."""
    out = reshape(tensor)
    if not isinstance(out, torch.Tensor) or out.dim() not in (3, 4) or out.shape[0] != tensor.shape[0]:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise LayerNotFoundError(f"reshape= must turn layer {name!r}'s output {tuple(tensor.shape)} into "
                                 f"N×C×h×w with the same N; it returned {got}")
    return out
