"""Finding the layers that methods need: by dotted name, or automatically by role."""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
from torch import nn

from .errors import LayerNotFoundError

_RECURRENT = (nn.RNNBase,)
_SEQUENCE_BLOCKS = (nn.TransformerEncoderLayer, nn.TransformerEncoder, nn.MultiheadAttention)


def named_layers(model: nn.Module) -> list[str]:
    """All dotted module names of ``model`` except the root."""
    return [name for name, _ in model.named_modules() if name]


def _suggest(model: nn.Module, limit: int = 12) -> str:
    names = named_layers(model)
    shown = ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")
    return shown or "(the model has no sub-modules)"


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """Return the sub-module called ``name`` (a dotted path such as ``"layer4.1.conv2"``).

    Raises:
        LayerNotFoundError: naming the available layers.
    """
    modules = dict(model.named_modules())
    # Accept names written with the prefixes DataParallel/DDP and torch.compile leave behind, and on a
    # compiled model names of its eager module (without the ``_orig_mod.`` prefix).
    for candidate in (name, strip_prefixes(name), "_orig_mod." + strip_prefixes(name)):
        if candidate in modules and candidate:
            return modules[candidate]
    raise LayerNotFoundError(
        f"layer {name!r} not found in {type(model).__name__}; available: {_suggest(model)}; "
        "pass one of these dotted names"
    )


def strip_prefixes(key: str) -> str:
    """Remove ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (torch.compile) prefixes."""
    changed = True
    while changed:
        changed = False
        for prefix in ("module.", "_orig_mod."):
            if key.startswith(prefix):
                key = key[len(prefix):]
                changed = True
    return key


def _last(model: nn.Module, types: tuple) -> Optional[Tuple[str, nn.Module]]:
    found = None
    for name, module in model.named_modules():
        if name and isinstance(module, types):
            found = (name, module)
    return found


def auto_target_layer(model: nn.Module, input_kind: str) -> Tuple[str, nn.Module]:
    """The default layer for CAM methods, chosen from the model's structure alone.

    Images: on a Vision Transformer (any model with attention blocks), the pre-attention
    normalisation of the last block (see :func:`vit_target_layer`); otherwise the last ``Conv2d``
    (Grad-CAM narrows this to the last conv whose output is at least 4×4 on the actual input, see
    :func:`probe_conv_layer`). Series: the last recurrent layer, Transformer encoder layer or
    ``Conv1d`` (whichever comes last in registration order), so maps are over time steps.
    Tokens: the embedding. After the first recurrent or attention layer every position carries
    information from its neighbours, so maps over deeper layers smear a token's evidence across
    the sentence; at the embedding, position ``t`` holds token ``t`` only. Pass ``layer=`` for a
    deeper layer.
    """
    if input_kind == "tokens":
        return auto_embedding_layer(model)
    if input_kind == "image":
        vit = vit_target_layer(model)
        if vit is not None:
            return vit
        found = _last(model, (nn.Conv2d,))
        wanted = "a Conv2d layer or Transformer blocks"
    else:
        found = _last(model, _RECURRENT + (nn.TransformerEncoderLayer, nn.Conv1d))
        wanted = "a Conv1d, recurrent (LSTM/GRU/RNN) or TransformerEncoderLayer layer"
    if found is None:
        raise LayerNotFoundError(
            f"no target layer found automatically: expected {wanted} in {type(model).__name__}; "
            f"pass layer= with one of: {_suggest(model)}"
        )
    return found


_ATTENTION_CHILDREN = ("attn", "attention", "self_attn", "self_attention")
_PRE_NORMS = ("norm1", "layernorm_before", "ln_1", "input_layernorm")


def transformer_blocks(model: nn.Module) -> list:
    """``(name, module)`` of every Transformer block: a module with an attention child and a ``LayerNorm`` child.

    The attention child is an ``nn.MultiheadAttention`` or a child called ``attn``, ``attention``,
    ``self_attn`` or ``self_attention`` (timm, Hugging Face and ``nn.TransformerEncoderLayer`` blocks).
    """
    blocks = []
    for name, module in model.named_modules():
        children = dict(module.named_children())
        has_attn = any(k in children for k in _ATTENTION_CHILDREN) or any(
            isinstance(c, nn.MultiheadAttention) for c in children.values())
        if name and has_attn and any(isinstance(c, nn.LayerNorm) for c in children.values()):
            blocks.append((name, module))
    return blocks


