"""build_report end to end: files, schema, escaping, self-containment, failure boxes, atomic saves."""

from __future__ import annotations

import base64
import io
import json
import re
import sys
import types
from importlib import resources

import jsonschema
import pytest
import torch
from PIL import Image

import explain
import reports
import robustness
from reports import build as build_module
from reports.sections import SECTION_BUILDERS

EVIL = "<img src=x onerror=alert(1)>"

# The robustness and OOD sections are exercised in full by their own tests; here they run small.
FAST = {"robustness": {"methods": ["fgsm"], "eps": [0, 8 / 255], "severities": [5]},
        "ood": {"methods": ["msp", "energy"]}, "explanations": {"methods": ["gradcam", "occlusion", "lime"],
                                                              "params": {"lime": {"n_samples": 100}}}}


def build(*args, config=None, **kwargs):
    merged = {**FAST, **(config or {})}
    if config and "explanations" in config:
        merged["explanations"] = {**FAST["explanations"], **config["explanations"],
                                  "params": {**FAST["explanations"]["params"], **config["explanations"].get("params", {})}}
    return reports.build_report(*args, config=merged, **kwargs)


@pytest.fixture(scope="module")
def schema():
    return json.loads(resources.files("reports").joinpath("templates", "summary.schema.json").read_text())


@pytest.mark.parametrize("fixture", ["cnn", "lstm", "conv1d"])
def test_report_writes_html_figures_and_a_summary_that_validates(fixture, request, tmp_path, schema):
    d = request.getfixturevalue(fixture)
    rep = build(d.wrapper, (d.x[:60], d.y[:60]), out=tmp_path / "r", samples=3,
                               vocab=[f"w{i}" for i in range(60)] if fixture == "lstm" else None)
    assert not any(s.error for s in rep.sections), [s.error for s in rep.sections]
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    jsonschema.validate(summary, schema)
    assert summary["sections"]["performance"]["summary"]["accuracy"] == pytest.approx(
        float((d.wrapper.predict(d.x[:60]) == d.y[:60]).float().mean()))
    for rel in (f for s in summary["sections"].values() for f in s["figures"]):
        with Image.open(tmp_path / "r" / rel) as im:
            assert im.size[0] > 50 and im.size[1] > 50
    page = (tmp_path / "r" / "index.html").read_text()
    assert page.count('id="') >= 3 and 'href="#explanations"' in page
    if fixture == "lstm":
        assert 'class="tok"' in page and ">w" in page


