"""Explaining an error raised by the model's own forward pass: what it got, what it expects.

Nothing here runs unless the model has already raised, so a forward pass costs nothing extra.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from ._batching import _is_oom
from .errors import ToolkitError

# Errors a model's forward pass raises on input it cannot take; anything else passes through.
MODEL_CALL_ERRORS = (RuntimeError, TypeError, ValueError, IndexError)


def is_model_input_error(error: BaseException) -> bool:
    """True for an exception from the model's forward pass that should become a ``ModelCallError``.

    Toolkit errors, out-of-memory errors (the batching layer halves the batch on those) and
    anything that is not an ``Exception`` (``KeyboardInterrupt``) pass through unchanged.
    """
    if isinstance(error, ToolkitError) or not isinstance(error, MODEL_CALL_ERRORS):
        return False
    return not _is_oom(error)


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"shape {tuple(value.shape)}, dtype {value.dtype}"
    return type(value).__name__


def first_layer_hint(model: nn.Module) -> Optional[str]:
    """What the model's first shape-defining layer expects, e.g. ``"conv1 (Conv2d) takes 3 input channels"``.

    Looks at modules in registration order (usually the order they run): the first convolution,
    linear layer, embedding or recurrent layer. ``None`` when there is none or it cannot be read.
    """
    try:
        for name, m in model.named_modules():
            label = f"{name or 'the model'} ({type(m).__name__})"
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                dims = {1: "N×C×L", 2: "N×C×H×W", 3: "N×C×D×H×W"}[len(m.kernel_size)]
                return f"its first layer {label} takes {m.in_channels} input channels ({dims} with C={m.in_channels})"
            if isinstance(m, nn.Linear):
                return f"its first layer {label} takes {m.in_features} input features"
            if isinstance(m, nn.Embedding):
                return (f"its first layer {label} takes integer token ids in [0, {m.num_embeddings - 1}] "
                        f"({m.num_embeddings} embeddings)")
            if isinstance(m, nn.RNNBase):
                layout = "N×T×C" if m.batch_first else "T×N×C"
                return f"its first layer {label} takes {m.input_size} features per step ({layout} with C={m.input_size})"
    except Exception:  # noqa: BLE001 - a hint must never hide the real error
        return None
    return None


def call_failure_message(model: nn.Module, args: tuple, kwargs: dict, error: BaseException) -> str:
    """One paragraph for ``ModelCallError``: the input given, the model's error in one line, the hint."""
    given = "; ".join(_describe(a) for a in args) or "no positional input"
    if kwargs:
        given += "; " + ", ".join(f"{k}={_describe(v)}" for k, v in kwargs.items())
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    first = lines[0] if lines else ""
    if len(first) > 300:
        first = first[:297] + "..."
    msg = (f"the model's forward pass raised {type(error).__name__} on an input of {given} "
           f"(after the wrapper's normalisation): {first}")
    hint = first_layer_hint(model)
    if hint:
        msg += f"; {hint}"
    return msg + ("; check the inputs' shape and channel count against the model, and the wrapper's "
                  "input_kind, mean/std and output settings")
