"""Certified output bounds: closed-form values, soundness by sampling and attack, tightness order, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import explain
import robustness
from explain.zoo import Conv1dNet, GRUClassifier, SmallCNN, TinyTransformer
from robustness.verify import UnsupportedOperationError

METHODS = ("ibp", "crown", "alpha-crown")
TOL = 1e-4


def toy_wrapper() -> explain.ModelWrapper:
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 1, bias=False))
    net[1].weight.data = torch.tensor([[1.0, -1.0], [2.0, -1.0]])
    net[3].weight.data = torch.tensor([[1.0, -1.0]])
    return explain.ModelWrapper(net, "series", device="cpu", std=[1.0, 1.0])


@pytest.mark.parametrize("method,expected", [("ibp", (-6.0, 4.0)), ("crown", (-3.0, 3.0)), ("alpha-crown", (-3.0, 2.0))])
def test_toy_network_bounds_match_the_closed_form_values(method, expected):
    # x1 ∈ [−1, 2], x2 ∈ [−2, 1]: the centre (0.5, −0.5) with ε = 1.5; the true range is [−2, 1]
    # a single logit z is shown as the class scores [−z/2, z/2]: class 1 carries half of z's bounds
    lo, hi = robustness.output_bounds(toy_wrapper(), torch.tensor([[[0.5, -0.5]]]), eps=1.5, method=method)
    assert float(2 * lo[0, 1]) == pytest.approx(expected[0], abs=1e-4)
    assert float(2 * hi[0, 1]) == pytest.approx(expected[1], abs=1e-4)
    assert float(-2 * hi[0, 0]) == pytest.approx(expected[0], abs=1e-4)
    assert float(-2 * lo[0, 0]) == pytest.approx(expected[1], abs=1e-4)


def _randomise_bn(net: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.weight.shape, generator=g))
    return net.eval()


class MixedNet(nn.Module):
    """The other supported ops: avg pool, adaptive avg pool, leaky ReLU, tanh, sigmoid, cat, mean, permute."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.act = nn.LeakyReLU(0.1)
        self.adapt = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(3 * 2 * 2 + 3, 3)

    def forward(self, x):
        h = self.act(self.pool(self.conv(x)))
        a = torch.tanh(self.adapt(h)).flatten(1)
        b = torch.sigmoid(h.permute(0, 2, 3, 1)).mean(dim=(1, 2)) - 0.5 * h.mean(dim=(2, 3))
        return self.fc(torch.cat([a, b], dim=1))


class BagOfEmbeddings(nn.Module):
    def __init__(self, vocab: int = 20, dim: int = 6) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim, padding_idx=0)
        self.fc1 = nn.Linear(dim, 8)
        self.fc2 = nn.Linear(8, 2)

    def forward(self, ids):
        return self.fc2(torch.relu(self.fc1(self.embedding(ids)).mean(dim=1)))


def reference_models():
    torch.manual_seed(0)
    cnn = explain.ModelWrapper(_randomise_bn(SmallCNN(3, 3, width=3)), "image", device="cpu",
                               mean=[0.5, 0.4, 0.3], std=[0.25, 0.2, 0.3])
    series = explain.ModelWrapper(_randomise_bn(Conv1dNet(2, 3, width=4)), "series", device="cpu", std=[0.5, 2.0])
    mixed = explain.ModelWrapper(MixedNet(), "image", device="cpu")
    tokens = explain.ModelWrapper(BagOfEmbeddings(), "tokens", device="cpu")
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(1, 20, (2, 5), generator=g)
    ids[1, 3:] = 0
    return {"cnn": (cnn, torch.rand(2, 3, 8, 8, generator=g), 2 / 255),
            "series": (series, torch.randn(2, 12, 2, generator=g), 0.05),
            "mixed": (mixed, torch.rand(2, 1, 8, 8, generator=g), 4 / 255),
            "tokens": (tokens, ids, 0.05)}


MODELS = reference_models()


