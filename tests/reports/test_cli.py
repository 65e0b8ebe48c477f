"""The xaiscope CLI end to end: three input kinds, config files, exit codes, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from explain.zoo import BiLSTMClassifier, Conv1dNet, SmallCNN
from reports.cli import main


def make_cnn():
    return SmallCNN(num_classes=4)


def make_lstm():
    return BiLSTMClassifier(60, 2)


def make_conv1d():
    return Conv1dNet(1, 3)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_methods_lists_the_registered_explainers(capsys):
    code, out, _ = run(capsys, "methods")
    assert code == 0 and "gradcam" in out and "occlusion" in out


def test_report_on_an_image_tensor_file(cnn, tmp_path, capsys):
    torch.save(cnn.net.state_dict(), tmp_path / "w.pt")
    torch.save({"x": cnn.x[:40], "y": cnn.y[:40]}, tmp_path / "data.pt")
    code, out, err = run(capsys, "report", "--model", "tests.reports.test_cli:make_cnn", "--weights",
                         str(tmp_path / "w.pt"), "--kind", "image", "--data", str(tmp_path / "data.pt"),
                         "--class-names", "square,plus,cross,blank", "--samples", "2", "--out", str(tmp_path / "r"),
                         "--quiet")
    assert code == 0, err
    assert out.strip() == str(tmp_path / "r" / "index.html")
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["class_names"] == ["square", "plus", "cross", "blank"]


def test_report_on_token_ids_with_a_vocabulary_shows_words(lstm, tmp_path, capsys):
    torch.save(lstm.net.state_dict(), tmp_path / "w.pt")
    np.savez(tmp_path / "data.npz", x=lstm.x[:30].numpy(), y=lstm.y[:30].numpy())
    (tmp_path / "vocab.txt").write_text("\n".join(["<pad>", "<unk>"] + [f"word{i}" for i in range(2, 60)]))
    code, _, err = run(capsys, "report", "--model", "tests.reports.test_cli:make_lstm", "--weights", str(tmp_path / "w.pt"),
                       "--kind", "tokens", "--data", str(tmp_path / "data.npz"), "--vocab", str(tmp_path / "vocab.txt"),
                       "--samples", "2", "--out", str(tmp_path / "r"), "--quiet")
    assert code == 0, err
    assert "word" in (tmp_path / "r" / "index.html").read_text()


def test_report_on_a_series_csv_from_a_config_file_and_failing_check_exits_1(conv1d, tmp_path, capsys):
    torch.save(conv1d.net.state_dict(), tmp_path / "w.pt")
    x, y = conv1d.x[:30, :, 0].numpy(), conv1d.y[:30].numpy()
    lines = ["label," + ",".join(f"t{i}" for i in range(x.shape[1]))]
    y = y.copy()
    y[0] = (y[0] + 1) % 3  # one wrong label: accuracy below 100 %, so min_accuracy = 1.0 fails
    lines += [f"{int(c)}," + ",".join(f"{v:.5f}" for v in row) for c, row in zip(y, x)]
    (tmp_path / "series.csv").write_text("\n".join(lines))
    (tmp_path / "audit.toml").write_text(
        f'model = "tests.reports.test_cli:make_conv1d"\nweights = "{tmp_path / "w.pt"}"\nkind = "series"\n'
        f'data = "{tmp_path / "series.csv"}"\nout = "{tmp_path / "r"}"\nsamples = 2\n\n'
        "[checks]\nmin_accuracy = 1.0\n")
    code, out, err = run(capsys, "report", "--config", str(tmp_path / "audit.toml"))
    assert code == 1
    assert "[fail] accuracy" in err
    assert (tmp_path / "r" / "index.html").exists()


def test_image_folder_with_class_subfolders_is_read(cnn, tmp_path, capsys):
    torch.save(cnn.net.state_dict(), tmp_path / "w.pt")
    for i in range(8):
        folder = tmp_path / "imgs" / cnn.wrapper.class_names[int(cnn.y[i])]
        folder.mkdir(parents=True, exist_ok=True)
        arr = (cnn.x[i].permute(1, 2, 0).numpy() * 255).astype("uint8")
        Image.fromarray(arr).save(folder / f"{i}.png")
    code, _, err = run(capsys, "report", "--model", "tests.reports.test_cli:make_cnn", "--weights", str(tmp_path / "w.pt"),
                       "--kind", "image", "--data", str(tmp_path / "imgs"), "--samples", "1",
                       "--out", str(tmp_path / "r"), "--quiet")
    assert code == 0, err


def test_explain_writes_one_png_per_input(cnn, tmp_path, capsys):
    torch.save(cnn.net.state_dict(), tmp_path / "w.pt")
    torch.save(cnn.x[:3], tmp_path / "x.pt")
    code, out, err = run(capsys, "explain", "--model", "tests.reports.test_cli:make_cnn", "--weights",
                         str(tmp_path / "w.pt"), "--kind", "image", "--data", str(tmp_path / "x.pt"),
                         "--method", "occlusion", "--out", str(tmp_path / "png"))
    assert code == 0, err
    assert len(out.split()) == 3 and all((tmp_path / "png" / f"occlusion-sample{i}.png").exists() for i in range(3))


@pytest.mark.parametrize("args, message", [
    (["--weights", "{tmp}/missing.pt"], "does not exist"),
    (["--weights", "{tmp}/corrupt.pt"], "cannot load"),
    (["--weights", "{tmp}/w.pt", "--methods", "gradcam,nonsense"], "unknown method(s) nonsense"),
    (["--weights", "{tmp}/w.pt", "--kind", "series"], "expected a series batch of shape N×T×C"),
])
def test_input_errors_exit_2_with_one_line(cnn, tmp_path, capsys, args, message):
    torch.save(cnn.net.state_dict(), tmp_path / "w.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"\x00garbage")
    torch.save(cnn.x[:4], tmp_path / "x.pt")
    base = ["report", "--model", "tests.reports.test_cli:make_cnn", "--kind", "image", "--data", str(tmp_path / "x.pt"),
            "--out", str(tmp_path / "r"), "--quiet"]
    argv = base + [a.format(tmp=tmp_path) for a in args]  # a later --kind overrides the first
    code, out, err = run(capsys, *argv)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err


def test_missing_required_options_and_no_command_exit_2(capsys):
    code, _, err = run(capsys, "report", "--kind", "image")
    assert code == 2 and "missing --model" in err
    assert main([]) == 2
