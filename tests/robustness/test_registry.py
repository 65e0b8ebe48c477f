"""Attacks and detectors declare their capabilities; nothing outside the registries tests a name."""

from __future__ import annotations

import inspect
import pathlib
import re

import pytest
import torch

import explain
import robustness
from explain.errors import InputShapeError, InputValueError
from robustness.registry import ATTACK_SPECS, DETECTOR_SPECS, attacks_for
from robustness.corruptions.sequence import token_mask

ROOT = pathlib.Path(robustness.__file__).resolve().parent.parent


def test_every_attack_declares_kinds_budget_unit_and_defaults_it_accepts():
    for name, spec in ATTACK_SPECS.items():
        accepted = set(inspect.signature(spec.cls.__init__).parameters)
        assert spec.budget in ("eps", "count") and spec.budget_param in accepted, name
        assert set(spec.defaults) <= accepted, name
        assert set(spec.units) >= set(spec.kinds), name
        assert spec.label({**spec.defaults}), name
    for name, spec in DETECTOR_SPECS.items():
        assert set(spec.defaults) <= set(inspect.signature(spec.cls.__init__).parameters), name


def test_no_code_outside_the_registries_tests_an_attack_or_detector_name():
    names = "|".join(list(ATTACK_SPECS) + list(DETECTOR_SPECS))
    pattern = re.compile(rf"""(==|!=|\bin\b)\s*\(?\s*["']({names})["']|["']({names})["']\s*(==|!=)""")
    offenders = []
    for folder in ("robustness", "reports"):
        for path in (ROOT / folder).rglob("*.py"):
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert offenders == []


def test_hotflip_budget_is_a_whole_number_of_tokens(transformer):
    m = transformer.wrapper
    r = robustness.attack(m, transformer.x[:6], transformer.y[:6], "hotflip", eps=2)
    assert r.params["budget_unit"] == "substituted tokens" and int(r.tokens_changed.max()) <= 2
    with pytest.raises(InputValueError, match="whole number"):
        robustness.attack(m, transformer.x[:2], transformer.y[:2], "hotflip", eps=0.5)


def test_attack_on_a_kind_it_does_not_support_names_the_ones_that_fit(cnn):
    with pytest.raises(InputShapeError, match="fgsm"):
        robustness.robust_accuracy(cnn.wrapper, (cnn.x[:2], cnn.y[:2]), eps=[0, 1], method="hotflip")
    assert "hotflip" not in attacks_for("image") and "hotflip" in attacks_for("tokens")


def test_hotflip_never_touches_or_inserts_the_wrappers_special_ids(transformer):
    net = transformer.net
    x, y = transformer.x[:12].clone(), transformer.y[:12]
    x[:, 0] = 7  # pretend id 7 is a [CLS] marker
    m = explain.ModelWrapper(net, "tokens", device="cpu", unk_id=1, special_ids=[7, 9])
    r = robustness.attack(m, x, y, "hotflip", max_tokens=3)
    assert bool((r.adversarial[:, 0] == 7).all())
    changed = r.adversarial != r.inputs
    assert not bool(torch.isin(r.adversarial[changed], torch.tensor([0, 1, 7, 9])).any())


def test_token_corruptions_use_the_wrappers_pad_and_unknown_ids():
    x = torch.tensor([[5, 6, 7, 3, 3], [8, 9, 3, 3, 3]])  # padding id 3
    out = token_mask(x, 1.0, torch.Generator().manual_seed(0), pad_id=3, unk_id=4)
    assert out.tolist() == [[4, 4, 4, 3, 3], [4, 4, 3, 3, 3]]


def test_corruption_accuracy_passes_the_wrappers_ids(transformer):
    class Spy(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net, self.seen = net, []

        def forward(self, ids):
            self.seen.append(ids.clone())
            return self.net(ids)

    spy = Spy(transformer.net)
    m = explain.ModelWrapper(spy, "tokens", device="cpu", pad_id=0, unk_id=5, embedding_layer="net.embedding")
    robustness.corruption_accuracy(m, (transformer.x[:8], transformer.y[:8]), corruptions=["token_mask"], severities=[5])
    masked = spy.seen[-1]
    hit = masked != transformer.x[:8]
    assert bool(hit.any()) and bool((masked[hit] == 5).all())


def test_report_with_only_hotflip_builds_a_curve_in_tokens(transformer):
    pytest.importorskip("matplotlib")
    import reports
    rep = reports.build_report(transformer.wrapper, (transformer.x[:12], transformer.y[:12]), sections=["robustness"],
                               config={"robustness": {"methods": ["hotflip"], "corruptions": []}})
    sec = rep.sections[0]
    assert sec.error is None, sec.error
    att = sec.summary["attacks"]["hotflip"]
    assert att["unit"] == "substituted tokens" and att["eps"] == [0, 1, 2, 3, 5]
    assert all(b <= a for a, b in zip(att["accuracy"], att["accuracy"][1:]))
