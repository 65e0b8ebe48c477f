"""Inspection of model files before they are loaded, so that nothing in a file runs code unless trusted.

Each check reads the file as the loader would and raises :class:`~explain.errors.ModelLoadError` when
loading it would run code the file brings along; ``trust_code=True`` (``--trust-model``) skips them.

* ``.pt2`` (``torch.export``): ``torch.export.load`` un-pickles several records with the full
  un-pickler — weights and constants marked ``use_pickle``, the sample inputs and the legacy
  ``.pt`` records (it retries them with ``weights_only=False`` when the safe loader refuses them),
  opaque constants (``pickle.loads``), TorchBind objects — and loads AOTInductor shared libraries.
  Every pickled record must load with ``weights_only=True`` (then the full un-pickler meets only
  the same allow-listed tensor constructors); AOTInductor code, opaque and TorchBind objects, and
  graph calls of operators that read or write files are refused.
* TorchScript: the archive's code runs in the TorchScript interpreter at load time
  (``__setstate__``) and at every call; it cannot import Python modules, but it can call operators
  that write or read files (``torch.save``, ``torch.from_file``), so code calling them is refused.
* ONNX: external data must lie inside the model's folder (no absolute path, no ``..``, no symlink
  leading out of it).
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from typing import Any, Iterable, Iterator

import torch

from .errors import ModelLoadError

TRUST_HINT = "Pass trust_code=True (--trust-model) only if you trust the file and whoever wrote it."

# Operators that take a file name (in torch 2.13's registered schemas, the only ones with a ``str``
# argument naming a file or path): TorchScript's torch.save, and torch.from_file, an aten op that an
# exported graph could call too.
_FILE_OPS = ("save", "from_file")
_LEGACY_PT2 = ("serialized_state_dict.pt", "serialized_constants.pt", "serialized_example_inputs.pt")


def _file_ops() -> tuple:
    return _FILE_OPS


def _refuse(path: str, what: str) -> ModelLoadError:
    return ModelLoadError(f"refusing to load {path!r}: it {what}. {TRUST_HINT}")


def _weights_only(data: bytes, path: str, record: str, kinds: tuple) -> None:
    """``data`` must un-pickle with ``weights_only=True`` into one of ``kinds``."""
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any refusal of the safe loader means: not plain data
        first = str(error).strip().splitlines()
        reason = next((line.strip() for line in first if "GLOBAL" in line), first[0][:160] if first else "")
        raise _refuse(path, f"holds a pickled record {record!r} that is not plain tensor data ({reason}); "
                            "torch would un-pickle it with weights_only=False, running any code it names") from None
    if not isinstance(obj, kinds):
        raise _refuse(path, f"holds a pickled record {record!r} of type {type(obj).__name__} where "
                            f"{' or '.join(k.__name__ for k in kinds)} was expected")


def check_pt2(data: bytes, path: str) -> None:
    """Refuse a ``torch.export`` archive whose loading would un-pickle code or load native code."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ModelLoadError(f"cannot load torch.export program {path!r}: not a zip archive")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:  # the pre-2.8 layout torch still falls back to
        names = zf.namelist()
        for name in _LEGACY_PT2:
            if name in names:
                _weights_only(zf.read(name), path, name, (dict, tuple))
    try:
        reader = torch._C.PyTorchFileReader(io.BytesIO(data))
        records = list(reader.get_all_records())
    except Exception:  # noqa: BLE001 - torch.export.load then takes the legacy path checked above
        return
    from torch.export.pt2_archive import constants as c

    native = [r for r in records if r.startswith(c.AOTINDUCTOR_DIR) or r.endswith((".so", ".dll", ".dylib"))]
    if native:
        raise _refuse(path, f"holds compiled native code ({native[0]}, AOTInductor), which loading would run")
    ops = "|".join(sorted(map(re.escape, _file_ops())))
    for model_file in (r for r in records if r.startswith(c.MODELS_DIR) and r.endswith(".json")):
        name = model_file[len(c.MODELS_DIR):-len(".json")]
        hit = re.search(rf"aten\.({ops})\b", reader.get_record(model_file).decode("utf-8", "replace"))
        if hit:
            raise _refuse(path, f"calls the file operator aten.{hit.group(1)} in its graph")
        sample = c.SAMPLE_INPUTS_FILENAME_FORMAT.format(name)
        if sample in records:
            _weights_only(reader.get_record(sample), path, sample, (tuple, dict))
        _check_payloads(reader, records, path, c.WEIGHTS_DIR, c.WEIGHTS_CONFIG_FILENAME_FORMAT.format(name), name, c)
        _check_payloads(reader, records, path, c.CONSTANTS_DIR, c.CONSTANTS_CONFIG_FILENAME_FORMAT.format(name),
                        name, c)


