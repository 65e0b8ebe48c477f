"""The CLI's model and data: build the wrapper, read the data in its kind, and run one batch first.

A model that cannot run on the data at all (a 6-channel series model given a 1-channel CSV) stops the
command before any section runs, with one line naming the input shape and what the model's first
layer expects.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, List, Optional, Tuple

import torch

from explain.errors import InputShapeError, ModelCallError, ModelLoadError, ToolkitError, UnsupportedModelError

from ._inputs import class_names_arg, infer_kind, load_data, load_texts, load_vocab, text_labels


MODEL_FORMS = ("a factory 'package.module:function' (with --weights), a TorchScript/.pt2/.onnx file, or hf:DIR "
               "(a Hugging Face save_pretrained directory)")


def model_arg(spec: str, weights: Optional[str], trust: bool):
    """A model from ``--model`` (factory spec, a TorchScript/.pt2/.onnx file, or ``hf:DIR``) and ``--weights``.

    A factory without ``--weights`` builds the model on its random initial weights, with a warning.
    """
    import warnings

    import explain
    if spec and spec.startswith("hf:"):
        return explain.load_model(spec, trust_code=trust)
    if weights and not os.path.exists(weights):
        raise ModelLoadError(f"--weights {weights!r} does not exist")
    is_factory = bool(spec) and ":" in spec and not os.path.exists(spec)
    if spec and not is_factory and not os.path.isfile(spec):
        if os.path.isdir(spec):
            raise ModelLoadError(f"--model {spec!r} is a folder; expected {MODEL_FORMS}")
        raise ModelLoadError(f"--model {spec!r} does not exist; expected {MODEL_FORMS}")
    if weights:
        return explain.load_model(weights, factory=spec, trust_code=trust)
    if spec and os.path.isfile(spec):
        return explain.load_model(spec, trust_code=trust)
    if is_factory:
        from explain.loading import load_factory
        net = load_factory(spec)()
        warnings.warn(f"UNTRAINED MODEL: no --weights given, so {spec} runs on the random weights its factory "
                      "starts with; every number in this report describes an untrained model (pass --weights FILE)",
                      stacklevel=2)
        return net
    raise ModelLoadError(f"--model {spec!r}: give {MODEL_FORMS}")


class DataMismatch(ToolkitError, ValueError):
    """The model cannot run on the data it was given."""


def _floats(value: Any, what: str) -> Optional[List[float]]:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value]
    try:
        return [float(v) for v in str(value).split(",")]
    except ValueError:
        raise InputShapeError(f"--{what} expects comma-separated numbers, got {value!r}") from None


def _token_options(s: dict) -> dict:
    out: dict = {}
    if s.get("pad_id") is not None:
        out["pad_id"] = int(s["pad_id"])
    mask = s.get("mask")
    if mask is not None:
        out["mask_arg"] = None if str(mask).lower() in ("none", "off", "false", "") else str(mask)
    return out


def output_arg(value: Any):
    """``--output`` / the ``output`` config key: an int index (``"1"`` → 1) or a key name, else ``None``."""
    if value is None or isinstance(value, int):
        return value
    text = str(value).strip()
    if not text:
        raise InputShapeError("--output expects an index (0, 1, ...) or a key name, got an empty value")
    return int(text) if text.lstrip("-").isdigit() else text


def _say(s: dict, line: str) -> None:
    if not s.get("quiet"):
        print(f"xaiscope: {line}", file=sys.stderr)


def _size_value(value: Any) -> Optional[Tuple[int, int]]:
    """``(height, width)`` from an image processor's ``size``/``crop_size`` (an int or a dict), else ``None``."""
    if isinstance(value, int) and value > 0:
        return value, value
    if isinstance(value, dict):
        if value.get("height") and value.get("width"):
            return int(value["height"]), int(value["width"])
        edge = value.get("shortest_edge")
        if isinstance(edge, int) and edge > 0 and not value.get("longest_edge"):
            return edge, edge
    return None


def hf_image_size(folder: str, model: Any) -> Optional[tuple]:
    """The input size a Hugging Face image model expects: ``((height, width), where it was read)``.

    From ``preprocessor_config.json`` (``crop_size`` when it centre-crops, else ``size``), else from
    ``config.image_size``; ``None`` when neither says.
    """
    import json
    file = Path(folder) / "preprocessor_config.json"
    if file.is_file():
        try:
            cfg = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cfg = {}
        for key in (("crop_size", "size") if cfg.get("do_center_crop") else ("size",)):
            size = _size_value(cfg.get(key))
            if size:
                return size, f"{file.name} {key}"
    size = _size_value(getattr(getattr(model, "config", None), "image_size", None))
    return (size, "config.json image_size") if size else None


def _no_such_path(what: str, value: str) -> InputShapeError:
    return InputShapeError(f"{what} {value!r} does not exist")


