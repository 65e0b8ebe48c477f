"""Every registered explainer, with its default settings, points at the planted cause: images,
token sequences and time series whose class evidence was drawn in by code (``explain.zoo``)."""

from __future__ import annotations

import pytest

import explain
from explain.registry import EXPLAINERS
from tests.conftest import pointing_game

DATA = {"image": "cnn", "tokens": "transformer", "series": "conv1d"}
FAST = {"lime": {"n_samples": 300}, "shap": {"n_samples": 300}}  # a few hundred samples; defaults otherwise
#: (method, kind) pairs that are not expected to localise, with the reason
EXCUSED = {("gradcam", "tokens"): "a CAM over a Transformer's last layer mixes all positions"}
#: known gaps, kept visible as strict expected failures (they fail the suite once they pass)
KNOWN_GAPS = {("saliency", "tokens"): "raw embedding gradients point at the planted token in only 0.17 of samples",
              ("smoothgrad", "tokens"): "noisy embedding gradients inherit saliency's miss on the planted token"}
#: (method, kind) pairs held to a lower bar, with the reason (chance is about 0.1 on these sets)
LOWER_BAR = {("saliency", "image"): (0.7, "raw input gradients are noisy at pixel level; smoothgrad is the fix")}


@pytest.mark.parametrize("kind", list(DATA))
@pytest.mark.parametrize("method", list(EXPLAINERS))
def test_explainer_points_at_the_planted_cause(method, kind, request):
    if (method, kind) in EXCUSED:
        pytest.skip(EXCUSED[(method, kind)])
    if (method, kind) in KNOWN_GAPS:
        request.applymarker(pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[(method, kind)]))
    d = request.getfixturevalue(DATA[kind])
    x, y, mask = d.x[:40], d.y[:40], d.mask[:40]
    a = explain.run_explainer(method, d.wrapper, x, **FAST.get(method, {}))
    keep = (a.target == y) & mask.flatten(1).any(1)
    assert keep.sum() >= 20
    hits = pointing_game(a.values, mask)[keep].float().mean()
    bar = LOWER_BAR.get((method, kind), (0.9, ""))[0]
    assert hits >= bar, f"{method} on {kind}: pointing game {float(hits):.2f} < {bar}"
