"""Attention maps in the report's explanation gallery and in the Explorer; degenerate CAM cells marked."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema
import pytest
import torch

import explain
import reports
from reports.sections.explanations import _note
from tests._vit import TinyViT
from tests.explain.test_vit import ShrinkingCNN


def _schema():
    return json.loads(resources.files("reports").joinpath("templates", "summary.schema.json").read_text())


def test_transformer_reports_get_an_attention_rollout_column_and_a_head_layer_grid(transformer, tmp_path):
    x, y = transformer.x[:12], transformer.y[:12]
    reports.build_report(transformer.wrapper, (x, y), out=tmp_path / "r", sections=["explanations"],
                         methods=["gradcam"], samples=2, vocab=[f"w{i}" for i in range(60)])
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    jsonschema.validate(summary, _schema())
    section = summary["sections"]["explanations"]
    assert section["summary"]["attention"]["layers"] == ["encoder.layers.0.self_attn"]
    assert any("attention" in f for f in section["figures"])
    page = (tmp_path / "r" / "index.html").read_text()
    assert "attention rollout" in page and "not attributions" in page


def test_vit_reports_show_rollout_over_the_image(tmp_path):
    torch.manual_seed(0)
    m = explain.ModelWrapper(TinyViT().eval(), "image", device="cpu", class_names=["a", "b"])
    rep = reports.build_report(m, (torch.rand(6, 3, 32, 32), torch.randint(0, 2, (6,))), out=tmp_path / "r",
                               sections=["explanations"], methods=["gradcam"], samples=2)
    section = rep.to_dict()["sections"]["explanations"]
    assert not section.get("error") and section["summary"]["attention"]["shape"] == [2, 2, 2, 17, 17]


def test_cnn_reports_have_no_attention_column_and_mark_constant_maps(tmp_path):
    torch.manual_seed(0)
    m = explain.ModelWrapper(ShrinkingCNN().eval(), "image", device="cpu", class_names=["a", "b"])
    with pytest.warns(UserWarning, match="near-constant"):
        reports.build_report(m, (torch.rand(6, 3, 32, 32), torch.randint(0, 2, (6,))), out=tmp_path / "r",
                             sections=["explanations"], methods=["gradcam"], samples=2,
                             config={"explanations": {"params": {"gradcam": {"layer": "convs.4"}}}})
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert "attention" not in summary["sections"]["explanations"]["summary"]
    assert summary["sections"]["explanations"]["summary"]["samples"][0]["quality"]["gradcam"]["degenerate"] == 1.0
    with pytest.warns(UserWarning):
        a = explain.gradcam(m, torch.rand(1, 3, 32, 32), layer="convs.4")
    assert "constant map" in _note(a, 0)


def test_the_explorer_offers_attention_for_transformer_models(transformer):
    pytest.importorskip("ipywidgets")
    from reports.widgets import Explorer

    ex = Explorer(transformer.wrapper, (transformer.x[:4], transformer.y[:4]), methods=None)
    assert "attention" in ex.method.options
    ex.method.value = "attention"
    assert "<img" in ex.explain_view.value and "not what moved the score" in ex.explain_view.value
