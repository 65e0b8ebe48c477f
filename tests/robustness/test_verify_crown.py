"""CROWN on convolutional networks: shared backward passes, refined max-pool inputs, CROWN-IBP, and
bounds confirmed by the field's reference implementation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import explain
import robustness
from explain.errors import InputValueError
from explain.zoo import SmallCNN
from robustness.verify import engine
from robustness.verify.bounds import _spec
from robustness.verify.engine import crown_spec, intermediate_bounds
from robustness.verify.graph import trace_graph
from robustness.verify.packing import receptive_boxes


def _fill(t: torch.Tensor, phase: int) -> torch.Tensor:
    k = torch.arange(t.numel(), dtype=torch.float32)
    return (torch.sin(1.7 * k + phase) * 0.8).view_as(t)


def _explicit(net: nn.Sequential) -> nn.Sequential:
    """Weights ``0.8·sin(1.7·k + i)`` for the k-th entry of the i-th parameter; fixed BN statistics."""
    for i, p in enumerate(net.parameters()):
        p.data = _fill(p.data, i)
    for mod in net.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.copy_(torch.tensor([0.1, -0.2]))
            mod.running_var.copy_(torch.tensor([0.5, 2.0]))
    return net.eval()


def mlp() -> nn.Sequential:
    return _explicit(nn.Sequential(nn.Flatten(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)))


def cnn() -> nn.Sequential:
    return _explicit(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.AvgPool2d(2),
                                   nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 2 * 2, 3)))


def cnn_max() -> nn.Sequential:
    return _explicit(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(),
                                   nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                   nn.Linear(2 * 2 * 2, 3)))


def _x(shape) -> torch.Tensor:
    return (0.5 + 0.4 * torch.sin(torch.arange(math.prod(shape), dtype=torch.float32) * 2.3)).view(shape)


NETS = {"mlp": (mlp, (1, 1, 2, 2), 0.1), "cnn": (cnn, (1, 1, 4, 4), 0.05), "cnn_max": (cnn_max, (1, 1, 4, 4), 0.05)}

# Logit bounds (lower, upper) computed by auto_LiRPA's development version (May 2026 release) on the same
# networks and input boxes (ε-ball clipped to [0, 1]); ours agreed to ≤ 5e-7 when these were written.
CONFIRMED = {
    ("mlp", "ibp"): ([-1.067576, -0.679339, -0.976591], [0.303935, 0.831777, 0.71205]),
    ("mlp", "crown"): ([-0.464015, -0.086991, -0.333866], [-0.299627, 0.23943, 0.069325]),
    ("cnn", "ibp"): ([2.143363, 0.228216, -4.430698], [4.299868, 2.02401, -2.237367]),
    ("cnn", "crown"): ([2.890981, 0.769738, -3.469122], [3.356522, 1.44311, -3.007417]),
    ("cnn", "crown-ibp"): ([2.890981, 0.769738, -3.523628], [3.41142, 1.451862, -3.007417]),
    ("cnn_max", "ibp"): ([-0.491572, 0.537344, -1.054531], [1.808593, 2.656666, 1.647365]),
    ("cnn_max", "crown-ibp"): ([-0.267324, 0.771662, -0.82542], [1.753834, 2.656666, 1.58239]),
}


def _bounds(name: str, method: str, **kw):
    make, shape, eps = NETS[name]
    m = explain.ModelWrapper(make(), "image", device="cpu")
    inter = "ibp" if method == "crown-ibp" else "crown"
    return robustness.output_bounds(m, _x(shape), eps=eps, method=method.replace("-ibp", ""), intermediate=inter,
                                    progress=False, **kw)


@pytest.mark.parametrize("name,method", sorted(CONFIRMED))
def test_bounds_of_explicit_networks_match_the_reference_implementation(name, method):
    b = _bounds(name, method)
    lo, hi = CONFIRMED[name, method]
    assert b.lower[0].tolist() == pytest.approx(lo, abs=2e-5)
    assert b.upper[0].tolist() == pytest.approx(hi, abs=2e-5)


def test_alpha_crown_is_as_tight_as_the_reference_implementation_within_its_optimiser_noise():
    # auto_LiRPA's α-CROWN (20 Adam steps, lr 0.1) on `cnn`: lower [2.909227, 0.788634, −3.469122],
    # upper [3.356522, 1.44311, −3.021672]; both optimise the same slopes from the same start
    ref_lo, ref_hi = torch.tensor([2.909227, 0.788634, -3.469122]), torch.tensor([3.356522, 1.44311, -3.021672])
    crown = _bounds("cnn", "crown")
    b = _bounds("cnn", "alpha-crown")
    assert bool((b.lower[0] >= ref_lo - 3e-4).all()) and bool((b.upper[0] <= ref_hi + 3e-4).all())
    assert float((b.upper - b.lower).sum()) < float((crown.upper - crown.lower).sum()) - 0.01


def test_max_pool_network_bounds_are_sound_and_tighter_than_ibp():
    # CROWN with refined max-pool inputs differs from the reference (which keeps IBP bounds for them); check
    # soundness directly: 20 000 points of the ball stay inside
    make, shape, eps = NETS["cnn_max"]
    net, x = make(), _x(shape)
    b = _bounds("cnn_max", "crown")
    g = torch.Generator().manual_seed(0)
    pts = (x + (torch.rand(20000, *shape[1:], generator=g) * 2 - 1) * eps).clamp(0, 1)
    with torch.no_grad():
        out = net(pts)
    assert bool((out >= b.lower - 1e-5).all()) and bool((out <= b.upper + 1e-5).all())
    ibp_lo, ibp_hi = CONFIRMED["cnn_max", "ibp"]
    assert float((b.upper - b.lower).sum()) < 0.7 * (sum(ibp_hi) - sum(ibp_lo))


def _small_cnn(width: int = 4):
    torch.manual_seed(0)
    net = SmallCNN(3, 10, width=width).eval()
    g = torch.Generator().manual_seed(1)
    for mod in net.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.copy_(torch.rand(mod.running_mean.shape, generator=g) * 0.6 - 0.3)
            mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) * 1.5 + 0.5)
            mod.weight.data.uniform_(-1.5, 1.5, generator=g)
    return explain.ModelWrapper(net, "image", device="cpu", mean=[0.4, 0.5, 0.6], std=[0.2, 0.3, 0.25])


def _crown(m, x, eps, pack=True):
    with m.session(grad=False):
        g = trace_graph(m, x, {})
        lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
        b, bw = intermediate_bounds(g, lo, hi, "crown", 2 ** 30, pack=pack)
        low, up = crown_spec(bw, _spec(None, 10, len(x), lo.device))
    return b, low, up


def test_shared_backward_passes_give_the_bounds_of_one_pass_per_neuron():
    m = _small_cnn()
    x = torch.rand(2, 3, 10, 10, generator=torch.Generator().manual_seed(2))
    packed, lo_p, hi_p = _crown(m, x, 8 / 255, pack=True)
    single, lo_s, hi_s = _crown(m, x, 8 / 255, pack=False)
    for name, (l, u) in single.items():
        assert torch.allclose(packed[name][0], l, atol=1e-5) and torch.allclose(packed[name][1], u, atol=1e-5), name
    assert torch.allclose(lo_p, lo_s, atol=1e-5) and torch.allclose(hi_p, hi_s, atol=1e-5)
    assert float((single["relu_1"][1] - single["relu_1"][0]).mean()) > 0.01     # the bounds are not trivial


def test_refining_only_max_inputs_that_can_win_their_window_keeps_the_bounds(monkeypatch):
    m = _small_cnn()
    x = torch.rand(1, 3, 10, 10, generator=torch.Generator().manual_seed(3))
    fewer, lo_f, hi_f = _crown(m, x, 8 / 255)
    calls = []
    orig = engine._needed_rows

    def every_row_of_max_inputs(graph, src, l, u):
        if any(graph.nodes[c].kind == "max" for c in graph.consumers()[src]):
            calls.append(src)
            return None
        return orig(graph, src, l, u)
    monkeypatch.setattr(engine, "_needed_rows", every_row_of_max_inputs)
    every, lo_e, hi_e = _crown(m, x, 8 / 255)
    assert calls                                                    # the model has max inputs
    assert torch.allclose(lo_f, lo_e, atol=1e-5) and torch.allclose(hi_f, hi_e, atol=1e-5)


class _Geometry(nn.Module):
    """Strided, dilated and padded convolutions, both poolings and a residual addition."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 3, 3, stride=2, padding=1)
        self.b = nn.Conv2d(3, 3, 3, padding=2, dilation=2)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.avg = nn.AvgPool2d(2)
        self.c = nn.Conv2d(3, 2, (1, 3), padding=(0, 1))
        self.head = nn.Linear(2, 2)

    def forward(self, x):
        h = torch.relu(self.a(x))
        h = torch.relu(self.b(h) + h)
        h = self.c(self.avg(self.pool(h)))
        return self.head(h.mean(dim=(2, 3)))


