"""How a model wants to be called: positionally or by keyword, and which extra inputs it accepts.

A model's ``forward`` signature is read once, when the wrapper is made. Models whose first input is
keyword-only (``forward(self, *, input_ids, attention_mask=None)``) are called by keyword; the rest
positionally, as ``model(x)``. Black-box models (ONNX run by onnxruntime) list their input names in an
``input_names`` attribute instead of a Python signature.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

import torch

from torch import nn

from ._modelcall import call_failure_message, is_model_input_error
from .errors import ModelCallError, UnsupportedModelError

#: Names of the main input, by input kind, tried in order for keyword-only forwards.
MAIN_INPUT_NAMES = {"tokens": ("input_ids", "ids", "tokens", "x", "input"),
                    "image": ("pixel_values", "images", "x", "input"),
                    "series": ("x", "inputs", "input", "series")}


@dataclass
class CallSpec:
    """What the wrapper knows about calling the model.

    Attributes:
        main: keyword name of the main input, or ``None`` to pass it positionally.
        params: names the model accepts by keyword (empty when unknown).
        any_keyword: the forward takes ``**kwargs`` (or its signature is unknown).
    """

    main: Optional[str] = None
    params: Tuple[str, ...] = ()
    any_keyword: bool = True
    hf: bool = field(default=False)

    def accepts(self, name: str) -> bool:
        """Whether ``name`` can be passed by keyword."""
        return self.any_keyword or name in self.params


def call_spec(model: nn.Module, input_kind: str) -> CallSpec:
    """Read ``model``'s forward signature (or ``input_names``) into a :class:`CallSpec`."""
    config = getattr(model, "config", None)
    hf = config is not None and (type(model).__module__.startswith("transformers.") or hasattr(config, "pad_token_id"))
    names = getattr(model, "input_names", None)
    if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
        # A black-box graph: inputs by name; the first one is the main input.
        return CallSpec(main=names[0], params=tuple(names), any_keyword=False, hf=hf)
    try:
        sig = inspect.signature(model.forward)
    except (TypeError, ValueError):  # TorchScript methods and C extensions may hide it
        return CallSpec(hf=hf)
    params = [p for p in sig.parameters.values() if p.name != "self"]
    any_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    named = tuple(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    main = None
    if not positional:
        keyword_only = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
        if not keyword_only:
            raise UnsupportedModelError(
                f"{type(model).__name__}.forward{sig} takes no input argument; xaiscope calls the model with one "
                "batch (and, for token models, an attention mask)")
        main = next((n for n in MAIN_INPUT_NAMES.get(input_kind, ()) if n in keyword_only), keyword_only[0])
    return CallSpec(main=main, params=named, any_keyword=any_kw, hf=hf)


class ModelCalls:
    """Mixin: the arguments of one model call, and the call itself with the model's errors made ours."""

    def _call_model(self, args: tuple, kwargs: dict) -> Any:
        """``self.model(*args, **kwargs)``; an error the model raises on its input becomes ``ModelCallError``.

        Toolkit errors, CUDA out-of-memory (the batching layer halves the batch on it) and
        ``KeyboardInterrupt`` pass through unchanged; the original error is chained as ``__cause__``.
        """
        try:
            return self.model(*args, **kwargs)
        except Exception as error:
            if not is_model_input_error(error):
                raise
            raise ModelCallError(call_failure_message(self.model, args, kwargs, error)) from error

    def _model_arguments(self, x: torch.Tensor, model_in: torch.Tensor) -> Tuple[tuple, dict]:
        """The positional and keyword arguments of one model call.

        ``model_in`` is the batch as the model sees it (normalised); ``x`` the natural-unit batch (token
        ids drive the attention mask). Keyword-only models get their main input by name.
        """
        kwargs: dict = {}
        if self.call.main is None:
            args: tuple = (model_in,)
        else:
            args, kwargs[self.call.main] = (), model_in
        if self.input_kind == "tokens" and self.mask_arg:
            mask = x != self.pad_id
            kwargs[self.mask_arg] = mask.long() if self.call.hf else mask
        return args, kwargs
