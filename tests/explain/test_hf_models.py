"""Hugging Face classifiers (tiny BERT, DistilBERT, RoBERTa built from configs, random init) through
``explain.load_hf``: keyword calls, attention masks from the pad id, special tokens kept, every
registered explainer, attack and OOD detector, and the model's state left as it was."""

from __future__ import annotations

import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

import explain  # noqa: E402
import robustness  # noqa: E402
from explain.registry import EXPLAINERS  # noqa: E402
from robustness.registry import ATTACKS, CORRUPTIONS, DETECTORS, attack_spec  # noqa: E402
from tests.contract.test_state_restored import assert_unchanged, snapshot  # noqa: E402

WORDS = "the a film movie good bad great dull plot actor fine boring fun long short not very".split()
TEXTS = ["the film was good", "a very dull plot", "great fun", "the actor was not fine",
         "boring long movie", "short and fun film very good"]
SMALL = dict(initializer_range=0.4, hidden_size=16, num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)


def _tokenizer(kind: str):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    if kind == "roberta":
        specials = ["<s>", "<pad>", "</s>", "<unk>"]
        first, last, pad, unk = "<s>", "</s>", "<pad>", "<unk>"
    else:
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        first, last, pad, unk = "[CLS]", "[SEP]", "[PAD]", "[UNK]"
    vocab = {w: i for i, w in enumerate(specials + WORDS + ["was", "and"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{first} $A {last}", special_tokens=[(first, vocab[first]), (last, vocab[last])])
    extra = {"mask_token": "[MASK]"} if kind != "roberta" else {}
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=pad, unk_token=unk,
                                                cls_token=first, sep_token=last, **extra)
    if kind == "roberta":
        fast.bos_token, fast.eos_token = first, last
    return fast, len(vocab)


def _build(kind: str, path):
    tok, vocab = _tokenizer(kind)
    labels = {"id2label": {0: "negative", 1: "positive"}, "label2id": {"negative": 0, "positive": 1}}
    torch.manual_seed(0)  # a wide initialisation so logits depend on the input
    if kind == "bert":
        cfg = transformers.BertConfig(vocab_size=vocab, num_hidden_layers=2, pad_token_id=0, **SMALL, **labels)
        model = transformers.BertForSequenceClassification(cfg)
    elif kind == "distilbert":
        cfg = transformers.DistilBertConfig(vocab_size=vocab, dim=16, n_heads=2, n_layers=2, hidden_dim=32,
                                            max_position_embeddings=64, pad_token_id=0, initializer_range=0.4, **labels)
        model = transformers.DistilBertForSequenceClassification(cfg)
    else:
        cfg = transformers.RobertaConfig(vocab_size=vocab, num_hidden_layers=2, pad_token_id=1, bos_token_id=0,
                                         eos_token_id=2, type_vocab_size=1, **SMALL, **labels)
        model = transformers.RobertaForSequenceClassification(cfg)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module", params=["bert", "distilbert", "roberta"])
def hf(request, tmp_path_factory):
    path = _build(request.param, tmp_path_factory.mktemp(request.param))
    m = explain.load_hf(path, device="cpu")
    ids = explain.encode_texts(m.tokenizer, TEXTS)
    return request.param, m, ids


def test_load_hf_reads_labels_pad_mask_and_special_tokens(hf):
    kind, m, ids = hf
    assert m.input_kind == "tokens"
    assert m.class_names == ["negative", "positive"]
    assert m.pad_id == m.tokenizer.pad_token_id == (1 if kind == "roberta" else 0)
    assert m.mask_arg == "attention_mask"
    assert set(m.special_ids) == {m.tokenizer.cls_token_id, m.tokenizer.sep_token_id}
    assert (ids == m.pad_id).any(), "the texts have different lengths, so some rows are padded"


def test_logits_use_the_attention_mask_like_the_model_itself(hf):
    _, m, ids = hf
    mask = (ids != m.pad_id).long()
    with torch.no_grad():
        expected = m.model(input_ids=ids, attention_mask=mask).logits
        unmasked = m.model(input_ids=ids).logits
    got = m.logits(ids)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert (got - unmasked).abs().max() > 1e-4, "without the mask padded rows give other logits"
    # Appending more padding changes nothing when the mask is passed.
    longer = torch.cat([ids, torch.full((len(ids), 3), m.pad_id)], dim=1)
    torch.testing.assert_close(m.logits(longer), got, atol=1e-4, rtol=1e-4)


def test_embedding_hook_path_matches_inputs_embeds(hf):
    """Perturbing the word embeddings by hook keeps position (and token-type) embeddings, exactly as
    passing ``inputs_embeds`` does."""
    _, m, ids = hf
    with m.session(grad=False):
        emb = m.embed(ids) * 1.1
        hooked = m.forward_embedded(ids, emb)
        direct = m.model(inputs_embeds=emb, attention_mask=(ids != m.pad_id).long()).logits
    torch.testing.assert_close(hooked, direct, atol=1e-5, rtol=1e-5)


def test_integrated_gradients_completeness_and_occlusion_zero_on_padding(hf):
    _, m, ids = hf
    a = explain.integrated_gradients(m, ids, steps=64)
    # The baseline: every word's embedding replaced by [PAD]'s; [CLS]/[SEP], positions and the attention
    # mask as in the input (computed through the model's own inputs_embeds argument).
    base_ids = torch.where((ids == m.tokenizer.cls_token_id) | (ids == m.tokenizer.sep_token_id), ids, m.pad_id)
    words = m.model.get_input_embeddings()
    with torch.no_grad():
        mask = (ids != m.pad_id).long()
        logits = m.model(inputs_embeds=words(ids), attention_mask=mask).logits
        base = m.model(inputs_embeds=words(base_ids), attention_mask=mask).logits
    diff = (logits - base).gather(1, a.target[:, None])[:, 0]
    gap = (a.values.sum(1) - diff).abs()
    assert float(diff.abs().max()) > 0.05, "the tiny model must respond to its input for the check to mean anything"
    assert float(gap.max()) < 0.05 * float(diff.abs().max()) + 1e-3, (gap, diff)
    torch.testing.assert_close(a.quality["completeness_gap"], gap, atol=1e-3, rtol=0)
    special = m.special_mask(ids)
    assert torch.equal(a.values[special], torch.zeros(int(special.sum()))), "[CLS]/[SEP]/[PAD] equal the baseline"
    occ = explain.occlusion(m, ids)
    pad = ids == m.pad_id
    assert torch.equal(occ.values[pad], torch.zeros(int(pad.sum())))
    special = m.special_mask(ids) & ~pad
    assert torch.equal(occ.values[special], torch.zeros(int(special.sum()))), "special tokens are never occluded"


FAST = {"occlusion": {}, "lime": {"n_samples": 24}, "shap": {"n_samples": 24}, "integrated_gradients": {"steps": 4},
        "smoothgrad": {"n_samples": 3}}


def test_every_method_attack_and_detector_runs_and_leaves_the_model_unchanged(hf):
    _, m, ids = hf
    net = m.model
    net.train()
    before = snapshot(net)
    x, y = ids[:4], torch.tensor([0, 1, 0, 1])
    for name in sorted(EXPLAINERS):
        a = EXPLAINERS[name](m, x, None, **FAST.get(name, {}))
        assert a.values.shape == x.shape and torch.isfinite(a.values).all(), name
    for name in sorted(ATTACKS):
        params = {"steps": 2} if name in ("pgd", "apgd") else {}
        budget = 1 if attack_spec(name).budget == "count" else 0.5  # substituted tokens, or embedding std units
        r = robustness.attack(m, x, y, method=name, eps=budget, **params)
        assert len(r.success) == len(x), name
        if r.adversarial_embeddings is None:  # token substitutions: special tokens and padding stay
            keep = m.special_mask(x)
            assert torch.equal(r.adversarial[keep], x[keep]), name
    for name in sorted(DETECTORS):
        det = robustness.ood_detector(name).fit(m, (ids.repeat(4, 1), torch.tensor([0, 1] * 12)))
        scores = det.score(x)
        assert scores.shape == (len(x),) and torch.isfinite(scores).all(), name
    k = robustness.corruption_accuracy(m, (x, y), corruptions=list(CORRUPTIONS["tokens"]), severities=[2])
    assert k is not None
    assert_unchanged(net, before)
    assert net.training


def test_load_model_hf_prefix_and_errors(hf, tmp_path):
    kind, m, ids = hf
    with pytest.raises(explain.errors.ModelLoadError, match="save_pretrained"):
        explain.load_model(f"hf:{tmp_path}")


def test_keyword_only_forward_gets_ids_and_mask_by_name():
    class KeywordOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(10, 4, padding_idx=0)
            self.head = torch.nn.Linear(4, 2)

        def forward(self, *, input_ids, attention_mask=None):
            h = self.emb(input_ids) * attention_mask[..., None]
            return {"logits": self.head(h.sum(1) / attention_mask.sum(1, keepdim=True))}

    net = KeywordOnly()
    assert explain.ModelWrapper(net, "tokens", device="cpu").mask_arg is None  # auto: Hugging Face models only
    m = explain.ModelWrapper(net, "tokens", device="cpu", mask_arg="attention_mask")
    ids = torch.tensor([[3, 4, 0, 0], [5, 6, 7, 8]])
    expected = net(input_ids=ids, attention_mask=(ids != 0).long())["logits"]
    torch.testing.assert_close(m.logits(ids), expected.detach())
    assert explain.saliency(m, ids).values.shape == ids.shape
    with pytest.raises(explain.errors.UnsupportedModelError, match="no parameter"):
        explain.ModelWrapper(net, "tokens", device="cpu", mask_arg="mask")


def test_token_corruptions_keep_special_tokens_and_write_the_tokenizers_unknown_id(hf):
    _, m, ids = hf
    from robustness.registry import CORRUPTIONS
    table = CORRUPTIONS["tokens"]
    extra = {"pad_id": m.pad_id, "unk_id": m.unk_id, "keep": m.special_mask(ids)}
    assert m.unk_id == m.tokenizer.unk_token_id
    masked = table["token_mask"].apply(ids, 5, torch.Generator().manual_seed(0), **extra)
    changed = masked != ids
    assert changed.any() and bool((masked[changed] == m.unk_id).all())
    assert not (changed & m.special_mask(ids)).any()
    cls, sep = m.tokenizer.cls_token_id, m.tokenizer.sep_token_id
    for name in ("token_drop", "token_swap"):
        out = table[name].apply(ids, 5, torch.Generator().manual_seed(0), **extra)
        assert bool((out[:, 0] == cls).all()), name
        assert torch.equal((out == sep).sum(1), (ids == sep).sum(1)), name
        assert torch.equal((out == m.pad_id).sum(1) >= (ids == m.pad_id).sum(1), torch.ones(len(ids), dtype=torch.bool))


def test_hf_image_classifier_takes_class_names_and_normalisation_from_its_directory(tmp_path):
    import json
    cfg = transformers.ViTConfig(image_size=16, patch_size=8, num_channels=3, hidden_size=16, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=32, initializer_range=0.4,
                                 id2label={0: "cat", 1: "dog", 2: "fox"}, label2id={"cat": 0, "dog": 1, "fox": 2})
    torch.manual_seed(0)
    transformers.ViTForImageClassification(cfg).save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"do_normalize": True, "image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.25, 0.3]}))
    m = explain.load_hf(tmp_path, device="cpu")
    assert m.input_kind == "image" and m.class_names == ["cat", "dog", "fox"]
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    mean, std = torch.tensor([0.5, 0.4, 0.3])[:, None, None], torch.tensor([0.2, 0.25, 0.3])[:, None, None]
    with torch.no_grad():
        expected = m.model(pixel_values=(x - mean) / std).logits
    torch.testing.assert_close(m.logits(x), expected, atol=1e-5, rtol=1e-5)
    assert explain.occlusion(m, x, window=8, stride=8).values.shape == (2, 16, 16)
