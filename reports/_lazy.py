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

from explain.errors import InputShapeError

__all__ = ["LazyInputs", "npz_memmap", "image_folder_inputs", "array_inputs", "csv_row_inputs"]


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


def image_folder_inputs(path: Path, files: Sequence[Path], channels: int, size: Optional[int]) -> LazyInputs:
    """Images decoded on access, each resized to the first image's size (or ``size×size``)."""
    from PIL import Image, UnidentifiedImageError

    mode = "RGB" if channels == 3 else "L"
    target: List = [(size, size) if size else None]

    def load(i: int) -> torch.Tensor:
        file = files[i]
        try:
            with open_image(file) as im:
                im = im.convert(mode)
                if target[0] is None:
                    target[0] = im.size
                if im.size != target[0]:
                    im = im.resize(target[0], Image.BILINEAR)
                arr = np.asarray(im, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError) as error:
            raise InputShapeError(f"{file}: not a readable image ({error})") from error
        w, h = target[0]
        return torch.from_numpy(arr.copy()).reshape(h, w, -1).permute(2, 0, 1)

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
