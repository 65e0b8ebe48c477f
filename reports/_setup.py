"""The CLI's model and data: build the wrapper, read the data in its kind, and run one batch first.

A model that cannot run on the data at all (a 6-channel series model given a 1-channel CSV) stops the
command before any section runs, with one line naming the input shape and what the model's first
layer expects.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, List, Optional

import torch

from explain.errors import InputShapeError, ModelCallError, ToolkitError

from ._inputs import (class_names_arg, infer_kind, load_data, load_texts, load_vocab, model_arg,
                      text_labels)


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


def wrapper_and_data(s: dict):
    """``(wrapper, x, y, vocab)`` from the merged CLI settings (see ``reports.cli``)."""
    import explain

    spec = str(s["model"])
    kind = s.get("kind")
    cwd = os.getcwd()
    if cwd not in sys.path:  # 'mymodels:build' imports mymodels.py from here, as uvicorn and flask do
        sys.path.insert(0, cwd)
    device = s.get("device") or "auto"
    names = class_names_arg(s["class_names"]) if isinstance(s.get("class_names"), str) else s.get("class_names")
    if spec.startswith("hf:"):
        options = dict(device=device, precision=s.get("amp"), **_token_options(s))
        if names:
            options["class_names"] = names
        wrapper = explain.load_hf(spec[3:], trust_code=bool(s.get("trust_model")), **options)
        if kind and kind != wrapper.input_kind:
            raise InputShapeError(f"--kind {kind} but the Hugging Face model in {spec[3:]} takes {wrapper.input_kind}")
        kind = wrapper.input_kind
    else:
        kind = kind or (infer_kind(s["data"]) if Path(s["data"]).exists() else None)
        if not kind:
            raise InputShapeError(f"cannot tell the input kind from {s['data']!r}; pass --kind image, tokens or series")
        net = model_arg(spec, s.get("weights"), bool(s.get("trust_model")))
        wrapper = None
    if kind == "tokens" and _is_text(s["data"]):
        x, y = _encode(s, wrapper, s["data"])
        folder_classes = None
    else:
        x, y, folder_classes = load_data(s["data"], kind, channels=int(s.get("channels") or 3),
                                         size=s.get("image_size"))
    if wrapper is None:
        wrapper = explain.ModelWrapper(net, kind, class_names=names or folder_classes,
                                       mean=_floats(s.get("mean"), "mean"), std=_floats(s.get("std"), "std"),
                                       device=device, precision=s.get("amp"),
                                       **(_token_options(s) if kind == "tokens" else {}))
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


def more_inputs(s: dict, wrapper, path_str: str) -> torch.Tensor:
    """Further inputs (e.g. ``--ood-data``) in the same format rules as ``--data``."""
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


def check_first_batch(wrapper, x: torch.Tensor) -> None:
    """Run the model on the first two inputs; raise :class:`DataMismatch` (one line) if it cannot."""
    batch = x[:2]
    try:
        wrapper.logits(batch)
    except ModelCallError as error:  # already names the input, the model's error and its first layer
        raise DataMismatch(f"the model cannot run on the data: {error}") from error
    except ToolkitError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever else the model raises becomes one line for the user
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataMismatch(
            f"the model cannot run on the data: inputs of shape {tuple(batch.shape)} ({wrapper.input_kind}, "
            f"{str(batch.dtype).replace('torch.', '')}) — {type(error).__name__}: {first[:300]}"
        ) from error