def wrapper_and_data(s: dict):
    """``(wrapper, x, y, vocab)`` from the merged CLI settings (see ``reports.cli``)."""
    import explain

    spec = str(s["model"])
    kind = s.get("kind")
    if not Path(str(s["data"])).exists():
        raise _no_such_path("--data", str(s["data"]))
    output = output_arg(s.get("output"))
    cwd = os.getcwd()
    if cwd not in sys.path:  # 'mymodels:build' imports mymodels.py from here, as uvicorn and flask do
        sys.path.insert(0, cwd)
    device = s.get("device") or "auto"
    names = class_names_arg(s["class_names"]) if isinstance(s.get("class_names"), str) else s.get("class_names")
    size = s.get("image_size")
    if spec.startswith("hf:"):
        if not Path(spec[3:]).exists():
            raise ModelLoadError(f"--model {spec}: the folder {spec[3:]!r} does not exist")
        options = dict(device=device, precision=s.get("amp"), **_token_options(s))
        if names:
            options["class_names"] = names
        if output is not None:
            options["output"] = output
        wrapper = explain.load_hf(spec[3:], trust_code=bool(s.get("trust_model")), **options)
        if kind and kind != wrapper.input_kind:
            raise InputShapeError(f"--kind {kind} but the Hugging Face model in {spec[3:]} takes {wrapper.input_kind}")
        kind = wrapper.input_kind
        expected = hf_image_size(spec[3:], wrapper.model) if kind == "image" and size is None else None
        if expected and Path(str(s["data"])).is_dir():
            size = s["image_size"] = expected[0]  # --ood-data is read at the same size
            _say(s, f"images are resized to {size[0]}×{size[1]}, the size the model expects ({expected[1]}); "
                    "pass --image-size to choose another")
        wrapper.weights_source = f"from {spec[3:]}"
    else:
        kind = kind or infer_kind(s["data"])
        if not kind:
            raise InputShapeError(f"cannot tell the input kind from {s['data']!r}; pass --kind image, tokens or series")
        net = model_arg(spec, s.get("weights"), bool(s.get("trust_model")))
        wrapper = None
    if kind == "tokens" and _is_text(s["data"]):
        x, y = _encode(s, wrapper, s["data"])
        folder_classes = None
    else:
        x, y, folder_classes = load_data(s["data"], kind, channels=int(s.get("channels") or 3), size=size)
    if wrapper is None:
        wrapper = explain.ModelWrapper(net, kind, class_names=names or folder_classes,
                                       mean=_floats(s.get("mean"), "mean"), std=_floats(s.get("std"), "std"),
                                       device=device, precision=s.get("amp"), output=output,
                                       **(_token_options(s) if kind == "tokens" else {}))
        wrapper.weights_source = weights_source(spec, s.get("weights"))
    vocab = load_vocab(s["vocab"]) if s.get("vocab") else None
    tokenizer = getattr(wrapper, "tokenizer", None)
    if vocab is None and tokenizer is not None:
        vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return wrapper, x, y, vocab


def _is_text(path_str: str) -> bool:
    path = Path(path_str)
    return path.suffix == ".txt" or (path.suffix == ".csv" and path.is_file() and infer_kind(path_str) == "tokens")


def _encode(s: dict, wrapper, path_str: str):
    import explain
    tokenizer = getattr(wrapper, "tokenizer", None)
    if tokenizer is None:
        raise InputShapeError(f"{path_str} holds texts; texts need the tokenizer saved beside a Hugging Face "
                              "model (--model hf:DIR), or give token ids in a .pt/.npz file")
    texts, labels = load_texts(Path(path_str))
    x = explain.encode_texts(tokenizer, texts, max_length=int(s.get("max_length") or 128))
    return x, text_labels(labels, wrapper.class_names, path_str)


def weights_source(spec: str, weights: Optional[str]) -> str:
    """Where the model's weights came from, for the model card."""
    if weights:
        return f"from {weights}"
    if os.path.isfile(spec):
        return f"from {spec}"
    return UNTRAINED


UNTRAINED = "untrained weights (no --weights given)"


def more_inputs(s: dict, wrapper, path_str: str, flag: str = "--ood-data") -> torch.Tensor:
    """Further inputs (e.g. ``--ood-data``) in the same format rules as ``--data``, at the same image size."""
    if not Path(str(path_str)).exists():
        raise _no_such_path(flag, str(path_str))
    if wrapper.input_kind == "tokens" and _is_text(path_str):
        return _encode(s, wrapper, path_str)[0]
    return load_data(path_str, wrapper.input_kind, channels=int(s.get("channels") or 3), size=s.get("image_size"))[0]


def same_token_length(wrapper, x: torch.Tensor, other: torch.Tensor):
    """Token batches padded (with the pad id, at the end) to one length, so they can be compared."""
    if wrapper.input_kind != "tokens" or x.dim() != 2 or other.dim() != 2 or x.shape[1] == other.shape[1]:
        return x, other
    t = max(x.shape[1], other.shape[1])
    pad = lambda ids: torch.nn.functional.pad(ids, (0, t - ids.shape[1]), value=wrapper.pad_id)  # noqa: E731
    return pad(x), pad(other)


def check_first_batch(wrapper, x: torch.Tensor, hint: str = "") -> None:
    """Run the model on the first two inputs; raise :class:`DataMismatch` (one line) if it cannot.

    ``hint`` (e.g. "pass --image-size") ends the message of a model that cannot run on the inputs.
    """
    batch = x[:2]
    tail = f"; {hint}" if hint else ""
    try:
        wrapper.logits(batch)
    except ModelCallError as error:  # already names the input, the model's error and its first layer
        raise DataMismatch(f"the model cannot run on the data: {error}{tail}") from error
    except UnsupportedModelError as error:
        if "output=" not in str(error):
            raise
        raise UnsupportedModelError(f"{error} (on the command line: --output INDEX_OR_KEY, or output = ... in "
                                    "the config file)") from error
    except ToolkitError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever else the model raises becomes one line for the user
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataMismatch(
            f"the model cannot run on the data: inputs of shape {tuple(batch.shape)} ({wrapper.input_kind}, "
            f"{str(batch.dtype).replace('torch.', '')}) — {type(error).__name__}: {first[:300]}{tail}"
        ) from error


def size_hint(s: dict, wrapper, x) -> str:
    """For images read from a folder at their own size: the flag that sets another size."""
    if wrapper.input_kind != "image" or s.get("image_size") or not Path(str(s["data"])).is_dir():
        return ""
    h, w = tuple(x.shape[2:4])
    return f"the images were read at their own size {h}×{w}: if the model takes another size, pass --image-size N"
