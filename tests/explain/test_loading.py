"""Loading models from files: state dicts with prefixes, TorchScript, torch.export, trust rules, bad files."""

from __future__ import annotations

import pytest
import torch

import explain
from explain.errors import ModelLoadError
from explain.zoo import SmallCNN


def make_cnn():
    return SmallCNN(num_classes=4)


def _reference():
    torch.manual_seed(0)
    return make_cnn().eval()


@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.", "module._orig_mod."])
def test_state_dict_with_parallel_or_compile_prefixes_loads_through_a_factory(tmp_path, prefix):
    net = _reference()
    path = tmp_path / "w.pt"
    torch.save({prefix + k: v for k, v in net.state_dict().items()}, path)
    loaded = explain.load_model(path, factory="tests.explain.test_loading:make_cnn").eval()
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(loaded(x), net(x))


def test_checkpoint_dict_with_a_state_dict_key_loads(tmp_path):
    net = _reference()
    torch.save({"epoch": 3, "state_dict": net.state_dict()}, tmp_path / "ckpt.pt")
    loaded = explain.load_model(tmp_path / "ckpt.pt", factory=make_cnn)
    assert torch.equal(loaded.head.weight, net.head.weight)


def test_torchscript_and_export_files_load_without_a_factory(tmp_path):
    net = _reference()
    x = torch.rand(2, 3, 16, 16)
    torch.jit.save(torch.jit.trace(net, x), tmp_path / "m.ts")
    torch.testing.assert_close(explain.load_model(tmp_path / "m.ts")(x), net(x))
    torch.export.save(torch.export.export(net, (x,)), tmp_path / "m.pt2")
    torch.testing.assert_close(explain.load_model(tmp_path / "m.pt2")(x), net(x))


def test_a_pickled_module_needs_trust_code(tmp_path):
    net = _reference()
    torch.save(net, tmp_path / "full.pt")
    with pytest.raises(ModelLoadError, match="trust_code=True"):
        explain.load_model(tmp_path / "full.pt")
    loaded = explain.load_model(tmp_path / "full.pt", trust_code=True)
    assert isinstance(loaded, SmallCNN)


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    (b"", "is empty"),
    (b"not a checkpoint at all", "cannot load"),
])
def test_missing_empty_or_corrupt_files_raise_model_load_error(tmp_path, content, message):
    path = tmp_path / "w.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message):
        explain.load_model(path, factory=make_cnn)


def test_weights_that_do_not_fit_the_factory_say_so(tmp_path):
    torch.save(SmallCNN(num_classes=2).state_dict(), tmp_path / "w.pt")
    with pytest.raises(ModelLoadError, match="do not fit"):
        explain.load_model(tmp_path / "w.pt", factory=make_cnn)


def test_state_dict_without_factory_and_bad_factory_strings(tmp_path):
    torch.save(_reference().state_dict(), tmp_path / "w.pt")
    with pytest.raises(ModelLoadError, match="pass factory"):
        explain.load_model(tmp_path / "w.pt")
    with pytest.raises(ModelLoadError, match="package.module:function"):
        explain.load_model(tmp_path / "w.pt", factory="no_colon_here")
    with pytest.raises(ModelLoadError, match="cannot import"):
        explain.load_model(tmp_path / "w.pt", factory="no_such_package_xyz:f")
    with pytest.raises(ModelLoadError, match="no attribute"):
        explain.load_model(tmp_path / "w.pt", factory="tests.explain.test_loading:nothing")


@pytest.mark.gpu
def test_gpu_saved_checkpoint_loads_on_cpu(tmp_path):
    net = _reference().cuda()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    loaded = explain.load_model(tmp_path / "w.pt", factory=make_cnn)
    assert all(p.device.type == "cpu" for p in loaded.parameters())
