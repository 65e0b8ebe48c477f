"""A sample's explanation never depends on its batch-mates: shuffle the batch, split it, compare.

Stochastic explainers draw from per-sample generators seeded with ``seed``; normalisations and
targets are per sample.
"""

from __future__ import annotations

import pytest
import torch

import explain
from explain.registry import EXPLAINERS

DATA = {"image": "cnn", "tokens": "lstm", "series": "conv1d"}
FAST = {"lime": {"n_samples": 100}, "shap": {"n_samples": 100}, "integrated_gradients": {"steps": 16},
        "smoothgrad": {"n_samples": 8}}


@pytest.mark.parametrize("kind", list(DATA))
@pytest.mark.parametrize("method", list(EXPLAINERS))
def test_explanation_does_not_depend_on_batch_mates(method, kind, request):
    d = request.getfixturevalue(DATA[kind])
    x = d.x[:6]
    params = FAST.get(method, {})
    try:
        whole = explain.run_explainer(method, d.wrapper, x, **params)
    except explain.errors.ToolkitError as error:  # a method that does not take this input kind
        pytest.skip(f"{method} on {kind}: {error}")
    order = torch.tensor([3, 0, 5, 1, 4, 2])
    shuffled = explain.run_explainer(method, d.wrapper, x[order], **params)
    torch.testing.assert_close(shuffled.values, whole.values[order], atol=1e-4, rtol=1e-3)
    halves = [explain.run_explainer(method, d.wrapper, part, **params) for part in (x[:2], x[2:])]
    torch.testing.assert_close(torch.cat([h.values for h in halves]), whole.values, atol=1e-4, rtol=1e-3)
