"""Report settings no section reads are an error that lists the accepted ones."""

from __future__ import annotations

import importlib

import pytest
import torch

import explain
import reports
from explain.errors import InputShapeError
from reports.build import accepted_config, validate_config
from reports.sections import SECTION_BUILDERS


def test_every_section_declares_its_config_and_check_keys():
    for name, path in SECTION_BUILDERS.items():
        module = importlib.import_module(path)
        assert isinstance(module.CONFIG_KEYS, dict) and isinstance(module.CHECK_KEYS, dict), name
        assert all(isinstance(v, str) and v for v in {**module.CONFIG_KEYS, **module.CHECK_KEYS}.values()), name


@pytest.mark.parametrize("config, match", [
    ({"lime": {"n_samples": 10}}, r"unknown report config table.*'lime'.*accepted: checks, model_card"),
    ({"robustness": {"epsilon": [0, 1]}}, r"unknown key\(s\) in \[robustness\]: \['epsilon'\].*eps \("),
    ({"checks": {"min_acc": 0.9}}, r"unknown threshold\(s\) in \[checks\]: \['min_acc'\].*min_accuracy"),
    ({"ood": 3}, r"config\['ood'\] must be a table"),
])
def test_unknown_settings_are_rejected_with_the_accepted_ones(config, match):
    with pytest.raises(InputShapeError, match=match):
        validate_config(config)


def test_declared_settings_pass_and_build_report_rejects_before_any_work():
    tables, checks = accepted_config()
    validate_config({"checks": {k: (True if k == "require_sanity" else 0.5) for k in checks}, **{t: {} for t in tables}})
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    m = explain.ModelWrapper(net, "image", device="cpu")
    with pytest.raises(InputShapeError, match="lime"):
        reports.build_report(m, (torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 0, 1])), config={"lime": {}})
