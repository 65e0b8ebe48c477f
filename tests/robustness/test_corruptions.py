"""Corruptions: identity at severity 0, damage that grows with severity, seeds, shapes and ranges."""

from __future__ import annotations

import pytest
import torch

import robustness
from explain.errors import InputValueError, UnknownMethodError
from robustness.registry import CORRUPTIONS


def _inputs(kind, d):
    return d.x[:32]


@pytest.mark.parametrize("kind, fixture", [("image", "cnn"), ("tokens", "lstm"), ("series", "conv1d")])
def test_every_corruption_is_pure_seeded_shape_preserving_and_grows_with_severity(kind, fixture, request):
    d = request.getfixturevalue(fixture)
    x = _inputs(kind, d)
    for name, c in CORRUPTIONS[kind].items():
        assert torch.equal(c.apply(x, 0), x)
        outs = [c.apply(x, s, torch.Generator().manual_seed(7)) for s in (1, 3, 5)]
        again = c.apply(x, 3, torch.Generator().manual_seed(7))
        assert torch.equal(outs[1], again), name
        assert torch.equal(x, _inputs(kind, d)), f"{name} changed its input"
        for o in outs:
            assert o.shape == x.shape and o.dtype == x.dtype
            if kind == "image":
                assert float(o.min()) >= 0 and float(o.max()) <= 1
        dist = [float((o.float() - x.float()).abs().mean()) for o in outs]
        assert dist[0] <= dist[2] + 1e-6, (name, dist)
        assert dist[2] > 0, name


def test_corruption_accuracy_reports_every_corruption_and_falls_with_strong_noise(cnn):
    k = robustness.corruption_accuracy(cnn.wrapper, (cnn.x[:100], cnn.y[:100]),
                                       corruptions=["gaussian_noise", "blur"], severities=[1, 5], seed=0)
    assert set(k.accuracy) == {"gaussian_noise", "blur"} and k.clean_accuracy >= 0.95
    assert k.accuracy["gaussian_noise"][1] <= k.accuracy["gaussian_noise"][0]
    assert k.to_dict()["mean_accuracy"] == pytest.approx(k.mean_accuracy)


def test_unknown_corruption_and_bad_severity_raise(cnn):
    with pytest.raises(UnknownMethodError, match="gaussian_noise"):
        robustness.corruption_accuracy(cnn.wrapper, (cnn.x[:4], cnn.y[:4]), corruptions=["fog"])
    with pytest.raises(InputValueError, match="severity"):
        CORRUPTIONS["image"]["contrast"].apply(cnn.x[:2], 9)
