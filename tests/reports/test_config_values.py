"""Config values are checked when the file is read (types, ranges, NaN), and exit codes tell CI what happened.

0 every check passed, 1 a check failed, 2 a usage or input error (a bad value included, one line),
3 the report was written but a section failed (one stderr line per failed section).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from explain import errors as E
from reports import _inputs
from reports._config import SETTING_RULES, TABLE_RULES
from reports.build import accepted_config, validate_config
from reports.cli import main


class SeriesNet(nn.Module):
    """A planted rule on 1-channel series of 12 steps: class 1 when the mean of the first half is > 0."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 2, 3, padding=1)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            self.conv.weight[0, 0, 1], self.conv.weight[1, 0, 1] = 1.0, -1.0
            self.fc.weight.copy_(torch.tensor([[-4.0, 4.0], [4.0, -4.0]]))
            self.fc.bias.zero_()

    def forward(self, x):  # N×T×C
        h = self.conv(x.transpose(1, 2))[:, :, : x.shape[1] // 2]
        return self.fc(h.mean(dim=2))


def make_series_net():
    return SeriesNet()


def _series(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 12, 1, generator=g) * 0.3
    x[:, :6, 0] += torch.where(y == 1, -1.0, 1.0)[:, None]
    return x, y


def _files(tmp_path, labels=None):
    net = SeriesNet()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    x, y = _series()
    labels = [str(int(v)) for v in y] if labels is None else labels
    lines = ["label," + ",".join(f"t{i}" for i in range(12))]
    lines += [f"{lab}," + ",".join(f"{v:.6f}" for v in row) for lab, row in zip(labels, x[:, :, 0].tolist())]
    (tmp_path / "s.csv").write_text("\n".join(lines) + "\n")
    return ["--model", "tests.reports.test_config_values:make_series_net", "--weights", str(tmp_path / "w.pt"),
            "--kind", "series", "--data", str(tmp_path / "s.csv"), "--out", str(tmp_path / "r")]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


# --------------------------------------------------------------------------- value rules
def test_every_declared_key_and_threshold_has_a_value_rule():
    tables, checks = accepted_config()
    for table, keys in tables.items():
        assert set(keys) <= set(TABLE_RULES[table]), (table, set(keys) - set(TABLE_RULES[table]))
    assert set(checks) <= set(TABLE_RULES["checks"])


@pytest.mark.parametrize("table, key, value, phrase", [
    ("explanations", "samples", "many", r"\[explanations\] samples must be a whole number ≥ 1, got 'many' \(str\)"),
    ("explanations", "samples", 2.5, "whole number"),
    ("explanations", "samples", True, "whole number"),
    ("explanations", "methods", "gradcam", "a list of names"),
    ("checks", "min_accuracy", math.nan, r"\[checks\] min_accuracy must be a number in \[0, 1\], got nan"),
    ("checks", "min_accuracy", 1.5, r"\[0, 1\]"),
    ("checks", "max_ece", -math.inf, r"\[0, 1\]"),
    ("checks", "require_sanity", "yes", "true or false"),
    ("robustness", "eps", [0, -0.01], "finite budgets ≥ 0"),
    ("robustness", "eps", [0, math.nan], "finite budgets ≥ 0"),
    ("robustness", "severities", [1, 7], "severities from 0 to 5"),
    ("robustness", "budgets", {"hotflip": [0, -1]}, "budget lists"),
    ("verify", "method", "exact", "one of 'ibp', 'crown', 'alpha-crown'"),
    ("verify", "eps", [0.1, math.inf], "finite budgets"),
    ("ood", "fit_fraction", 1.0, r"\(0, 1\)"),
    ("trust", "n_random", 0, "whole number ≥ 1"),
    ("trust", "sensitivity_radius", 0.0, "> 0"),
    ("features", "classes", [0, -1], "class indices ≥ 0"),
    ("training", "strip_epochs", "8", "whole number"),
])
def test_a_value_of_the_wrong_type_or_range_is_an_error_naming_table_and_key(table, key, value, phrase):
    with pytest.raises(E.InputValueError, match=phrase):
        validate_config({table: {key: value}})


def test_good_values_pass():
    validate_config({"explanations": {"samples": 8, "methods": ["gradcam"], "params": {"lime": {"n_samples": 50}}},
                     "checks": {"min_accuracy": 0.9, "require_sanity": True, "min_deletion_gain": -0.1},
                     "robustness": {"eps": [0, 0.1], "severities": [0, 3], "budgets": {"hotflip": [0, 1, 2]}},
                     "verify": {"method": "crown", "samples": 4}, "ood": {"fit_fraction": 0.5}})


# --------------------------------------------------------------------------- through the CLI
@pytest.mark.parametrize("toml, phrase", [
    ('[explanations]\nsamples = "many"\n', "[explanations] samples must be a whole number ≥ 1, got 'many'"),
    ("[checks]\nmin_accuracy = nan\n", "[checks] min_accuracy must be a number in [0, 1], got nan"),
    ("[robustness]\neps = [0, -0.1]\n", "[robustness] eps must be a list of finite budgets ≥ 0"),
    ('samples = "many"\n', "config setting 'samples' must be a whole number ≥ 1, got 'many'"),
    ("seed = -1\n", "config setting 'seed' must be a whole number ≥ 0"),
    ("sample = 3\n", "unknown setting 'sample' in the config file; accepted: model, weights"),
])
def test_a_bad_config_value_exits_2_with_one_line_before_any_work(tmp_path, capsys, monkeypatch, toml, phrase):
    argv = _files(tmp_path)
    (tmp_path / "c.toml").write_text(toml)
    monkeypatch.setattr("reports._setup.load_data",
                        lambda *a, **k: pytest.fail("data read before the config was checked"))
    code, out, err = run(capsys, "report", "--config", str(tmp_path / "c.toml"), *argv, "--quiet")
    assert code == 2, err
    assert len(err) == 1 and phrase in err[0], err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("label, phrase", [
    ("0.5", "line 2: label '0.5' is not a class index"),
    ("-1", "line 2: label '-1' is not a class index"),
    ("one", "line 2: label 'one' is not a number"),
])
def test_fractional_csv_labels_exit_2_naming_the_line(tmp_path, capsys, label, phrase):
    x, y = _series()
    labels = [label] + [str(int(v)) for v in y[1:]]
    argv = _files(tmp_path, labels)
    code, out, err = run(capsys, "report", *argv, "--quiet")
    assert code == 2, err
    assert len(err) == 1 and phrase in err[0] and "s.csv" in err[0], err


def test_fractional_labels_in_long_csv_and_tensor_files_are_refused(tmp_path):
    (tmp_path / "long.csv").write_text("sample_id,t,a,label\ns0,0,0.1,1\ns0,1,0.2,1\ns1,0,0.3,0.25\ns1,1,0.4,0.25\n")
    with pytest.raises(E.InputValueError, match=r"line 4: label '0.25' is not a class index"):
        _inputs.load_series_csv(tmp_path / "long.csv")
    torch.save({"x": torch.rand(3, 12, 1), "y": torch.tensor([0.0, 1.0, 1.7])}, tmp_path / "d.pt")
    with pytest.raises(E.InputValueError, match=r"label 1.7 \(sample 2\) is not a class index"):
        _inputs.load_tensor_file(tmp_path / "d.pt")
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 12, 1), np.float32), y=np.array([0.5, 1.0]))
    with pytest.raises(E.InputValueError, match="label 0.5"):
        _inputs.load_tensor_file(tmp_path / "d.npz")