def _check_payloads(reader: Any, records: list, path: str, folder: str, config_file: str, name: str, c: Any) -> None:
    legacy = f"{folder}{name}.pt"
    if legacy in records:
        _weights_only(reader.get_record(legacy), path, legacy, (dict, tuple))
        return
    if config_file not in records:
        return
    try:
        config = json.loads(reader.get_record(config_file).decode("utf-8"))["config"]
        entries = list(config.items())
    except Exception as error:  # noqa: BLE001
        raise ModelLoadError(f"cannot load torch.export program {path!r}: unreadable {config_file} ({error})") from None
    for fqn, meta in entries:
        meta = meta if isinstance(meta, dict) else {}
        file = str(meta.get("path_name", ""))
        record = folder + file
        if folder == c.CONSTANTS_DIR and file.startswith(c.CUSTOM_OBJ_FILENAME_PREFIX):
            raise _refuse(path, f"holds a TorchBind object {fqn!r} ({record}), which loading would rebuild by "
                                "running its registered code")
        if folder == c.CONSTANTS_DIR and file.startswith(c.OPAQUE_OBJ_FILENAME_PREFIX):
            raise _refuse(path, f"holds an opaque pickled object {fqn!r} ({record}), which torch un-pickles "
                                "with the full un-pickler")
        if meta.get("use_pickle", True) is not False and record in records:
            _weights_only(reader.get_record(record), path, record, (torch.Tensor,))


def check_torchscript(path: str) -> None:
    """Refuse a TorchScript archive whose code calls an operator that reads or writes files."""
    try:
        reader = torch._C.PyTorchFileReader(path)
        records = list(reader.get_all_records())
    except Exception:  # noqa: BLE001 - torch.jit.load reports the corrupt file itself
        return
    ops = "|".join(sorted(map(re.escape, _file_ops())))
    pattern = re.compile(rf"\b(?:torch|aten)\s*\.\s*({ops})\s*\(")
    for record in records:
        if not (record.startswith("code/") and record.endswith(".py")):
            continue
        hit = pattern.search(reader.get_record(record).decode("utf-8", "replace"))
        if hit:
            raise _refuse(path, f"is TorchScript whose code ({record}) calls torch.{hit.group(1)}, an operator "
                                "that touches files; TorchScript code runs when the file loads")


def _onnx_tensors(model: Any) -> Iterator[Any]:
    def graph_tensors(graph: Any) -> Iterator[Any]:
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        for node in graph.node:
            yield from _attribute_tensors(node.attribute, graph_tensors)

    yield from graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from _attribute_tensors(node.attribute, graph_tensors)


def _attribute_tensors(attributes: Iterable[Any], graph_tensors: Any) -> Iterator[Any]:
    for attr in attributes:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("g"):
            yield from graph_tensors(attr.g)
        for g in attr.graphs:
            yield from graph_tensors(g)


def check_onnx(path: str) -> None:
    """Refuse an ONNX file whose external data lies outside its folder (absolute, ``..`` or a symlink out)."""
    try:
        import onnx
        model = onnx.load(path, load_external_data=False)
    except Exception:  # noqa: BLE001 - no onnx package (onnxruntime checks paths itself) or a corrupt file,
        return  # which the loader reports
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    for tensor in _onnx_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = os.path.realpath(os.path.join(folder, location))
        if os.path.isabs(location) or ".." in re.split(r"[\\/]", location) or \
                os.path.commonpath([folder, target]) != folder:
            raise _refuse(path, f"reads external data for tensor {tensor.name!r} from {location!r}, outside the "
                                f"model's folder {folder}")