def vit_target_layer(model: nn.Module) -> Optional[Tuple[str, nn.Module]]:
    """The Grad-CAM layer of a Vision Transformer, or ``None`` when the model has no Transformer blocks.

    Rule: the normalisation *before the attention* of the last block — timm's ``blocks[-1].norm1``,
    Hugging Face ViT/DeiT's ``layer[-1].layernorm_before``, otherwise the first ``LayerNorm`` child
    of the last block (pytorch-grad-cam's documentation recommends the same layer). Later layers
    do not work: after the last attention every token is processed on its own, and the head reads
    only the class token, so the patch tokens there receive no gradient and the map is zero. A
    post-norm ``nn.TransformerEncoderLayer`` (``norm_first=False``) normalises *after* attention,
    so its previous block's output is used instead.
    """
    blocks = transformer_blocks(model)
    if not blocks:
        return None
    name, block = blocks[-1]
    if isinstance(block, nn.TransformerEncoderLayer) and not block.norm_first and len(blocks) > 1:
        return blocks[-2]
    children = dict(block.named_children())
    for key in _PRE_NORMS:
        if isinstance(children.get(key), nn.LayerNorm):
            return f"{name}.{key}", children[key]
    key, norm = next((k, c) for k, c in children.items() if isinstance(c, nn.LayerNorm))
    return f"{name}.{key}", norm


def probe_conv_layer(model: nn.Module, run: Callable[[], object], min_cells: int = 4) -> Optional[Tuple[str, nn.Module]]:
    """The last ``Conv2d`` (in execution order) whose output is at least ``min_cells``×``min_cells``.

    ``run`` performs one forward pass on the actual input size (the caller picks one sample and
    caches the answer per input shape). When no conv is that large, the one with the largest
    output is used (the latest of equals), and the map will likely be flagged as degenerate.
    Returns ``None`` when no ``Conv2d`` ran.
    """
    seen: list = []
    handles = []
    for name, module in model.named_modules():
        if name and isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(
                lambda mod, _i, out, name=name: seen.append((name, mod, tuple(out.shape[-2:])))))
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    if not seen:
        return None
    big = [s for s in seen if min(s[2]) >= min_cells]
    if big:
        return big[-1][:2]
    best = max(min(s[2]) for s in seen)
    return [s for s in seen if min(s[2]) == best][-1][:2]


def auto_embedding_layer(model: nn.Module) -> Tuple[str, nn.Module]:
    """The first ``nn.Embedding`` of a token model."""
    for name, module in model.named_modules():
        if name and isinstance(module, nn.Embedding):
            return name, module
    raise LayerNotFoundError(
        f"no nn.Embedding found in {type(model).__name__}; token models need one — pass "
        f"embedding_layer= with one of: {_suggest(model)}"
    )


def auto_feature_layer(model: nn.Module) -> Tuple[str, nn.Module]:
    """The last ``nn.Linear``: its *input* is the penultimate feature vector."""
    found = _last(model, (nn.Linear,))
    if found is None:
        raise LayerNotFoundError(
            f"no final nn.Linear found in {type(model).__name__}, so the penultimate features are "
            f"unknown; pass feature_layer= naming the classifier head, one of: {_suggest(model)}"
        )
    return found


def to_channels_first(activation: torch.Tensor, module: nn.Module, length: Optional[int]) -> torch.Tensor:
    """Bring a captured activation to ``N×C×(spatial...)``.

    Conv outputs already are. Recurrent outputs are ``N×T×D`` (``batch_first``) or ``T×N×D``;
    other 3-D activations of sequence models (embeddings, Transformer layers) are taken as
    ``N×T×D`` when their second dimension equals the input length ``length``.
    """
    if isinstance(activation, (tuple, list)):
        activation = activation[0]
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) or activation.dim() == 4:
        return activation
    if activation.dim() != 3:
        raise LayerNotFoundError(
            f"layer {type(module).__name__} gives an activation of shape {tuple(activation.shape)}; "
            "a map needs N×C×H×W, N×C×T or N×T×D — choose another layer="
        )
    if isinstance(module, nn.RNNBase):
        return activation.permute(0, 2, 1) if module.batch_first else activation.permute(1, 2, 0)
    batch_first = getattr(module, "batch_first", None)
    if batch_first is None and hasattr(module, "self_attn"):
        batch_first = getattr(module.self_attn, "batch_first", None)
    if batch_first is False and activation.shape[1] != length:
        return activation.permute(1, 2, 0)
    return activation.permute(0, 2, 1)