def test_receptive_boxes_contain_every_input_a_neuron_depends_on():
    torch.manual_seed(0)
    net = _Geometry().eval()
    m = explain.ModelWrapper(net, "image", device="cpu")
    x = torch.rand(1, 2, 23, 21)
    with m.session(grad=False):
        g = trace_graph(m, x, {})
    target = "c"
    boxes = receptive_boxes(g, target)
    assert boxes is not None
    (sy, loy, hiy), (sx, lox, hix) = boxes["input"]
    _, h, w = g.nodes[target].shape
    touched = []
    for i, j in [(0, 0), (h // 2, w // 2), (h - 1, w - 1), (1, w - 2)]:
        z = x.clone().requires_grad_(True)
        feats = net.c(net.avg(net.pool(torch.relu(net.b(torch.relu(net.a(z))) + torch.relu(net.a(z))))))
        feats[0, :, i, j].sum().backward()
        ys, xs = z.grad[0].abs().sum(0).nonzero(as_tuple=True)
        assert len(ys)
        assert int(ys.min()) >= i * sy + loy and int(ys.max()) <= i * sy + hiy
        assert int(xs.min()) >= j * sx + lox and int(xs.max()) <= j * sx + hix
        touched.append((int(ys.max()) - int(ys.min()), hiy - loy))
    assert max(t[0] for t in touched) >= 0.6 * touched[0][1]          # the boxes are not vacuous


def test_flattening_models_fall_back_to_one_pass_per_neuron():
    m = explain.ModelWrapper(mlp(), "image", device="cpu")
    with m.session(grad=False):
        g = trace_graph(m, _x((1, 1, 2, 2)), {})
    hidden = [n for n in g.order if g.nodes[n].kind == "relu"][0]
    assert receptive_boxes(g, g.nodes[hidden].inputs[0]) is None


def test_crown_ibp_is_sound_and_never_looser_than_ibp():
    m = _small_cnn()
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(4))
    eps = 4 / 255
    ibp = robustness.output_bounds(m, x, eps=eps, method="ibp")
    cib = robustness.output_bounds(m, x, eps=eps, method="crown", intermediate="ibp")
    assert cib.params["intermediate"] == "ibp"
    assert bool((cib.lower >= ibp.lower - 1e-6).all()) and bool((cib.upper <= ibp.upper + 1e-6).all())
    assert float(cib.width.mean()) < float(ibp.width.mean())
    g = torch.Generator().manual_seed(5)
    pts = (x.unsqueeze(0) + (torch.rand(500, *x.shape, generator=g) * 2 - 1) * eps).clamp(0, 1)
    out = m.logits(pts.flatten(0, 1)).view(500, 2, 10)
    assert bool((out >= cib.lower - 1e-5).all()) and bool((out <= cib.upper + 1e-5).all())


def test_unknown_intermediate_bounds_are_refused():
    m = explain.ModelWrapper(mlp(), "image", device="cpu")
    with pytest.raises(InputValueError, match="intermediate"):
        robustness.output_bounds(m, _x((1, 1, 2, 2)), eps=0.1, method="crown", intermediate="lp")


def test_progress_bar_counts_crown_backward_passes(capsys):
    m = _small_cnn()
    robustness.output_bounds(m, torch.rand(1, 3, 12, 12), eps=4 / 255, method="crown", progress=True)
    assert "CROWN" in capsys.readouterr().err


def test_verify_passes_crown_ibp_through_and_records_it():
    make, shape, eps = NETS["cnn"]
    m = explain.ModelWrapper(make(), "image", device="cpu")
    x = _x(shape)
    y = m.logits(x).argmax(1)
    v = robustness.verify(m, x, y, eps, method="crown", intermediate="ibp")
    assert v.params["intermediate"] == "ibp"
    # margin bounds are at least as tight as subtracting the confirmed CROWN-IBP logit bounds (class 0 wins)
    lo, hi = CONFIRMED["cnn", "crown-ibp"]
    assert int(y[0]) == 0 and v.status[0] == "verified"
    assert float(v.certified_margin[0]) >= min(lo[0] - hi[1], lo[0] - hi[2]) - 1e-5
