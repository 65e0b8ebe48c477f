"""Integrated gradients, saliency and SmoothGrad: closed forms, captum agreement, completeness, truth."""

from __future__ import annotations

import pytest
import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients, NoiseTunnel, Saliency

import explain


def test_ig_of_a_linear_model_is_weight_times_input_difference():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    m = explain.ModelWrapper(net, "image", device="cpu")
    x = torch.rand(2, 3, 2, 2)
    a = explain.integrated_gradients(m, x, target=1, steps=4)
    expected = (net[1].weight[1].detach().view(3, 2, 2) * x).sum(1)
    torch.testing.assert_close(a.values, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fixture", ["cnn", "conv1d", "gru"])
def test_ig_matches_captum_and_is_complete(fixture, request):
    d = request.getfixturevalue(fixture)
    x = d.x[:6]
    a = explain.integrated_gradients(d.wrapper, x, steps=128)
    with d.wrapper.session(grad=True):
        ref = IntegratedGradients(d.wrapper.forward).attribute(x, baselines=torch.zeros_like(x), target=a.target,
                                                                n_steps=128)
    ref = ref.sum(1) if fixture == "cnn" else ref.sum(2)
    torch.testing.assert_close(a.values, ref.detach(), atol=1e-4, rtol=1e-3)
    logits = d.wrapper.logits(x).gather(1, a.target[:, None])[:, 0]
    base = d.wrapper.logits(torch.zeros_like(x)).gather(1, a.target[:, None])[:, 0]
    scale = (logits - base).abs().clamp_min(1.0)
    assert ((a.values.flatten(1).sum(1) - (logits - base)).abs() / scale).max() < 0.05
    assert torch.allclose(a.quality["completeness_gap"], (a.values.flatten(1).sum(1) - (logits - base)).abs(), atol=1e-4)


def test_token_ig_matches_captum_layer_integrated_gradients(transformer):
    ids = transformer.x[:4]
    a = explain.integrated_gradients(transformer.wrapper, ids, steps=32)
    m = transformer.wrapper
    with m.session(grad=True):
        ref = LayerIntegratedGradients(m.forward, m.embedding_layer()[1]).attribute(
            ids, baselines=torch.zeros_like(ids), target=a.target, n_steps=32)
    torch.testing.assert_close(a.values, ref.sum(-1).detach(), atol=1e-4, rtol=1e-3)
    c = explain.integrated_gradients(m, ids, steps=32, backend="captum")
    torch.testing.assert_close(a.values, c.values, atol=1e-4, rtol=1e-3)


def test_saliency_matches_captum(cnn):
    x = cnn.x[:4]
    a = explain.saliency(cnn.wrapper, x)
    with cnn.wrapper.session(grad=True):
        ref = Saliency(cnn.wrapper.forward).attribute(x.clone().requires_grad_(True), target=a.target)
    torch.testing.assert_close(a.values, ref.amax(1).detach(), atol=1e-6, rtol=1e-5)


def test_smoothgrad_is_seeded_and_matches_captum_in_expectation(cnn):
    x = cnn.x[:2]
    a = explain.smoothgrad(cnn.wrapper, x, n_samples=200, noise=0.1, seed=0)
    b = explain.smoothgrad(cnn.wrapper, x, n_samples=200, noise=0.1, seed=0)
    assert torch.equal(a.values, b.values)
    sd = float(0.1 * (x.flatten(1).amax(1) - x.flatten(1).amin(1))[0])
    with cnn.wrapper.session(grad=True), torch.random.fork_rng():
        torch.manual_seed(1)
        ref = NoiseTunnel(Saliency(cnn.wrapper.forward)).attribute(x[:1], nt_type="smoothgrad", nt_samples=200,
                                                                   stdevs=sd, target=a.target[:1])
    corr = torch.corrcoef(torch.stack([a.values[0].flatten(), ref.amax(1)[0].flatten()]))[0, 1]
    assert corr > 0.9


def test_bad_ig_arguments_raise(cnn):
    with pytest.raises(explain.errors.InputShapeError, match="steps"):
        explain.integrated_gradients(cnn.wrapper, cnn.x[:1], steps=1)
    with pytest.raises(explain.errors.InputShapeError, match="method"):
        explain.integrated_gradients(cnn.wrapper, cnn.x[:1], method="simpson")
