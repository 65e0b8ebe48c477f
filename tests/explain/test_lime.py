"""LIME: agreement with the lime package, planted signals, determinism, the batched ridge."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.linear_model import Ridge

import explain
from explain.methods._features import image_groups
from explain.methods.lime import weighted_ridge
from tests.conftest import pointing_game


def per_feature(values: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    f = int(groups.max()) + 1
    return torch.zeros(f).scatter_(0, groups.flatten(), values.flatten().float())


def test_batched_weighted_ridge_equals_scikit_learn():
    gen = np.random.default_rng(0)
    X = gen.integers(0, 2, (3, 200, 7)).astype(float)
    y = gen.normal(size=(3, 200))
    w = gen.uniform(0.1, 1, (3, 200))
    coef, intercept, r2 = weighted_ridge(torch.tensor(X), torch.tensor(y), torch.tensor(w), alpha=1.0)
    for i in range(3):
        ref = Ridge(alpha=1.0).fit(X[i], y[i], sample_weight=w[i])
        np.testing.assert_allclose(coef[i].numpy(), ref.coef_, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(float(intercept[i]), ref.intercept_, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(float(r2[i]), ref.score(X[i], y[i], sample_weight=w[i]), rtol=1e-4, atol=1e-5)


def test_lime_weights_agree_with_the_lime_package_on_the_cnn(cnn, monkeypatch):
    # Common random numbers: both sides see the coalitions the lime package draws (its sampler is
    # numpy's RandomState(seed).randint(0, 2)), so any difference comes from perturbing, weighting
    # and fitting — the parts that must agree.
    import explain.methods.lime as lime_module

    def lime_draws(n_features, n_samples, kind, generator):
        f = int(n_features[0])
        z = np.random.RandomState(0).randint(0, 2, n_samples * f).reshape(n_samples, f).astype(bool)
        z[0, :] = True
        return torch.from_numpy(z)[None]

    x = cnn.x[:3]
    groups = image_groups(x)
    for i in range(3):
        monkeypatch.setattr(lime_module, "sample_coalitions", lime_draws)
        ours = explain.lime(cnn.wrapper, x[i:i + 1], n_samples=1000, seed=0)
        monkeypatch.undo()
        ref = explain.lime(cnn.wrapper, x[i:i + 1], n_samples=1000, seed=0, backend="lime")
        rho = spearmanr(per_feature(ours.values[0], groups[i]), per_feature(ref.values[0], groups[i]))[0]
        assert rho >= 0.9, rho
        assert abs(float(ours.quality["r2"][0]) - float(ref.quality["r2"][0])) < 0.02


def test_lime_weights_agree_with_the_lime_package_on_a_token_model(lstm):
    x = lstm.x[:3]
    ours = explain.lime(lstm.wrapper, x, n_samples=1000, seed=0)
    ref = explain.lime(lstm.wrapper, x, n_samples=1000, seed=0, backend="lime")
    # Independent samplers on 16 mostly-irrelevant tokens: ranks of the near-zero weights are noise,
    # so the check is the mean rank agreement and the same top token (the planted trigger).
    rhos = [spearmanr(ours.values[i], ref.values[i])[0] for i in range(3)]
    assert sum(rhos) / 3 >= 0.85, rhos
    assert torch.equal(ours.values.argmax(1), ref.values.argmax(1))


def test_same_seed_same_numbers_and_another_seed_differs(cnn):
    a = explain.lime(cnn.wrapper, cnn.x[:2], n_samples=200, seed=3)
    b = explain.lime(cnn.wrapper, cnn.x[:2], n_samples=200, seed=3)
    c = explain.lime(cnn.wrapper, cnn.x[:2], n_samples=200, seed=4)
    assert torch.equal(a.values, b.values) and not torch.equal(a.values, c.values)


def test_lime_recovers_the_weights_of_a_linear_model():
    # f = w·x on 4 time windows; with logit output the surrogate is exact: coefficient_j = w_j·x_j.
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, 1, -2, -2, 0.5, 0.5, 3, 3], [0.0] * 8]))
        net[1].bias.zero_()
    m = explain.ModelWrapper(net, "series", device="cpu")
    x = torch.ones(1, 8, 1)
    a = explain.lime(m, x, target=0, n_samples=500, seed=0, window=2, output="logit", alpha=1e-6)
    torch.testing.assert_close(a.values[0, ::2], torch.tensor([2.0, -4.0, 1.0, 6.0]), atol=1e-3, rtol=1e-3)
    assert float(a.quality["r2"][0]) > 0.999


def test_bad_lime_arguments_raise_input_errors(cnn):
    with pytest.raises(explain.errors.InputShapeError, match="n_samples"):
        explain.lime(cnn.wrapper, cnn.x[:1], n_samples=0)
    with pytest.raises(explain.errors.InputShapeError, match="segmentation must have shape"):
        explain.lime(cnn.wrapper, cnn.x[:2], features=torch.zeros(3, 5, 5, dtype=torch.long))
    with pytest.raises(explain.errors.InputShapeError, match="backend"):
        explain.lime(cnn.wrapper, cnn.x[:1], backend="nope")


class WhiteDetector(torch.nn.Module):
    """Class 0's logit grows with the number of near-white pixels (the planted shape, brightness 1;
    the background stays ≤ 0.35): the cause is known by construction."""

    def forward(self, x):
        white = torch.relu(x.amin(1) - 0.7).flatten(1).sum(1) / 4
        return torch.stack([white, torch.ones_like(white)], 1)


@pytest.mark.parametrize("size", [32, 64])
def test_default_segmentation_points_at_an_object_on_smooth_noise_and_beats_the_lime_package(size):
    from lime import lime_image
    from explain.zoo import planted_images

    d = planted_images(60, size=size, smooth=True, blank=False, seed=3)
    x, mask = d.x[:12], d.mask[:12]
    m = explain.ModelWrapper(WhiteDetector(), "image", device="cpu")
    ours = explain.lime(m, x, target=0, n_samples=300, seed=0)
    shap_values = explain.shap(m, x, target=0, n_samples=300, seed=0)
    assert pointing_game(ours.values, mask).float().mean() >= 0.9
    assert pointing_game(shap_values.values, mask).float().mean() >= 0.9
    hits = []
    for i in range(len(x)):  # the lime package with its own defaults (quickshift, segment-mean 'off' colour)
        img = x[i].permute(1, 2, 0).double().numpy()
        exp = lime_image.LimeImageExplainer(random_state=0).explain_instance(
            img, lambda b: m.probs(torch.from_numpy(b).permute(0, 3, 1, 2).float()).numpy(), labels=(0,),
            top_labels=None, num_samples=300, random_seed=0, batch_size=300)
        w = dict(exp.local_exp[0])
        v = torch.tensor(np.vectorize(lambda g: w.get(g, 0.0))(exp.segments))
        hits.append(bool(mask[i].flatten()[v.flatten().argmax()]))
    assert pointing_game(ours.values, mask).float().mean() > np.mean(hits) + 0.2
