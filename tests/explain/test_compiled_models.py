"""``torch.compile`` models: every OOD detector and Grad-CAM give the numbers of the eager model.

The compiled graph is built by earlier calls without hooks (as a report does: accuracy first, then
the feature detectors); hooks added afterwards must still see the layers.
"""

from __future__ import annotations

import pytest
import torch

import explain
import robustness
from explain.zoo import SmallCNN
from robustness.ood import DETECTORS


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    net = SmallCNN(num_classes=3, width=8).eval()
    compiled = torch.compile(net, backend="eager")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(48, 3, 16, 16, generator=g)
    y = torch.randint(0, 3, (48,), generator=g)
    eager = explain.ModelWrapper(net, "image", device="cpu")
    wrapped = explain.ModelWrapper(compiled, "image", device="cpu")
    wrapped.logits(x[:8])  # compile the graph before any hook exists
    return eager, wrapped, compiled, x, y


@pytest.mark.parametrize("name", list(DETECTORS))
def test_every_detector_scores_a_compiled_model_like_the_eager_one(models, name):
    eager, wrapped, compiled, x, y = models
    params = {"dim": 4} if name == "vim" else {}
    reference = robustness.ood_detector(name, **params).fit(eager, (x[:40], y[:40])).score(x[40:])
    scores = robustness.ood_detector(name, **params).fit(wrapped, (x[:40], y[:40])).score(x[40:])
    torch.testing.assert_close(scores, reference, rtol=1e-4, atol=1e-4)
    assert wrapped.model is compiled  # the wrapper switches to the eager module only inside a hook block


def test_gradcam_on_a_compiled_model_matches_the_eager_model(models):
    eager, wrapped, compiled, x, _ = models
    reference = explain.gradcam(eager, x[:4])
    result = explain.gradcam(wrapped, x[:4])
    assert result.layer.split(".")[-1] == reference.layer.split(".")[-1]
    torch.testing.assert_close(result.values, reference.values, rtol=1e-4, atol=1e-5)
    assert float(result.values.abs().sum()) > 0


def test_layer_names_of_the_eager_module_and_of_the_compiled_one_both_resolve(models):
    _, wrapped, compiled, x, _ = models
    for name in ("conv", "_orig_mod.conv"):
        a = explain.gradcam(wrapped, x[:2], layer=name)
        assert a.values.shape == (2, 16, 16) and float(a.values.abs().sum()) > 0
    with wrapped.capture("head", role="features") as cap:
        wrapped.logits(x[:3])
    assert cap.input is not None and cap.input.shape == (3, 16)
    assert not compiled._orig_mod.head._forward_hooks  # removed on exit
