"""A PNG that declares 30,000 × 30,000 pixels in a data folder: one clear error naming it, exit 2."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from explain.errors import InputShapeError
from explain.zoo import SmallCNN
from reports import _lazy
from reports._inputs import load_data, load_image_folder
from reports.cli import main


def make_cnn():
    return SmallCNN(num_classes=2)


def write_1bit_png(path: Path, width: int, height: int) -> None:
    """A complete, valid 1-bit greyscale PNG of zeros, compressed row by row (a few hundred KB at 30,000²)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte 0, then the packed bits
    packer = zlib.compressobj(9)
    body = bytearray()
    rows_per_piece = max(1, (1 << 22) // len(row))
    for start in range(0, height, rows_per_piece):
        body += packer.compress(row * min(rows_per_piece, height - start))
    body += packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", bytes(body)) + chunk(b"IEND", b""))


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "data"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            arr = np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / name / f"{i}.png")
    return root


def test_the_png_writer_makes_images_pillow_decodes(tmp_path):
    write_1bit_png(tmp_path / "small.png", 37, 21)
    with Image.open(tmp_path / "small.png") as im:
        im.load()
        assert im.size == (37, 21) and im.mode == "1" and not np.asarray(im).any()


def test_a_30000px_png_in_a_data_folder_is_one_line_error_naming_it_with_exit_2(folder, tmp_path, capsys):
    bomb = folder / "dog" / "9-huge.png"
    write_1bit_png(bomb, 30_000, 30_000)
    assert bomb.stat().st_size < 2_000_000  # tiny on disk, 900 million pixels declared
    torch.save(make_cnn().state_dict(), tmp_path / "w.pt")
    code = main(["report", "--model", "tests.reports.test_decompression_bomb:make_cnn", "--weights",
                 str(tmp_path / "w.pt"), "--kind", "image", "--data", str(folder), "--samples", "1",
                 "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(bomb) in lines[0] and "pixels" in lines[0] and "decompression bomb" in lines[0]
    assert not (tmp_path / "r" / "index.html").exists()


@pytest.mark.parametrize("eager", [True, False])
def test_images_over_the_pixel_limit_are_refused_before_decoding_and_under_it_are_read(folder, tmp_path, monkeypatch,
                                                                                       eager):
    big = folder / "cat" / "big.png"
    write_1bit_png(big, 200, 150)  # 30,000 pixels
    monkeypatch.setattr(_lazy, "MAX_IMAGE_PIXELS", 30_000)
    x, y, _ = load_image_folder(folder, size=32) if eager else load_data(str(folder), "image", size=32)
    assert tuple(x[0:5].shape) == (5, 3, 32, 32)  # at the limit: read
    monkeypatch.setattr(_lazy, "MAX_IMAGE_PIXELS", 29_999)  # between Pillow's warning and its error: ours decides
    with pytest.raises(InputShapeError, match=r"big\.png: refused, the image declares 200×150 = 30,000 pixels"):
        x, _, _ = load_image_folder(folder, size=32) if eager else load_data(str(folder), "image", size=32)
        x[0:5]