def _ball_points(m, x, eps, k, g):
    """Random points (half of them corners) of each sample's ball in the model's input space."""
    if m.input_kind == "tokens":
        base = m.embed(x).detach()
        move = (x != m.pad_id).unsqueeze(-1).float()
    else:
        base = x
        move = 1.0
    scale = m.std.view(1, 1, -1) if m.input_kind == "series" else 1.0
    u = torch.rand((k,) + base.shape, generator=g) * 2 - 1
    u[: k // 2] = u[: k // 2].sign()
    pts = base + u * eps * scale * move
    return pts.clamp(0, 1) if m.input_kind == "image" else pts


def _logits(m, x, pts):
    k = pts.shape[0]
    with m.session(grad=False):
        flat = pts.reshape(-1, *pts.shape[2:])
        if m.input_kind == "tokens":
            return m.forward_embedded(x.repeat(k, 1), flat).view(k, len(x), -1)
        return m.forward(flat).view(k, len(x), -1)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_no_sampled_point_of_the_ball_leaves_the_bounds(name):
    m, x, eps = MODELS[name]
    g = torch.Generator().manual_seed(0)
    k = 50_000  # two samples per model: 10⁵ points of the balls in all
    out = torch.cat([_logits(m, x, _ball_points(m, x, eps, k // 10, g)) for _ in range(10)])
    for method in METHODS:
        lo, hi = robustness.output_bounds(m, x, eps=eps, method=method, alpha_steps=5)
        assert bool((out >= lo - TOL).all()) and bool((out <= hi + TOL).all()), method
        assert bool((lo <= hi).all())


def _pgd_extremes(m, x, eps, steps=15, restarts=10):
    """Points that push each logit up and down with signed gradient steps (projected on the ball),
    from random starts: ``restarts × 2K`` points per sample, all in one batch."""
    scale = m.std.view(1, 1, -1) if m.input_kind == "series" else 1.0
    k = m.logits(x).shape[1]
    c = torch.arange(k).repeat_interleave(2).repeat(restarts)            # class per copy
    sign = torch.tensor([1.0, -1.0]).repeat(k * restarts)
    reps = len(c)
    x0 = x.repeat(reps, *([1] * (x.dim() - 1)))
    cc, ss = c.repeat_interleave(len(x)), sign.repeat_interleave(len(x))
    g = torch.Generator().manual_seed(1)
    z = x0 + (torch.rand(x0.shape, generator=g) * 2 - 1) * eps * scale
    for _ in range(steps):
        z.requires_grad_(True)
        with m.session(grad=True):
            out = (m.forward(z).gather(1, cc[:, None]).squeeze(1) * ss).sum()
            grad, = torch.autograd.grad(out, z)
        z = z.detach() + 0.25 * eps * scale * grad.sign()
        z = torch.max(torch.min(z, x0 + eps * scale), x0 - eps * scale)
        if m.input_kind == "image":
            z = z.clamp(0, 1)
    return m.logits(z).view(reps, len(x), -1)


@pytest.mark.parametrize("name", ["cnn", "series", "mixed"])
def test_pgd_driven_extremes_stay_within_the_bounds(name):
    m, x, eps = MODELS[name]
    out = _pgd_extremes(m, x, eps)
    for method in METHODS:
        lo, hi = robustness.output_bounds(m, x, eps=eps, method=method, alpha_steps=5)
        assert bool((out >= lo - TOL).all()) and bool((out <= hi + TOL).all()), method


def test_crown_is_never_looser_than_ibp_and_alpha_crown_never_looser_than_crown():
    m, x, eps = MODELS["cnn"]
    w = {meth: robustness.output_bounds(m, x, eps=eps, method=meth, alpha_steps=10) for meth in METHODS}
    assert bool((w["crown"].lower >= w["ibp"].lower - 1e-6).all()) and bool((w["crown"].upper <= w["ibp"].upper + 1e-6).all())
    assert bool((w["alpha-crown"].lower >= w["crown"].lower - 1e-6).all())
    assert bool((w["alpha-crown"].upper <= w["crown"].upper + 1e-6).all())
    assert float(w["crown"].width.mean()) < 0.8 * float(w["ibp"].width.mean())   # and clearly tighter


def test_margin_bounds_are_tighter_than_subtracting_logit_bounds_and_sound():
    m, x, eps = MODELS["cnn"]
    y = torch.tensor([0, 2])
    lo, hi = robustness.output_bounds(m, x, eps=eps, method="crown")
    mb = robustness.output_bounds(m, x, eps=eps, method="crown", spec="margin", labels=y)
    naive = lo.gather(1, y[:, None]) - hi
    assert bool((mb.lower >= naive - 1e-6).all())
    out = _logits(m, x, _ball_points(m, x, eps, 2000, torch.Generator().manual_seed(5)))
    margins = out.gather(2, y.view(1, -1, 1).expand(len(out), -1, 1)) - out
    assert bool((margins >= mb.lower - TOL).all()) and bool((margins <= mb.upper + TOL).all())


def test_zero_budget_gives_the_logits_themselves():
    m, x, _ = MODELS["cnn"]
    lo, hi = robustness.output_bounds(m, x, eps=0.0, method="crown")
    assert torch.allclose(lo, m.logits(x), atol=1e-4) and torch.allclose(hi, m.logits(x), atol=1e-4)


def test_tiny_memory_budget_chunks_crown_without_changing_the_bounds():
    m, x, eps = MODELS["cnn"]
    a = robustness.output_bounds(m, x, eps=eps, method="crown")
    b = robustness.output_bounds(m, x, eps=eps, method="crown", max_memory=200_000, batch_size=1)
    assert torch.allclose(a.lower, b.lower, atol=1e-5) and torch.allclose(a.upper, b.upper, atol=1e-5)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(depth=st.integers(1, 3), width=st.integers(1, 6), act=st.sampled_from(["relu", "leaky", "tanh", "sigmoid"]),
       eps=st.floats(0.001, 0.5), seed=st.integers(0, 10_000), residual=st.booleans())
def test_random_small_networks_are_bounded_soundly(depth, width, act, eps, seed, residual):
    torch.manual_seed(seed)
    acts = {"relu": nn.ReLU, "leaky": lambda: nn.LeakyReLU(0.2), "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(3, width)
            self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
            self.act = acts[act]()
            self.out = nn.Linear(width, 2)

        def forward(self, x):
            h = self.act(self.inp(x.flatten(1)))
            for layer in self.hidden:
                h = self.act(layer(h)) + (h if residual else 0)
            return self.out(h)

    m = explain.ModelWrapper(Net(), "series", device="cpu", std=[1.0, 1.0, 1.0])
    x = torch.randn(2, 1, 3)
    pts = x + (torch.rand(3000, 2, 1, 3) * 2 - 1) * eps
    pts[:1000] = x + torch.sign(pts[:1000] - x) * eps
    out = _logits(m, x, pts)
    prev = None
    for method in METHODS:
        lo, hi = robustness.output_bounds(m, x, eps=eps, method=method, alpha_steps=5)
        assert bool((out >= lo - TOL).all()) and bool((out <= hi + TOL).all()), method
        if prev is not None:
            assert bool((lo >= prev[0] - 1e-5).all()) and bool((hi <= prev[1] + 1e-5).all()), method
        prev = (lo, hi)


def test_recurrent_layer_is_refused_with_its_name():
    m = explain.ModelWrapper(GRUClassifier(1, 2), "series", device="cpu")
    with pytest.raises(UnsupportedOperationError, match="GRU module 'gru'"):
        robustness.output_bounds(m, torch.randn(1, 6, 1), eps=0.1)


def test_attention_is_refused_naming_the_op_and_node():
    m = explain.ModelWrapper(TinyTransformer(30, 2), "tokens", device="cpu")
    with pytest.raises(explain.errors.UnsupportedModelError, match="cannot bound|traced"):
        robustness.output_bounds(m, torch.randint(1, 30, (1, 6)), eps=0.1)


def test_product_of_two_input_dependent_tensors_is_refused():
    class Square(nn.Module):
        def forward(self, x):
            h = x.flatten(1)
            return h * h

    m = explain.ModelWrapper(Square(), "series", device="cpu", std=[1.0, 1.0])
    with pytest.raises(UnsupportedOperationError, match=r"function mul at graph node 'mul'.*not linear"):
        robustness.output_bounds(m, torch.randn(1, 1, 2), eps=0.1)


def test_unknown_method_and_norm_are_refused():
    m, x, _ = MODELS["cnn"]
    with pytest.raises(explain.errors.InputValueError, match="method"):
        robustness.output_bounds(m, x, eps=0.1, method="deeppoly")
    with pytest.raises(explain.errors.InputValueError, match="linf"):
        robustness.output_bounds(m, x, eps=0.1, norm="l2")
