"""Hugging Face models from a local ``save_pretrained`` directory, and their tokenizers.

Nothing is downloaded: the directory must hold the config and weights (``model.save_pretrained(dir)``)
and, for text models, the tokenizer (``tokenizer.save_pretrained(dir)``). Code saved in the directory
(a custom ``model_type`` with ``auto_map``) runs only with ``trust_code=True`` (``--trust-model``);
without it such a directory is refused, and nothing asks on standard input.

Example:
    >>> m = explain.load_hf("runs/bert-sst2")                     # doctest: +SKIP
    >>> ids = explain.encode_texts(m.tokenizer, ["a fine film", "dull"])
    >>> explain.occlusion(m, ids).values.shape                    # N×T
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn

from .errors import EmptyDataError, InputShapeError, ModelLoadError, OptionalDependencyError

__all__ = ["load_hf", "load_hf_model", "load_hf_tokenizer", "encode_texts"]


def _transformers():
    try:
        import transformers
    except ImportError as error:
        raise OptionalDependencyError("Hugging Face models need transformers: pip install transformers") from error
    return transformers


def _remote_code(path: str) -> Optional[str]:
    """What in ``path`` asks transformers to run the directory's own Python code, or ``None``."""
    import json
    for name in ("config.json", "tokenizer_config.json", "preprocessor_config.json"):
        file = os.path.join(path, name)
        if not os.path.isfile(file):
            continue
        try:
            with open(file, encoding="utf-8") as fh:
                cfg = json.load(fh)
        except (OSError, ValueError):
            continue  # transformers reports an unreadable config itself
        auto_map = cfg.get("auto_map") if isinstance(cfg, dict) else None
        if auto_map:
            entries = auto_map.values() if isinstance(auto_map, dict) else auto_map
            shown = ", ".join(str(e) for e in list(entries)[:2])
            return f"its {name} maps the model to code saved in the directory (auto_map: {shown})"
    return None


def load_hf_model(path: Union[str, os.PathLike], *, trust_code: bool = False) -> nn.Module:
    """The classifier saved in ``path`` (``AutoModelFor{Sequence,Image}Classification``), on the CPU.

    Args:
        path: a directory written by ``save_pretrained``.
        trust_code: run Python code saved in the directory (``trust_remote_code``). Without it, a
            directory whose config names its own code (``auto_map``) is refused.

    Raises:
        ModelLoadError: ``path`` is not a directory holding a saved model, or it needs its own code
            and ``trust_code`` is False.
        OptionalDependencyError: transformers is not installed.
    """
    path = os.fspath(path)
    if not os.path.isdir(path) or not os.path.isfile(os.path.join(path, "config.json")):
        raise ModelLoadError(f"hf:{path}: expected a directory written by model.save_pretrained() "
                             "(with config.json and the weights); nothing is downloaded")
    trust = bool(trust_code)
    remote = None if trust else _remote_code(path)
    tf = _transformers()
    try:
        config = tf.AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=trust)
        image = any(str(a).endswith("ForImageClassification") for a in (config.architectures or []))
        auto = tf.AutoModelForImageClassification if image else tf.AutoModelForSequenceClassification
        return auto.from_pretrained(path, local_files_only=True, trust_remote_code=trust)
    except Exception as error:  # noqa: BLE001 - transformers raises many kinds for a bad directory
        if remote is not None:
            raise ModelLoadError(f"refusing to load hf:{path}: {remote}, which would run Python from the "
                                 "directory; pass trust_code=True (--trust-model) only if you trust it") from None
        raise ModelLoadError(f"cannot load the Hugging Face model in {path!r}: {str(error).splitlines()[0]}") from error


def load_hf_tokenizer(path: Union[str, os.PathLike], *, trust_code: bool = False) -> Optional[Any]:
    """The tokenizer saved beside the model in ``path``, or ``None`` when there is none.

    Its own code (``auto_map`` in ``tokenizer_config.json``) runs only with ``trust_code=True``.
    """
    path = os.fspath(path)
    files = set(os.listdir(path)) if os.path.isdir(path) else set()
    if not files & {"tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model"}:
        return None
    tf = _transformers()
    try:
        return tf.AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=bool(trust_code))
    except Exception as error:  # noqa: BLE001
        raise ModelLoadError(f"cannot load the tokenizer in {path!r}: {str(error).splitlines()[0]}") from error


