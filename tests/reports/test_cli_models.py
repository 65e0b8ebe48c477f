"""The CLI on real projects: factories from the working directory, inferred input kinds, a first batch
that must run, multi-channel series CSV, Hugging Face directories with texts, ONNX files, token options."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from explain.errors import InputShapeError
from explain.zoo import Conv1dNet
from reports._inputs import infer_kind, load_series_csv
from reports.cli import _settings, _parser, main

MODELS_PY = textwrap.dedent('''
    import torch
    from explain.zoo import Conv1dNet

    def build(channels=1):
        torch.manual_seed(0)
        return Conv1dNet(channels, 3, width=4)

    def build6():
        return build(6)
''')


@pytest.fixture(autouse=True)
def _restore_import_state(monkeypatch):
    """The CLI puts the working directory on sys.path; undo that and forget mymodels after each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    sys.modules.pop("mymodels", None)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _series_csv(path, n=6, steps=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, steps, generator=g)
    lines = ["label," + ",".join(f"t{i}" for i in range(steps))]
    lines += [f"{i % 3}," + ",".join(f"{v:.4f}" for v in row.tolist()) for i, row in enumerate(x)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_factory_from_the_working_directory_and_kind_from_a_csv(tmp_path, capsys, monkeypatch):
    (tmp_path / "mymodels.py").write_text(MODELS_PY)
    _series_csv(tmp_path / "s.csv")
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "explain", "--model", "mymodels:build", "--data", "s.csv", "--method", "occlusion",
                         "--samples", "2", "--out", "png")
    assert code == 0, err
    assert len(out.split()) == 2 and (tmp_path / "png" / "occlusion-sample1.png").exists()


def test_a_model_that_cannot_run_on_the_data_exits_2_before_any_section(tmp_path, capsys, monkeypatch):
    (tmp_path / "mymodels.py").write_text(MODELS_PY)
    _series_csv(tmp_path / "s.csv")
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "report", "--model", "mymodels:build6", "--data", "s.csv", "--out", "r", "--quiet")
    lines = [line for line in err.splitlines() if line.strip() and "UNTRAINED MODEL" not in line]  # no --weights
    assert code == 2 and len(lines) == 1, err
    assert "(2, 24, 1)" in lines[0] and "takes 6 input channels" in lines[0] and "conv1" in lines[0]
    assert not (tmp_path / "r").exists()


def test_multichannel_long_csv_reads_every_channel_in_step_order(tmp_path):
    rows = ["sample_id,t,acc_x,acc_y,label"]
    expected = torch.zeros(2, 3, 2)
    for s, label in (("a", 1), ("b", 0)):
        for t in (2, 0, 1):  # steps out of order on purpose
            vx, vy = 10 * t + (s == "b"), -t - 0.5
            expected[0 if s == "a" else 1, t] = torch.tensor([vx, vy])
            rows.append(f"{s},{t},{vx},{vy},{label}")
    (tmp_path / "long.csv").write_text("\n".join(rows) + "\n")
    x, y = load_series_csv(tmp_path / "long.csv")
    assert x.shape == (2, 3, 2)
    torch.testing.assert_close(x, expected)
    assert y.tolist() == [1, 0]
    assert infer_kind(str(tmp_path / "long.csv")) == "series"


@pytest.mark.parametrize("body, message", [
    (["a,0,1.0,0", "a,1,2.0,1"], "one label per sample"),
    (["a,0,1.0,0", "a,1,2.0,0", "b,0,1.0,1"], "different lengths"),
    (["a,0,x,0"], "line 2: not a number"),
    (["a,0,1.0,0", "a,0,2.0,0"], "repeats a value of t"),
    (["a,0,1.0"], "3 values for 4 columns"),
])
def test_malformed_long_csv_names_the_problem(tmp_path, body, message):
    (tmp_path / "bad.csv").write_text("\n".join(["sample_id,t,ch0,label"] + body) + "\n")
    with pytest.raises(InputShapeError, match=message):
        load_series_csv(tmp_path / "bad.csv")


def test_multichannel_csv_runs_through_the_cli(tmp_path, capsys, monkeypatch):
    (tmp_path / "mymodels.py").write_text(MODELS_PY)
    rows = ["sample_id,t," + ",".join(f"ch{c}" for c in range(6)) + ",label"]
    g = torch.Generator().manual_seed(0)
    for s in range(3):
        rows += [f"s{s},{t}," + ",".join(f"{v:.3f}" for v in torch.randn(6, generator=g).tolist()) + f",{s}"
                 for t in range(20)]
    (tmp_path / "six.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "explain", "--model", "mymodels:build6", "--data", "six.csv", "--method",
                         "integrated_gradients", "--samples", "1", "--out", "png")
    assert code == 0, err


