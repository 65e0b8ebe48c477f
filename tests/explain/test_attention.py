"""Attention maps: weights against a manual softmax(QKᵀ/√d), Hugging Face's own output, rollout's
closed form, padding, and the model left exactly as it was."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import explain
from explain.attention import AttentionMaps, attention
from explain.errors import InputShapeError, UnsupportedModelError
from explain.zoo import TinyTransformer
from tests._vit import TinyViT


def _transformers():
    return pytest.importorskip("transformers")


def _manual_mha(mha: nn.MultiheadAttention, h: torch.Tensor, key_padding: torch.Tensor = None) -> torch.Tensor:
    """softmax(Q Kᵀ / √d) per head from the in-projection weights. ``h``: N×T×D → N×H×T×T."""
    n, t, d = h.shape
    heads = mha.num_heads
    q, k, _ = nn.functional.linear(h, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)
    q = q.view(n, t, heads, d // heads).transpose(1, 2)
    k = k.view(n, t, heads, d // heads).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / (d // heads) ** 0.5
    if key_padding is not None:
        scores = scores.masked_fill(key_padding[:, None, None, :], float("-inf"))
    return scores.softmax(dim=-1)


def test_transformer_encoder_weights_equal_a_manual_softmax_and_respect_the_padding_mask():
    torch.manual_seed(0)
    net = TinyTransformer(30, 2, layers=2)
    net.train()  # the wrapper's eval mode must be undone afterwards
    m = explain.ModelWrapper(net, "tokens", device="cpu", mask_arg="attention_mask")
    ids = torch.randint(1, 30, (3, 7))
    ids[0, 5:] = 0
    maps = attention(m, ids)
    assert maps.weights.shape == (3, 2, 2, 7, 7) and maps.backend == "torch"
    assert maps.layers == ["encoder.layers.0.self_attn", "encoder.layers.1.self_attn"]
    with torch.no_grad():
        net.eval()
        h = net.embedding(ids) + net.position[:7]
        expected = _manual_mha(net.encoder.layers[0].self_attn, h, key_padding=ids == 0)
        net.train()
    torch.testing.assert_close(maps.weights[:, 0], expected, atol=1e-6, rtol=1e-5)
    assert float(maps.weights[0, :, :, :, 5:].abs().max()) == 0.0  # padded keys receive nothing
    scores = maps.scores()
    assert scores.shape == (3, 7) and float(scores[0, 5:].abs().max()) == 0.0
    assert net.training and all(mod.training for mod in net.modules())
    assert torch.backends.mha.get_fastpath_enabled()


def test_sequence_first_encoders_and_positional_need_weights_are_captured():
    class SeqFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(20, 16)
            self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0), 1,
                                             enable_nested_tensor=False)
            self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
            self.head = nn.Linear(16, 2)

        def forward(self, ids):
            h = self.enc(self.emb(ids).transpose(0, 1)).transpose(0, 1)
            h2, _ = self.attn(h, h, h, None, False)  # positional need_weights=False
            return self.head(h2.mean(1))

    torch.manual_seed(0)
    net = SeqFirst().eval()
    ids = torch.randint(0, 20, (2, 5))
    maps = attention(explain.ModelWrapper(net, "tokens", device="cpu", pad_id=-1), ids)
    assert maps.weights.shape == (2, 2, 4, 5, 5)
    with torch.no_grad():
        expected = _manual_mha(net.enc.layers[0].self_attn, net.emb(ids))
        second = _manual_mha(net.attn, net.enc(net.emb(ids).transpose(0, 1)).transpose(0, 1))
    torch.testing.assert_close(maps.weights[:, 0], expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(maps.weights[:, 1], second, atol=1e-6, rtol=1e-5)


def test_hugging_face_weights_equal_output_attentions_and_the_config_is_restored():
    torch.manual_seed(0)
    transformers = _transformers()
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, num_labels=2)
    net = transformers.BertForSequenceClassification(cfg).eval()
    impl = net.config._attn_implementation
    ids = torch.randint(1, 50, (2, 6))
    maps = attention(explain.ModelWrapper(net, "tokens", device="cpu"), ids)
    assert net.config._attn_implementation == impl and not net.config.output_attentions
    eager = transformers.BertForSequenceClassification(cfg).eval()
    eager.load_state_dict(net.state_dict())
    eager.set_attn_implementation("eager")
    with torch.no_grad():
        reference = torch.stack(eager(ids, output_attentions=True).attentions, dim=1)
    torch.testing.assert_close(maps.weights, reference, atol=1e-6, rtol=1e-5)
    assert maps.query == 0 and maps.backend == "transformers"  # [CLS] row


def test_hugging_face_vit_maps_lie_on_the_patch_grid():
    torch.manual_seed(0)
    transformers = _transformers()
    net = transformers.ViTForImageClassification(transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, num_labels=3)).eval()
    maps = attention(explain.ModelWrapper(net, "image", device="cpu"), torch.rand(2, 3, 32, 32))
    assert maps.weights.shape == (2, 2, 2, 17, 17) and maps.grid == (4, 4) and maps.prefix_tokens == 1
    torch.testing.assert_close(maps.scores(), maps.rollout()[:, 0, 1:].reshape(2, 4, 4))
    assert maps.image_map().shape == (2, 32, 32)


def test_timm_style_fused_attention_is_read_exactly_and_switched_back_on():
    torch.manual_seed(0)
    net = TinyViT().eval()
    x = torch.rand(2, 3, 32, 32)
    maps = attention(explain.ModelWrapper(net, "image", device="cpu"), x)
    assert all(block.attn.fused_attn for block in net.blocks)
    with torch.no_grad():
        tokens = torch.cat([net.cls_token.expand(2, -1, -1), net.patch_embed(x)], dim=1) + net.pos_embed[:, :17]
        attn = net.blocks[0].attn
        q, k, _ = attn.qkv(net.blocks[0].norm1(tokens)).reshape(2, 17, 3, 2, 16).permute(2, 0, 3, 1, 4)
        expected = (q @ k.transpose(-1, -2) / 16 ** 0.5).softmax(-1)
    torch.testing.assert_close(maps.weights[:, 0], expected, atol=1e-6, rtol=1e-5)
    assert maps.layers == ["blocks.0.attn", "blocks.1.attn"] and maps.query == 0


def test_timm_vit_when_installed():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=3).eval()
    maps = attention(explain.ModelWrapper(net, "image", device="cpu"), torch.rand(2, 3, 32, 32))
    assert maps.weights.shape == (2, 12, 3, 5, 5) and maps.grid == (2, 2)
    assert all(b.attn.fused_attn for b in net.blocks) == bool(timm.layers.use_fused_attn())


def _maps(weights: torch.Tensor, **kw) -> AttentionMaps:
    return AttentionMaps(weights=weights, layers=[f"l{i}" for i in range(weights.shape[1])], input_kind="tokens",
                         input_size=(weights.shape[-1],), **kw)


def test_rollout_of_uniform_attention_has_the_closed_form():
    # U (all 1/T) is idempotent, so ((U + I)/2)^L = 2^-L (I + (2^L - 1) U).
    t, layers = 5, 3
    uniform = torch.full((1, layers, 2, t, t), 1.0 / t)
    expected = (torch.eye(t) + (2 ** layers - 1) * torch.full((t, t), 1.0 / t)) / 2 ** layers
    torch.testing.assert_close(_maps(uniform).rollout()[0], expected)


def test_rollout_follows_attention_through_layers_by_hand():
    # layer 1: every token attends to token 1; layer 2: every token attends to token 0.
    a1 = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    a2 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    w = torch.stack([a1, a2])[None, :, None]  # 1×2×1×2×2
    # Ã1 = [[.5,.5],[0,1]], Ã2 = [[1,0],[.5,.5]]; R = Ã2 Ã1 = [[.5,.5],[.25,.75]]
    torch.testing.assert_close(_maps(w).rollout()[0], torch.tensor([[0.5, 0.5], [0.25, 0.75]]))
    maps = _maps(w, query=0)
    torch.testing.assert_close(maps.scores()[0], torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(maps.scores(layer=0)[0], torch.tensor([0.0, 1.0]))


def test_discarding_keeps_rows_stochastic_and_rejects_bad_ratios():
    torch.manual_seed(0)
    w = torch.rand(2, 3, 2, 6, 6).softmax(-1)
    r = _maps(w, prefix_tokens=1).rollout(discard_ratio=0.5)
    torch.testing.assert_close(r.sum(-1), torch.ones(2, 6))
    with pytest.raises(InputShapeError):
        _maps(w).rollout(discard_ratio=1.0)
    with pytest.raises(InputShapeError):
        _maps(w).rollout(head_fusion="median")


def test_models_without_attention_are_refused_and_results_serialise(cnn):
    with pytest.raises(UnsupportedModelError, match="no attention layers"):
        attention(cnn.wrapper, cnn.x[:2])
    torch.manual_seed(0)
    maps = attention(explain.ModelWrapper(TinyViT().eval(), "image", device="cpu"), torch.rand(1, 3, 32, 32))
    data = json.loads(json.dumps(maps.to_dict(include_values=True)))
    assert data["shape"] == [1, 2, 2, 17, 17] and len(data["rollout_scores"][0]) == 4


def test_rollout_of_the_planted_token_transformer_points_at_the_planted_token(transformer):
    from tests.conftest import pointing_game

    maps = attention(transformer.wrapper, transformer.x[:100])
    assert maps.query == "mean"  # no class token: the mean over real queries
    hits = pointing_game(maps.scores(), transformer.mask[:100]).float().mean()
    real = float((transformer.x[:100] != transformer.wrapper.pad_id).sum(1).float().mean())
    assert float(hits) >= 0.5 and float(hits) > 3 / real  # chance: one token in `real`