def test_whole_labels_written_as_floats_are_read_as_classes(tmp_path):
    (tmp_path / "s.csv").write_text("label,t0,t1\n1.0,0.5,0.25\n0,0.1,0.2\n")
    x, y = _inputs.load_series_csv(tmp_path / "s.csv")
    assert y.tolist() == [1, 0] and y.dtype == torch.long
    torch.save((torch.rand(2, 12, 1), torch.tensor([1.0, 0.0])), tmp_path / "d.pt")
    assert _inputs.load_tensor_file(tmp_path / "d.pt")[1].tolist() == [1, 0]


def _break(monkeypatch, *section_ids):
    """Make these sections raise inside (as a bug or an unsupported model would) and skip the slow ones."""
    import importlib

    from reports.sections import SECTION_BUILDERS
    for sid in section_ids:
        module = importlib.import_module(SECTION_BUILDERS[sid])

        def boom(ctx, sid=sid):
            raise RuntimeError(f"{sid} exploded\nsecond line of the message")
        monkeypatch.setattr(module, "build", boom)


SLOW = ("trust", "robustness", "ood", "verification")


def test_a_failed_section_writes_the_report_exits_3_and_names_each_section_on_one_line(tmp_path, capsys, monkeypatch):
    _break(monkeypatch, *SLOW)
    argv = _files(tmp_path)
    code, out, err = run(capsys, "report", *argv, "--methods", "gradcam", "--samples", "1", "--quiet")
    assert code == 3, err
    failed = [line for line in err if "section failed" in line]
    assert len(failed) == len(SLOW), err
    for sid in SLOW:
        assert any(f"section failed: {sid} " in line and f"RuntimeError: {sid} exploded second line of the message"
                   in line for line in failed), err
    assert out.strip() == str(tmp_path / "r" / "index.html")
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["sections"]["ood"]["error"] and summary["sections"]["performance"]["error"] is None


def test_a_failed_section_outranks_a_failed_check(tmp_path, capsys, monkeypatch):
    _break(monkeypatch, *SLOW)
    (tmp_path / "c.toml").write_text("[checks]\nmin_accuracy = 1.0\n")
    argv = _files(tmp_path, ["1"] * 16)  # half the labels are wrong: accuracy 50 %
    code, out, err = run(capsys, "report", "--config", str(tmp_path / "c.toml"), *argv, "--methods", "gradcam",
                         "--samples", "1")
    assert code == 3, err
    assert any("[fail] accuracy" in line for line in err), err


def test_a_failed_check_alone_exits_1_and_a_clean_run_0(tmp_path, capsys, monkeypatch):
    import reports.build as build

    real = build.SECTION_BUILDERS
    monkeypatch.setattr(build, "SECTION_BUILDERS", {k: v for k, v in real.items() if k not in SLOW})
    argv = _files(tmp_path)
    code, _, err = run(capsys, "report", *argv, "--methods", "gradcam", "--samples", "1", "--quiet")
    assert code == 0, err
    (tmp_path / "c.toml").write_text("[checks]\nmin_accuracy = 1.0\n")
    argv = _files(tmp_path, ["1"] * 16)
    code, _, err = run(capsys, "report", "--config", str(tmp_path / "c.toml"), *argv, "--methods", "gradcam",
                       "--samples", "1", "--quiet")
    assert code == 1, err


def test_cli_setting_rules_cover_every_option_the_cli_merges():
    from reports.cli import _parser
    parser = _parser()
    report = parser._subparsers._group_actions[0].choices["report"]
    dests = {a.dest for a in report._actions} - {"help", "config", "quiet", "force", "debug"}
    assert dests <= set(SETTING_RULES), dests - set(SETTING_RULES)
