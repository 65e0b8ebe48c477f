"""Fitting a checkpoint's state dict to the factory's model: prefixes, and what differs when it does not fit.

Lightning saves a ``LightningModule``'s weights under the attribute that holds the network
(``model.``, ``net.``, ...); wrappers and training scripts add their own prefixes. A prefix shared by
every key of the file is removed when that makes the keys those of the model (and a prefix shared
by every key of the model is added when that does), and a warning names it. Keys that still differ
are described in one sentence: how many are missing, unexpected or of another shape, the first
few names, and what to change.
"""

from __future__ import annotations

import warnings
from typing import Mapping, Optional, Tuple

import torch
from torch import nn

from .errors import ModelLoadError

_SHOWN = 3


def _dotted_prefixes(key: str) -> list:
    parts = key.split(".")
    return [".".join(parts[:i]) + "." for i in range(1, len(parts))]


def _shared_prefixes(keys: list) -> list:
    """Dotted prefixes shared by every key, shortest first."""
    if not keys:
        return []
    return [p for p in _dotted_prefixes(keys[0]) if all(k.startswith(p) for k in keys)]


def _renamed(state: Mapping[str, torch.Tensor], expected: set) -> Tuple[dict, Optional[str]]:
    """``state`` with a shared prefix removed (or the model's shared prefix added) when that matches more keys."""
    best, how, score = dict(state), None, len(expected & set(state))
    if score == len(expected) == len(state):
        return best, None
    for prefix in _shared_prefixes(list(state)):
        candidate = {k[len(prefix):]: v for k, v in state.items()}
        hits = len(expected & set(candidate))
        if hits > score:
            best, how, score = candidate, f"removed the prefix {prefix!r} shared by every key in the file", hits
    for prefix in _shared_prefixes(sorted(expected)):
        candidate = {prefix + k: v for k, v in state.items()}
        hits = len(expected & set(candidate))
        if hits > score:
            best, how, score = candidate, f"added the prefix {prefix!r} that every key of the model has", hits
    if set(best) != expected:  # a LightningModule holding the network and more (a loss with weights, a copy)
        for prefix in sorted({p for k in state for p in _dotted_prefixes(k)}, key=len):
            inner = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if set(inner) == expected:
                rest = [k for k in state if not k.startswith(prefix)]
                return inner, (f"kept the keys under {prefix!r} (every key of the model) and left out "
                               f"{len(rest)} other(s) ({_names(rest)})")
    return best, how


def _shape(value: object) -> Optional[tuple]:
    shape = getattr(value, "shape", None)  # ``_extra_state`` entries need not be tensors
    return None if shape is None else tuple(shape)


def _names(keys: list) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (", ..." if len(keys) > _SHOWN else "")


def _mismatch_message(path: str, model: nn.Module, state: Mapping[str, torch.Tensor], expected: Mapping,
                      how: Optional[str]) -> str:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [k for k in expected if k in state and _shape(state[k]) != _shape(expected[k])]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing from the file ({_names(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_names(unexpected)})")
    if shapes:
        first = shapes[0]
        parts.append(f"{len(shapes)} of another shape ({first}: {_shape(state[first])} in the file, "
                     f"{_shape(expected[first])} in the model{', ...' if len(shapes) > 1 else ''})")
    if shapes and not missing and not unexpected:
        fix = ("the layer names agree but their sizes do not: give the factory the arguments the model was trained "
               "with (factory_kwargs, e.g. the number of classes)")
    else:
        under = [p for k in state for p in _dotted_prefixes(k)[:1]]
        top = sorted(set(under))[:_SHOWN]
        fix = (f"the key names differ (the file's keys begin with {', '.join(repr(t) for t in top)}): pass the factory "
               "that builds the trained architecture, or save model.state_dict() of the network itself")
    after = f" even after xaiscope {how}" if how else ""
    return (f"weights in {path!r} do not fit the factory's model {type(model).__name__}{after}: "
            f"{'; '.join(parts)}; {fix}")


def fit_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], path: str) -> None:
    """Load ``state`` into ``model`` (strictly), after matching its key prefixes to the model's.

    Raises:
        ModelLoadError: keys or shapes that still differ, described in one sentence.
    """
    expected = model.state_dict()
    state, how = _renamed(state, set(expected))
    same_keys = set(state) == set(expected)
    if not same_keys or any(_shape(state[k]) != _shape(v) for k, v in expected.items()):
        raise ModelLoadError(_mismatch_message(path, model, state, expected, how))
    if how is not None:
        warnings.warn(f"{path}: {how} to match {type(model).__name__}", stacklevel=3)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:  # e.g. a dtype torch cannot copy
        first = " ".join(str(error).split())[:300]
        raise ModelLoadError(f"weights in {path!r} do not fit the factory's model {type(model).__name__}: "
                             f"{first}") from error
