"""Feature visualisation: a planted CNN whose classes are known shapes shows those shapes; the
objective rises far above its value on real data; pixels stay valid; seeds reproduce."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import explain
from explain.errors import InputShapeError
from explain.zoo import planted_images
from explain.zoo.planted import _shapes

PATCH, BORDER, SIZE = 8, 2, 24


def templates() -> torch.Tensor:
    """The zoo's class stencils with a dark border, zero-mean and unit-norm: ``3×12×12``."""
    out = []
    for stencil in _shapes(PATCH)[:3]:
        t = F.pad(stencil, (BORDER,) * 4)
        t = t - t.mean()
        out.append(t / t.norm())
    return torch.stack(out)


class PlantedShapeCNN(nn.Module):
    """Class c's logit = 10 × the best match anywhere of the brightness with shape c's template."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, PATCH + 2 * BORDER, bias=False)
        self.head = nn.Linear(3, 3)
        with torch.no_grad():
            self.conv.weight.copy_(templates()[:, None].repeat(1, 3, 1, 1) / 3)
            self.head.weight.copy_(torch.eye(3) * 10)
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).amax(dim=(2, 3)))


@pytest.fixture(scope="module")
def planted():
    data = planted_images(120, size=SIZE, patch=PATCH, num_classes=3, blank=False, seed=0)
    m = explain.ModelWrapper(PlantedShapeCNN(), "image", class_names=data.class_names, device="cpu")
    return m, data


def best_match(image: torch.Tensor, template: torch.Tensor) -> float:
    """Largest normalised cross-correlation of the image's brightness with ``template`` anywhere."""
    patches = F.unfold(image.mean(0)[None, None], template.shape[-1])
    patches = patches - patches.mean(1, keepdim=True)
    patches = patches / patches.norm(dim=1, keepdim=True).clamp_min(1e-8)
    return float((template.flatten()[None, :, None] * patches).sum(1).max())


def test_class_visualisations_of_a_planted_cnn_show_each_class_shape(planted):
    m, data = planted
    assert float((m.predict(data.x) == data.y).float().mean()) > 0.8  # it really classifies the shapes
    fv = explain.feature_visualization(m, classes=[0, 1, 2], steps=32, seed=0, shape=(3, SIZE, SIZE))
    t = templates()
    match = torch.tensor([[best_match(fv.images[c], t[s]) for s in range(3)] for c in range(3)])
    for shape in range(3):  # each shape is matched best by its own class's visualisation
        others = [match[c, shape] for c in range(3) if c != shape]
        assert match[shape, shape] > max(others) + 0.1, match
    assert match.diag().min() > 0.5, match


def test_optimised_objective_rises_far_above_its_value_on_real_data(cnn):
    m, x = cnn.wrapper, cnn.x
    real = m.logits(x)
    fv = explain.feature_visualization(m, classes=[0, 1, 2], steps=48, seed=0, data=(x, cnn.y))
    assert bool((fv.activation > real[:, :3].max(0).values).all()), (fv.activation, real.max(0).values)
    assert bool((fv.activation > fv.start_activation + 3).all())
    for i in range(3):  # the dataset examples are the real samples with the largest logits
        assert torch.equal(fv.examples.indices[i], real[:, i].topk(4).indices)
    ch = explain.feature_visualization(m, layer="conv", channels=[0, 1, 2, 3], steps=48, seed=0, shape=(3, 32, 32))
    with m.capture("conv") as cap, torch.no_grad():
        m.model(x)
    real_act = cap.output.mean(dim=(2, 3))[:, :4]  # the objective: the channel's mean (pre-activation) output
    assert bool((ch.activation > real_act.max(0).values).all()), (ch.activation, real_act.max(0).values)
    spread = real_act.mean(0) + 5 * real_act.std(0)
    assert bool((ch.activation > spread).all()), (ch.activation, spread)
    assert ch.objective == "channel" and ch.layer == "conv"


def test_images_stay_in_the_valid_range_and_seeds_reproduce(planted):
    m, _ = planted
    kw = dict(classes=[1, 2], steps=6, shape=(3, SIZE, SIZE))
    a = explain.feature_visualization(m, seed=3, **kw)
    b = explain.feature_visualization(m, seed=3, **kw)
    c = explain.feature_visualization(m, seed=4, **kw)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert a.images.min() >= 0 and a.images.max() <= 1
    narrow = explain.ModelWrapper(m.model, "image", device="cpu", valid_range=(0.2, 0.6))
    n = explain.feature_visualization(narrow, seed=3, **kw)
    assert n.images.min() >= 0.2 and n.images.max() <= 0.6
    d = a.to_dict()
    assert d["objective"] == "class" and d["shape"] == [2, 3, SIZE, SIZE] and "images" not in d


def test_deep_dream_amplifies_the_layer_and_keeps_pixels_valid(planted):
    m, data = planted
    dd = explain.deep_dream(m, data.x[:2], layer="conv", steps=5, octaves=2, seed=0)
    assert dd.images.shape == data.x[:2].shape
    assert bool((dd.activation > 1.5 * dd.start_activation).all())
    assert dd.images.min() >= 0 and dd.images.max() <= 1


def test_sequence_models_get_top_activating_samples_and_windows(conv1d):
    m = conv1d.wrapper
    with pytest.raises(InputShapeError, match="data="):
        explain.feature_visualization(m, classes=[0])
    fv = explain.feature_visualization(m, classes=[0, 2], data=(conv1d.x, conv1d.y), examples=5)
    assert fv.images is None and fv.examples.indices.shape == (2, 5)
    ex = fv.examples
    # the top samples of a class are samples of that class, and their windows overlap the planted pulse
    for i, c in enumerate([0, 2]):
        idx = ex.indices[i]
        assert bool((conv1d.y[idx] == c).all())
        hits = [bool(conv1d.mask[j, s:e].any()) for j, (s, e) in zip(idx.tolist(), ex.windows[i].tolist())]
        assert sum(hits) >= 4, hits
    chan = explain.dataset_examples(m, (conv1d.x, conv1d.y), channels=[0, 1], k=3, window=4)
    assert chan.windows.shape == (2, 3, 2) and bool(((chan.windows[..., 1] - chan.windows[..., 0]) == 4).all())


def test_feature_visualization_rejects_bad_requests(planted):
    m, _ = planted
    with pytest.raises(InputShapeError, match="exactly one"):
        explain.feature_visualization(m, shape=(3, SIZE, SIZE))
    with pytest.raises(InputShapeError, match="classes"):
        explain.feature_visualization(m, classes=[7], shape=(3, SIZE, SIZE))
    with pytest.raises(InputShapeError, match="shape="):
        explain.feature_visualization(m, classes=[0])