def test_kind_cannot_be_guessed_from_a_float_matrix(tmp_path, capsys):
    torch.save(torch.rand(4, 10), tmp_path / "x.pt")
    code, _, err = run(capsys, "explain", "--model", "tests.reports.test_cli:make_conv1d", "--data",
                       str(tmp_path / "x.pt"))
    assert code == 2 and "cannot tell the input kind" in err and "--kind" in err


def test_texts_without_a_tokenizer_exit_2(tmp_path, capsys):
    (tmp_path / "t.txt").write_text("one text\nanother\n")
    code, _, err = run(capsys, "explain", "--model", "tests.reports.test_cli:make_lstm", "--data",
                       str(tmp_path / "t.txt"))
    assert code == 2 and "tokenizer" in err


def test_token_options_come_from_flags_and_the_config_file(tmp_path):
    from reports._setup import wrapper_and_data
    torch.save(torch.randint(1, 50, (4, 9)), tmp_path / "ids.pt")
    (tmp_path / "a.toml").write_text(f'model = "tests.reports.test_cli:make_lstm"\ndata = "{tmp_path / "ids.pt"}"\n'
                                     'pad_id = 3\nmask = "attention_mask"\n')
    args = _parser().parse_args(["explain", "--config", str(tmp_path / "a.toml"), "--device", "cpu"])
    wrapper, x, _, _ = wrapper_and_data(_settings(args))
    assert wrapper.input_kind == "tokens" and wrapper.pad_id == 3 and wrapper.mask_arg == "attention_mask"
    args = _parser().parse_args(["explain", "--config", str(tmp_path / "a.toml"), "--pad-id", "7", "--mask", "none",
                                 "--device", "cpu"])
    wrapper, *_ = wrapper_and_data(_settings(args))
    assert wrapper.pad_id == 7 and wrapper.mask_arg is None


def test_onnx_file_on_the_cli_runs_perturbation_methods_and_refuses_gradients(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    net = Conv1dNet(1, 3, width=4).eval()
    torch.onnx.export(net, (torch.randn(2, 24, 1),), str(tmp_path / "m.onnx"), input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}}, dynamo=False)
    _series_csv(tmp_path / "s.csv")
    base = ["explain", "--model", str(tmp_path / "m.onnx"), "--data", str(tmp_path / "s.csv"), "--samples", "1",
            "--out", str(tmp_path / "png")]
    code, _, err = run(capsys, *base, "--method", "occlusion")
    assert code == 0, err
    code, _, err = run(capsys, *base, "--method", "saliency")
    assert code == 2 and "black box" in err and len(err.strip().splitlines()) == 1


def test_hf_directory_with_a_text_csv(tmp_path, capsys):
    pytest.importorskip("transformers")
    from tests.explain.test_hf_models import TEXTS, _build
    _build("bert", tmp_path / "bert")
    rows = ["text,label"] + [f'"{t}",{"positive" if i % 2 else "negative"}' for i, t in enumerate(TEXTS)]
    (tmp_path / "texts.csv").write_text("\n".join(rows) + "\n")
    args = _parser().parse_args(["report", "--model", f"hf:{tmp_path / 'bert'}", "--data", str(tmp_path / "texts.csv"),
                                 "--device", "cpu"])
    from reports._setup import wrapper_and_data
    wrapper, x, y, vocab = wrapper_and_data(_settings(args))
    assert wrapper.input_kind == "tokens" and wrapper.class_names == ["negative", "positive"]
    assert y.tolist() == [0, 1, 0, 1, 0, 1] and x.shape[0] == 6 and vocab[int(x[0, 0])] == "[CLS]"
    code, out, err = run(capsys, "explain", "--model", f"hf:{tmp_path / 'bert'}", "--data", str(tmp_path / "texts.csv"),
                         "--method", "occlusion", "--samples", "2", "--out", str(tmp_path / "png"), "--device", "cpu")
    assert code == 0, err
    assert len(out.split()) == 2


def test_token_batches_of_different_lengths_are_padded_to_one():
    import explain
    from reports._setup import same_token_length
    w = explain.ModelWrapper(torch.nn.Sequential(torch.nn.Embedding(9, 2), torch.nn.Flatten(0)), "tokens",
                             device="cpu", pad_id=1)
    a, b = same_token_length(w, torch.tensor([[5, 6, 7]]), torch.tensor([[8], [4]]))
    assert a.tolist() == [[5, 6, 7]] and b.tolist() == [[8, 1, 1], [4, 1, 1]]
