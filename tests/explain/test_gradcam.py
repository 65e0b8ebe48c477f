"""Grad-CAM: a hand-computed case, agreement with captum; the planted-signal pointing game is in tests/contract/test_pointing_game.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam
from torch import nn

import explain
from explain.methods._cam import gradcam_weights, upsample, weighted_sum


def test_gradcam_weights_and_map_match_a_hand_computed_example():
    acts = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])  # 1×2×2×2
    grads = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]], [[-2.0, 0.0], [2.0, -4.0]]]])
    w = gradcam_weights(acts, grads)
    assert w.tolist() == [[1.0, -1.0]]
    cam = weighted_sum(acts, w)
    assert cam.tolist() == [[[1.0, 1.0], [3.0, 3.0]]]


class Linearish(nn.Module):
    """conv → global average pool → linear: Grad-CAM at the conv equals the class activation map."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.conv(x).mean(dim=(2, 3)))


def test_gradcam_equals_the_class_activation_map_of_a_gap_network():
    # For conv → GAP → linear, ∂y_c/∂A^k = w_ck / (h·w), so Grad-CAM = Σ_k w_ck A^k / (h·w) (Zhou et al. CAM).
    net = Linearish()
    x = torch.rand(4, 1, 6, 6)
    m = explain.ModelWrapper(net, "image", device="cpu")
    a = explain.gradcam(m, x, target=1)
    acts = net.conv(x).detach()
    expected = torch.einsum("k,nkhw->nhw", net.head.weight[1].detach(), acts) / 36
    torch.testing.assert_close(a.values, expected, atol=1e-6, rtol=1e-5)


def test_gradcam_is_zero_when_the_target_score_does_not_depend_on_the_layer():
    class Bypass(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)
            self.head = nn.Linear(3, 2)

        def forward(self, x):
            self.conv(x)  # runs but does not feed the output
            return self.head(x.mean(dim=(2, 3)))

    a = explain.gradcam(explain.ModelWrapper(Bypass(), "image", device="cpu"), torch.rand(2, 3, 6, 6))
    assert torch.count_nonzero(a.values) == 0


def test_gradcam_agrees_with_captum_layer_gradcam_on_the_small_cnn(cnn):
    x = cnn.x[:16]
    a = explain.gradcam(cnn.wrapper, x)
    ref = LayerGradCam(cnn.net, cnn.net.conv).attribute(x, target=a.target, relu_attributions=False)
    ref = F.interpolate(ref, size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]
    corr = torch.corrcoef(torch.stack([a.values.flatten(), ref.flatten()]))[0, 1]
    assert corr >= 0.999
    torch.testing.assert_close(a.values, ref, atol=1e-5, rtol=1e-4)


def test_gradcam_on_a_named_layer_and_on_an_explicit_target(cnn):
    a = explain.gradcam(cnn.wrapper, cnn.x[:4], target=2, layer="block.conv2")
    assert a.layer == "block.conv2" and a.target.tolist() == [2, 2, 2, 2]
    assert a.values.shape == (4, 32, 32)


def test_sequence_maps_have_one_value_per_time_step(gru, lstm):
    assert explain.gradcam(gru.wrapper, gru.x[:3]).values.shape == (3, 64)
    assert explain.gradcam(lstm.wrapper, lstm.x[:3], layer="lstm").values.shape == (3, 16)


def test_upsample_is_identity_at_the_same_size_and_linear_for_sequences():
    m = torch.tensor([[0.0, 1.0]])
    assert torch.equal(upsample(m, (2,)), m)
    assert upsample(m, (4,)).tolist() == [[0.0, 0.25, 0.75, 1.0]]
