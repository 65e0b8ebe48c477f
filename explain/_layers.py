"""Finding the layers that methods need: by dotted name, or automatically by role."""

from __future__ import annotations

from typing import Optional, Tuple

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
    # Accept names written with the prefixes DataParallel/DDP and torch.compile leave behind.
    for candidate in (name, strip_prefixes(name)):
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
    """The default layer for CAM methods.

    Images: the last ``Conv2d``. Series: the last recurrent layer, Transformer encoder layer or
    ``Conv1d`` (whichever comes last in registration order), so maps are over time steps.
    Tokens: the embedding. After the first recurrent or attention layer every position carries
    information from its neighbours, so maps over deeper layers smear a token's evidence across
    the sentence; at the embedding, position ``t`` holds token ``t`` only. Pass ``layer=`` for a
    deeper layer.
    """
    if input_kind == "tokens":
        return auto_embedding_layer(model)
    if input_kind == "image":
        found = _last(model, (nn.Conv2d,))
        wanted = "a Conv2d layer"
    else:
        found = _last(model, _RECURRENT + (nn.TransformerEncoderLayer, nn.Conv1d))
        wanted = "a Conv1d, recurrent (LSTM/GRU/RNN) or TransformerEncoderLayer layer"
    if found is None:
        raise LayerNotFoundError(
            f"no target layer found automatically: expected {wanted} in {type(model).__name__}; "
            f"pass layer= with one of: {_suggest(model)}"
        )
    return found


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
