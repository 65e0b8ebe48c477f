"""The CLI reads image folders, npz/pt arrays and CSV series lazily, with the same samples as reading them whole."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import explain
import reports
from explain.errors import InputShapeError
from explain.zoo import Conv1dNet
from reports._inputs import load_data, load_image_folder, load_series_csv
from reports._lazy import LazyInputs


def test_uncompressed_npz_is_memory_mapped_and_read_row_by_row(tmp_path):
    x = np.random.default_rng(0).random((9, 3, 5, 5), dtype=np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(9) % 3)
    lx, y, _ = load_data(str(tmp_path / "d.npz"), "image")
    assert isinstance(lx, LazyInputs) and lx.shape == (9, 3, 5, 5)
    assert torch.equal(lx[:9], torch.from_numpy(x)) and torch.equal(lx[4], torch.from_numpy(x[4]))
    assert y.tolist() == [0, 1, 2] * 3
    np.savez_compressed(tmp_path / "c.npz", x=x)  # a compressed file cannot be mapped: read whole
    cx, _, _ = load_data(str(tmp_path / "c.npz"), "image")
    assert isinstance(cx, torch.Tensor) and torch.equal(cx, torch.from_numpy(x))


def test_pt_file_is_mapped_and_tokens_stay_in_memory(tmp_path):
    x = torch.rand(6, 4, 2)
    torch.save({"x": x, "y": torch.tensor([0, 1, 2, 0, 1, 2])}, tmp_path / "s.pt")
    lx, y, _ = load_data(str(tmp_path / "s.pt"), "series")
    assert isinstance(lx, LazyInputs) and torch.equal(lx[:6], x) and y.tolist() == [0, 1, 2, 0, 1, 2]
    torch.save(torch.randint(1, 9, (5, 7)), tmp_path / "ids.pt")
    ids, _, _ = load_data(str(tmp_path / "ids.pt"), "tokens")
    assert isinstance(ids, torch.Tensor) and ids.dtype == torch.long


def test_image_folder_is_decoded_on_access_with_the_eager_reader_s_pixels(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(1)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            size = (10, 10) if i else (12, 8)  # a different size is resized to the first image's
            Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    lazy, y, classes = load_data(str(tmp_path), "image")
    eager, ye, ce = load_image_folder(tmp_path)
    assert isinstance(lazy, LazyInputs) and classes == ce == ["cat", "dog"] and torch.equal(y, ye)
    assert torch.equal(lazy[:len(lazy)], eager)


def test_series_csv_is_checked_up_front_and_parsed_per_row(tmp_path):
    rows = ["label,t0,t1,t2,t3"] + [f"{i % 2},{i},{i + .5},{-i},{i * 2}" for i in range(7)]
    (tmp_path / "s.csv").write_text("\n".join(rows) + "\n\n")
    lazy, y, _ = load_data(str(tmp_path / "s.csv"), "series")
    ex, ey = load_series_csv(tmp_path / "s.csv")
    assert isinstance(lazy, LazyInputs) and torch.equal(lazy[:7], ex) and torch.equal(y, ey)
    (tmp_path / "bad.csv").write_text("\n".join(rows[:4] + ["1,2,x,4,5"]) + "\n")
    with pytest.raises(InputShapeError, match="line 5: not a number"):
        load_data(str(tmp_path / "bad.csv"), "series")


def test_a_report_on_lazy_inputs_equals_the_report_on_tensors(tmp_path):
    torch.manual_seed(0)
    m = explain.ModelWrapper(Conv1dNet(1, 3, width=4), "series", device="cpu", batch_size=8)
    x = torch.randn(30, 16, 1)
    y = torch.arange(30) % 3
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    lx, ly, _ = load_data(str(tmp_path / "d.npz"), "series")
    kw = dict(sections=["performance"], max_samples=None, keep_samples=4, batch_size=8)
    a = reports.build_report(m, (x, y), **kw).to_dict()["sections"]["performance"]["summary"]
    b = reports.build_report(m, (lx, ly), **kw).to_dict()["sections"]["performance"]["summary"]
    assert a == b and sum(map(sum, a["confusion_matrix"])) == 30
