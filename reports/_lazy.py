"""Inputs read from disk on access, so the CLI never holds a whole data set in memory.

:class:`LazyInputs` is a ``Dataset`` of one input per index that also answers slices with a
stacked tensor (``x[:8]``), so code that looks at the first few samples works unchanged while
``reports.build_report`` streams the rest. Three sources:

* an image folder (``root/<class>/<file>``): only the file list is kept; each image is decoded and
  resized when asked for;
* an ``.npz`` file saved without compression (``np.savez``), whose arrays are memory-mapped, or a
  ``.pt`` file, loaded with ``torch.load(mmap=True)``;
* a CSV with one series per row: only each row's byte offset is kept; a row is parsed when asked for.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from explain.errors import InputShapeError, InputValueError

__all__ = ["LazyInputs", "npz_memmap", "image_folder_inputs", "read_image", "decode_image", "array_inputs", "csv_row_inputs"]


class LazyInputs(Dataset):
    """``n`` inputs, each made by ``load(i)`` when asked for; slices return a stacked tensor.

    Attributes:
        shape: ``(n, *sample_shape)``, like a tensor's.
        dtype: the inputs' dtype.
    """

    def __init__(self, n: int, load: Callable[[int], torch.Tensor], what: str) -> None:
        self.n, self.load, self.what = n, load, what
        first = load(0)
        self.shape = torch.Size((n, *first.shape))
        self.dtype = first.dtype

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"LazyInputs({self.what}, shape={tuple(self.shape)})"

    def dim(self) -> int:
        return len(self.shape)

    def __getitem__(self, i):
        if isinstance(i, slice):
            idx = range(*i.indices(self.n))
            if len(idx) == 0:
                return torch.zeros((0, *self.shape[1:]), dtype=self.dtype)
            return torch.stack([self.load(j) for j in idx])
        i = int(i)
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} inputs")
        return self.load(i % self.n)


def npz_memmap(path: Path) -> Optional[dict]:
    """The arrays of an uncompressed ``.npz`` file as read-only memory maps (``None`` when compressed)."""
    out = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                return None
            fh.seek(info.header_offset)
            local = fh.read(30)
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            fh.seek(info.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                return None
            if dtype.hasobject:
                return None
            out[info.filename[:-4]] = np.memmap(path, dtype=dtype, mode="r", offset=fh.tell(), shape=shape,
                                                order="F" if fortran else "C")
    return out


def array_inputs(x, what: str, dtype: Optional[torch.dtype] = None) -> LazyInputs:
    """Lazy inputs over an array-like (a memory map or an mmap-loaded tensor): one row copied per access."""

    def load(i: int) -> torch.Tensor:
        row = x[i]
        t = torch.from_numpy(np.array(row)) if not isinstance(row, torch.Tensor) else row.clone()
        return t if dtype is None else t.to(dtype)

    return LazyInputs(len(x), load, what)


#: The most pixels an input image may declare: Pillow's own default limit (≈ 9,459 × 9,459, about
#: 1 GiB once decoded to float32 RGB). A larger image is refused from its header, before anything
#: is decoded: a PNG of a few hundred kilobytes can declare 30,000 × 30,000 pixels.
MAX_IMAGE_PIXELS = 89_478_485


def open_image(file: Path):
    """``PIL.Image.open(file)``, refusing an image that declares more than :data:`MAX_IMAGE_PIXELS` pixels.

    Raises:
        InputShapeError: the image is too large (a decompression bomb, or an image to shrink first).
    """
    import warnings

    from PIL import Image

    with warnings.catch_warnings():  # the size is checked below, against one documented limit
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(file)
        except Image.DecompressionBombError as error:
            raise InputShapeError(f"{file}: refused, the image declares more than {MAX_IMAGE_PIXELS:,} pixels, the "
                                  f"most an input image may have (a decompression bomb?): {error}") from None
    w, h = im.size
    if w * h > MAX_IMAGE_PIXELS:
        im.close()
        raise InputShapeError(f"{file}: refused, the image declares {w}×{h} = {w * h:,} pixels, more than the "
                              f"{MAX_IMAGE_PIXELS:,} an input image may have (a decompression bomb?); shrink it first")
    return im


def _tag(im, number: int, default: int) -> int:
    """The first value of a TIFF tag (``default`` for other formats or a missing tag)."""
    value = getattr(im, "tag_v2", {}).get(number)
    if value is None:
        return default
    return int(value[0] if isinstance(value, (tuple, list)) else value)


def _bits(im) -> int:
    """The stored bits per sample of an integer image (PNG ``I``: 16; TIFF: its BitsPerSample tag)."""
    return _tag(im, 258, 16 if im.mode.startswith("I;16") or im.format == "PNG" else 32)


def _on_white(values: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Colour ``H×W×C`` composited over a white background with coverage ``alpha`` (both in [0, 1])."""
    return values * alpha[..., None] + (1.0 - alpha[..., None])


