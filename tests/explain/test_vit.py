"""Grad-CAM on Vision Transformers and the automatic CAM layer: hand computations on the patch
tokens, Hugging Face ViT/DeiT, timm (when installed), a planted-signal ViT, degenerate maps."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import explain
from explain.errors import LayerNotFoundError
from explain.zoo import train_classifier
from tests._vit import TinyViT, planted_patches


def _transformers():
    return pytest.importorskip("transformers")


def _hand_gradcam(net, layer: nn.Module, x, target: int, extra: int, grid):
    """The published formula on token activations: w_k = mean over patch tokens of ∂y/∂A_k, Σ_k w_k A_k."""
    store = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: store.setdefault("a", out))
    try:
        out = net(x)
    finally:
        handle.remove()
    logits = out if isinstance(out, torch.Tensor) else out.logits
    acts = store["a"]
    grads, = torch.autograd.grad(logits[:, target].sum(), acts)
    patches, gpatches = acts[:, extra:].detach(), grads[:, extra:]
    weights = gpatches.mean(dim=1)  # N×D
    cam = torch.einsum("ntd,nd->nt", patches, weights).reshape(len(x), *grid)
    return F.interpolate(cam[:, None], size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]


def _hf(kind: str, image_size=32):
    transformers = _transformers()
    cfg_cls = transformers.ViTConfig if kind == "vit" else transformers.DeiTConfig
    model_cls = transformers.ViTForImageClassification if kind == "vit" else transformers.DeiTForImageClassification
    torch.manual_seed(0)
    cfg = cfg_cls(image_size=image_size, patch_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=32, num_labels=3)
    return model_cls(cfg).eval()


def test_vit_gradcam_equals_the_formula_on_patch_tokens_and_skips_the_class_token():
    torch.manual_seed(0)
    net = TinyViT(num_classes=3).eval()
    x = torch.rand(3, 3, 32, 32)
    a = explain.gradcam(explain.ModelWrapper(net, "image", device="cpu"), x, target=1)
    assert a.layer == "blocks.1.norm1"
    expected = _hand_gradcam(net, net.blocks[1].norm1, x, 1, extra=1, grid=(4, 4))
    torch.testing.assert_close(a.values, expected, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(a.values.clamp_min(0), expected.clamp_min(0), atol=1e-6, rtol=1e-4)  # ReLU form
    assert a.quality["degenerate"].tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("kind,extra", [("vit", 1), ("deit", 2)])
def test_hugging_face_vit_and_deit_gradcam_drop_their_prefix_tokens(kind, extra):
    net = _hf(kind)
    x = torch.rand(2, 3, 32, 32)
    a = explain.gradcam(explain.ModelWrapper(net, "image", device="cpu"), x, target=2)
    assert a.layer.endswith("layers.1.layernorm_before") or a.layer.endswith("layer.1.layernorm_before")
    layer = dict(net.named_modules())[a.layer]
    expected = _hand_gradcam(net, layer, x, 2, extra=extra, grid=(4, 4))
    torch.testing.assert_close(a.values, expected, atol=1e-6, rtol=1e-4)


def test_non_square_patch_grids_come_from_the_input_and_patch_size():
    net = _hf("deit", image_size=(32, 48))
    x = torch.rand(2, 3, 32, 48)
    a = explain.gradcam(explain.ModelWrapper(net, "image", device="cpu"), x, target=0)
    layer = dict(net.named_modules())[a.layer]
    expected = _hand_gradcam(net, layer, x, 0, extra=2, grid=(4, 6))
    assert a.values.shape == (2, 32, 48)
    torch.testing.assert_close(a.values, expected, atol=1e-6, rtol=1e-4)


def test_reshape_escape_hatch_on_gradcam_and_on_the_wrapper():
    torch.manual_seed(1)
    net = TinyViT().eval()
    x = torch.rand(2, 3, 32, 32)
    auto = explain.gradcam(explain.ModelWrapper(net, "image", device="cpu"), x, target=0)

    def by_hand(t):  # drop the class token, patch tokens row-major onto 4×4
        return t[:, 1:].transpose(1, 2).reshape(t.shape[0], t.shape[2], 4, 4)

    via_call = explain.gradcam(explain.ModelWrapper(net, "image", device="cpu"), x, target=0, reshape=by_hand)
    via_wrapper = explain.gradcam(explain.ModelWrapper(net, "image", device="cpu", cam_reshape=by_hand), x, target=0)
    torch.testing.assert_close(via_call.values, auto.values)
    torch.testing.assert_close(via_wrapper.values, auto.values)
    flipped = explain.gradcam(explain.ModelWrapper(net, "image", device="cpu"), x, target=0,
                              reshape=lambda t: by_hand(t).flip(-1))
    torch.testing.assert_close(flipped.values, auto.values.flip(-1), atol=1e-6, rtol=1e-4)
    with pytest.raises(LayerNotFoundError, match="reshape="):
        explain.gradcam(explain.ModelWrapper(net, "image", device="cpu"), x, reshape=lambda t: t[0])


class ShrinkingCNN(nn.Module):
    """32 → 16 → 8 → 4 → 2 → 1: the last conv's output is 1×1 at 32 px."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(3 if i == 0 else 8, 8, 3, stride=2, padding=1) for i in range(5)])
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        for conv in self.convs:
            x = torch.relu(conv(x))
        return self.head(x.mean(dim=(2, 3)))


