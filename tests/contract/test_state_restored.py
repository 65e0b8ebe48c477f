"""Every registered explainer leaves the model as it found it, also when the model raises mid-way."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import explain
from explain.registry import EXPLAINERS

# Small, cheap settings per method so the contract runs quickly; unknown methods run with defaults.
FAST = {
    "occlusion": {"window": 8, "stride": 8},
    "lime": {"n_samples": 32},
    "shap": {"n_samples": 32},
    "integrated_gradients": {"steps": 4},
    "smoothgrad": {"n_samples": 4},
}


def snapshot(net: nn.Module):
    return (
        {k: v.clone() for k, v in net.state_dict().items()},
        [m.training for m in net.modules()],
        [p.requires_grad for p in net.parameters()],
        [p.grad for p in net.parameters()],
    )


def hooks_left(net: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_full_backward_hooks", {}) or {}) for m in net.modules())


def assert_unchanged(net: nn.Module, before) -> None:
    state, modes, flags, grads = before
    after_state, after_modes, after_flags, after_grads = snapshot(net)
    assert after_modes == modes
    assert after_flags == flags
    assert all(g is None for g in after_grads) == all(g is None for g in grads)
    for k, v in state.items():
        assert torch.equal(v, after_state[k]), k
    assert hooks_left(net) == 0


def params_for(name: str, kind: str) -> dict:
    kw = dict(FAST.get(name, {}))
    if kind != "image" and name == "occlusion":
        kw = {}
    return kw


@pytest.mark.parametrize("name", sorted(EXPLAINERS))
@pytest.mark.parametrize("fixture", ["cnn", "gru", "transformer"])
def test_explainer_leaves_model_state_training_flags_and_hooks_unchanged(name, fixture, request):
    d = request.getfixturevalue(fixture)
    net = copy.deepcopy(d.net)
    net.train()  # the user left it in train mode: it must come back in train mode
    next(net.parameters()).requires_grad_(False)
    before = snapshot(net)
    m = explain.ModelWrapper(net, d.wrapper.input_kind, device="cpu")
    x = d.x[:2].clone()
    x_before = x.clone()
    a = EXPLAINERS[name](m, x, None, **params_for(name, m.input_kind))
    assert isinstance(a, explain.Attribution) and a.method == name
    expected = tuple(x.shape[2:]) if m.input_kind == "image" else (x.shape[1],)
    assert tuple(a.values.shape) == (2,) + expected
    assert torch.equal(x, x_before)
    assert_unchanged(net, before)


class Exploding(nn.Module):
    """Wraps a model and raises on the n-th forward call."""

    def __init__(self, inner: nn.Module, fail_at: int):
        super().__init__()
        self.inner = inner
        self.calls = 0
        self.fail_at = fail_at

    def forward(self, *args, **kwargs):
        self.calls += 1
        if self.calls >= self.fail_at:
            raise RuntimeError("model exploded")
        return self.inner(*args, **kwargs)


@pytest.mark.parametrize("name", sorted(EXPLAINERS))
@pytest.mark.parametrize("fixture", ["cnn", "lstm"])
def test_explainer_restores_state_when_the_model_raises(name, fixture, request):
    d = request.getfixturevalue(fixture)
    net = Exploding(copy.deepcopy(d.net), fail_at=1)
    net.train()
    before = snapshot(net)
    m = explain.ModelWrapper(net, d.wrapper.input_kind, class_names=d.wrapper.class_names, device="cpu")
    with pytest.raises(RuntimeError, match="model exploded"):
        EXPLAINERS[name](m, d.x[:2], 0, **params_for(name, m.input_kind))
    net.calls = -10**9  # stop exploding so the snapshot can be compared
    assert_unchanged(net, before)



FEATURE_CALLS = {
    "feature_visualization": lambda m, x: explain.feature_visualization(m, classes=[0, 1], steps=2, seed=0,
                                                                        shape=tuple(x.shape[1:])),
    "feature_visualization_channels": lambda m, x: explain.feature_visualization(m, channels=[0], steps=2, data=(x, None)),
    "deep_dream": lambda m, x: explain.deep_dream(m, x[:1], steps=2, octaves=2),
    "dataset_examples": lambda m, x: explain.dataset_examples(m, (x, None), classes=[0], k=1),
}


@pytest.mark.parametrize("name", sorted(FEATURE_CALLS))
@pytest.mark.parametrize("explode", [False, True])
def test_feature_visualisation_leaves_model_state_unchanged(name, explode, cnn):
    net = Exploding(copy.deepcopy(cnn.net), fail_at=2 if explode else 10**9)
    net.train()
    next(net.parameters()).requires_grad_(False)
    before = snapshot(net)
    m = explain.ModelWrapper(net, "image", class_names=cnn.wrapper.class_names, device="cpu")
    x = cnn.x[:4].clone()
    x_before = x.clone()
    if explode:
        with pytest.raises(RuntimeError, match="model exploded"):
            FEATURE_CALLS[name](m, x)
        net.calls = -10**9
    else:
        FEATURE_CALLS[name](m, x)
    assert torch.equal(x, x_before)
    assert_unchanged(net, before)



@pytest.mark.parametrize("fixture", ["cnn", "gru", "transformer"])
def test_model_randomisation_leaves_the_users_model_exactly_as_it_was(fixture, request):
    d = request.getfixturevalue(fixture)
    net = copy.deepcopy(d.net)
    net.train()
    next(net.parameters()).requires_grad_(False)
    before = snapshot(net)
    m = explain.ModelWrapper(net, d.wrapper.input_kind, device="cpu")
    for mode in ("cascading", "independent") if fixture == "cnn" else ("cascading",):
        r = explain.metrics.randomization(m, d.x[:2], "gradcam", mode=mode, steps=2)
        assert r.values.shape == (2,)
    assert_unchanged(net, before)
    with pytest.raises(RuntimeError, match="model exploded"):
        explain.metrics.randomization(explain.ModelWrapper(Exploding(net, fail_at=2), d.wrapper.input_kind, device="cpu"),
                                      d.x[:2], "gradcam", target=0, steps=1)
    assert_unchanged(net, before)



@pytest.mark.parametrize("method", ["ibp", "crown", "alpha-crown"])
@pytest.mark.parametrize("fail_at", [None, 1])
def test_verify_leaves_model_state_unchanged_also_when_the_model_raises(cnn, method, fail_at):
    import robustness
    inner = copy.deepcopy(cnn.net)
    net = inner if fail_at is None else Exploding(inner, fail_at=fail_at)
    net.train()
    next(net.parameters()).requires_grad_(False)
    before = snapshot(net)
    m = explain.ModelWrapper(net, "image", class_names=cnn.wrapper.class_names, device="cpu")
    x = cnn.x[:2, :, :8, :8].clone()  # global pooling: any size works; small keeps CROWN cheap
    if fail_at is None:
        v = robustness.verify(m, x, cnn.y[:2], eps=1 / 255, method=method, alpha_steps=3, attack_steps=3)
        assert len(v.status) == 2
    else:
        with pytest.raises(Exception, match="exploded"):
            robustness.verify(m, x, cnn.y[:2], eps=1 / 255, method=method)
        net.calls = -10**9
    assert_unchanged(net, before)


class Poisoned(nn.Module):
    """Wraps a model and returns NaN logits from its ``fail_at``-th forward call on: for every row,
    or (``last_row``) for the last row of each call only."""

    def __init__(self, inner: nn.Module, fail_at: int, last_row: bool = False):
        super().__init__()
        self.inner = inner
        self.calls = 0
        self.fail_at = fail_at
        self.last_row = last_row

    def forward(self, *args, **kwargs):
        self.calls += 1
        out = self.inner(*args, **kwargs)
        if self.calls < self.fail_at:
            return out
        if not self.last_row:
            return out * float("nan")
        keep = torch.ones_like(out)
        keep[-1] = float("nan")
        return out * keep


@pytest.mark.parametrize("name", sorted(EXPLAINERS))
@pytest.mark.parametrize("last_row", [False, True])
def test_explainer_restores_state_when_the_model_returns_nan(name, last_row, cnn):
    from explain.errors import NonFiniteOutputError
    net = Poisoned(copy.deepcopy(cnn.net), fail_at=1, last_row=last_row)
    net.train()
    next(net.parameters()).requires_grad_(False)
    before = snapshot(net)
    m = explain.ModelWrapper(net, "image", class_names=cnn.wrapper.class_names, device="cpu")
    with pytest.raises(NonFiniteOutputError):
        EXPLAINERS[name](m, cnn.x[:2], 0, **params_for(name, "image"))
    assert_unchanged(net, before)


@pytest.mark.parametrize("method", sorted(n for n, s in __import__("robustness").registry.ATTACK_SPECS.items()
                                          if "image" in s.kinds))
def test_attack_restores_state_when_the_model_returns_nan_mid_attack(method, cnn):
    import robustness
    from explain.errors import NonFiniteOutputError
    net = Poisoned(copy.deepcopy(cnn.net), fail_at=1 if method == "fgsm" else 3)
    net.train()
    before = snapshot(net)
    m = explain.ModelWrapper(net, "image", class_names=cnn.wrapper.class_names, device="cpu", batch_size=64)
    with pytest.raises(NonFiniteOutputError):
        steps = {} if method == "fgsm" else {"steps": 3}
        robustness.attack(m, cnn.x[:4], cnn.y[:4], method=method, eps=8 / 255, seed=0, **steps)
    assert_unchanged(net, before)


@pytest.mark.parametrize("name", sorted(EXPLAINERS))
def test_explainer_on_a_compiled_model_leaves_it_compiled_and_unhooked(name, cnn):
    net = copy.deepcopy(cnn.net)
    compiled = torch.compile(net, backend="eager")
    before = snapshot(net)
    m = explain.ModelWrapper(compiled, "image", class_names=cnn.wrapper.class_names, device="cpu")
    a = EXPLAINERS[name](m, cnn.x[:2], None, **params_for(name, "image"))
    assert torch.isfinite(a.values).all()
    assert m.model is compiled and compiled._orig_mod is net
    assert_unchanged(net, before)