def decode_image(im, file) -> np.ndarray:
    """A Pillow image → ``H×W×C`` float32 in [0, 1] (C = 1 grey or 3 colour), read by its own mode.

    * EXIF orientation is applied first (a photo taken sideways is upright);
    * 8-bit modes (``L``, ``P``, ``RGB``, ``CMYK``, ``YCbCr``, ...) are divided by 255; ``1`` (bi-level)
      is 0 or 1;
    * integer modes are divided by their bit depth's maximum: ``I;16`` (16-bit PNG/TIFF) by 65535,
      32-bit ``I`` TIFFs by their type's maximum (2³¹ − 1 signed, 2³² − 1 unsigned; negative
      values are an error);
    * ``F`` (32-bit float TIFF) is taken as it is and must lie in [0, 1];
    * transparency (``LA``, ``PA``, ``RGBA``, palettes with a transparent entry) is composited on
      white, so a transparent pixel reads as white whatever colour it stores;
    * of a multi-frame file (GIF, TIFF) the first frame is read.
    """
    from PIL import ImageOps

    bits, unsigned = _bits(im), _tag(im, 339, 1) == 1  # read before a transpose drops the tags
    im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode == "P":
        mode = "PA" if "transparency" in im.info else "RGB"
        im = im.convert("RGBA" if mode == "PA" else "RGB")
        mode = im.mode
    elif mode == "PA":
        im, mode = im.convert("RGBA"), "RGBA"
    if mode == "1":
        return np.asarray(im, dtype=np.float32)[..., None]
    if mode in ("L", "RGB"):
        arr = np.asarray(im, dtype=np.float32) / 255.0
        return arr[..., None] if arr.ndim == 2 else arr
    if mode in ("LA", "RGBA"):
        arr = np.asarray(im, dtype=np.float32) / 255.0
        if arr.ndim == 2:  # LA comes back as L plus alpha in some Pillow versions
            arr = np.stack([arr, np.ones_like(arr)], axis=-1)
        return _on_white(arr[..., :-1], arr[..., -1])
    if mode.startswith("I"):
        raw = np.asarray(im)
        if raw.dtype == np.int32 and bits == 32 and unsigned:
            raw = raw.view(np.uint32)  # unsigned 32-bit samples held in Pillow's signed mode
        if raw.size and raw.min() < 0:
            raise InputValueError(f"{file}: a {bits}-bit integer image holds negative values "
                                  f"(min {int(raw.min())}); expected unsigned samples")
        top = 2 ** bits - 1 if unsigned or bits < 32 else 2 ** 31 - 1  # a signed 32-bit sample tops at 2³¹ − 1
        return (raw.astype(np.float64) / float(top)).astype(np.float32)[..., None]
    if mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        lo, hi = (float(np.nanmin(arr)), float(np.nanmax(arr))) if arr.size else (0.0, 0.0)
        if not np.isfinite(arr).all() or lo < 0.0 or hi > 1.0:
            raise InputValueError(f"{file}: a float image must hold values in [0, 1], found {lo:g}..{hi:g}; "
                                  "save it scaled to [0, 1] or as 8/16-bit integers")
        return arr[..., None]
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0  # CMYK, YCbCr, LAB, HSV


_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601-2, as Pillow's RGB -> L


def read_image(file, channels: int = 3, size=None) -> np.ndarray:
    """One image file → ``H×W×channels`` float32 in [0, 1] (see :func:`decode_image`), resized to
    ``size`` (``(width, height)``) bilinearly on the float values when given.

    Grey images are repeated to three channels; colour images become grey by ITU-R 601-2 luma.

    Raises:
        InputShapeError: not a readable image.
        InputValueError: sample values outside the range the image's mode allows.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with open_image(file) as im:
            arr = decode_image(im, file)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise InputShapeError(f"{file}: not a readable image ({error})") from error
    if channels == 3 and arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    elif channels == 1 and arr.shape[-1] == 3:
        arr = (arr @ _LUMA)[..., None]
    if size is not None and (arr.shape[1], arr.shape[0]) != tuple(size):
        arr = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(arr[..., c]), mode="F")
                                   .resize(tuple(size), Image.BILINEAR)) for c in range(arr.shape[-1])], axis=-1)
        arr = np.clip(arr, 0.0, 1.0)
    return np.ascontiguousarray(arr, dtype=np.float32)


def image_folder_inputs(path: Path, files: Sequence[Path], channels: int, size=None) -> LazyInputs:
    """Images decoded on access (:func:`read_image`), each resized to the first image's size, or to
    ``size`` (an int for a square, or ``(height, width)``)."""
    if isinstance(size, int):
        size = (size, size)
    target: List = [None if size is None else (int(size[1]), int(size[0]))]  # Pillow's (width, height)

    def load(i: int) -> torch.Tensor:
        arr = read_image(files[i], channels, target[0])
        if target[0] is None:
            target[0] = (arr.shape[1], arr.shape[0])
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()

    return LazyInputs(len(files), load, str(path))


def csv_row_inputs(path: Path, offsets: Sequence[int], label_col: Optional[int], width: int) -> LazyInputs:
    """One series per CSV row (one channel), parsed on access from the row's byte offset."""
    import csv

    def load(i: int) -> torch.Tensor:
        with open(path, newline="", encoding="utf-8") as fh:
            fh.seek(offsets[i])
            row = next(csv.reader([fh.readline()]))
        if len(row) != width:
            raise InputShapeError(f"{path}, series {i}: {len(row)} values for {width} columns")
        try:
            values = [float(v) for j, v in enumerate(row) if j != label_col]
        except ValueError as error:
            raise InputShapeError(f"{path}, series {i}: not a number ({error})") from error
        return torch.tensor(values).unsqueeze(-1)

    return LazyInputs(len(offsets), load, str(path))
