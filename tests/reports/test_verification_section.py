"""The "Certified robustness" report section: figure, verdicts, counterexamples, checks, unsupported models."""

from __future__ import annotations

import json

import torch
from torch import nn

import explain
import reports
from explain.zoo import GRUClassifier
from reports.sections import SECTION_BUILDERS
from reports.sections import verification


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 6 * 6, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def _tiny_data():
    torch.manual_seed(0)
    x = torch.rand(8, 1, 6, 6)
    y = (x[:, 0, :3].mean((1, 2)) > x[:, 0, 3:].mean((1, 2))).long()
    net = Tiny()
    opt = torch.optim.Adam(net.parameters(), 0.05)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return explain.ModelWrapper(net, "image", device="cpu"), x, y


def test_section_is_registered_and_declares_its_keys():
    assert SECTION_BUILDERS["verification"] == "reports.sections.verification"
    assert {"eps", "method", "samples"} <= set(verification.CONFIG_KEYS)
    assert "min_certified_accuracy" in verification.CHECK_KEYS


def test_section_shows_curve_verdicts_and_fails_an_unmet_threshold(tmp_path):
    m, x, y = _tiny_data()
    cfg = {"verify": {"eps": [0, 0.02, 0.3], "method": "alpha-crown", "samples": 8},
           "checks": {"min_certified_accuracy": 0.99}}
    rep = reports.build_report(m, (x, y), sections=["verification"], config=cfg, out=tmp_path)
    sec = rep.sections[0]
    assert sec.error is None, sec.error
    s = sec.summary
    assert s["supported"] and s["eps"] == [0, 0.02, 0.3]
    assert all(c <= e + 1e-9 for c, e in zip(s["certified_accuracy"], s["empirical_robust_accuracy"]))
    assert s["certified_accuracy"][0] == s["clean_accuracy"]       # ε = 0 certifies exactly the correct ones
    assert s["certified_accuracy"][-1] < 0.99                       # at ε = 0.3 nothing this small survives
    check = sec.checks[0]
    assert check.status == "fail" and check.threshold == 0.99
    assert set(s["bound_widths"]) == {"ibp", "crown", "alpha-crown"}
    assert s["bound_widths"]["crown"]["mean_width"] <= s["bound_widths"]["ibp"]["mean_width"] + 1e-6
    assert s["bound_widths"]["alpha-crown"]["mean_width"] <= s["bound_widths"]["crown"]["mean_width"] + 1e-6
    html = (tmp_path / "index.html").read_text()
    assert "Certified robustness" in html and "Counterexamples" in html
    json.dumps(rep.to_dict())


def test_unsupported_model_gets_a_line_saying_why():
    m = explain.ModelWrapper(GRUClassifier(1, 2), "series", device="cpu")
    x, y = torch.randn(4, 8, 1), torch.tensor([0, 1, 0, 1])
    rep = reports.build_report(m, (x, y), sections=["verification"], config={"verify": {"samples": 4}})
    sec = rep.sections[0]
    assert sec.error is None
    assert sec.summary["supported"] is False and "GRU module 'gru'" in sec.summary["reason"]
    assert "Skipped" in sec.blocks[0].text
