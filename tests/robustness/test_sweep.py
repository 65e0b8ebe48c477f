"""Budget sweeps: non-increasing by construction, agreeing with the minimal budgets, on the model's scale."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import explain
import robustness
from robustness.registry import ATTACK_SPECS


class Window(nn.Module):
    """Class 1 wins only for pixel values in (0.55, 0.65); class 0 elsewhere.

    From x = 0.5 the loss gradient points up, so FGSM with ε lands at 0.5 + ε: fooled for
    ε ∈ (0.05, 0.15) and not for ε = 0.3 — an attack whose raw success falls with the budget.
    """

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x):
        v = x.flatten(1)[:, :1] * self.w
        l1 = 1 - ((v - 0.6) / 0.05) ** 2
        return torch.cat([torch.zeros_like(l1), l1], 1)


def test_robust_accuracy_never_rises_even_when_the_attack_does():
    m = explain.ModelWrapper(Window(), "image", device="cpu")
    x = torch.full((4, 1, 1, 1), 0.5)
    y = torch.zeros(4, dtype=torch.long)
    raw = [robustness.attack(m, x, y, "fgsm", eps=e).robust_accuracy for e in (0.1, 0.3)]
    assert raw == [0.0, 1.0]  # the attack alone succeeds at 0.1 and fails at 0.3
    c = robustness.robust_accuracy(m, (x, y), eps=[0, 0.1, 0.3], method="fgsm", bisect_steps=8)
    assert c.accuracy == [1.0, 0.0, 0.0]
    # the bisected minimal budget is the window's edge, 0.05, and agrees with the curve
    assert torch.allclose(c.minimal_eps, torch.full((4,), 0.05), atol=0.1 / 2 ** 8 + 1e-6)
    assert c.accuracy == [float((c.minimal_eps > e).float().mean()) for e in c.eps]


@pytest.fixture(scope="module")
def tiny_bert():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=32, num_labels=2)
    net = transformers.BertForSequenceClassification(cfg).eval()
    m = explain.ModelWrapper(net, "tokens", device="cpu", mask_arg="attention_mask")
    x = torch.randint(5, 120, (16, 12), generator=torch.Generator().manual_seed(0))
    x[::3, 8:] = 0
    return m, x, m.predict(x)  # labels = predictions: clean accuracy 1 by construction


def test_token_budgets_are_relative_to_the_embedding_tables_spread(tiny_bert):
    m, x, y = tiny_bert
    std = float(m.model.bert.embeddings.word_embeddings.weight.detach().std())
    assert robustness.embedding_scale(m) == pytest.approx(std, rel=1e-5)
    r = robustness.attack(m, x, y, "pgd", eps=0.5, steps=3)
    clean = m.model.bert.embeddings.word_embeddings(x).detach()
    moved = (r.adversarial_embeddings - clean).abs().amax()
    assert float(moved) <= 0.5 * std * (1 + 1e-4) and float(moved) > 0.25 * std
    assert float(r.linf.max()) <= 0.5 + 1e-4  # reported in the same relative unit
    assert r.params["embedding_std"] == pytest.approx(std, rel=1e-5)


def test_default_token_sweep_is_chosen_from_the_model_and_spans_the_break(tiny_bert):
    m, x, y = tiny_bert
    c = robustness.robust_accuracy(m, (x, y), method="apgd", steps=5, bisect_steps=2)
    assert c.eps[0] == 0 and len(c.eps) >= 4 and c.eps == sorted(c.eps)
    assert c.accuracy[0] == 1.0 and c.accuracy[-1] <= 0.4
    assert any(0.1 < a < 0.95 for a in c.accuracy[1:-1])  # the curve has a middle, not a cliff at step one
    assert all(b <= a for a, b in zip(c.accuracy, c.accuracy[1:]))
    assert "embedding std" in c.unit and "APGD" in c.label


def test_hotflip_sweep_counts_substituted_tokens(tiny_bert):
    m, x, y = tiny_bert
    c = robustness.robust_accuracy(m, (x, y), method="hotflip")
    assert c.eps == [float(b) for b in ATTACK_SPECS["hotflip"].sweep["tokens"]]
    assert c.unit == "substituted tokens"
    finite = c.minimal_eps[torch.isfinite(c.minimal_eps)]
    assert torch.equal(finite, finite.round()) and bool((finite >= 1).all())
    r = robustness.attack(m, x, y, "hotflip", eps=int(c.eps[-1]))
    fooled = r.adv_pred != y
    assert torch.equal(torch.isfinite(c.minimal_eps), fooled)  # the same greedy run
    assert torch.equal(c.minimal_eps[fooled], r.tokens_changed[fooled].float())
    assert c.accuracy == [float((c.minimal_eps > e).float().mean()) for e in c.eps]


class IgnoresItsInput(nn.Module):
    """Logits that do not depend on the tokens: no budget can change a prediction."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(30, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, ids):
        return self.head(self.emb(ids).mean(1) * 0.0)


def test_a_sweep_that_never_breaks_the_model_warns_and_says_so():
    torch.manual_seed(0)
    m = explain.ModelWrapper(IgnoresItsInput(), "tokens", device="cpu")
    x = torch.randint(2, 30, (8, 6), generator=torch.Generator().manual_seed(0))
    y = m.predict(x)
    with pytest.warns(UserWarning, match="flipped none of the 8 correctly classified samples"):
        c = robustness.robust_accuracy(m, (x, y), method="apgd", steps=3, bisect_steps=1)
    assert c.accuracy == [1.0] * len(c.eps) and c.flipped_share == 0.0
    assert c.to_dict()["flipped_share"] == 0.0


def test_a_sweep_that_breaks_the_model_reports_the_share_it_flipped(tiny_bert):
    import warnings
    m, x, y = tiny_bert
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = robustness.robust_accuracy(m, (x, y), eps=[0, 0.5, 2.0], method="pgd", steps=3, bisect_steps=0)
    flipped = torch.isfinite(c.minimal_eps[c.minimal_eps > 0]).float().mean()
    assert c.flipped_share == pytest.approx(float(flipped)) and 0 < c.flipped_share <= 1
