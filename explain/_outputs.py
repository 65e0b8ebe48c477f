"""Reading class scores from whatever a model returns: a tensor, a tuple, a dict or an object."""

from __future__ import annotations

from typing import Any

import torch

from .errors import UnsupportedModelError


def select_logits(out: Any, sel: Any = None) -> torch.Tensor:
    """The logits in ``out``: ``sel`` (a callable, index or key) if given, else the tensor itself,
    the first element of a tuple/list, the ``"logits"`` key of a dict or the ``.logits`` attribute."""
    if callable(sel):
        out = sel(out)
    elif sel is not None:
        out = out[sel]
    elif isinstance(out, torch.Tensor):
        pass
    elif isinstance(out, (tuple, list)) and out:
        out = out[0]
    elif isinstance(out, dict):
        if "logits" not in out:
            raise UnsupportedModelError(
                f"the model returns a dict with keys {sorted(out)}; pass output='<key>' naming the logits")
        out = out["logits"]
    elif hasattr(out, "logits"):
        out = out.logits
    if not isinstance(out, torch.Tensor):
        raise UnsupportedModelError(
            f"the model output is a {type(out).__name__}; expected a tensor of N×K logits — pass output= "
            "(an index, a key or a function) to select it")
    return out
