"""Padding is never a feature: LIME, SHAP and occlusion give it exactly 0, and padding a sequence
changes nothing about the attributions of its real tokens (on a model that masks the padding)."""

from __future__ import annotations

import pytest
import torch

import explain


class MaskedBag(torch.nn.Module):
    """Embeddings averaged over the real tokens, then a small MLP: padding has provably no effect."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, 16)
        self.head = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))

    def forward(self, ids, attention_mask):
        w = attention_mask.float().unsqueeze(-1)
        return self.head((self.embedding(ids) * w).sum(1) / w.sum(1).clamp_min(1.0))

METHODS = {
    "lime": lambda m, x, t: explain.lime(m, x, t, n_samples=200, seed=0),
    "shap": lambda m, x, t: explain.shap(m, x, t, n_samples=200, seed=0),
    "occlusion": lambda m, x, t: explain.occlusion(m, x, t, baseline=1),  # replace by <unk>, not by padding
}


@pytest.fixture(scope="module")
def reviews():
    from explain.zoo.bundled import load_reviews

    try:
        d = load_reviews(max_len=32)
    except explain.errors.OptionalDependencyError as error:
        pytest.skip(str(error))
    x = d.x_test[:6]
    assert (x == 0).any(1).all(), "every sample should carry padding"
    torch.manual_seed(0)
    net = MaskedBag(len(d.vocab)).eval()
    return explain.ModelWrapper(net, "tokens", device="cpu", mask_arg="attention_mask"), x


@pytest.fixture(scope="module")
def bert():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=64, num_labels=3)
    torch.manual_seed(0)
    net = transformers.BertForSequenceClassification(cfg).eval()
    cls, sep = 101 % 120, 102 % 120  # stand-ins for [CLS]/[SEP]
    gen = torch.Generator().manual_seed(1)
    x = torch.zeros(4, 24, dtype=torch.long)
    for i, length in enumerate([9, 14, 20, 24]):
        x[i, :length] = torch.randint(5, 100, (length,), generator=gen)
        x[i, 0], x[i, length - 1] = cls, sep
    m = explain.ModelWrapper(net, "tokens", device="cpu", mask_arg="attention_mask", special_ids=[cls, sep])
    return m, x


def _lengths(x: torch.Tensor) -> list:
    return [int((row != 0).sum()) for row in x]


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("case", ["reviews", "bert"])
def test_padding_gets_exactly_zero_and_does_not_change_real_tokens(method, case, request):
    m, x = request.getfixturevalue(case)
    t = m.predict(x)
    a = METHODS[method](m, x, t)
    skip = torch.isin(x, torch.tensor([m.pad_id, *m.special_ids]))
    assert torch.all(a.values[skip] == 0), a.values[skip].abs().max()
    assert a.values[~skip].abs().sum() > 0
    for i, length in enumerate(_lengths(x)):  # the same sample without its padding
        alone = METHODS[method](m, x[i:i + 1, :length], t[i:i + 1])
        torch.testing.assert_close(a.values[i, :length], alone.values[0], atol=2e-5, rtol=1e-4)


def test_reference_backends_give_padding_zero_too(reviews):
    m, x = reviews
    x = x[:2]
    for a in (explain.lime(m, x, n_samples=100, seed=0, backend="lime"),
              explain.lime(m, x, n_samples=100, seed=0, backend="captum"),
              explain.shap(m, x, n_samples=100, seed=0, backend="captum")):
        assert torch.all(a.values[x == 0] == 0)
        assert a.values[x != 0].abs().sum() > 0


def test_a_sequence_of_padding_only_gets_all_zero_attribution(reviews):
    m, x = reviews
    x = torch.cat([x[:1], torch.zeros_like(x[:1])])
    for a in (explain.lime(m, x, n_samples=50), explain.shap(m, x, n_samples=50)):
        assert torch.all(a.values[1] == 0) and a.values[0].abs().sum() > 0
