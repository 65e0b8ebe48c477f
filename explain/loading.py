"""Loading models from files: a state dict plus a factory, TorchScript, or a ``torch.export`` program.

``torch.load`` always runs with ``weights_only=True``; un-pickling arbitrary code (a whole pickled
``nn.Module``) happens only with ``trust_code=True``. Checkpoints saved on a GPU load on a CPU, and
the ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (``torch.compile``) key prefixes are removed.

Example:
    >>> net = explain.load_model("weights.pt", factory="mypkg.models:make_net")   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import os
import zipfile
from typing import Any, Callable, Mapping, Optional, Union

import torch
from torch import nn

from ._layers import strip_prefixes
from .errors import ModelLoadError

__all__ = ["load_model", "load_factory", "clean_state_dict"]


def load_factory(spec: str) -> Callable[..., nn.Module]:
    """Import ``"package.module:function"`` and return the function."""
    if ":" not in spec:
        raise ModelLoadError(f"factory {spec!r}: expected 'package.module:function'")
    mod_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as error:
        raise ModelLoadError(f"factory {spec!r}: cannot import module {mod_name!r} ({error})") from error
    fn = module
    for part in attr.split("."):
        if not hasattr(fn, part):
            raise ModelLoadError(f"factory {spec!r}: module {mod_name!r} has no attribute {attr!r}")
        fn = getattr(fn, part)
    if not callable(fn):
        raise ModelLoadError(f"factory {spec!r} is not callable")
    return fn


def clean_state_dict(state: Mapping[str, Any]) -> dict:
    """Strip ``module.``/``_orig_mod.`` prefixes; unwrap ``{"state_dict": ...}``/``{"model": ...}`` checkpoints."""
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError("the file does not hold a state dict of tensors")
    return {strip_prefixes(k): v for k, v in state.items()}


def load_model(
    path: Union[str, os.PathLike],
    factory: Union[str, Callable[..., nn.Module], None] = None,
    *,
    trust_code: bool = False,
    factory_kwargs: Optional[dict] = None,
) -> nn.Module:
    """Load a model from ``path`` onto the CPU (wrap it with ``ModelWrapper`` to pick a device).

    Args:
        path: a state dict (with ``factory``), a TorchScript file, a ``torch.export`` ``.pt2``
            program, or (only with ``trust_code=True``) a whole pickled module.
        factory: ``"package.module:function"`` or a callable building the empty model.
        trust_code: allow un-pickling arbitrary Python objects. Only for files you trust.
        factory_kwargs: keyword arguments for the factory.

    Raises:
        ModelLoadError: missing or corrupt file, keys that do not match the factory's model, or a
            file that needs ``trust_code=True``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelLoadError(f"model file {path!r} does not exist")
    if os.path.getsize(path) == 0:
        raise ModelLoadError(f"model file {path!r} is empty")
    if path.endswith(".pt2"):
        try:
            return torch.export.load(path).module()
        except Exception as error:  # noqa: BLE001 - any failure of a corrupt file becomes one message
            raise ModelLoadError(f"cannot load torch.export program {path!r}: {error}") from error
    if _is_torchscript(path):
        try:
            return torch.jit.load(path, map_location="cpu")
        except Exception as error:  # noqa: BLE001
            raise ModelLoadError(f"cannot load TorchScript file {path!r}: {error}") from error
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust_code)
    except Exception as error:  # noqa: BLE001
        hint = "" if trust_code else (" If it is a whole pickled model you trust, pass trust_code=True "
                                      "(--trust-model); otherwise save a state_dict and give a factory.")
        raise ModelLoadError(f"cannot load {path!r}: {str(error).splitlines()[0]}.{hint}") from error
    if isinstance(obj, nn.Module):
        return obj
    if factory is None:
        raise ModelLoadError(f"{path!r} holds a state dict; pass factory='package.module:function' to build the model")
    build = load_factory(factory) if isinstance(factory, str) else factory
    model = build(**(factory_kwargs or {}))
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"factory returned {type(model).__name__}, expected an nn.Module")
    state = clean_state_dict(obj)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ModelLoadError(f"weights in {path!r} do not fit the factory's model: {str(error).splitlines()[0]} "
                             f"{' '.join(str(error).split())[:400]}") from error
    return model


def _is_torchscript(path: str) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(name.endswith("constants.pkl") or "/code/" in name for name in zf.namelist())
