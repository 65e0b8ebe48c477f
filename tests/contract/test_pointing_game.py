"""Every registered explainer, with its default settings, points at the planted cause: images,
token sequences and time series whose class evidence was drawn in by code (``explain.zoo``)."""

from __future__ import annotations

import pytest

import explain
from explain.registry import EXPLAINERS
from tests.conftest import MODEL_FIXTURES, pointing_game

#: every planted-signal model: a CNN, a BiLSTM and a Transformer over tokens, a 1-D CNN and a GRU over series
FIXTURES = MODEL_FIXTURES
FAST = {"lime": {"n_samples": 300}, "shap": {"n_samples": 300}}  # a few hundred samples; defaults otherwise
#: (method, model) pairs that are not expected to localise, with the reason
EXCUSED = {("gradcam", "transformer"): "a CAM over a Transformer's last layer mixes all positions"}
#: known gaps, kept visible as strict expected failures (they fail the suite once they pass)
KNOWN_GAPS = {("saliency", "transformer"): "raw embedding gradients point at the planted token in only 0.17 of samples",
              ("smoothgrad", "transformer"): "noisy embedding gradients inherit saliency's miss on the planted token",
              # Gradient magnitude saturates at the decisive step of a recurrent net: integrated
              # gradients and occlusion reach 1.0 on the same models and samples.
              ("saliency", "lstm"): "embedding-gradient norms peak early in the sequence, not at the planted token (0.00)",
              ("smoothgrad", "lstm"): "noisy embedding gradients keep saliency's miss on the BiLSTM (0.05)",
              ("saliency", "gru"): "input gradients of the GRU miss the planted window (0.30)",
              ("smoothgrad", "gru"): "noisy input gradients of the GRU miss the planted window (0.50)"}
#: (method, model) pairs held to a lower bar, with the reason (chance is about 0.1 on these sets)
LOWER_BAR = {("saliency", "cnn"): (0.7, "raw input gradients are noisy at pixel level; smoothgrad is the fix")}


@pytest.mark.parametrize("model", FIXTURES)
@pytest.mark.parametrize("method", list(EXPLAINERS))
def test_explainer_points_at_the_planted_cause(method, model, request):
    if (method, model) in EXCUSED:
        pytest.skip(EXCUSED[(method, model)])
    if (method, model) in KNOWN_GAPS:
        request.applymarker(pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[(method, model)]))
    d = request.getfixturevalue(model)
    x, y, mask = d.x[:40], d.y[:40], d.mask[:40]
    a = explain.run_explainer(method, d.wrapper, x, **FAST.get(method, {}))
    keep = (a.target == y) & mask.flatten(1).any(1)
    assert keep.sum() >= 20
    hits = pointing_game(a.values, mask)[keep].float().mean()
    bar = LOWER_BAR.get((method, model), (0.9, ""))[0]
    assert hits >= bar, f"{method} on {model}: pointing game {float(hits):.2f} < {bar}"
