"""Reading the CLI's inputs: image folders, tensor files, CSV series, vocabularies, TOML configs."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch

from explain.errors import EmptyDataError, InputShapeError, ModelLoadError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def load_image_folder(path: Path, channels: int = 3, size: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor, List[str]]:
    """Images in class sub-folders (``root/<class>/<file>``) → ``N×C×H×W`` in [0, 1], labels, class names.

    Every image is resized to the first image's size (or ``size×size``).
    """
    from PIL import Image, UnidentifiedImageError

    classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise EmptyDataError(f"{path}: expected one sub-folder per class with images inside, found none")
    xs, ys = [], []
    target = (size, size) if size else None
    mode = "RGB" if channels == 3 else "L"
    for label, name in enumerate(classes):
        for file in sorted((path / name).iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(file) as im:
                    im = im.convert(mode)
                    if target is None:
                        target = im.size
                    if im.size != target:
                        im = im.resize(target, Image.BILINEAR)
                    arr = np.asarray(im, dtype=np.float32) / 255.0
            except (UnidentifiedImageError, OSError) as error:
                raise InputShapeError(f"{file}: not a readable image ({error})") from error
            xs.append(torch.from_numpy(arr).reshape(target[1], target[0], -1).permute(2, 0, 1))
            ys.append(label)
    if not xs:
        raise EmptyDataError(f"{path}: the class folders hold no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return torch.stack(xs), torch.tensor(ys), classes


def _pick(mapping, keys, what, path):
    for k in keys:
        if k in mapping:
            return mapping[k]
    if what == "labels":
        return None
    raise InputShapeError(f"{path}: expected an array named one of {keys}, found {sorted(mapping)}")


def load_tensor_file(path: Path) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``.pt`` (a tensor, an ``(x, y)`` pair or a dict with ``x``/``y``) or ``.npz`` (arrays ``x``/``y``)."""
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as error:
            raise InputShapeError(f"{path}: not a readable .npz file ({error})") from error
        x = _pick(arrays, ("x", "inputs", "input_ids", "X"), "inputs", path)
        y = _pick(arrays, ("y", "labels", "targets", "Y"), "labels", path)
        return torch.from_numpy(np.asarray(x)), None if y is None else torch.from_numpy(np.asarray(y)).long()
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file becomes one message
        raise InputShapeError(f"{path}: not a readable tensor file ({str(error).splitlines()[0]})") from error
    if isinstance(obj, torch.Tensor):
        return obj, None
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        return torch.as_tensor(obj[0]), torch.as_tensor(obj[1]).long()
    if isinstance(obj, dict):
        x = _pick(obj, ("x", "inputs", "input_ids", "X"), "inputs", path)
        y = _pick(obj, ("y", "labels", "targets", "Y"), "labels", path)
        return torch.as_tensor(x), None if y is None else torch.as_tensor(y).long()
    raise InputShapeError(f"{path}: expected a tensor, an (x, y) pair or a dict with 'x' and 'y'")


def load_series_csv(path: Path) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """One series per row; a ``label`` column (if present) holds the class, the rest are time steps."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 2:
        raise EmptyDataError(f"{path}: expected a header line and at least one series")
    header, body = rows[0], rows[1:]
    label_col = header.index("label") if "label" in header else None
    xs, ys = [], []
    for n, row in enumerate(body, start=2):
        try:
            values = [float(v) for i, v in enumerate(row) if i != label_col]
            if label_col is not None:
                ys.append(int(float(row[label_col])))
        except ValueError as error:
            raise InputShapeError(f"{path}, line {n}: not a number ({error})") from error
        xs.append(values)
    if len({len(v) for v in xs}) != 1:
        raise InputShapeError(f"{path}: rows have different lengths; every series needs the same number of steps")
    return torch.tensor(xs).unsqueeze(-1), (torch.tensor(ys) if ys else None)


def load_data(path_str: str, kind: str, channels: int = 3, size: Optional[int] = None):
    """Inputs, labels and (image folders) class names from a path."""
    path = Path(path_str)
    if not path.exists():
        raise InputShapeError(f"data path {path_str!r} does not exist")
    if path.is_dir():
        if kind != "image":
            raise InputShapeError(f"{path_str} is a folder; folders are read as images in class sub-folders, "
                                  f"but --kind is {kind!r}; give a .pt/.npz (or .csv for series) file")
        return load_image_folder(path, channels=channels, size=size)
    if path.suffix == ".csv":
        x, y = load_series_csv(path)
        return x, y, None
    if path.suffix in (".pt", ".pth", ".npz"):
        x, y = load_tensor_file(path)
        if kind == "tokens":
            x = x.long()
        elif x.dtype.is_floating_point is False:
            x = x.float()
        return x, y, None
    raise InputShapeError(f"{path_str}: unsupported data file; use an image folder, .pt, .npz or .csv")


def load_vocab(path_str: str) -> List[str]:
    """One token per line; line ``i`` is the word for id ``i``."""
    try:
        with open(path_str, encoding="utf-8") as fh:
            return [line.rstrip("\n") for line in fh]
    except OSError as error:
        raise InputShapeError(f"vocabulary file {path_str!r} cannot be read ({error.strerror})") from error


def load_config(path_str: str) -> dict:
    """A TOML audit configuration."""
    try:
        import tomllib  # Python ≥ 3.11
    except ImportError:  # pragma: no cover - older Pythons
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path_str, "rb") as fh:
            return tomllib.load(fh)
    except OSError as error:
        raise InputShapeError(f"config file {path_str!r} cannot be read ({error.strerror})") from error
    except tomllib.TOMLDecodeError as error:
        raise InputShapeError(f"config file {path_str!r} is not valid TOML: {error}") from error


def class_names_arg(value: Optional[str]) -> Optional[List[str]]:
    """``a,b,c`` or a file with one name per line."""
    if not value:
        return None
    if os.path.isfile(value):
        with open(value, encoding="utf-8") as fh:
            return [line.strip() for line in fh if line.strip()]
    return [v.strip() for v in value.split(",")]


def model_arg(spec: str, weights: Optional[str], trust: bool):
    """A model from ``--model`` (factory spec or a file) and ``--weights``."""
    import explain
    if weights:
        return explain.load_model(weights, factory=spec, trust_code=trust)
    if spec and os.path.isfile(spec):
        return explain.load_model(spec, trust_code=trust)
    if spec and ":" in spec:
        from explain.loading import load_factory
        return load_factory(spec)()
    raise ModelLoadError(f"--model {spec!r}: give a factory 'package.module:function' with --weights, "
                         "or a TorchScript/.pt2 file")
