"""float64 inputs that overflow float32 are refused at every entry point; attack norms at 1e30 are exact.

The model runs in float32: a float64 value of 1e300 passes a finiteness check but becomes Inf once
cast, so the check runs on the range float32 can hold. Attack perturbation norms are computed in
float64 and compared with numpy's float64 norms.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import explain
import reports
import robustness
from explain.errors import InputValueError
from explain.zoo import Conv1dNet, SmallCNN
from robustness.attacks._base import finish, normalized_step, project_l2


@pytest.fixture(scope="module")
def m():
    torch.manual_seed(0)
    return explain.ModelWrapper(SmallCNN(3, 3, 4), "image", device="cpu")


def huge(n=4):
    x = torch.rand(n, 3, 8, 8, dtype=torch.float64)
    x[2, 1, 3, 3] = 1e300
    x[3, 0, 0, 0] = -1e39  # just past float32's range, negative
    return x, torch.arange(n) % 3


ENTRY_POINTS = {
    "logits": lambda m, x, y, tmp: m.logits(x),
    "predict": lambda m, x, y, tmp: m.predict(x),
    "features": lambda m, x, y, tmp: m.features(x),
    **{f"explain.{name}": (lambda name: lambda m, x, y, tmp: explain.run_explainer(name, m, x))(name)
       for name in explain.available_explainers()},
    "attack": lambda m, x, y, tmp: robustness.attack(m, x, y, method="fgsm", eps=1 / 255),
    "robust_accuracy": lambda m, x, y, tmp: robustness.robust_accuracy(m, (x, y), eps=[0, 1 / 255], method="fgsm"),
    "corruption_accuracy": lambda m, x, y, tmp: robustness.corruption_accuracy(m, (x, y), corruptions=["brightness"],
                                                                              severities=[1]),
    "ood_detector.score": lambda m, x, y, tmp: robustness.ood_detector("energy").fit(m, (x[:2].float(), y[:2])).score(x),
    "evaluate_ood": lambda m, x, y, tmp: robustness.evaluate_ood(m, (torch.rand(8, 3, 8, 8), torch.arange(8) % 3), x,
                                                                 methods=["msp"]),
    "output_bounds": lambda m, x, y, tmp: robustness.output_bounds(m, x, eps=1 / 255, method="ibp"),
    "verify": lambda m, x, y, tmp: robustness.verify(m, x, y, eps=1 / 255, method="ibp"),
    "build_report": lambda m, x, y, tmp: reports.build_report(m, (x, y), out=tmp / "r", sections=["performance"]),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_float64_values_beyond_float32_are_refused(m, entry, tmp_path):
    x, y = huge()
    with pytest.raises(InputValueError) as info:
        ENTRY_POINTS[entry](m, x, y, tmp_path)
    msg = str(info.value)
    assert "float32" in msg and "samples 2, 3" in msg and "1e+300" in msg, msg


def test_float64_values_inside_float32_range_are_accepted_and_match_float32(m):
    x, _ = huge()
    x[2, 1, 3, 3], x[3, 0, 0, 0] = 0.5, 0.25
    assert torch.equal(m.logits(x), m.logits(x.float()))


def test_series_overflow_is_refused_too():
    torch.manual_seed(0)
    s = explain.ModelWrapper(Conv1dNet(1, 3, width=4), "series", device="cpu")
    x = torch.randn(3, 16, 1, dtype=torch.float64)
    x[1, 5, 0] = 1e300
    with pytest.raises(InputValueError, match="float32"):
        s.logits(x)


# ------------------------------------------------------------------------------ attack norms
def test_attack_norms_at_1e30_are_finite_and_exact(m):
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((3, 3, 8, 8)).astype(np.float32))
    delta = torch.from_numpy((rng.standard_normal((3, 3, 8, 8)) * 1e30).astype(np.float32))
    x_adv = x + delta
    r = finish(m, "test", {}, x, x_adv, torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), 0.0)
    ref = (x_adv.numpy().astype(np.float64) - x.numpy().astype(np.float64)).reshape(3, -1)
    assert bool(torch.isfinite(r.l2).all()) and bool(torch.isfinite(r.linf).all())
    np.testing.assert_allclose(r.l2.numpy(), np.linalg.norm(ref, axis=1), rtol=1e-12)
    np.testing.assert_allclose(r.linf.numpy(), np.abs(ref).max(axis=1), rtol=1e-12)
    d = r.to_dict()
    assert np.isfinite(d["mean_l2"]) and d["mean_l2"] == pytest.approx(np.linalg.norm(ref, axis=1).mean(), rel=1e-12)


def test_l2_projection_and_step_at_1e30_keep_their_size():
    rng = np.random.default_rng(1)
    x = torch.zeros(2, 3, 8, 8)
    v = torch.from_numpy((rng.standard_normal((2, 3, 8, 8)) * 1e30).astype(np.float32))
    eps = torch.full((2, 1, 1, 1), 1e30)
    p = project_l2(x + v, x, eps)
    norms = np.linalg.norm(p.numpy().astype(np.float64).reshape(2, -1), axis=1)
    np.testing.assert_allclose(norms, [1e30, 1e30], rtol=1e-5)  # on the sphere, not collapsed to 0
    step = normalized_step(v, "l2")
    np.testing.assert_allclose(np.linalg.norm(step.numpy().astype(np.float64).reshape(2, -1), axis=1), [1, 1], rtol=1e-5)
