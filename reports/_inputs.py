"""Reading the CLI's inputs: image folders, tensor files, CSV series, vocabularies, TOML configs."""

from __future__ import annotations

import csv
import os
import zipfile
from pathlib import Path
from typing import Any, List, Optional, Tuple

import numpy as np
import torch

from explain.errors import EmptyDataError, InputShapeError, InputValueError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def image_folder_files(path: Path) -> Tuple[List[Path], torch.Tensor, List[str]]:
    """The image files of a class-folder tree, their labels and the class names (nothing is decoded).

    Raises:
        EmptyDataError: no class folders, or no images in them.
    """
    classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise EmptyDataError(f"{path}: expected one sub-folder per class with images inside, found none")
    files, ys = [], []
    for label, name in enumerate(classes):
        for file in sorted((path / name).iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                files.append(file)
                ys.append(label)
    if not files:
        raise EmptyDataError(f"{path}: the class folders hold no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files, torch.tensor(ys), classes


def load_image_folder(path: Path, channels: int = 3, size=None) -> Tuple[torch.Tensor, torch.Tensor, List[str]]:
    """Images in class sub-folders (``root/<class>/<file>``) → ``N×C×H×W`` in [0, 1], labels, class names.

    Each file is read by :func:`reports._lazy.read_image` (by bit depth, alpha on white, EXIF
    orientation applied); every image is resized to the first image's size (or ``size``).
    """
    from ._lazy import image_folder_inputs

    files, ys, classes = image_folder_files(path)
    xs = image_folder_inputs(path, files, channels, size)
    return xs[:len(xs)], ys, classes


def _pick(mapping, keys, what, path):
    for k in keys:
        if k in mapping:
            return mapping[k]
    if what == "labels":
        return None
    raise InputShapeError(f"{path}: expected an array named one of {keys}, found {sorted(mapping)}")


def _whole_labels(y: torch.Tensor, path: Path) -> torch.Tensor:
    """Labels as ``LongTensor``; float labels must hold whole numbers (a fraction is an error, not truncated)."""
    if y.dtype.is_floating_point:
        bad = ~torch.isfinite(y) | (y != torch.round(y))
        if bool(bad.any()):
            first = int(bad.flatten().nonzero()[0])
            raise InputValueError(f"{path}: label {float(y.flatten()[first]):g} (sample {first}) is not a class "
                                  "index; labels are whole numbers 0, 1, 2, ... (fractions are not rounded)")
    return y.long()


def load_tensor_file(path: Path, lazy: bool = False) -> Tuple[Any, Optional[torch.Tensor]]:
    """``.pt`` (a tensor, an ``(x, y)`` pair or a dict with ``x``/``y``) or ``.npz`` (arrays ``x``/``y``).

    With ``lazy`` the inputs stay on disk where the file allows it — an uncompressed ``.npz`` is
    memory-mapped, a ``.pt`` file is loaded with ``mmap=True`` — and come back as
    :class:`reports._lazy.LazyInputs`; labels are always read into memory.
    """
    from ._lazy import array_inputs, npz_memmap

    if path.suffix == ".npz":
        try:
            arrays = npz_memmap(path)
            if arrays is None:
                with np.load(path, allow_pickle=False) as z:
                    arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise InputShapeError(f"{path}: not a readable .npz file ({error})") from error
        x = _pick(arrays, ("x", "inputs", "input_ids", "X"), "inputs", path)
        y = _pick(arrays, ("y", "labels", "targets", "Y"), "labels", path)
        y = None if y is None else _whole_labels(torch.from_numpy(np.array(y)), path)
        if lazy and isinstance(x, np.memmap) and x.ndim >= 2 and len(x):
            return array_inputs(x, str(path)), y
        return torch.from_numpy(np.array(x)), y
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=lazy)
        except RuntimeError:
            if not lazy:
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # a legacy file cannot be mapped
    except Exception as error:  # noqa: BLE001 - any unreadable file becomes one message
        raise InputShapeError(f"{path}: not a readable tensor file ({str(error).splitlines()[0]})") from error
    if isinstance(obj, torch.Tensor):
        x, y = obj, None
    elif isinstance(obj, (tuple, list)) and len(obj) == 2:
        x, y = torch.as_tensor(obj[0]), _whole_labels(torch.as_tensor(obj[1]), path).clone()
    elif isinstance(obj, dict):
        x = torch.as_tensor(_pick(obj, ("x", "inputs", "input_ids", "X"), "inputs", path))
        y = _pick(obj, ("y", "labels", "targets", "Y"), "labels", path)
        y = None if y is None else _whole_labels(torch.as_tensor(y), path).clone()
    else:
        x = None
    if x is not None:
        if lazy and x.dim() >= 2 and len(x):
            return array_inputs(x, str(path)), y
        return (x.clone() if lazy else x), y
    raise InputShapeError(f"{path}: expected a tensor, an (x, y) pair or a dict with 'x' and 'y'")


SERIES_CSV_HELP = (
    "series CSV: either one series per row (a 'label' column, if any, and one column per time step; one "
    "channel), or several channels in long format: a 'sample_id' column, an optional 't' column (the "
    "step; else rows keep their order), an optional 'label' column, and one numeric column per channel")


def csv_label(value: str, path: Path, line: int) -> int:
    """A class index from a CSV cell: ``3`` or ``3.0``; a fraction (``0.5``), a negative or a non-number
    is an error naming the line, never truncated to a class."""
    try:
        number = float(value)
    except ValueError:
        raise InputShapeError(f"{path}, line {line}: label {value.strip()!r} is not a number; labels are class "
                              "indices 0, 1, 2, ...") from None
    if not np.isfinite(number) or number != int(number) or number < 0:
        raise InputValueError(f"{path}, line {line}: label {value.strip()!r} is not a class index; labels are whole "
                              "numbers 0, 1, 2, ... (fractional or negative labels are not rounded)")
    return int(number)


def load_series_csv(path: Path) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Series from a CSV file → ``N×T×C`` and labels (``None`` when there is no ``label`` column).

    Two layouts (see :data:`SERIES_CSV_HELP`): one series per row (one channel), or long format with a
    ``sample_id`` column, an optional ``t`` column, an optional ``label`` column and one column per
    channel — ``sample_id,t,ch0,ch1,label`` with one line per sample and step.
    """
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh) if any(v.strip() for v in r)]
    if len(rows) < 2:
        raise EmptyDataError(f"{path}: expected a header line and at least one series")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    for n, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise InputShapeError(f"{path}, line {n}: {len(row)} values for {len(header)} columns")
    if "sample_id" in header:
        return _long_series(path, header, body)
    label_col = header.index("label") if "label" in header else None
    xs, ys = [], []
    for n, row in enumerate(body, start=2):
        try:
            values = [float(v) for i, v in enumerate(row) if i != label_col]
        except ValueError as error:
            raise InputShapeError(f"{path}, line {n}: not a number ({error})") from error
        if label_col is not None:
            ys.append(csv_label(row[label_col], path, n))
        xs.append(values)
    return torch.tensor(xs).unsqueeze(-1), (torch.tensor(ys) if ys else None)


def series_csv_inputs(path: Path):
    """A one-series-per-row CSV read in one streaming pass: every row is checked and its byte offset
    and label kept; the values are parsed again only when a series is asked for.

    Returns ``(LazyInputs, labels or None)``, or ``None`` for the long (``sample_id``) layout,
    which :func:`load_series_csv` reads whole.

    Raises:
        EmptyDataError, InputShapeError: as :func:`load_series_csv`.
    """
    from ._lazy import csv_row_inputs

    offsets, ys = [], []
    header: Optional[List[str]] = None
    label_col = None
    with open(path, "rb") as fh:
        line_no, pos = 0, 0
        for raw in fh:
            line_no += 1
            start, pos = pos, pos + len(raw)
            row = next(csv.reader([raw.decode("utf-8")]), [])
            if not any(v.strip() for v in row):
                continue
            if header is None:
                header = [h.strip() for h in row]
                if "sample_id" in header:
                    return None
                label_col = header.index("label") if "label" in header else None
                continue
            if len(row) != len(header):
                raise InputShapeError(f"{path}, line {line_no}: {len(row)} values for {len(header)} columns")
            try:
                [float(v) for i, v in enumerate(row) if i != label_col]
            except ValueError as error:
                raise InputShapeError(f"{path}, line {line_no}: not a number ({error})") from error
            if label_col is not None:
                ys.append(csv_label(row[label_col], path, line_no))
            offsets.append(start)
    if header is None or not offsets:
        raise EmptyDataError(f"{path}: expected a header line and at least one series")
    return csv_row_inputs(path, offsets, label_col, len(header)), (torch.tensor(ys) if ys else None)


def _long_series(path: Path, header: List[str], body: List[List[str]]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    sid, t_col = header.index("sample_id"), (header.index("t") if "t" in header else None)
    label_col = header.index("label") if "label" in header else None
    channels = [i for i, h in enumerate(header) if i not in (sid, t_col, label_col)]
    if not channels:
        raise InputShapeError(f"{path}: no channel columns besides sample_id/t/label; {SERIES_CSV_HELP}")
    samples: dict = {}
    for n, row in enumerate(body, start=2):
        try:
            step = float(row[t_col]) if t_col is not None else None
            values = [float(row[i]) for i in channels]
        except ValueError as error:
            raise InputShapeError(f"{path}, line {n}: not a number ({error})") from error
        label = csv_label(row[label_col], path, n) if label_col is not None else None
        entry = samples.setdefault(row[sid], {"steps": [], "label": label, "line": n})
        if label != entry["label"]:
            raise InputShapeError(f"{path}, line {n}: sample {row[sid]!r} has label {label} here but "
                                  f"{entry['label']} on line {entry['line']}; one label per sample")
        entry["steps"].append((step if step is not None else len(entry["steps"]), values))
    xs, ys = [], []
    for name, entry in samples.items():
        steps = sorted(entry["steps"], key=lambda s: s[0])
        if len({s[0] for s in steps}) != len(steps):
            raise InputShapeError(f"{path}: sample {name!r} repeats a value of t")
        xs.append([v for _, v in steps])
        ys.append(entry["label"])
    lengths = sorted({len(v) for v in xs})
    if len(lengths) != 1:
        raise InputShapeError(f"{path}: samples have different lengths ({lengths[0]}..{lengths[-1]} steps); every "
                              "series needs the same number of steps")
    return torch.tensor(xs, dtype=torch.float32), (torch.tensor(ys) if label_col is not None else None)


def load_texts(path: Path) -> Tuple[List[str], Optional[List[str]]]:
    """Texts from a ``.txt`` file (one per line) or a ``.csv`` file with a ``text`` column (and ``label``)."""
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "text" not in reader.fieldnames:
                raise InputShapeError(f"{path}: a text CSV needs a 'text' column (and optionally 'label'); "
                                      f"found {reader.fieldnames}")
            rows = list(reader)
        texts = [r["text"] for r in rows]
        labels = [r["label"].strip() for r in rows] if "label" in (reader.fieldnames or []) else None
    else:
        with open(path, encoding="utf-8") as fh:
            texts, labels = [line.rstrip("\n") for line in fh if line.strip()], None
    if not texts:
        raise EmptyDataError(f"{path}: no texts")
    return texts, labels


def text_labels(labels: Optional[List[str]], class_names: List[str], path: str) -> Optional[torch.Tensor]:
    """Labels given as class indices or class names → ``LongTensor``."""
    if labels is None:
        return None
    index = {name: i for i, name in enumerate(class_names)}
    out = []
    for n, value in enumerate(labels, start=2):
        if value in index:
            out.append(index[value])
        elif value.lstrip("-").isdigit() and 0 <= int(value) < len(class_names):
            out.append(int(value))
        else:
            raise InputShapeError(f"{path}, line {n}: label {value!r} is neither a class name "
                                  f"({', '.join(class_names)}) nor an index below {len(class_names)}")
    return torch.tensor(out)


def _is_text_csv(path: Path) -> bool:
    with open(path, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh), [])
    return "text" in [h.strip() for h in header]


def infer_kind(path_str: str) -> Optional[str]:
    """The input kind a data path implies, or ``None`` when the data does not say.

    Image folders → ``image``; ``.txt`` files and CSV files with a ``text`` column → ``tokens``; other
    CSV files → ``series``; tensor files by dtype and rank (integers ``N×T`` → tokens, floats
    ``N×C×H×W`` → image, floats ``N×T×C`` → series).
    """
    path = Path(path_str)
    if path.is_dir():
        return "image"
    if path.suffix == ".txt":
        return "tokens"
    if path.suffix == ".csv":
        return "tokens" if _is_text_csv(path) else "series"
    if path.suffix in (".pt", ".pth", ".npz") and path.is_file():
        x, _ = load_tensor_file(path, lazy=True)
        if not x.dtype.is_floating_point and x.dim() == 2:
            return "tokens"
        if x.dtype.is_floating_point and x.dim() == 4:
            return "image"
        if x.dtype.is_floating_point and x.dim() == 3:
            return "series"
    return None


def load_data(path_str: str, kind: str, channels: int = 3, size: Optional[int] = None):
    """Inputs, labels and (image folders) class names from a path (text files: see :func:`load_texts`).

    Images, series and uncompressed ``.npz``/``.pt`` arrays come back as lazy inputs
    (:class:`reports._lazy.LazyInputs`: read on access, sliceable into tensors), so a report streams
    them; token ids and long-format series CSVs are read whole. Labels are always in memory.
    """
    path = Path(path_str)
    if not path.exists():
        raise InputShapeError(f"data path {path_str!r} does not exist")
    if path.is_dir():
        if kind != "image":
            raise InputShapeError(f"{path_str} is a folder; folders are read as images in class sub-folders, "
                                  f"but --kind is {kind!r}; give a .pt/.npz (or .csv for series) file")
        from ._lazy import image_folder_inputs
        files, ys, classes = image_folder_files(path)
        return image_folder_inputs(path, files, channels, size), ys, classes
    if path.suffix == ".txt" or (path.suffix == ".csv" and _is_text_csv(path)):
        raise InputShapeError(f"{path_str} holds texts; texts need the tokenizer saved beside a Hugging Face "
                              "model (--model hf:DIR), or give token ids in a .pt/.npz file")
    if path.suffix == ".csv":
        lazy = series_csv_inputs(path)
        x, y = lazy if lazy is not None else load_series_csv(path)
        return x, y, None
    if path.suffix in (".pt", ".pth", ".npz"):
        x, y = load_tensor_file(path, lazy=kind != "tokens")
        if not isinstance(x, torch.Tensor):
            if not x.dtype.is_floating_point:
                x.load = (lambda load: lambda i: load(i).float())(x.load)
                x.dtype = torch.float32
            return x, y, None
        if kind == "tokens":
            x = x.long()
        elif x.dtype.is_floating_point is False:
            x = x.float()
        return x, y, None
    raise InputShapeError(f"{path_str}: unsupported data file; use an image folder, .pt, .npz, .csv or .txt")


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
