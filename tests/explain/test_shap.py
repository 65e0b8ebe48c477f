"""SHAP: exact on linear models, efficiency, agreement with the shap package, planted signals."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

import explain
from explain.methods.kernel_shap import coalitions_for, shapley_kernel
from tests.conftest import pointing_game


def linear_series_model(weights):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(len(weights), 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.stack([torch.tensor(weights), torch.zeros(len(weights))]))
        net[1].bias.fill_(0.3)
    return explain.ModelWrapper(net, "series", device="cpu")


def test_shapley_kernel_matches_its_closed_form():
    m = 5
    for k in range(1, m):
        expected = (m - 1) / (math.comb(m, k) * k * (m - k))
        assert float(shapley_kernel(m, torch.tensor(k))) == pytest.approx(expected)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=2, max_size=9), st.floats(-2, 2))
def test_kernel_shap_is_exact_for_a_linear_model(weights, value):
    # Logit of a linear model: φ_j = w_j (x_j − b_j) exactly (all coalitions enumerated for M ≤ 9).
    m = linear_series_model(weights)
    x = torch.full((1, len(weights), 1), value)
    a = explain.shap(m, x, target=0, output="logit", window=1, n_samples=1024)
    expected = torch.tensor(weights) * value
    torch.testing.assert_close(a.values[0], expected, atol=1e-4, rtol=1e-4)
    assert float(a.quality["efficiency_gap"][0]) < 1e-4


def test_sampled_kernel_shap_keeps_efficiency_exactly_and_stays_close_to_exact(conv1d):
    x = conv1d.x[:4]
    sampled = explain.shap(conv1d.wrapper, x, window=2, n_samples=256, seed=0)  # 32 features: sampled
    assert sampled.quality["efficiency_gap"].max() < 1e-4
    bg = conv1d.x[50:54]
    with_bg = explain.shap(conv1d.wrapper, x, background=bg, window=8, n_samples=300, seed=0, output="probability")
    f = conv1d.wrapper.probs
    t = with_bg.target
    expected = f(x)[torch.arange(4), t] - f(bg)[:, t].mean(0)
    sums = with_bg.values.reshape(4, 8, 8)[:, :, 0].sum(1)
    torch.testing.assert_close(sums, expected, atol=1e-4, rtol=1e-3)


def test_coalitions_are_paired_with_their_complements_when_sampled():
    z, w = coalitions_for(20, 100, torch.Generator().manual_seed(0))
    half = len(z) // 2
    assert torch.equal(z[:half], ~z[half:]) and torch.all(w == 1)
    assert z.sum(1).min() >= 1 and z.sum(1).max() <= 19


@pytest.mark.parametrize("fixture", ["cnn", "lstm"])
def test_shap_values_agree_with_the_shap_package(fixture, request):
    d = request.getfixturevalue(fixture)
    kw = {"features": "grid", "n_segments": 9} if fixture == "cnn" else {"features": torch.arange(16) // 2}
    x = d.x[:3]
    ours = explain.shap(d.wrapper, x, n_samples=600, seed=0, **kw)
    ref = explain.shap(d.wrapper, x, n_samples=600, seed=0, backend="shap", **kw)
    for i in range(3):
        a, b = ours.values[i].flatten(), ref.values[i].flatten()
        rho = spearmanr(a.numpy(), b.numpy())[0]
        assert rho >= 0.9, (fixture, i, rho)
    assert ref.quality["efficiency_gap"].max() < 1e-3


@pytest.mark.parametrize("fixture", ["cnn", "transformer", "conv1d"])
def test_gradient_shap_points_at_the_planted_signal_and_matches_captum(fixture, request):
    d = request.getfixturevalue(fixture)
    x, y, mask = d.x[:40], d.y[:40], d.mask[:40]
    bg = d.x[100:108] if d.wrapper.input_kind != "tokens" else None
    a = explain.shap(d.wrapper, x, algorithm="gradient", background=bg, n_samples=32, seed=0)
    keep = (a.target == y) & mask.flatten(1).any(1)
    assert pointing_game(a.values, mask)[keep].float().mean() >= 0.9
    if bg is None:  # captum cannot interpolate token ids
        with pytest.raises(explain.errors.InputShapeError, match="embeddings"):
            explain.shap(d.wrapper, x[:2], algorithm="gradient", backend="captum")
        return
    ref = explain.shap(d.wrapper, x[:8], algorithm="gradient", background=bg, n_samples=400, seed=1, backend="captum")
    ours = explain.shap(d.wrapper, x[:8], algorithm="gradient", background=bg, n_samples=400, seed=0)
    rho = spearmanr(ours.values.flatten().numpy(), ref.values.flatten().numpy())[0]
    assert rho >= 0.8


def test_shap_is_deterministic_for_a_seed(cnn):
    kw = {"features": "grid", "n_segments": 36, "n_samples": 256}
    a = explain.shap(cnn.wrapper, cnn.x[:2], seed=1, **kw)
    b = explain.shap(cnn.wrapper, cnn.x[:2], seed=1, **kw)
    c = explain.shap(cnn.wrapper, cnn.x[:2], seed=2, **kw)
    assert torch.equal(a.values, b.values) and not torch.equal(a.values, c.values)


def test_bad_shap_arguments_raise_input_errors(cnn):
    with pytest.raises(explain.errors.InputShapeError, match="algorithm"):
        explain.shap(cnn.wrapper, cnn.x[:1], algorithm="deep")
    with pytest.raises(explain.errors.InputShapeError, match="background samples have shape"):
        explain.shap(cnn.wrapper, cnn.x[:1], background=torch.rand(2, 3, 8, 8))


@pytest.mark.parametrize("fixture", ["cnn", "conv1d"])
def test_gradient_backend_shap_runs_the_shap_package_and_agrees(fixture, request, monkeypatch):
    shap_pkg = pytest.importorskip("shap")
    d = request.getfixturevalue(fixture)
    x, bg = d.x[:4], d.x[100:108]
    calls = []
    real = shap_pkg.GradientExplainer
    monkeypatch.setattr(shap_pkg, "GradientExplainer", lambda *a, **k: calls.append(1) or real(*a, **k))
    ref = explain.shap(d.wrapper, x, algorithm="gradient", background=bg, n_samples=400, seed=0, backend="shap")
    assert len(calls) == len(x) and ref.params["backend"] == "shap"
    ours = explain.shap(d.wrapper, x, algorithm="gradient", background=bg, n_samples=400, seed=0)
    for i in range(len(x)):
        assert spearmanr(ours.values[i].flatten().numpy(), ref.values[i].flatten().numpy())[0] >= 0.8


def test_gradient_backend_shap_refuses_token_models_clearly(lstm):
    with pytest.raises(explain.errors.InputShapeError, match="GradientExplainer"):
        explain.shap(lstm.wrapper, lstm.x[:2], algorithm="gradient", backend="shap")