def test_every_embedded_image_decodes_and_nothing_is_fetched_from_the_network(cnn, tmp_path):
    build(cnn.wrapper, (cnn.x[:40], cnn.y[:40]), out=tmp_path / "r", samples=2)
    page = (tmp_path / "r" / "index.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) >= 4
    for b64 in images:
        Image.open(io.BytesIO(base64.b64decode(b64))).verify()
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<link" not in page and "@import" not in page and "url(http" not in page


def test_user_strings_are_escaped_everywhere(cnn, tmp_path):
    names = [EVIL, "plus", "cross", "blank"]
    m = explain.ModelWrapper(cnn.net, "image", class_names=names, device="cpu")
    build(m, (cnn.x[:40], cnn.y[:40]), out=tmp_path / "r", samples=2, title=f"audit {EVIL}")
    page = (tmp_path / "r" / "index.html").read_text()
    assert EVIL not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_configured_thresholds_become_pass_and_fail_checks(cnn):
    ok = build(cnn.wrapper, (cnn.x[:40], cnn.y[:40]), samples=1,
                              config={"checks": {"min_accuracy": 0.5}})
    wrong = cnn.y[:40].clone()
    wrong[0] = (wrong[0] + 1) % 4  # one wrong label: accuracy below 100 % (thresholds above 1 are refused)
    bad = build(cnn.wrapper, (cnn.x[:40], wrong), samples=1,
                               config={"checks": {"min_accuracy": 1.0, "max_ece": 0.9}})
    statuses = {c.status for c in ok.checks}  # trust readings may warn; nothing configured fails
    assert not ok.failed and "pass" in statuses and "fail" not in statuses
    statuses = {c.name: c.status for c in bad.checks}
    assert bad.failed and statuses["accuracy"] == "fail" and statuses["ECE"] == "pass"


def test_a_section_that_raises_becomes_a_failure_box_and_the_rest_renders(cnn, tmp_path, monkeypatch):
    broken = types.ModuleType("tests_broken_section")

    def explode(ctx):
        raise RuntimeError("the detector exploded")

    broken.build = explode
    monkeypatch.setitem(sys.modules, "tests_broken_section", broken)
    monkeypatch.setitem(SECTION_BUILDERS, "broken", "tests_broken_section")
    rep = build(cnn.wrapper, (cnn.x[:30], cnn.y[:30]), out=tmp_path / "r", samples=1)
    failed = [s for s in rep.sections if s.error]
    assert [s.id for s in failed] == ["broken"] and "the detector exploded" in failed[0].error
    page = (tmp_path / "r" / "index.html").read_text()
    assert "This section could not be computed" in page and "the detector exploded" in page
    assert 'id="performance"' in page and 'id="failures"' in page


def test_an_interrupted_save_leaves_the_previous_report_intact(cnn, tmp_path, monkeypatch):
    out = tmp_path / "r"
    first = build(cnn.wrapper, (cnn.x[:30], cnn.y[:30]), out=out, samples=1, title="first")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("power cut while writing")

    monkeypatch.setattr(build_module.html, "render", crash)
    with pytest.raises(KeyboardInterrupt):
        first.save(out)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir()] == ["r"]  # no temporary folder left behind


def test_report_to_dict_round_trips_through_json(cnn):
    rep = build(cnn.wrapper, (cnn.x[:30], cnn.y[:30]), samples=1)
    d = rep.to_dict()
    assert json.loads(json.dumps(d)) == d


def test_a_failing_explainer_is_reported_in_place(cnn):
    rep = build(cnn.wrapper, (cnn.x[:30], cnn.y[:30]), samples=2,
                               config={"explanations": {"params": {"occlusion": {"window": 0}}}})
    expl = next(s for s in rep.sections if s.id == "explanations")
    assert expl.error is None and "occlusion" in expl.summary["failures"]
    assert "gradcam" in expl.summary["methods"] and "occlusion" not in expl.summary["methods"]
    assert "lime" in expl.summary["methods"]


def test_bad_inputs_to_build_report_raise_toolkit_errors(cnn):
    with pytest.raises(explain.errors.InputShapeError):
        build(cnn.net, (cnn.x, cnn.y))
    with pytest.raises(explain.errors.EmptyDataError):
        build(cnn.wrapper, (cnn.x[:0], cnn.y[:0]))
    with pytest.raises(explain.errors.InputShapeError, match="unknown report sections"):
        build(cnn.wrapper, (cnn.x[:5], cnn.y[:5]), sections=["nope"])
    with pytest.raises(explain.errors.InputShapeError):
        build(cnn.wrapper, (torch.rand(4, 3, 8), None))


def test_adversarial_examples_are_samples_the_curve_found_flipping(cnn):
    """The example figure re-attacks only the samples it shows: those whose minimal flipping budget
    (from the curve over all samples) lies within the largest budget, and the attack flips them."""
    eps = [0, 0.05, 0.3]
    rep = build(cnn.wrapper, (cnn.x[:40], cnn.y[:40]), sections=["robustness"],
                config={"robustness": {"methods": ["pgd"], "eps": eps, "steps": 5, "corruptions": []}})
    summary = next(s for s in rep.sections if s.id == "robustness").summary
    curve = robustness.robust_accuracy(cnn.wrapper, (cnn.x[:40], cnn.y[:40]), eps=eps, method="pgd", steps=5, seed=0,
                                       bisect_steps=4)
    flipping = [i for i, v in enumerate(curve.minimal_eps.tolist()) if 0 < v <= eps[-1]]
    assert len(flipping) >= 3, "the planted CNN should have flips within 0.3"
    ex = summary["examples"]
    assert ex["samples"] == flipping[:3] and ex["eps"] == eps[-1]
    assert ex["flipped"] == [True, True, True]
    assert summary["attacks"]["pgd"]["accuracy"] == pytest.approx(curve.accuracy)
