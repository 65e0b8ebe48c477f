"""Attacks: agreement with torchattacks and closed forms, budget invariants, strength, state safety."""

from __future__ import annotations

import copy

import pytest
import torch
import torchattacks
from hypothesis import given, settings
from hypothesis import strategies as st

import explain
import robustness
from explain.errors import InputShapeError, InputValueError, UnknownMethodError


class Normalized(torch.nn.Module):
    """The wrapper's normalisation as a module, so torchattacks sees [0, 1] inputs like xaiscope."""

    def __init__(self, net, mean, std):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x):
        return self.net((x - self.mean) / self.std)


@pytest.mark.parametrize("eps", [2 / 255, 8 / 255])
def test_pgd_robust_accuracy_equals_torchattacks(cnn, eps):
    mean, std = [0.2, 0.2, 0.2], [0.3, 0.3, 0.3]
    net = copy.deepcopy(cnn.net)
    m = explain.ModelWrapper(net, "image", mean=mean, std=std, device="cpu")
    ref_model = Normalized(net, mean, std).eval()
    x, y = cnn.x[:100], cnn.y[:100]
    ours = robustness.attack(m, x, y, "pgd", eps=eps, steps=10, alpha=eps / 4, random_start=False)
    adv = torchattacks.PGD(ref_model, eps=eps, alpha=eps / 4, steps=10, random_start=False)(x, y)
    theirs = float((ref_model(adv).argmax(1) == y).float().mean())
    assert abs(ours.robust_accuracy - theirs) <= 0.01
    torch.testing.assert_close(ours.adversarial, adv, atol=1e-6, rtol=0)


def test_fgsm_on_a_linear_model_equals_the_closed_form():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, -2, 0.5, 0, 3, -1], [0.0] * 6]))
        net[1].bias.zero_()
    m = explain.ModelWrapper(net, "image", device="cpu")
    x = torch.full((1, 1, 2, 3), 0.5)
    r = robustness.attack(m, x, torch.tensor([0]), "fgsm", eps=0.1)
    # CE to class 0 grows fastest along −sign(w0 − w1) = −sign(w0).
    expected = (0.5 - 0.1 * torch.sign(torch.tensor([1.0, -2, 0.5, 0, 3, -1]))).view(1, 1, 2, 3)
    torch.testing.assert_close(r.adversarial, expected)


@settings(max_examples=12, deadline=None)
@given(eps=st.floats(0.0, 0.3), steps=st.integers(1, 4), norm=st.sampled_from(["linf", "l2"]),
       seed=st.integers(0, 1000))
def test_pgd_never_leaves_the_eps_ball_or_the_valid_range(cnn, eps, steps, norm, seed):
    x, y = cnn.x[:8], cnn.y[:8]
    r = robustness.attack(cnn.wrapper, x, y, "pgd", eps=eps, steps=steps, norm=norm, seed=seed)
    assert float(r.adversarial.min()) >= 0.0 and float(r.adversarial.max()) <= 1.0
    bound = r.linf if norm == "linf" else r.l2
    assert float(bound.max()) <= eps + 1e-5


def test_zero_budget_changes_nothing(cnn, conv1d):
    for d in (cnn, conv1d):
        r = robustness.attack(d.wrapper, d.x[:16], d.y[:16], "pgd", eps=0.0, steps=3)
        assert torch.allclose(r.adversarial, d.x[:16], atol=1e-6)
        assert torch.equal(r.adv_pred, r.clean_pred)


def test_more_steps_and_bigger_budgets_do_not_raise_robust_accuracy(cnn):
    x, y = cnn.x[:100], cnn.y[:100]
    few = robustness.attack(cnn.wrapper, x, y, "pgd", eps=8 / 255, steps=2, seed=0).robust_accuracy
    many = robustness.attack(cnn.wrapper, x, y, "pgd", eps=8 / 255, steps=20, seed=0).robust_accuracy
    assert many <= few + 0.02
    curve = robustness.robust_accuracy(cnn.wrapper, (x, y), eps=[0, 8 / 255, 32 / 255, 64 / 255], steps=10)
    assert all(b <= a + 0.02 for a, b in zip(curve.accuracy, curve.accuracy[1:]))
    assert curve.accuracy[-1] < curve.accuracy[0]
    flipped = curve.minimal_eps[torch.isfinite(curve.minimal_eps) & (curve.minimal_eps > 0)]
    assert len(flipped) > 0 and float(flipped.max()) <= 64 / 255 + 1e-6
    # A sample's minimal budget really flips it: attack each at its own budget.
    idx = torch.isfinite(curve.minimal_eps) & (curve.minimal_eps > 0)
    check = robustness.make_attack("apgd", steps=10).run(cnn.wrapper, x[idx], y[idx], eps=curve.minimal_eps[idx])
    assert check.robust_accuracy <= 0.05


