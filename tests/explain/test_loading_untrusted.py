"""Files that would run code when loaded: crafted as an attacker would, per format, and refused.

Every payload creates a marker file when it runs; each test asserts the marker never appears and
that loading fails with ``ModelLoadError`` (or, through the CLI, one line and exit code 2).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

import explain
from explain.errors import ModelLoadError

ROOT = Path(__file__).resolve().parents[2]


class _Payload:
    """Un-pickling this runs ``open(marker, "w")``: the file appears when the code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _torch_payload(marker: Path) -> bytes:
    buf = io.BytesIO()
    torch.save(_Payload(marker), buf)
    return buf.getvalue()


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x)


# ---------------------------------------------------------------------- torch.export (.pt2)
@pytest.fixture(scope="module")
def clean_pt2(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("pt2") / "clean.pt2"
    program = torch.export.export(_Tiny().eval(), (torch.rand(2, 4),),
                                  dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    torch.export.save(program, str(path))
    return path


def _rewrite(src: Path, dst: Path, replace: dict) -> Path:
    """Copy the archive ``src`` to ``dst`` with records replaced or added (names without the root folder)."""
    with zipfile.ZipFile(src) as zin:
        infos = zin.infolist()
        root = infos[0].filename.split("/", 1)[0]
        records = {i.filename.split("/", 1)[1]: zin.read(i) for i in infos}
    records.update(replace)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for name, data in records.items():
            zout.writestr(f"{root}/{name}", data)
    return dst


def _records(path: Path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return {i.filename.split("/", 1)[1]: zf.read(i) for i in zf.infolist()}


def _pickled_weight(clean: Path, marker: Path) -> dict:
    config = json.loads(_records(clean)["data/weights/model_weights_config.json"])
    entry = config["config"]["fc.weight"]
    entry["use_pickle"] = True
    return {"data/weights/model_weights_config.json": json.dumps(config).encode(),
            f"data/weights/{entry['path_name']}": _torch_payload(marker)}


def _pickled_constant(clean: Path, marker: Path) -> dict:
    config = {"config": {"evil": {"path_name": "tensor_0", "is_param": False, "use_pickle": True,
                                  "tensor_meta": None}}}
    return {"data/constants/model_constants_config.json": json.dumps(config).encode(),
            "data/constants/tensor_0": _torch_payload(marker)}


def _opaque_constant(clean: Path, marker: Path) -> dict:
    config = {"config": {"evil": {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True,
                                  "tensor_meta": None}}}
    return {"data/constants/model_constants_config.json": json.dumps(config).encode(),
            "data/constants/opaque_obj_0": pickle.dumps(_Payload(marker))}


def _sample_inputs(clean: Path, marker: Path) -> dict:
    # Not marked as pickled anywhere: torch tries weights_only=True, then falls back to weights_only=False.
    return {"data/sample_inputs/model.pt": _torch_payload(marker)}


def _legacy_weights(clean: Path, marker: Path) -> dict:
    return {"data/weights/model.pt": _torch_payload(marker)}


CRAFTED = {"pickled weight (use_pickle)": _pickled_weight, "pickled tensor constant": _pickled_constant,
           "opaque constant (pickle.loads)": _opaque_constant, "sample inputs": _sample_inputs,
           "legacy weights record": _legacy_weights}


@pytest.mark.parametrize("where", list(CRAFTED))
def test_crafted_pt2_is_refused_and_its_code_never_runs(clean_pt2, tmp_path, where):
    marker = tmp_path / "ran"
    evil = _rewrite(clean_pt2, tmp_path / "evil.pt2", CRAFTED[where](clean_pt2, marker))
    with pytest.raises(ModelLoadError, match="refusing to load .*trust_code=True"):
        explain.load_model(evil)
    assert not marker.exists()


def test_the_payload_is_real_it_runs_when_the_file_is_trusted(clean_pt2, tmp_path):
    marker = tmp_path / "ran"
    evil = _rewrite(clean_pt2, tmp_path / "evil.pt2", _sample_inputs(clean_pt2, marker))
    try:
        explain.load_model(evil, trust_code=True)
    except ModelLoadError:
        pass  # the payload is not a valid sample input; what matters is that it ran
    assert marker.exists()


def test_pt2_with_aotinductor_native_code_is_refused(clean_pt2, tmp_path):
    evil = _rewrite(clean_pt2, tmp_path / "aoti.pt2", {"data/aotinductor/model/model.so": b"\x7fELF" + bytes(60)})
    with pytest.raises(ModelLoadError, match="native code"):
        explain.load_model(evil)


def test_pt2_graph_calling_a_file_operator_is_refused(clean_pt2, tmp_path):
    records = _records(clean_pt2)
    graph = records["models/model.json"].decode().replace("torch.ops.aten.linear.default",
                                                          "torch.ops.aten.from_file.default")
    evil = _rewrite(clean_pt2, tmp_path / "fileop.pt2", {"models/model.json": graph.encode()})
    with pytest.raises(ModelLoadError, match="aten.from_file"):
        explain.load_model(evil)


def test_clean_pt2_still_loads_without_trust(clean_pt2):
    module = explain.load_model(clean_pt2)
    x = torch.rand(5, 4)
    assert module(x).shape == (5, 3)


def test_cli_refuses_a_crafted_pt2_in_one_line(clean_pt2, tmp_path):
    marker = tmp_path / "ran"
    evil = _rewrite(clean_pt2, tmp_path / "evil.pt2", _pickled_weight(clean_pt2, marker))
    torch.save(torch.rand(4, 4, 8), tmp_path / "data.pt")
    done = _cli(["report", "--model", str(evil), "--data", str(tmp_path / "data.pt"), "--kind", "series",
                 "--out", str(tmp_path / "rep")], cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "trust-model" in done.stderr
    assert not marker.exists() and not (tmp_path / "rep").exists()


def _cli(argv, cwd, stdin=""):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "reports.cli", *argv], cwd=cwd, env=env, input=stdin,
                          capture_output=True, text=True, timeout=300)


# ---------------------------------------------------------------------- state dicts, safetensors
@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin", ".ckpt"])
def test_pickled_payload_as_a_state_dict_is_refused(tmp_path, suffix):
    marker = tmp_path / "ran"
    path = tmp_path / f"weights{suffix}"
    path.write_bytes(_torch_payload(marker))
    with pytest.raises(ModelLoadError, match="trust_code=True"):
        explain.load_model(path, factory=_Tiny)
    path.write_bytes(pickle.dumps(_Payload(marker)))  # a bare pickle (torch's legacy format)
    with pytest.raises(ModelLoadError):
        explain.load_model(path, factory=_Tiny)
    assert not marker.exists()


def test_safetensors_weights_load_with_a_factory(tmp_path):
    from safetensors.torch import save_file
    torch.manual_seed(1)
    net = _Tiny()
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    loaded = explain.load_model(tmp_path / "w.safetensors", factory=_Tiny)
    assert torch.equal(loaded.fc.weight, net.fc.weight)


def test_a_pickle_named_safetensors_is_refused(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "w.safetensors").write_bytes(_torch_payload(marker))
    with pytest.raises(ModelLoadError):
        explain.load_model(tmp_path / "w.safetensors", factory=_Tiny)
    assert not marker.exists()


# ---------------------------------------------------------------------- TorchScript
def _script_writing(marker: Path) -> nn.Module:
    target = str(marker)

    class Writes(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.target = target

        def forward(self, x):
            return self.fc(x)

        @torch.jit.export
        def __getstate__(self):
            return (self.fc.weight, self.training, self.target)

        @torch.jit.export
        def __setstate__(self, state: tuple[torch.Tensor, bool, str]):
            self.training = state[1]
            self.target = state[2]
            torch.save(state[0], self.target)  # runs inside torch.jit.load

    return torch.jit.script(Writes())


def test_torchscript_whose_load_writes_a_file_is_refused(tmp_path):
    marker = tmp_path / "ran"
    _script_writing(marker).save(str(tmp_path / "evil.pt"))
    with pytest.raises(ModelLoadError, match="torch.save"):
        explain.load_model(tmp_path / "evil.pt")
    assert not marker.exists()


def test_torchscript_payload_is_real_it_writes_when_trusted(tmp_path):
    marker = tmp_path / "ran"
    _script_writing(marker).save(str(tmp_path / "evil.pt"))
    try:
        explain.load_model(tmp_path / "evil.pt", trust_code=True)
    except ModelLoadError:
        pass
    assert marker.exists()


def test_torchscript_with_a_python_pickle_in_its_data_is_refused(tmp_path):
    marker = tmp_path / "ran"
    torch.jit.script(_Tiny()).save(str(tmp_path / "ok.pt"))
    _rewrite(tmp_path / "ok.pt", tmp_path / "evil.pt", {"data.pkl": pickle.dumps(_Payload(marker), protocol=2)})
    with pytest.raises(ModelLoadError):
        explain.load_model(tmp_path / "evil.pt")
    assert not marker.exists()
    assert explain.load_model(tmp_path / "ok.pt")(torch.rand(2, 4)).shape == (2, 3)


# ---------------------------------------------------------------------- ONNX + external data
def _onnx_with_external(tmp_path: Path, location: str) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    weight = TensorProto()
    weight.name = "W"
    weight.data_type = TensorProto.FLOAT
    weight.dims.extend([4, 3])
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "48")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "model" / "m.onnx"
    path.parent.mkdir(exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("backend", ["onnxruntime", "auto"])
def test_onnx_external_data_outside_the_folder_is_refused(tmp_path, backend):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(range(48)))
    for location in ("../secret.bin", str(secret)):
        path = _onnx_with_external(tmp_path, location)
        with pytest.raises(ModelLoadError, match="outside the model's folder"):
            explain.load_model(path, onnx_backend=backend)


def test_onnx_external_data_through_a_symlink_out_of_the_folder_is_refused(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(range(48)))
    path = _onnx_with_external(tmp_path, "w.bin")
    (path.parent / "w.bin").symlink_to(secret)
    with pytest.raises(ModelLoadError, match="outside the model's folder"):
        explain.load_model(path, onnx_backend="onnxruntime")


def test_onnx_external_data_inside_the_folder_loads(tmp_path):
    pytest.importorskip("onnxruntime")
    path = _onnx_with_external(tmp_path, "w.bin")
    weights = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    (path.parent / "w.bin").write_bytes(weights.numpy().tobytes())
    module = explain.load_model(path, onnx_backend="onnxruntime")
    x = torch.rand(2, 4)
    torch.testing.assert_close(module(x), x @ weights)


# ---------------------------------------------------------------------- Hugging Face directories
MODELING = '''
import pathlib
pathlib.Path({marker!r}).touch()
from transformers import PretrainedConfig, PreTrainedModel


class EvilConfig(PretrainedConfig):
    model_type = "evilnet"


class EvilModel(PreTrainedModel):
    config_class = EvilConfig
'''


def _remote_code_dir(tmp_path: Path, marker: Path) -> Path:
    folder = tmp_path / "evil_hf"
    folder.mkdir()
    config = {"model_type": "evilnet", "architectures": ["EvilModel"], "num_labels": 2,
              "auto_map": {"AutoConfig": "modeling_evil.EvilConfig",
                           "AutoModelForSequenceClassification": "modeling_evil.EvilModel"}}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_evil.py").write_text(MODELING.format(marker=str(marker)))
    return folder


def test_hf_directory_with_its_own_code_is_refused(tmp_path):
    pytest.importorskip("transformers")
    marker = tmp_path / "ran"
    folder = _remote_code_dir(tmp_path, marker)
    with pytest.raises(ModelLoadError, match="auto_map.*trust_code=True"):
        explain.load_hf(folder)
    with pytest.raises(ModelLoadError, match="auto_map"):
        explain.load_model(f"hf:{folder}")
    assert not marker.exists()


def test_cli_never_asks_to_run_an_hf_directorys_code_even_when_stdin_says_yes(tmp_path):
    pytest.importorskip("transformers")
    marker = tmp_path / "ran"
    folder = _remote_code_dir(tmp_path, marker)
    (tmp_path / "texts.txt").write_text("a fine film\ndull\n")
    done = _cli(["report", "--model", f"hf:{folder}", "--data", str(tmp_path / "texts.txt"),
                 "--out", str(tmp_path / "rep")], cwd=tmp_path, stdin="y\n" * 20)
    assert not marker.exists()
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--trust-model" in lines[0], done.stderr
    assert "[y/N]" not in done.stdout + done.stderr


def test_hf_directory_with_a_pickled_weights_file_is_loaded_weights_only(tmp_path):
    transformers = pytest.importorskip("transformers")
    marker = tmp_path / "ran"
    folder = tmp_path / "bert"
    config = transformers.BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=8, max_position_embeddings=16, num_labels=2,
                                     architectures=["BertForSequenceClassification"])
    config.save_pretrained(folder)
    (folder / "pytorch_model.bin").write_bytes(_torch_payload(marker))
    with pytest.raises(ModelLoadError):
        explain.load_hf(folder)
    assert not marker.exists()