def special_token_ids(tokenizer: Any) -> list:
    """Ids of the structural special tokens ([CLS], [SEP], <s>, </s>, ...); not [UNK] or [MASK]."""
    ids = set()
    for attr in ("cls_token_id", "sep_token_id", "bos_token_id", "eos_token_id"):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, int):
            ids.add(value)
    return sorted(ids)


def load_hf(path: Union[str, os.PathLike], *, trust_code: bool = False, **wrapper_kwargs: Any):
    """A :class:`~explain.ModelWrapper` for the Hugging Face classifier saved in ``path``.

    Class names come from ``config.id2label``; for image models ``mean``/``std`` from the image
    processor saved beside the model (``preprocessor_config.json``, when it normalises); for text
    models the pad id, the unknown id, the attention mask
    (``attention_mask``) and the special-token ids ([CLS], [SEP], ...: never perturbed) come from
    the tokenizer saved beside the model, which is kept as ``wrapper.tokenizer``.

    Args:
        path: a directory written by ``save_pretrained``.
        trust_code: run Python code saved in the directory (a custom model or tokenizer class named
            by ``auto_map``); without it such a directory is refused with ``ModelLoadError``.
        **wrapper_kwargs: passed to :class:`~explain.ModelWrapper` (``device``, ``batch_size``, ...);
            they override the choices above.

    Returns:
        ModelWrapper: with ``input_kind`` ``"tokens"`` (text models) or ``"image"``, and a
        ``tokenizer`` attribute (``None`` when none was saved).

    Raises:
        ModelLoadError: not a saved model directory, or one that needs its own code without ``trust_code``.
        OptionalDependencyError: transformers is not installed.

    Example:
        >>> m = explain.load_hf("runs/bert-sst2", device="cpu")     # doctest: +SKIP
    """
    from .model import ModelWrapper

    model = load_hf_model(path, trust_code=trust_code)
    config = model.config
    kind = "image" if getattr(model, "main_input_name", "input_ids") == "pixel_values" else "tokens"
    id2label = getattr(config, "id2label", None) or {}
    names = [str(id2label.get(i, id2label.get(str(i), i))) for i in range(int(config.num_labels))]
    tokenizer = load_hf_tokenizer(path, trust_code=trust_code) if kind == "tokens" else None
    options: dict = {"class_names": names}
    if kind == "image":
        options.update(_image_normalisation(path))
    if kind == "tokens":
        pad = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
        if pad is None:
            pad = getattr(config, "pad_token_id", None)
        if pad is not None:
            options["pad_id"] = int(pad)
        if tokenizer is not None:
            options["special_ids"] = special_token_ids(tokenizer)
            if getattr(tokenizer, "unk_token_id", None) is not None:
                options["unk_id"] = int(tokenizer.unk_token_id)
    options.update(wrapper_kwargs)
    wrapper = ModelWrapper(model, kind, **options)
    wrapper.tokenizer = tokenizer
    return wrapper


def _image_normalisation(path: Union[str, os.PathLike]) -> dict:
    """``mean``/``std`` from the image processor saved beside the model (``preprocessor_config.json``)."""
    import json
    file = os.path.join(os.fspath(path), "preprocessor_config.json")
    if not os.path.isfile(file):
        return {}
    try:
        with open(file, encoding="utf-8") as fh:
            cfg = json.load(fh)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot read {file!r}: {error}") from error
    if not cfg.get("do_normalize", True) or cfg.get("image_mean") is None or cfg.get("image_std") is None:
        return {}
    return {"mean": [float(v) for v in cfg["image_mean"]], "std": [float(v) for v in cfg["image_std"]]}


def encode_texts(tokenizer: Any, texts: Sequence[str], *, max_length: int = 128) -> torch.Tensor:
    """Token ids ``N×T`` for ``texts``: special tokens added, padded to the longest text, cut at ``max_length``.

    Shape:
        Returns a ``LongTensor`` ``N×T`` with ``T ≤ max_length``.

    Raises:
        EmptyDataError: no texts.
        InputShapeError: no tokenizer (``None``) or texts that are not strings.
    """
    if tokenizer is None:
        raise InputShapeError("texts need a tokenizer: save it beside the model (tokenizer.save_pretrained(dir))")
    texts = list(texts)
    if not texts:
        raise EmptyDataError("no texts to encode")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise InputShapeError(f"texts must be strings; item {bad[0]} is a {type(texts[bad[0]]).__name__}")
    enc = tokenizer(texts, padding="longest", truncation=True, max_length=int(max_length), return_tensors="pt")
    return enc["input_ids"].long()
