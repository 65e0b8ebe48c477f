"""A report on very few samples completes: every section has results, says what it adapted, or is
skipped with a reason in words; none fails with a traceback."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

import explain
import reports
from explain.errors import EmptyDataError
from explain.zoo import SmallCNN
from explain.zoo.planted import planted_images
from robustness.ood import KNN

CHEAP = {"robustness": {"methods": ["fgsm"], "corruptions": ["gaussian_noise"], "severities": [1], "bisect_steps": 1},
         "trust": {"steps": 4, "n_random": 1, "sensitivity_perturbations": 0, "randomization_steps": 1},
         "verify": {"samples": 2, "attack_steps": 2}, "ood": {"methods": ["msp", "knn"]}}


@pytest.fixture(scope="module")
def planted():
    torch.manual_seed(0)
    data = planted_images(24, size=12, seed=3)
    model = explain.ModelWrapper(SmallCNN(3, len(data.class_names), width=4), "image",
                                 class_names=data.class_names, device="cpu")
    return model, data


def _sections_complete(summary: dict) -> None:
    for name, section in summary["sections"].items():
        assert section["error"] is None, f"{name} failed: {section['error']}"
        body = {k: v for k, v in section["summary"].items() if k != "adapted"}
        skipped = body.get("skipped")
        assert (isinstance(skipped, str) and len(skipped.split()) > 5) or (skipped is None and body), name


@pytest.mark.parametrize("n", [1, 2, 5, 12])
def test_a_report_on_few_samples_has_every_section_with_results_or_a_reason(planted, tmp_path, n):
    model, data = planted
    rep = reports.build_report(model, (data.x[:n], data.y[:n]), out=tmp_path / "r", methods=["gradcam"],
                               samples=3, config=CHEAP)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert set(summary["sections"]) >= {"model_card", "performance", "explanations", "trust", "robustness", "ood",
                                         "verification"}
    _sections_complete(summary)
    ood = summary["sections"]["ood"]["summary"]
    if n < 4:
        assert ood["skipped"] == (f"{n} sample(s) were kept; detecting out-of-distribution inputs needs at least 4 "
                                  "(some to fit the detectors on, the others to test them)")
    else:
        assert "knn" in ood["methods"]  # the default section's knn ran instead of failing the section
        n_fit = ood["n_fit"]
        assert ood["adapted"] == [f"knn uses k={n_fit} (the distance to the farthest fitting sample) instead of "
                                  f"k=10, as only {n_fit} sample(s) fit the detectors"]
    rows = summary["sections"]["explanations"]["summary"]
    if n < 3:
        assert rows["adapted"] == [f"the gallery shows {n} row(s) instead of 3, as only {n} sample(s) were kept"]
        assert len(rows["samples"]) == n
    assert "adapted" in summary["sections"]["trust"]["summary"]  # 16 samples asked, n kept
    assert rep.meta["kept_samples"] == n


def test_twelve_images_with_sixteen_kept_run_the_default_ood_section(planted):
    model, data = planted
    rep = reports.build_report(model, (data.x[:12], data.y[:12]), sections=["ood"], keep_samples=16)
    ood = rep.to_dict()["sections"]["ood"]
    assert ood["error"] is None
    assert {"msp", "energy", "mahalanobis", "knn"} <= set(ood["summary"]["methods"])


def test_knn_with_fewer_fitting_samples_than_k_uses_the_farthest_and_warns():
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    with pytest.warns(UserWarning, match=r"knn: k=10 is more than the 3 fitting sample\(s\); using k=3"):
        det = KNN(k=10).fit_features(bank)
    assert det.k_ == 3
    query = torch.tensor([[1.0, 0.0]])
    assert torch.allclose(det.score_features(query), torch.tensor([2.0]))  # distance to (-1, 0), the farthest
    with pytest.raises(EmptyDataError, match="at least one in-distribution sample"):
        KNN().fit_features(torch.zeros(0, 2))


def test_warnings_raised_while_building_are_listed_in_the_model_card_and_summary(planted, tmp_path):
    model, data = planted
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        rep = reports.build_report(model, (data.x[:5], data.y[:5]), sections=["model_card", "robustness"],
                                   config={"robustness": {"methods": ["fgsm"], "corruptions": [], "bisect_steps": 1}},
                                   out=tmp_path / "w")
    summary = json.loads((tmp_path / "w" / "summary.json").read_text())
    assert summary["warnings"] and summary["warnings"] == summary["sections"]["model_card"]["summary"]["warnings"]
    assert any("fgsm flipped none" in w for w in summary["warnings"])
    assert [str(w.message).split()[0] for w in shown][:1] == ["fgsm"]  # still shown to the caller
    html = (tmp_path / "w" / "index.html").read_text()
    assert "Warnings raised while this report was built" in html and rep.meta["warnings"] == summary["warnings"]
