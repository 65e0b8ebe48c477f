"""``.pt2`` (torch.export), TorchScript and ONNX files against the module they were made from: the same
logits and attributions to 1e-4 where gradients exist, and clear errors where a format cannot do a method."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import explain
import robustness
from explain.errors import UnsupportedModelError
from explain.registry import EXPLAINERS
from explain.zoo import Conv1dNet, SmallCNN
from tests.contract.test_state_restored import assert_unchanged, snapshot

FAST = {"occlusion": {"window": 8, "stride": 8}, "lime": {"n_samples": 24, "features": "grid"},
        "shap": {"n_samples": 24, "features": "grid"}, "integrated_gradients": {"steps": 8},
        "smoothgrad": {"n_samples": 3}}
HOOKED = {"gradcam"}  # methods that read a layer


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return SmallCNN(num_classes=3, width=8).eval()


def _images(n: int = 3) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def _export(net: nn.Module, x: torch.Tensor, path) -> str:
    program = torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
    torch.export.save(program, str(path))
    return str(path)


def _onnx(net: nn.Module, x: torch.Tensor, path, names=("pixels",), **options) -> str:
    onnx = pytest.importorskip("onnx")  # noqa: F841 - the exporter needs it
    axes = {n: {0: "batch"} for n in names} | {"logits": {0: "batch"}}
    torch.onnx.export(net, (x,), str(path), input_names=list(names), output_names=["logits"], dynamic_axes=axes,
                      dynamo=False, **options)
    return str(path)


@pytest.fixture(scope="module")
def exported_cnn(tmp_path_factory):
    """The CNN exported once (torch.export takes seconds)."""
    return _export(_cnn(), _images(), tmp_path_factory.mktemp("pt2") / "m.pt2")


def _wrap(net, kind="image"):
    return explain.ModelWrapper(net, kind, class_names=["a", "b", "c"], device="cpu")


def _same_attributions(ref, other, x, methods):
    for name in methods:
        a = EXPLAINERS[name](ref, x, None, **FAST.get(name, {}))
        b = EXPLAINERS[name](other, x, None, **FAST.get(name, {}))
        torch.testing.assert_close(b.values, a.values, atol=1e-4, rtol=1e-4, msg=name)


def test_pt2_program_runs_every_method_with_the_original_numbers(exported_cnn):
    net, x = _cnn(), _images()
    loaded = explain.load_model(exported_cnn)
    loaded.train()
    before = snapshot(loaded)
    ref, m = _wrap(net), _wrap(loaded)
    torch.testing.assert_close(m.logits(x), ref.logits(x), atol=1e-4, rtol=1e-4)
    assert m.target_layer()[0] == ref.target_layer()[0] == "conv"  # chosen by the exported class names
    assert m.feature_layer()[0] == "head"
    _same_attributions(ref, m, x, sorted(EXPLAINERS))
    for name in ("fgsm", "pgd"):
        kw = {"steps": 3} if name == "pgd" else {}
        r1 = robustness.attack(ref, x, torch.tensor([0, 1, 2]), method=name, eps=4 / 255, **kw)
        r2 = robustness.attack(m, x, torch.tensor([0, 1, 2]), method=name, eps=4 / 255, **kw)
        torch.testing.assert_close(r2.adversarial, r1.adversarial, atol=1e-4, rtol=0)
    bank = _images(24)
    for name in sorted(robustness.registry.DETECTORS):
        s1 = robustness.ood_detector(name).fit(ref, (bank, torch.arange(24) % 3)).score(x)
        s2 = robustness.ood_detector(name).fit(m, (bank, torch.arange(24) % 3)).score(x)
        torch.testing.assert_close(s2, s1, atol=1e-3, rtol=1e-3, msg=name)
    assert_unchanged(loaded, before)


def test_flat_exported_module_refuses_hooks_with_a_toolkit_error(exported_cnn):
    net, x = _cnn(), _images()
    flat = torch.export.load(exported_cnn).module()
    m = _wrap(flat)
    torch.testing.assert_close(m.logits(x), _wrap(net).logits(x), atol=1e-4, rtol=1e-4)  # no eval() error
    assert explain.saliency(m, x).values.shape == (3, 16, 16)
    with pytest.raises(UnsupportedModelError, match="unflatten"):
        explain.gradcam(m, x)


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_matches_the_module_and_hook_methods_say_why_they_cannot_run(tmp_path, how):
    net, x = _cnn(), _images()
    scripted = torch.jit.script(net) if how == "script" else torch.jit.trace(net, x)
    path = tmp_path / "m.ts"
    scripted.save(str(path))
    loaded = explain.load_model(path)
    ref, m = _wrap(net), _wrap(loaded)
    torch.testing.assert_close(m.logits(x), ref.logits(x), atol=1e-4, rtol=1e-4)
    _same_attributions(ref, m, x, sorted(set(EXPLAINERS) - HOOKED))
    for name in sorted(HOOKED):
        with pytest.raises(UnsupportedModelError, match="TorchScript module cannot be hooked"):
            EXPLAINERS[name](m, x, None)
    with pytest.raises(UnsupportedModelError, match="TorchScript") as info:
        robustness.ood_detector("mahalanobis").fit(m, (_images(12), torch.arange(12) % 3))
    assert "conv" not in str(info.value).split("TorchScript", 1)[0], "no hookable-looking layer names suggested"
    r = robustness.attack(m, x, torch.tensor([0, 1, 2]), method="fgsm", eps=4 / 255)
    r0 = robustness.attack(ref, x, torch.tensor([0, 1, 2]), method="fgsm", eps=4 / 255)
    torch.testing.assert_close(r.adversarial, r0.adversarial, atol=1e-4, rtol=0)


def test_onnx_runs_as_a_black_box_with_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    net, x = _cnn(), _images()
    loaded = explain.load_model(_onnx(net, x, tmp_path / "m.onnx"), onnx_backend="onnxruntime")
    ref, m = _wrap(net), _wrap(loaded)
    torch.testing.assert_close(m.logits(_images(7)), ref.logits(_images(7)), atol=1e-4, rtol=1e-4)
    _same_attributions(ref, m, x, ["occlusion", "lime", "shap"])
    for name in ("saliency", "integrated_gradients", "gradcam"):
        with pytest.raises(UnsupportedModelError, match="black box"):
            EXPLAINERS[name](m, x, None, **FAST.get(name, {}))
    with pytest.raises(UnsupportedModelError, match="black box"):
        robustness.attack(m, x, torch.tensor([0, 1, 2]), method="fgsm", eps=4 / 255)
    bank = _images(24)
    for name in ("msp", "maxlogit", "energy"):
        s1 = robustness.ood_detector(name).fit(ref, (bank, torch.arange(24) % 3)).score(x)
        s2 = robustness.ood_detector(name).fit(m, (bank, torch.arange(24) % 3)).score(x)
        torch.testing.assert_close(s2, s1, atol=1e-4, rtol=1e-4)
    k = robustness.corruption_accuracy(m, (x, torch.tensor([0, 1, 2])), corruptions=["gaussian_noise"], severities=[1])
    k0 = robustness.corruption_accuracy(ref, (x, torch.tensor([0, 1, 2])), corruptions=["gaussian_noise"], severities=[1])
    assert k.to_dict() == k0.to_dict() or k.to_dict().keys() == k0.to_dict().keys()


class _MaskedTokens(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embedding = nn.Embedding(20, 8, padding_idx=0)
        self.head = nn.Linear(8, 3)

    def forward(self, input_ids, attention_mask):
        w = attention_mask.unsqueeze(-1).float()
        return self.head(torch.tanh(self.embedding(input_ids) * 3) .mul(w).sum(1) / w.sum(1).clamp_min(1))


def test_onnx_token_model_gets_its_attention_mask_by_input_name(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    net = _MaskedTokens().eval()
    ids = torch.tensor([[3, 4, 5, 0, 0], [6, 7, 8, 9, 10]])
    path = tmp_path / "tok.onnx"
    torch.onnx.export(net, (ids, (ids != 0).long()), str(path), input_names=["input_ids", "attention_mask"],
                      output_names=["logits"], dynamo=False,
                      dynamic_axes={"input_ids": {0: "b", 1: "t"}, "attention_mask": {0: "b", 1: "t"}, "logits": {0: "b"}})
    loaded = explain.load_model(path, onnx_backend="onnxruntime")
    m = explain.ModelWrapper(loaded, "tokens", device="cpu", mask_arg="attention_mask")
    ref = explain.ModelWrapper(net, "tokens", device="cpu", mask_arg="attention_mask")
    torch.testing.assert_close(m.logits(ids), ref.logits(ids), atol=1e-4, rtol=1e-4)
    occ = explain.occlusion(m, ids)
    torch.testing.assert_close(occ.values, explain.occlusion(ref, ids).values, atol=1e-4, rtol=1e-4)
    assert torch.equal(occ.values[ids == 0], torch.zeros(2))


def test_onnx_with_onnx2torch_runs_gradient_methods(tmp_path):
    try:
        import onnx2torch  # noqa: F401
    except Exception:  # noqa: BLE001 - without torchvision it fails with other errors than ImportError
        pytest.skip("onnx2torch does not import here (it needs torchvision)")
    net, x = _cnn(), _images()
    # onnx2torch reads opsets up to 17, and initialisers kept as graph inputs.
    path = _onnx(net, x, tmp_path / "m.onnx", opset_version=17, keep_initializers_as_inputs=True)
    loaded = explain.load_model(path, onnx_backend="onnx2torch")
    loaded.train()
    before = snapshot(loaded)
    ref, m = _wrap(net), _wrap(loaded)
    torch.testing.assert_close(m.logits(x), ref.logits(x), atol=1e-4, rtol=1e-4)
    _same_attributions(ref, m, x, ["saliency", "integrated_gradients", "occlusion"])
    assert_unchanged(loaded, before)


def test_series_model_survives_export_and_script(tmp_path):
    torch.manual_seed(0)
    net = Conv1dNet(in_channels=2, num_classes=3, width=4).eval()
    x = torch.randn(3, 40, 2, generator=torch.Generator().manual_seed(2))
    exported = explain.load_model(_export(net, x, tmp_path / "s.pt2"))
    ref = explain.ModelWrapper(net, "series", device="cpu")
    for other in (exported, torch.jit.script(net)):
        m = explain.ModelWrapper(other, "series", device="cpu")
        torch.testing.assert_close(m.logits(x), ref.logits(x), atol=1e-4, rtol=1e-4)
        _same_attributions(ref, m, x, ["integrated_gradients", "occlusion"])


def test_onnx_errors_name_the_file_and_the_alternatives(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(explain.errors.ModelLoadError, match="bad.onnx"):
        explain.load_model(bad, onnx_backend="onnxruntime")
    with pytest.raises(explain.errors.ModelLoadError, match="backend"):
        explain.load_model(bad, onnx_backend="tensorrt")


def test_torchscript_token_model_runs_perturbations_and_explains_why_gradients_cannot(tmp_path):
    from explain.zoo import BiLSTMClassifier
    torch.manual_seed(0)
    net = BiLSTMClassifier(30, 2, embed_dim=8, hidden=8).eval()
    ids = torch.tensor([[3, 4, 5, 0], [6, 7, 8, 9]])
    scripted = torch.jit.trace(net, (ids,))
    before = snapshot(scripted)
    ref = explain.ModelWrapper(net, "tokens", device="cpu")
    m = explain.ModelWrapper(scripted, "tokens", device="cpu")
    torch.testing.assert_close(m.logits(ids), ref.logits(ids), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(explain.occlusion(m, ids).values, explain.occlusion(ref, ids).values, atol=1e-5, rtol=0)
    with pytest.raises(UnsupportedModelError, match="embedding layer, but a TorchScript module cannot be hooked"):
        explain.integrated_gradients(m, ids, steps=4)
    assert_unchanged(scripted, before)


def test_hugging_face_model_exported_to_onnx_matches_the_original(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    pytest.importorskip("transformers")
    from tests.explain.test_hf_models import TEXTS, _build

    hf = explain.load_hf(_build("bert", tmp_path / "bert"), device="cpu")
    ids = explain.encode_texts(hf.tokenizer, TEXTS)

    class Logits(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

    axes = {"input_ids": {0: "b", 1: "t"}, "attention_mask": {0: "b", 1: "t"}, "logits": {0: "b"}}
    torch.onnx.export(Logits(hf.model).eval(), (ids, (ids != hf.pad_id).long()), str(tmp_path / "b.onnx"),
                      input_names=["input_ids", "attention_mask"], output_names=["logits"], dynamic_axes=axes,
                      dynamo=False)
    m = explain.ModelWrapper(explain.load_model(tmp_path / "b.onnx", onnx_backend="onnxruntime"), "tokens",
                             device="cpu", pad_id=hf.pad_id, mask_arg="attention_mask", special_ids=hf.special_ids)
    torch.testing.assert_close(m.logits(ids), hf.logits(ids), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(explain.occlusion(m, ids).values, explain.occlusion(hf, ids).values, atol=1e-4, rtol=0)
    with pytest.raises(UnsupportedModelError, match="black box"):
        explain.integrated_gradients(m, ids, steps=4)
