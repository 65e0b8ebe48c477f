"""The "Can these maps be trusted?" section: table, figures, checks, gallery marks, failures kept apart."""

from __future__ import annotations

import json


import reports
from explain.registry import EXPLAINERS
from reports.sections import SECTION_BUILDERS, trust

from tests.explain.test_metrics_randomization import edge_map

QUICK = {"quick": True, "samples": 6, "steps": 6}


def _build(cnn, tmp_path, methods, checks=None, **kw):
    config = {"trust": dict(QUICK), "checks": checks or {}, "explanations": {"samples": 2}}
    return reports.build_report(cnn.wrapper, (cnn.x[:12], cnn.y[:12]), methods=methods, sections=["explanations", "trust"],
                                config=config, out=tmp_path / "rep", **kw)


def test_trust_section_follows_explanations_and_declares_its_keys():
    names = list(SECTION_BUILDERS)
    assert names.index("trust") == names.index("explanations") + 1
    assert {"quick", "methods", "samples"} <= set(trust.CONFIG_KEYS)
    assert set(trust.CHECK_KEYS) == {"require_sanity", "min_deletion_gain"}


def test_input_only_method_fails_require_sanity_and_is_marked_in_the_gallery(cnn, tmp_path, monkeypatch):
    monkeypatch.setitem(EXPLAINERS, "edges", edge_map)
    rep = _build(cnn, tmp_path, ["gradcam", "edges"], checks={"require_sanity": True, "min_deletion_gain": 0.05},
                 masks=cnn.mask[:12])
    sec = {s.id: s for s in rep.sections}
    assert sec["trust"].error is None, sec["trust"].error
    status = {c.name: c.status for c in rep.checks}
    assert status["gradcam randomisation"] == "pass" and status["edges randomisation"] == "fail"
    assert status["gradcam deletion gain"] == "pass"
    assert rep.failed  # the CLI exits 1
    table = next(b for b in sec["trust"].blocks if getattr(b, "caption", "") == "Can these maps be trusted?")
    rows = {r[0]: r for r in table.rows}
    assert rows["gradcam"][1].startswith("PASS") and rows["edges"][1].startswith("WARN")
    assert "pointing game" in rows["gradcam"][5]
    assert sec["explanations"].summary["failed_trust_checks"]["edges"][0] == "randomisation"
    assert "gradcam" not in sec["explanations"].summary["failed_trust_checks"]
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["sections"]["trust"]["summary"]["methods"]["edges"]["randomization"]["verdict"] == "fails"
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "Can these maps be trusted?" in html and "figures/trust-randomization.png" not in html  # figures inline


def test_without_require_sanity_a_failing_method_only_warns(cnn, tmp_path, monkeypatch):
    monkeypatch.setitem(EXPLAINERS, "edges", edge_map)
    rep = _build(cnn, tmp_path, ["edges", "gradcam"])
    assert {c.name: c.status for c in rep.checks}["edges randomisation"] == "warn"
    assert not rep.failed


def test_a_trust_failure_leaves_the_gallery_intact(cnn, tmp_path, monkeypatch):
    def broken(ctx):
        raise RuntimeError("trust exploded")
    monkeypatch.setattr(trust, "_compute", broken)
    rep = _build(cnn, tmp_path, ["gradcam"])
    sec = {s.id: s for s in rep.sections}
    assert sec["explanations"].error is None and sec["explanations"].summary["failed_trust_checks"] == {}
    assert "trust exploded" in sec["trust"].error


def test_trust_section_refuses_zero_random_orders_with_a_message():
    import pytest

    from explain.errors import InputValueError
    from reports.report import ReportContext

    ctx = ReportContext(wrapper=None, x=None, y=None, config={"trust": {"n_random": 0}})
    with pytest.raises(InputValueError, match="n_random.*at least 1"):
        trust._settings(ctx)
    assert trust._settings(ReportContext(wrapper=None, x=None, y=None, config={}))["n_random"] == 2
