"""What the command line says: each message checked word for word, as a user reads it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import explain
import reports
from reports import _setup
from reports.cli import main

FORMS = ("a factory 'package.module:function' (with --weights), a TorchScript/.pt2/.onnx file, or hf:DIR "
         "(a Hugging Face save_pretrained directory)")


class DictNet(nn.Module):
    """Returns a dict without a 'logits' key: the scores sit under 'scores'."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        z = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return {"features": z, "scores": self.head(z)}


class PairNet(DictNet):
    """Returns ``(features, logits)``: the default (first element) would take the 4 features as 4 classes."""

    def forward(self, x):
        out = super().forward(x)
        return out["features"], out["scores"]


class Flat32(nn.Module):
    """Takes exactly 3×32×32 images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.head = nn.Linear(2 * 32 * 32, 2)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).flatten(1))


def make_dict():
    torch.manual_seed(0)
    return DictNet()


def make_pair():
    torch.manual_seed(0)
    return PairNet()


def make_flat32():
    torch.manual_seed(0)
    return Flat32()


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _folder(root, size=12, n=2):
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.random.default_rng(i).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
                root / cls / f"{i}.png")
    return root


def test_version_prints_the_name_and_version(capsys):
    code, out, err = run(capsys, "--version")
    assert (code, out, err) == (0, f"xaiscope {explain.__version__}\n", "")


def test_a_missing_data_path_says_it_does_not_exist(tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    code, out, err = run(capsys, "report", "--model", "tests.reports.test_cli_messages:make_dict", "--data", missing)
    assert (code, out) == (2, "")
    assert err == f"xaiscope report: error: --data '{missing}' does not exist\n"


def test_a_missing_ood_data_path_says_it_does_not_exist(tmp_path, capsys):
    missing = tmp_path / "ood"
    code, _, err = run(capsys, "report", "--model", "tests.reports.test_cli_messages:make_dict", "--output",
                       "scores", "--data", _folder(tmp_path / "d"), "--ood-data", missing, "--out", tmp_path / "r")
    assert code == 2 and err.endswith(f"xaiscope report: error: --ood-data '{missing}' does not exist\n")


def test_a_missing_model_file_says_it_does_not_exist(tmp_path, capsys):
    data = _folder(tmp_path / "d")
    code, _, err = run(capsys, "explain", "--model", tmp_path / "net.pt", "--data", data)
    assert code == 2
    assert err == f"xaiscope explain: error: --model '{tmp_path / 'net.pt'}' does not exist; expected {FORMS}\n"
    code, _, err = run(capsys, "explain", "--model", "tests.reports.test_cli_messages:make_dict", "--weights",
                       tmp_path / "w.pt", "--data", data)
    assert (code, err) == (2, f"xaiscope explain: error: --weights '{tmp_path / 'w.pt'}' does not exist\n")
    code, _, err = run(capsys, "explain", "--model", f"hf:{tmp_path / 'vit'}", "--data", data)
    assert (code, err) == (2, f"xaiscope explain: error: --model hf:{tmp_path / 'vit'}: the folder "
                              f"'{tmp_path / 'vit'}' does not exist\n")


def test_a_factory_without_weights_warns_in_one_line(tmp_path, capsys):
    code, out, err = run(capsys, "explain", "--model", "tests.reports.test_cli_messages:make_dict", "--output",
                         "scores", "--data", _folder(tmp_path / "d"), "--method", "saliency", "--samples", "1",
                         "--out", tmp_path / "png")
    assert code == 0, err
    warning = ("xaiscope: warning: UNTRAINED MODEL: no --weights given, so tests.reports.test_cli_messages:make_dict "
               "runs on the random weights its factory starts with; every number in this report describes an "
               "untrained model (pass --weights FILE)")
    assert warning in err.splitlines()
    assert "UserWarning" not in err and "warnings.warn" not in err and ".py:" not in err
    assert out.strip().endswith("saliency-sample0.png")


def test_the_model_card_marks_untrained_weights(tmp_path):
    s = {"model": "tests.reports.test_cli_messages:make_dict", "data": str(_folder(tmp_path / "d")),
         "output": "scores", "device": "cpu"}
    with pytest.warns(UserWarning, match="UNTRAINED MODEL"):
        wrapper, x, y, _ = _setup.wrapper_and_data(s)
    rep = reports.build_report(wrapper, (x[:len(x)], y), sections=["model_card"], out=tmp_path / "r")
    card = json.loads((tmp_path / "r" / "summary.json").read_text())["sections"]["model_card"]["summary"]
    assert card["weights"] == "untrained weights (no --weights given)"
    html = (tmp_path / "r" / "index.html").read_text()
    assert "This model runs on untrained weights (no --weights given)" in html
    torch.save(make_dict().state_dict(), tmp_path / "w.pt")
    wrapper, x, y, _ = _setup.wrapper_and_data({**s, "weights": str(tmp_path / "w.pt")})
    rep = reports.build_report(wrapper, (x[:len(x)], y), sections=["model_card"])
    assert rep.sections[0].summary["weights"] == f"from {tmp_path / 'w.pt'}"


def test_output_selects_the_logits_by_key_or_index_from_flag_or_config(tmp_path, capsys):
    data = _folder(tmp_path / "d")
    code, _, err = run(capsys, "explain", "--model", "tests.reports.test_cli_messages:make_dict", "--data", data)
    assert code == 2
    assert err.splitlines()[-1] == (
        "xaiscope explain: error: the model returns a dict with keys ['features', 'scores']; pass output='<key>' "
        "naming the logits (on the command line: --output INDEX_OR_KEY, or output = ... in the config file)")
    x = torch.rand(2, 3, 12, 12)
    for spec, output in (("make_dict", "scores"), ("make_pair", "1")):
        s = {"model": f"tests.reports.test_cli_messages:{spec}", "data": str(data), "output": output, "device": "cpu"}
        with pytest.warns(UserWarning):
            wrapper = _setup.wrapper_and_data(s)[0]
        net = make_dict()
        torch.testing.assert_close(wrapper.logits(x), net(x)["scores"])  # the same weights (seeded factory)
    (tmp_path / "c.toml").write_text('output = 1\n')
    code, out, err = run(capsys, "explain", "--config", tmp_path / "c.toml", "--model",
                         "tests.reports.test_cli_messages:make_pair", "--data", data, "--method", "saliency",
                         "--samples", "1", "--out", tmp_path / "png", "--quiet")
    assert code == 0, err
    assert out.strip() == str(tmp_path / "png" / "saliency-sample0.png")


def test_images_of_the_wrong_size_suggest_image_size(tmp_path, capsys):
    data = _folder(tmp_path / "d", size=40)
    code, _, err = run(capsys, "explain", "--model", "tests.reports.test_cli_messages:make_flat32", "--data", data)
    assert code == 2
    last = err.splitlines()[-1]
    assert last.startswith("xaiscope explain: error: the model cannot run on the data: ")
    assert last.endswith("; the images were read at their own size 40×40: if the model takes another size, "
                         "pass --image-size N")
    code, out, err = run(capsys, "explain", "--model", "tests.reports.test_cli_messages:make_flat32", "--data", data,
                         "--image-size", "32", "--method", "saliency", "--samples", "1", "--out", tmp_path / "png")
    assert code == 0, err


def _vit(folder, size=32, processor=None):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ViTConfig(image_size=size, patch_size=8, num_channels=3, hidden_size=16, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=32,
                                 id2label={0: "a", 1: "b"}, label2id={"a": 0, "b": 1})
    torch.manual_seed(0)
    transformers.ViTForImageClassification(cfg).save_pretrained(folder)
    if processor is not None:
        (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    return folder


@pytest.mark.parametrize("processor, source", [
    ({"do_resize": True, "size": {"height": 24, "width": 24}, "do_normalize": False}, "preprocessor_config.json size"),
    (None, "config.json image_size"),
])
def test_a_hugging_face_image_model_resizes_the_folder_to_its_size(tmp_path, capsys, processor, source):
    side = 24 if processor else 32
    vit = _vit(tmp_path / "vit", size=side, processor=processor)
    data = _folder(tmp_path / "d", size=40)
    code, out, err = run(capsys, "explain", "--model", f"hf:{vit}", "--data", data, "--method", "saliency",
                         "--samples", "1", "--out", tmp_path / "png")
    assert code == 0, err
    assert (f"xaiscope: images are resized to {side}×{side}, the size the model expects ({source}); "
            "pass --image-size to choose another") in err.splitlines()
    assert np.array(Image.open(out.split()[-1])).ndim == 3
