"""Values of the right type but impossible meaning are refused with the toolkit's own error.

A model built on the ``meta`` device (shapes, no weights), a negative / NaN / infinite budget at every
public entry that takes one, and corruption severities outside 0..5 or between levels. Each refusal
comes before any forward pass, and names what was expected.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from torch import nn

import explain
import robustness
from explain import errors as E
from explain.zoo import BiLSTMClassifier, SmallCNN
from robustness.registry import ATTACK_SPECS


class Counting(nn.Module):
    """A tiny image classifier that counts its forward passes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.fixture
def img():
    net = Counting()
    m = explain.ModelWrapper(net, "image", device="cpu")
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0])
    return net, m, x, y


@pytest.fixture
def tok():
    torch.manual_seed(0)
    m = explain.ModelWrapper(BiLSTMClassifier(20, 2), "tokens", device="cpu")
    x = torch.randint(2, 20, (3, 6), generator=torch.Generator().manual_seed(0))
    return m, x, torch.tensor([0, 1, 0])


# --------------------------------------------------------------------------- meta device
def test_a_model_on_the_meta_device_is_refused_with_a_toolkit_error_saying_to_load_weights():
    with torch.device("meta"):
        net = SmallCNN(num_classes=3, width=4)
    with pytest.raises(E.UnsupportedModelError, match=r"no weights materialised.*meta.*load the weights first"):
        explain.ModelWrapper(net, "image", device="cpu")


def test_one_meta_buffer_is_enough_to_refuse_and_it_is_named():
    net = SmallCNN(num_classes=3, width=4)
    net.register_buffer("scale", torch.empty(3, device="meta"))
    with pytest.raises(E.UnsupportedModelError, match=r"1 parameter\(s\)/buffer\(s\).*\(scale\)"):
        explain.ModelWrapper(net, "image", device="cpu")


def test_the_advice_in_the_message_works_to_empty_then_load_state_dict():
    torch.manual_seed(0)
    real = SmallCNN(num_classes=3, width=4)
    with torch.device("meta"):
        net = SmallCNN(num_classes=3, width=4)
    net.to_empty(device="cpu")
    net.load_state_dict(real.state_dict())
    x = torch.rand(2, 3, 16, 16)
    m = explain.ModelWrapper(net, "image", device="cpu")
    assert torch.equal(m.logits(x), explain.ModelWrapper(real, "image", device="cpu").logits(x))


# --------------------------------------------------------------------------- budgets
BAD_BUDGETS = [-0.1, -1e-9, math.nan, math.inf]
EPS_ATTACKS = [name for name, spec in ATTACK_SPECS.items() if spec.budget == "eps" and "image" in spec.kinds]
COUNT_ATTACKS = [name for name, spec in ATTACK_SPECS.items() if spec.budget == "count"]


def _fast(method: str) -> dict:
    takes = inspect.signature(ATTACK_SPECS[method].cls.__init__).parameters
    return {"steps": 2} if "steps" in takes else {}


def test_the_registry_has_both_budget_kinds():
    assert EPS_ATTACKS and COUNT_ATTACKS


@pytest.mark.parametrize("method", EPS_ATTACKS)
@pytest.mark.parametrize("eps", BAD_BUDGETS)
def test_attack_refuses_a_bad_budget(img, method, eps):
    net, m, x, y = img
    with pytest.raises(E.InputValueError, match="eps"):
        robustness.attack(m, x, y, method=method, eps=eps, **_fast(method))
    with pytest.raises(E.InputValueError, match="eps"):
        robustness.make_attack(method, eps=eps, **_fast(method)).run(m, x, y)


@pytest.mark.parametrize("method", EPS_ATTACKS)
@pytest.mark.parametrize("eps", BAD_BUDGETS)
def test_robust_accuracy_refuses_a_bad_budget_before_attacking(img, method, eps):
    net, m, x, y = img
    with pytest.raises(E.InputValueError, match=r"eps: every budget must be a finite number ≥ 0"):
        robustness.robust_accuracy(m, (x, y), eps=[0.0, 2 / 255, eps], method=method, **_fast(method))
    assert net.calls == 0  # refused before any sample was attacked


@pytest.mark.parametrize("method", COUNT_ATTACKS)
@pytest.mark.parametrize("budget, match", [(-1, "finite number ≥ 0"), (1.5, "whole number"), (math.nan, "finite")])
def test_count_budgets_must_be_whole_numbers_at_least_zero(tok, method, budget, match):
    m, x, y = tok
    with pytest.raises(E.InputValueError, match=match):
        robustness.robust_accuracy(m, (x, y), eps=[0, 1, budget], method=method)
    if budget == budget and budget != 1.5:  # attack() itself takes the count budget as max_tokens
        with pytest.raises(E.InputValueError):
            robustness.attack(m, x, y, method=method, eps=budget)


def test_robust_accuracy_refuses_a_budget_that_is_not_a_number(img):
    net, m, x, y = img
    with pytest.raises(E.InputValueError, match="must be a number"):
        robustness.robust_accuracy(m, (x, y), eps=[0.0, "0.1"], method="fgsm")
    with pytest.raises(E.InputValueError, match="must be a number"):
        robustness.robust_accuracy(m, (x, y), eps=[0.0, True], method="fgsm")


@pytest.mark.parametrize("eps", BAD_BUDGETS)
def test_certified_accuracy_output_bounds_and_verify_refuse_a_bad_budget(img, eps):
    net, m, x, y = img
    with pytest.raises(E.InputValueError, match="eps"):
        robustness.certified_accuracy(m, (x, y), eps=[0.0, eps], method="ibp")
    with pytest.raises(E.InputValueError, match="eps"):
        robustness.output_bounds(m, x, eps=eps, method="ibp")
    with pytest.raises(E.InputValueError, match="eps"):
        robustness.verify(m, x, y, eps=eps, method="ibp")


# --------------------------------------------------------------------------- corruption severities
@pytest.mark.parametrize("severity", [-1, 6, 2.5, math.nan, True, "3"])
def test_corruption_severities_outside_0_to_5_or_between_levels_are_refused(img, severity):
    net, m, x, y = img
    with pytest.raises(E.InputValueError, match="severities must be whole numbers from 0"):
        robustness.corruption_accuracy(m, (x, y), corruptions=["gaussian_noise"], severities=[1, severity])
    assert net.calls == 0


def test_whole_severities_still_work_including_zero_and_integral_floats(img):
    net, m, x, y = img
    r = robustness.corruption_accuracy(m, (x, y), corruptions=["gaussian_noise"], severities=[0, 3.0, 5])
    assert r.severities == [0, 3, 5]
    assert r.accuracy["gaussian_noise"][0] == r.clean_accuracy  # severity 0 is the clean data
