"""Every kind of image a folder can hold is read by its own mode: bit depth, palette, alpha, CMYK, EXIF.

Each file is written with Pillow from a numpy array chosen here; the expected pixels are decoded by
hand from that array (the reference), never by the reader under test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from explain.errors import InputValueError
from reports._inputs import load_data, load_image_folder

H, W = 6, 5  # not square, so a swapped axis shows
RNG = np.random.default_rng(7)


def _blocks(channels: int, lo: int = 0, hi: int = 256) -> np.ndarray:
    """Pixels constant over 2×... blocks would still be lossy in JPEG; these are for lossless files."""
    return RNG.integers(lo, hi, (H, W, channels), dtype=np.uint8)


def _grey3(g: np.ndarray) -> np.ndarray:
    return np.repeat(g[..., None], 3, axis=-1)


def _write_every_kind(folder):
    """One file per kind in ``folder/a`` (sorted names keep the order); returns ``[(name, reference)]``."""
    (folder / "a").mkdir(parents=True)
    out = []

    def put(name, image, reference, **save):
        image.save(folder / "a" / name, **save)
        out.append((name, reference.astype(np.float64)))

    g = _blocks(1)[..., 0]
    put("00_L.png", Image.fromarray(g, "L"), _grey3(g / 255))
    la = _blocks(2)
    alpha = la[..., 1] / 255
    put("01_LA.png", Image.fromarray(la, "LA"), _grey3(la[..., 0] / 255 * alpha + (1 - alpha)))
    palette = RNG.integers(0, 256, (4, 3), dtype=np.uint8)
    idx = RNG.integers(0, 4, (H, W), dtype=np.uint8)
    p = Image.fromarray(idx, "P")
    p.putpalette(palette.flatten().tolist())
    put("02_P.png", p, palette[idx] / 255)
    entry_alpha = np.array([255, 128, 0, 64], dtype=np.uint8)  # per-entry alpha (tRNS): a palette with transparency
    a = (entry_alpha[idx] / 255)[..., None]
    pt = Image.fromarray(idx, "P")
    pt.putpalette(palette.flatten().tolist())
    put("03_PA.png", pt, palette[idx] / 255 * a + (1 - a), transparency=entry_alpha.tobytes())
    rgb = _blocks(3)
    put("04_RGB.png", Image.fromarray(rgb, "RGB"), rgb / 255)
    rgba = _blocks(4)
    a = (rgba[..., 3] / 255)[..., None]
    put("05_RGBA.png", Image.fromarray(rgba, "RGBA"), rgba[..., :3] / 255 * a + (1 - a))
    g16 = RNG.integers(0, 65536, (H, W), dtype=np.uint16)
    g16[0, 0], g16[0, 1] = 1000, 65535  # a dark pixel that 8-bit clipping reads as white
    put("06_I16.png", Image.fromarray(g16), _grey3(g16 / 65535))
    g32 = RNG.integers(0, 2 ** 31 - 1, (H, W), dtype=np.int64).astype(np.int32)
    put("07_I32.tif", Image.fromarray(g32), _grey3(g32 / (2 ** 31 - 1)))
    f = RNG.random((H, W), dtype=np.float32)
    put("08_F.tif", Image.fromarray(f), _grey3(f.astype(np.float64)))
    bits = RNG.random((H, W)) > 0.5
    put("09_1bit.png", Image.fromarray(bits), _grey3(bits.astype(np.float64)))
    return out


def test_every_mode_in_one_folder_matches_the_hand_decoded_reference(tmp_path):
    expected = _write_every_kind(tmp_path)
    lazy, y, classes = load_data(str(tmp_path), "image")
    eager, _, _ = load_image_folder(tmp_path)
    assert classes == ["a"] and tuple(lazy.shape) == (len(expected), 3, H, W)
    got = lazy[:len(lazy)]
    assert torch.equal(got, eager)  # one reading function behind both readers
    for i, (name, ref) in enumerate(expected):
        pixels = got[i].permute(1, 2, 0).double().numpy()
        assert np.abs(pixels - ref).max() < 1e-6, name


def test_a_16_bit_grey_png_keeps_its_dark_values_instead_of_reading_white(tmp_path):
    (tmp_path / "dark").mkdir()
    g16 = np.full((H, W), 13107, dtype=np.uint16)  # 0.2 of full scale
    Image.fromarray(g16).save(tmp_path / "dark" / "x.png")
    x, _, _ = load_data(str(tmp_path), "image")
    assert torch.allclose(x[0], torch.full((3, H, W), 0.2), atol=1e-6)


def test_a_dark_folder_with_one_16_bit_image_is_classified_right_by_a_brightness_model(tmp_path):
    """A model that calls an image bright when its mean exceeds 0.5: 24 images, one of them 16-bit."""
    for cls in ("bright", "dark"):
        (tmp_path / cls).mkdir()
    for i in range(12):
        Image.fromarray(np.full((H, W, 3), 200, np.uint8)).save(tmp_path / "bright" / f"{i}.png")
        if i == 0:
            Image.fromarray(np.full((H, W), 20000, np.uint16)).save(tmp_path / "dark" / f"{i}.png")
        else:
            Image.fromarray(np.full((H, W, 3), 40, np.uint8)).save(tmp_path / "dark" / f"{i}.png")
    x, y, classes = load_data(str(tmp_path), "image")
    mean = x[:len(x)].mean(dim=(1, 2, 3))
    predicted = (mean < 0.5).long()  # class 0 'bright', class 1 'dark'
    assert classes == ["bright", "dark"] and (predicted == y).float().mean().item() == 1.0


def test_exif_rotated_jpeg_is_read_upright(tmp_path):
    (tmp_path / "a").mkdir()
    stored = np.zeros((40, 64, 3), np.uint8)  # wide as stored; tall as shown
    stored[:, :32] = (250, 10, 10)  # left half red, right half blue
    stored[:, 32:] = (10, 10, 250)
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: rotate 90° clockwise to show
    Image.fromarray(stored).save(tmp_path / "a" / "r.jpg", quality=100, subsampling=0, exif=exif.tobytes())
    x, _, _ = load_data(str(tmp_path), "image")
    reference = np.rot90(stored, k=-1) / 255  # clockwise: the left (red) half becomes the top
    assert tuple(x.shape) == (1, 3, 64, 40)
    away_from_the_edge = np.r_[0:28, 36:64]  # JPEG rings where red meets blue
    error = np.abs(x[0].permute(1, 2, 0).numpy() - reference)[away_from_the_edge]
    assert error.max() < 0.05


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    (tmp_path / "a").mkdir()
    cmyk = np.zeros((16, 16, 4), np.uint8)
    cmyk[:8] = (0, 255, 255, 0)  # top red
    cmyk[8:] = (0, 0, 0, 128)  # bottom mid grey (half black ink)
    Image.frombytes("CMYK", (16, 16), cmyk.tobytes()).save(tmp_path / "a" / "c.jpg", quality=100)
    x, _, _ = load_data(str(tmp_path), "image")
    c, k = cmyk[..., :3] / 255, cmyk[..., 3:] / 255
    reference = (1 - c) * (1 - k)
    assert np.abs(x[0].permute(1, 2, 0).numpy() - reference).max() < 0.05


def test_grey_channel_from_colour_uses_luma_and_16_bit_resizes_without_8_bit_rounding(tmp_path):
    (tmp_path / "a").mkdir()
    rgb = _blocks(3)
    Image.fromarray(rgb).save(tmp_path / "a" / "0.png")
    Image.fromarray(np.full((9, 7), 1000, np.uint16)).save(tmp_path / "a" / "1.png")  # another size
    x = load_data(str(tmp_path), "image", channels=1)[0][:2]
    luma = rgb @ np.array([0.299, 0.587, 0.114]) / 255
    assert tuple(x.shape) == (2, 1, H, W)
    assert np.abs(x[0, 0].numpy() - luma).max() < 1e-5
    assert torch.allclose(x[1], torch.full((1, H, W), 1000 / 65535), atol=1e-6)  # 8 bits would give 4/255


def test_float_image_outside_zero_one_is_an_error_naming_the_range(tmp_path):
    (tmp_path / "a").mkdir()
    Image.fromarray(np.full((4, 4), 3.5, np.float32)).save(tmp_path / "a" / "f.tif")
    with pytest.raises(InputValueError, match=r"f\.tif: a float image must hold values in \[0, 1\], found 3\.5\.\.3\.5"):
        load_data(str(tmp_path), "image")