def test_apgd_is_at_least_as_strong_as_pgd10(cnn):
    x, y = cnn.x[:120], cnn.y[:120]
    eps = 32 / 255
    pgd = robustness.attack(cnn.wrapper, x, y, "pgd", eps=eps, steps=10, seed=0).robust_accuracy
    apgd = robustness.attack(cnn.wrapper, x, y, "apgd", eps=eps, steps=25, seed=0).robust_accuracy
    assert pgd < 0.9  # the budget matters, so the comparison means something
    assert apgd <= pgd + 1e-9


def test_same_seed_same_attack(cnn):
    a = robustness.attack(cnn.wrapper, cnn.x[:10], cnn.y[:10], "pgd", eps=8 / 255, seed=5)
    b = robustness.attack(cnn.wrapper, cnn.x[:10], cnn.y[:10], "pgd", eps=8 / 255, seed=5)
    assert torch.equal(a.adversarial, b.adversarial)


def test_targeted_attack_reaches_its_target_more_often_than_chance(cnn):
    x, y = cnn.x[:60], cnn.y[:60]
    r = robustness.attack(cnn.wrapper, x, y, "pgd", eps=32 / 255, steps=20, target=3)
    assert float((r.adv_pred == 3).float().mean()) > 0.6


def test_series_budget_is_in_units_of_the_channel_std(conv1d):
    x, y = conv1d.x[:20], conv1d.y[:20]
    r = robustness.attack(conv1d.wrapper, x, y, "pgd", eps=0.5, steps=5)
    std = x.std(dim=1).squeeze(-1)  # each series' own std: the unit never depends on the batch
    assert bool((r.linf <= 0.5 * std + 1e-4).all())
    assert r.params["space"] == "std units"


@pytest.mark.parametrize("fixture", ["lstm", "gru", "transformer"])
def test_recurrent_and_token_models_are_attacked_without_touching_their_mode(fixture, request):
    d = request.getfixturevalue(fixture)
    net = copy.deepcopy(d.net).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    flags = [m.training for m in net.modules()]
    m = explain.ModelWrapper(net, d.wrapper.input_kind, device="cpu")
    eps = 0.5 if m.input_kind == "series" else 1.0
    r = robustness.attack(m, d.x[:16], d.y[:16], "pgd", eps=eps, steps=5)
    assert [mod.training for mod in net.modules()] == flags
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert len(r.adv_pred) == 16
    if m.input_kind == "tokens":
        assert r.adversarial_embeddings is not None and torch.equal(r.adversarial, d.x[:16])
        assert float(r.linf.max()) <= eps + 1e-4


def test_hotflip_changes_at_most_k_tokens_and_flips_predictions(transformer):
    x, y = transformer.x[:40], transformer.y[:40]
    r = robustness.attack(transformer.wrapper, x, y, "hotflip", max_tokens=2)
    assert int(r.tokens_changed.max()) <= 2
    assert r.success_rate >= 0.5  # swapping the single trigger token is enough
    changed = r.adversarial != r.inputs
    assert torch.equal(changed.sum(1), r.tokens_changed)
    # predictions reported are the model's on the returned ids
    assert torch.equal(transformer.wrapper.predict(r.adversarial), r.adv_pred)


def test_attack_state_restored_when_the_model_raises(cnn):
    class Boom(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            if self.calls > 1:
                raise RuntimeError("boom")
            return self.inner(x)

    net = Boom(copy.deepcopy(cnn.net)).train()
    m = explain.ModelWrapper(net, "image", device="cpu")
    with pytest.raises(RuntimeError, match="boom"):
        robustness.attack(m, cnn.x[:4], cnn.y[:4], "pgd", eps=0.03)
    assert all(mod.training for mod in net.modules())
    assert all(p.requires_grad for p in net.parameters())


def test_bad_attack_inputs_raise_specific_errors(cnn, conv1d):
    with pytest.raises(InputValueError, match="eps"):
        robustness.attack(cnn.wrapper, cnn.x[:2], cnn.y[:2], eps=-0.1)
    with pytest.raises(UnknownMethodError, match="available: fgsm, pgd, apgd, hotflip"):
        robustness.attack(cnn.wrapper, cnn.x[:2], cnn.y[:2], method="cw")
    with pytest.raises(InputShapeError, match="expected 2 labels"):
        robustness.attack(cnn.wrapper, cnn.x[:2], cnn.y[:3])
    with pytest.raises(InputShapeError, match="hotflip substitutes tokens"):
        robustness.attack(conv1d.wrapper, conv1d.x[:2], conv1d.y[:2], method="hotflip")
    with pytest.raises(InputShapeError, match="does not take"):
        robustness.attack(cnn.wrapper, cnn.x[:2], cnn.y[:2], method="fgsm", steps=3)


@pytest.mark.parametrize("method", ["fgsm", "pgd", "apgd"])
def test_every_gradient_attack_runs_on_token_embeddings(lstm, method):
    kw = {} if method == "fgsm" else {"steps": 3}
    r = robustness.attack(lstm.wrapper, lstm.x[:8], lstm.y[:8], method, eps=0.5, **kw)
    assert r.adversarial_embeddings.shape == (8, 16, 32) and float(r.linf.max()) <= 0.5 + 1e-5
