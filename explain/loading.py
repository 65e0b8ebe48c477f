"""Loading models from files: a state dict plus a factory, TorchScript, a ``torch.export`` program,
an ONNX file, or a Hugging Face ``save_pretrained`` directory (``"hf:path"``).

``torch.load`` always runs with ``weights_only=True``; un-pickling arbitrary code (a whole pickled
``nn.Module``) happens only with ``trust_code=True``. ``.pt2`` and TorchScript archives and ONNX
files are inspected before they load (see ``explain._untrusted``): a file whose loading would run
code it brings is refused unless ``trust_code=True``. Checkpoints saved on a GPU load on a CPU, the
``module.`` (DataParallel/DDP) and ``_orig_mod.`` (``torch.compile``) key prefixes are removed, and
so is a prefix every key shares (Lightning's ``model.``) when that makes the keys the model's.

Example:
    >>> net = explain.load_model("weights.pt", factory="mypkg.models:make_net")   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import sys
import zipfile
from typing import Any, Callable, Mapping, Optional, Union

import torch
from torch import nn

from ._checkpoints import fit_state_dict
from ._layers import strip_prefixes
from ._untrusted import check_onnx, check_pt2, check_torchscript
from .errors import ModelLoadError

__all__ = ["load_model", "load_factory", "clean_state_dict"]

log = logging.getLogger(__name__)


def load_factory(spec: str) -> Callable[..., nn.Module]:
    """Import ``"package.module:function"`` and return the function.

    The current working directory is searched first, as ``python -m`` and uvicorn do, so
    ``mymodels:build`` works from the folder holding ``mymodels.py``.
    """
    if ":" not in spec:
        raise ModelLoadError(f"factory {spec!r}: expected 'package.module:function'")
    mod_name, _, attr = spec.partition(":")
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(mod_name)
    except ImportError as error:
        raise ModelLoadError(f"factory {spec!r}: cannot import module {mod_name!r} ({error}; searched the "
                             f"working directory {cwd} and the installed packages)") from error
    finally:
        if added:
            sys.path.remove(cwd)
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
    onnx_backend: str = "auto",
) -> nn.Module:
    """Load a model from ``path`` onto the CPU (wrap it with ``ModelWrapper`` to pick a device).

    What each format supports:

    * state dict + factory, a pickled module: everything;
    * ``.safetensors`` + factory: everything (the file holds tensors only);
    * ``.pt2`` (``torch.export``): everything. The program is unflattened so its layers take hooks;
      its train/eval mode was fixed when it was exported (export in eval mode), and its batch
      dimension must have been exported as dynamic (``dynamic_shapes``) for batches of other sizes;
    * TorchScript: every method that needs no layer hook; Grad-CAM, token-embedding gradients and
      feature-based OOD detectors raise :class:`~explain.errors.UnsupportedModelError`;
    * ``.onnx``: converted with onnx2torch when it imports (then everything works), else run by
      onnxruntime as a black box: occlusion, LIME, KernelSHAP, corruptions, accuracy and
      output-based OOD detectors work, the rest raise ``UnsupportedModelError``;
    * ``"hf:dir"``: a Hugging Face classifier saved with ``save_pretrained`` (see :func:`explain.load_hf`,
      which also reads the class names and the tokenizer).

    Args:
        path: a state dict (with ``factory``; ``.pt``/``.pth``/``.bin``/``.ckpt``/``.safetensors``,
            Lightning checkpoints included), a TorchScript file, a ``.pt2`` program, an ``.onnx``
            file, ``"hf:<directory>"``, or (only with ``trust_code=True``) a whole pickled module.
        factory: ``"package.module:function"`` or a callable building the empty model.
        trust_code: allow un-pickling arbitrary Python objects, and code carried by ``.pt2``,
            TorchScript, ONNX files and ``hf:`` directories (remote code). Only for files you trust.
        factory_kwargs: keyword arguments for the factory.
        onnx_backend: ``"auto"``, ``"onnx2torch"`` or ``"onnxruntime"`` (ONNX files only).

    Returns:
        nn.Module: the model on the CPU.

    Raises:
        ModelLoadError: missing or corrupt file, keys that do not match the factory's model, or a
            file that needs ``trust_code=True``.
        OptionalDependencyError: an ONNX or Hugging Face file without onnxruntime/transformers.

    Example:
        >>> net = explain.load_model("model.onnx")        # doctest: +SKIP
    """
    path = os.fspath(path)
    if path.startswith("hf:"):
        from .hf import load_hf_model
        return load_hf_model(path[3:], trust_code=trust_code)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json")):
        raise ModelLoadError(f"{path!r} is a directory; for a Hugging Face model saved there write 'hf:{path}'")
    if not os.path.isfile(path):
        raise ModelLoadError(f"model file {path!r} does not exist")
    if os.path.getsize(path) == 0:
        raise ModelLoadError(f"model file {path!r} is empty")
    if path.endswith(".pt2"):
        return _load_exported(path, trust_code)
    if path.endswith(".onnx"):
        from ._onnx import load_onnx
        if not trust_code:
            check_onnx(path)
        return load_onnx(path, onnx_backend)
    if _is_torchscript(path):
        if not trust_code:
            check_torchscript(path)
        try:
            return torch.jit.load(path, map_location="cpu")
        except Exception as error:  # noqa: BLE001
            raise ModelLoadError(f"cannot load TorchScript file {path!r}: {error}") from error
    try:
        obj = _load_safetensors(path) if path.endswith(".safetensors") else \
            torch.load(path, map_location="cpu", weights_only=not trust_code)
    except ModelLoadError:
        raise
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
    fit_state_dict(model, clean_state_dict(obj), path)
    return model


def _load_safetensors(path: str) -> dict:
    try:
        from safetensors.torch import load_file
    except ImportError as error:
        from .errors import OptionalDependencyError
        raise OptionalDependencyError(f"loading {path!r} needs safetensors: pip install safetensors") from error
    return load_file(path, device="cpu")


def _load_exported(path: str, trust_code: bool = False) -> nn.Module:
    """A ``torch.export`` program, unflattened so its layers are sub-modules that take hooks.

    The archive is read once into memory, inspected (unless ``trust_code``), and the same bytes are
    loaded, so the file cannot change between the two.
    """
    from ._formats import record_layer_types
    with open(path, "rb") as fh:
        data = fh.read()
    if not trust_code:
        check_pt2(data, path)
    try:
        program = torch.export.load(io.BytesIO(data))
    except Exception as error:  # noqa: BLE001 - any failure of a corrupt file becomes one message
        raise ModelLoadError(f"cannot load torch.export program {path!r}: {str(error).splitlines()[0]}") from error
    try:
        module = torch.export.unflatten(program)
    except Exception as error:  # noqa: BLE001 - fall back to the flat module; hooks will be refused clearly
        log.warning("cannot unflatten %s (%s); layer-based methods will not run on it", path, error)
        return program.module()
    record_layer_types(program, module)
    _warn_fixed_batch(program, path)
    for sub in module.modules():  # run the generated Python code rather than the (much slower) FX interpreter
        if hasattr(sub, "_run_with_interpreter"):
            sub._run_with_interpreter = False
    return module


def _warn_fixed_batch(program: Any, path: str) -> None:
    """Warn when the program's first input has a fixed batch size: other batch sizes will not run."""
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in getattr(program.graph_signature, "user_inputs", []):
            continue
        val = node.meta.get("val")
        shape = getattr(val, "shape", None)
        if shape is not None and len(shape) > 0 and isinstance(shape[0], int):
            log.warning("%s was exported with a fixed batch size of %d; xaiscope runs other batch sizes, which this "
                        "program refuses. Export with dynamic_shapes={'x': {0: torch.export.Dim('batch')}}",
                        path, shape[0])
        return


def _is_torchscript(path: str) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(name.endswith("constants.pkl") or "/code/" in name for name in zf.namelist())