def test_cnn_automatic_layer_is_the_last_conv_with_at_least_4x4_cells_at_this_input_size():
    torch.manual_seed(0)
    m = explain.ModelWrapper(ShrinkingCNN(), "image", device="cpu")
    assert explain.gradcam(m, torch.rand(2, 3, 32, 32)).layer == "convs.2"  # 4×4
    assert explain.gradcam(m, torch.rand(2, 3, 64, 64)).layer == "convs.3"  # 4×4 at 64 px
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tiny = explain.gradcam(m, torch.rand(2, 3, 8, 8))  # nothing reaches 4×4: the largest, the first conv
    assert tiny.layer == "convs.0"


def test_a_constant_map_is_flagged_and_warned_about():
    torch.manual_seed(0)
    m = explain.ModelWrapper(ShrinkingCNN(), "image", device="cpu")
    with pytest.warns(UserWarning, match="near-constant"):
        a = explain.gradcam(m, torch.rand(3, 3, 32, 32), layer="convs.4")  # 1×1
    assert a.quality["degenerate"].tolist() == [1.0, 1.0, 1.0]
    spread = a.values.amax(dim=(1, 2)) - a.values.amin(dim=(1, 2))
    assert float(spread.max()) <= 1e-6 * float(a.values.abs().max())


def test_gradcam_on_a_planted_patch_vit_points_at_the_planted_patch():
    torch.manual_seed(0)
    x, y, mask = planted_patches(560, seed=3)
    net = train_classifier(TinyViT(), x[:480], y[:480], epochs=5)
    m = explain.ModelWrapper(net, "image", device="cpu")
    assert float((m.predict(x[480:]) == y[480:]).float().mean()) > 0.9
    a = explain.gradcam(m, x[480:])
    hits = mask[480:].flatten(1).gather(1, a.values.flatten(1).argmax(1, keepdim=True)).float().mean()
    assert float(hits) >= 0.35  # chance: one patch in 16 = 0.0625


def test_timm_vit_and_resnet_at_32_pixels():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=3)
    a = explain.gradcam(explain.ModelWrapper(vit, "image", device="cpu"), torch.rand(2, 3, 32, 32))
    assert a.layer == "blocks.11.norm1" and a.quality["degenerate"].sum() == 0
    net = timm.create_model("resnet18", pretrained=False, num_classes=3, zero_init_last=False)
    m = explain.ModelWrapper(net, "image", device="cpu")
    a = explain.gradcam(m, torch.rand(2, 3, 32, 32))
    assert a.layer == "layer2.1.conv2" and a.quality["degenerate"].sum() == 0
    with pytest.warns(UserWarning, match="near-constant"):
        assert explain.gradcam(m, torch.rand(2, 3, 32, 32), layer="layer4.1.conv2").quality["degenerate"].all()
