"""OOD detectors: published formulas computed independently, metrics from scikit-learn, truth, errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.covariance import EmpiricalCovariance
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.neighbors import NearestNeighbors
from torch.utils.data import DataLoader, TensorDataset

import explain
import robustness
from explain.errors import EmptyDataError, InputShapeError, LayerNotFoundError, NotFittedError, UnknownMethodError
from robustness.ood import energy_score, maxlogit_score, msp_score, ood_metrics


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, (5, 4), elements=st.floats(-30, 30, width=32)), st.floats(0.1, 100))
def test_energy_is_minus_t_logsumexp_of_logits_over_t(logits, t):
    z = torch.from_numpy(logits)
    expected = -t * np.log(np.exp(logits.astype(np.float64) / t).sum(1)) if np.abs(logits / t).max() < 300 else None
    if expected is not None:
        np.testing.assert_allclose(energy_score(z, t).numpy(), expected, rtol=1e-4, atol=1e-3)


def test_msp_and_maxlogit_follow_their_formulas_and_sign_convention():
    logits = torch.tensor([[5.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    p = np.exp([5.0, 0, 0]) / np.exp([5.0, 0, 0]).sum()
    np.testing.assert_allclose(msp_score(logits).numpy(), [-p.max(), -1 / 3], rtol=1e-6)
    assert maxlogit_score(logits).tolist() == [-5.0, -1.0]
    assert msp_score(logits)[0] < msp_score(logits)[1]  # the confident sample looks more in-distribution


def test_mahalanobis_matches_a_scikit_learn_computation(cnn):
    x, y = cnn.x[:150], cnn.y[:150]
    det = robustness.ood_detector("mahalanobis", ridge=0.0).fit(cnn.wrapper, (x, y))
    z = cnn.wrapper.features(x).double().numpy()
    yn = y.numpy()
    means = np.stack([z[yn == c].mean(0) for c in np.unique(yn)])
    centred = z - means[np.searchsorted(np.unique(yn), yn)]
    cov = EmpiricalCovariance(assume_centered=True).fit(centred)
    q = cnn.x[150:170]
    zq = cnn.wrapper.features(q).double().numpy()
    prec = np.linalg.pinv(cov.covariance_)
    expected = np.min([np.einsum("nd,de,ne->n", zq - m, prec, zq - m) for m in means], axis=0)
    np.testing.assert_allclose(det.score(q).numpy(), expected, rtol=1e-3, atol=1e-3)


def test_knn_matches_scikit_learn_nearest_neighbours(conv1d):
    x = conv1d.x[:120]
    det = robustness.ood_detector("knn", k=5).fit(conv1d.wrapper, (x, conv1d.y[:120]))
    bank = conv1d.wrapper.features(x).numpy()
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    q = conv1d.wrapper.features(conv1d.x[150:170]).numpy()
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    dist, _ = NearestNeighbors(n_neighbors=5).fit(bank).kneighbors(q)
    np.testing.assert_allclose(det.score(conv1d.x[150:170]).numpy(), dist[:, -1], rtol=1e-4, atol=1e-5)


def test_vim_matches_the_published_recipe_computed_with_numpy(cnn):
    x = cnn.x[:150]
    det = robustness.ood_detector("vim", dim=8).fit(cnn.wrapper, (x, cnn.y[:150]))
    head = cnn.net.head
    w, b = head.weight.detach().double().numpy(), head.bias.detach().double().numpy()
    u = -np.linalg.pinv(w) @ b
    z = cnn.wrapper.features(x).double().numpy()
    c = z - u
    evals, evecs = np.linalg.eigh(c.T @ c / len(z))
    ns = evecs[:, np.argsort(evals)[::-1][8:]]
    alpha = (z @ w.T + b).max(1).mean() / np.linalg.norm(c @ ns, axis=1).mean()
    zq = cnn.wrapper.features(cnn.x[150:170]).double().numpy()
    logits = zq @ w.T + b
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    expected = alpha * np.linalg.norm((zq - u) @ ns, axis=1) - lse
    np.testing.assert_allclose(det.score(cnn.x[150:170]).numpy(), expected, rtol=1e-3, atol=1e-3)


def test_streaming_fit_over_small_batches_equals_one_shot_fit(cnn):
    x, y = cnn.x[:120], cnn.y[:120]
    streamed = robustness.ood_detector("mahalanobis").fit(cnn.wrapper, DataLoader(TensorDataset(x, y), batch_size=7))
    one_shot = robustness.ood_detector("mahalanobis").fit_features(cnn.wrapper.features(x), y)
    # Features computed in batches of 7 or 120 differ in the last float32 bits, nothing more.
    torch.testing.assert_close(streamed.means_, one_shot.means_, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(streamed.covariance_, one_shot.covariance_, rtol=1e-5, atol=1e-6)


def test_metrics_equal_a_direct_scikit_learn_computation():
    gen = torch.Generator().manual_seed(0)
    s_in, s_out = torch.randn(300, generator=gen), torch.randn(200, generator=gen) + 1.5
    m = ood_metrics(s_in, s_out)
    labels = np.r_[np.zeros(300), np.ones(200)]
    scores = np.r_[s_in.numpy(), s_out.numpy()]
    assert m["auroc"] == pytest.approx(roc_auc_score(labels, scores))
    assert m["aupr_out"] == pytest.approx(average_precision_score(labels, scores))
    assert m["aupr_in"] == pytest.approx(average_precision_score(1 - labels, -scores))
    thr = np.quantile(s_in.numpy(), 0.95)
    assert m["fpr95"] == pytest.approx(float((s_out.numpy() <= thr).mean()), abs=0.01)


def _ood_for(name, d):
    gen = torch.Generator().manual_seed(0)
    if name == "cnn":
        return torch.rand(150, 3, 32, 32, generator=gen)          # pure noise instead of shapes
    if name in ("lstm", "transformer"):
        return torch.randint(40, 60, (150, 16), generator=gen)     # distractor-only sequences, no trigger
    return torch.randn(150, 64, 1, generator=gen) * 1.5            # noise without any pulse


@pytest.mark.parametrize("fixture", ["cnn", "transformer", "conv1d"])
def test_detectors_separate_planted_data_from_data_without_the_signal(fixture, request):
    d = request.getfixturevalue(fixture)
    x, y = d.x, d.y
    if fixture == "cnn":  # blank images carry no shape either: keep the shape classes as in-distribution
        keep = y < 3
        x, y = x[keep], y[keep]
    o = robustness.evaluate_ood(d.wrapper, (x, y), _ood_for(fixture, d), methods=list(robustness.DETECTORS))
    assert not o.errors, o.errors
    for name, r in o.methods.items():
        assert r.auroc > 0.5, (name, r.auroc)
    assert o.methods["energy"].auroc >= 0.9 or fixture != "cnn"
    assert o.methods["mahalanobis"].auroc >= 0.9


def test_calibrated_threshold_keeps_95_percent_of_in_distribution(cnn):
    det = robustness.ood_detector("energy").fit(cnn.wrapper, (cnn.x[:100], cnn.y[:100]))
    with pytest.raises(NotFittedError, match="calibrate"):
        det.is_ood(cnn.x[:2])
    det.calibrate((cnn.x[100:200], cnn.y[100:200]), tpr=0.95)
    kept = (~det.is_ood(cnn.x[100:200])).float().mean()
    assert 0.94 <= float(kept) <= 0.96


@pytest.mark.parametrize("name", list(robustness.DETECTORS))
def test_detectors_raise_not_fitted_before_fit(name, cnn):
    with pytest.raises(NotFittedError):
        robustness.ood_detector(name).score(cnn.x[:2])


def test_odin_leaves_the_model_unchanged(gru):
    net = copy.deepcopy(gru.net).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    m = explain.ModelWrapper(net, "series", device="cpu")
    s = robustness.ood_detector("odin", temperature=100, eps=0.01).fit(m, (gru.x[:20], gru.y[:20])).score(gru.x[:10])
    assert s.shape == (10,) and torch.isfinite(s).all()
    assert all(mod.training for mod in net.modules())
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())


def test_bad_ood_inputs_raise_specific_errors(cnn):
    with pytest.raises(InputShapeError, match="ood_data samples have shape"):
        robustness.evaluate_ood(cnn.wrapper, (cnn.x[:20], cnn.y[:20]), torch.rand(5, 3, 16, 16))
    with pytest.raises(EmptyDataError):
        robustness.evaluate_ood(cnn.wrapper, (cnn.x[:0], cnn.y[:0]), torch.rand(5, 3, 32, 32))
    with pytest.raises(UnknownMethodError, match="available"):
        robustness.ood_detector("gram")
    headless = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    m = explain.ModelWrapper(headless, "image", device="cpu")
    with pytest.raises(LayerNotFoundError, match="penultimate"):
        robustness.ood_detector("mahalanobis").fit(m, (torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 0, 1])))


def test_vim_refuses_a_fit_whose_samples_leave_no_residual(cnn):
    """With no more fit samples than the principal subspace has dimensions, the residual of every fit
    sample is zero up to rounding and α = mean logit / mean residual explodes (≈ 1e13): a score of
    rounding noise. The fit refuses it; evaluate_ood lists ViM as failed and keeps the others."""
    from explain.errors import TooFewSamplesError
    with pytest.raises(TooFewSamplesError, match="more fit samples than its principal subspace"):
        robustness.ood_detector("vim", dim=8).fit(cnn.wrapper, (cnn.x[:8], cnn.y[:8]))
    robustness.ood_detector("vim", dim=8).fit(cnn.wrapper, (cnn.x[:9], cnn.y[:9]))  # one more is enough
    ev = robustness.evaluate_ood(cnn.wrapper, (cnn.x[:16], cnn.y[:16]), torch.rand(16, *cnn.x.shape[1:]),
                                 methods=["msp", "vim"], fit_data=(cnn.x[16:24], cnn.y[16:24]),
                                 params={"vim": {"dim": 8}})
    assert "msp" in ev.methods and "vim" not in ev.methods
    assert "TooFewSamplesError" in ev.errors["vim"]
