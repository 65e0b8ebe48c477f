"""Max-sensitivity against captum's sensitivity_max, seed agreement, localisation on hand-made
masks and the planted masks, and the method agreement matrix against scipy."""

from __future__ import annotations

import pytest
import torch

import explain

from .test_metrics_randomization import edge_map


def test_sensitivity_matches_captum_sensitivity_max_with_the_same_noise(cnn):
    from captum.metrics import sensitivity_max
    x = cnn.x[:3]
    s, radius = 4, 0.02
    noise = (torch.rand((len(x) * s,) + tuple(x.shape[1:]), generator=torch.Generator().manual_seed(5)) * 2 - 1) * radius
    t = cnn.wrapper.predict(x)

    def explanation(inputs, target):
        inputs = inputs[0] if isinstance(inputs, tuple) else inputs
        return (explain.gradcam(cnn.wrapper, inputs, target).values,)  # captum iterates over a tuple

    def perturb(inputs, perturb_radius=radius):
        if isinstance(inputs, tuple):
            return tuple((i + noise).clamp(0, 1) for i in inputs)
        return (inputs + noise).clamp(0, 1)

    ref = sensitivity_max(explanation, x, perturb_func=perturb, n_perturb_samples=s, target=t)
    ours = explain.metrics.sensitivity(cnn.wrapper, x, "gradcam", target=t, noise=noise)
    assert torch.allclose(ours.values, ref.float(), rtol=1e-4, atol=1e-6)
    assert ours.higher_is_better is False


def test_sensitivity_of_an_input_only_map_is_tiny_under_tiny_noise(cnn):
    r = explain.metrics.sensitivity(cnn.wrapper, cnn.x[:2], edge_map, n_perturb=2, radius=1e-4)
    assert r.aggregate < 0.01


def test_seed_agreement_is_below_one_for_lime_and_refused_for_deterministic_methods(cnn):
    x = cnn.x[:3]
    r = explain.metrics.seed_agreement(cnn.wrapper, x, "lime", params={"n_samples": 64, "features": "grid", "n_segments": 16})
    assert r.values.shape == (3,) and 0.0 < r.aggregate < 1.0
    with pytest.raises(explain.errors.InputShapeError, match="no seed"):
        explain.metrics.seed_agreement(cnn.wrapper, x, "gradcam")


def _attr(values):
    return explain.Attribution(values=values, method="hand", target=torch.zeros(len(values), dtype=torch.long))


def test_pointing_game_and_relevance_mass_on_hand_computed_maps():
    values = torch.tensor([[[0.0, 3.0], [1.0, -2.0]], [[5.0, 1.0], [1.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]])
    mask = torch.tensor([[[False, True], [False, False]], [[False, True], [True, False]], [[False, False], [False, False]]])
    pg = explain.metrics.pointing_game(_attr(values), mask)
    mass = explain.metrics.relevance_mass(_attr(values), mask)
    assert pg.values[:2].tolist() == [1.0, 0.0] and torch.isnan(pg.values[2])
    assert mass.values[0].item() == pytest.approx(3 / 4) and mass.values[1].item() == pytest.approx(2 / 8)
    assert pg.aggregate == pytest.approx(0.5)
    with pytest.raises(explain.errors.InputShapeError, match="mask"):
        explain.metrics.pointing_game(_attr(values), mask[:, :1])


def test_gradcam_points_at_the_planted_shapes(cnn):
    x, mask = cnn.x[:16], cnn.mask[:16]
    a = explain.gradcam(cnn.wrapper, x)
    assert explain.metrics.pointing_game(a, mask).aggregate >= 0.9
    assert explain.metrics.relevance_mass(a, mask).aggregate > mask.float().mean().item() * 2


def test_agreement_matrix_is_symmetric_with_unit_diagonal_and_matches_scipy(cnn):
    from scipy.stats import spearmanr
    x = cnn.x[:3]
    attrs = {"gradcam": explain.gradcam(cnn.wrapper, x), "saliency": explain.saliency(cnn.wrapper, x),
             "edges": edge_map(cnn.wrapper, x)}
    r = explain.metrics.agreement(attrs)
    mat = r.details["matrix"]
    assert torch.allclose(mat, mat.T) and torch.allclose(mat.diagonal(), torch.ones(3))
    ref = sum(spearmanr(attrs["gradcam"].values[i].flatten(), attrs["saliency"].values[i].flatten())[0] for i in range(3)) / 3
    assert mat[0, 1].item() == pytest.approx(ref, abs=1e-4)
    with pytest.raises(explain.errors.InputShapeError):
        explain.metrics.agreement({"gradcam": attrs["gradcam"]})
