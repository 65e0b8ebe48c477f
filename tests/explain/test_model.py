"""ModelWrapper: normalisation, output selection, batching with OOM halving, state restoration, layers."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import explain
from explain.errors import (
    EmptyDataError, InputShapeError, InputValueError, LayerNotFoundError, OutOfMemoryError, UnsupportedModelError,
)


def tiny_cnn(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, classes))


def test_logits_apply_normalisation_inside_the_wrapper():
    net = tiny_cnn()
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    m = explain.ModelWrapper(net, "image", mean=mean, std=std, device="cpu")
    x = torch.rand(6, 3, 8, 8)
    expected = net((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    torch.testing.assert_close(m.logits(x), expected.detach())


def test_series_normalisation_is_over_the_last_axis():
    net = nn.Sequential(nn.Flatten(), nn.Linear(10 * 2, 3))
    m = explain.ModelWrapper(net, "series", mean=[1.0, -1.0], std=[2.0, 0.5], device="cpu")
    x = torch.randn(4, 10, 2)
    expected = net((x - torch.tensor([1.0, -1.0])) / torch.tensor([2.0, 0.5]))
    torch.testing.assert_close(m.logits(x), expected.detach())


@pytest.mark.parametrize("wrap, selector", [
    (lambda z: (z, z * 0), None),
    (lambda z: {"logits": z, "aux": z * 0}, None),
    (lambda z: type("Out", (), {"logits": z})(), None),
    (lambda z: {"scores": z}, "scores"),
    (lambda z: [z * 0, z], 1),
    (lambda z: {"a": {"b": z}}, lambda out: out["a"]["b"]),
])
def test_output_selector_reads_logits_from_tuples_dicts_and_objects(wrap, selector):
    base = tiny_cnn()

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.base = base

        def forward(self, x):
            return wrap(self.base(x))

    x = torch.rand(3, 3, 8, 8)
    m = explain.ModelWrapper(Wrapped(), "image", output=selector, device="cpu")
    torch.testing.assert_close(m.logits(x), base(x).detach())


def test_model_output_that_is_not_n_by_k_raises_unsupported_model():
    net = nn.Sequential(nn.Conv2d(3, 2, 3))  # N×2×6×6 maps, not logits
    m = explain.ModelWrapper(net, "image", device="cpu")
    with pytest.raises(UnsupportedModelError, match="expected 2×K"):
        m.logits(torch.rand(2, 3, 8, 8))


def test_dict_output_without_logits_key_names_the_keys():
    class D(nn.Module):
        def forward(self, x):
            return {"scores": x.flatten(1)}

    with pytest.raises(UnsupportedModelError, match="scores"):
        explain.ModelWrapper(D(), "image", device="cpu").logits(torch.rand(2, 1, 2, 2))


@pytest.mark.parametrize("bad, error, message", [
    (torch.rand(3, 8, 8), InputShapeError, "N×C×H×W"),
    (torch.randint(0, 5, (2, 3, 8, 8)), InputShapeError, "floating point"),
    (torch.full((2, 3, 8, 8), float("nan")), InputValueError, "NaN"),
    (torch.rand(2, 4, 8, 8), InputShapeError, "channels"),
    (torch.rand(0, 3, 8, 8), EmptyDataError, "empty"),
    ([1, 2, 3], InputShapeError, "torch.Tensor"),
])
def test_bad_image_inputs_raise_specific_errors(bad, error, message):
    m = explain.ModelWrapper(tiny_cnn(), "image", mean=[0.5] * 3, std=[0.5] * 3, device="cpu")
    with pytest.raises(error, match=message):
        m.logits(bad)


def test_token_ids_outside_the_vocabulary_raise(lstm):
    with pytest.raises(InputValueError, match="embedding has 60 rows"):
        lstm.wrapper.logits(torch.full((2, 16), 60))
    with pytest.raises(InputShapeError, match="integer ids"):
        lstm.wrapper.logits(torch.rand(2, 16))


def test_inputs_outside_the_valid_range_warn_about_normalisation():
    m = explain.ModelWrapper(tiny_cnn(), "image", device="cpu")
    with pytest.warns(UserWarning, match="natural units"):
        m.logits(torch.randn(2, 3, 8, 8) * 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.logits(torch.rand(2, 3, 8, 8))


def test_batched_halves_the_batch_on_out_of_memory_and_remembers_it():
    m = explain.ModelWrapper(tiny_cnn(), "image", device="cpu", batch_size=64)
    seen = []

    def fn(sl: slice):
        size = sl.stop - sl.start
        if size > 16:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        seen.append((sl.start, sl.stop))
        return torch.arange(sl.start, sl.stop)

    out = torch.cat(m.batched(fn, 100))
    assert torch.equal(out, torch.arange(100))
    assert max(b - a for a, b in seen) == 16
    assert m.batch_size == 16


def test_batched_raises_a_clear_error_when_one_sample_does_not_fit():
    m = explain.ModelWrapper(tiny_cnn(), "image", device="cpu", batch_size=4)

    def fn(sl):
        raise RuntimeError("CUDA error: out of memory")

    with pytest.raises(OutOfMemoryError, match="batch of 1"):
        m.batched(fn, 10)


def test_batched_does_not_swallow_other_errors():
    m = explain.ModelWrapper(tiny_cnn(), "image", device="cpu")
    with pytest.raises(ValueError, match="boom"):
        m.batched(lambda sl: (_ for _ in ()).throw(ValueError("boom")), 10)


def test_session_restores_training_flags_and_requires_grad_even_when_it_raises():
    net = tiny_cnn()
    net.train()
    net[0].eval()
    net[2].weight.requires_grad_(False)
    before = [(m.training) for m in net.modules()], [p.requires_grad for p in net.parameters()]
    m = explain.ModelWrapper(net, "image", device="cpu")
    with pytest.raises(RuntimeError, match="inside"):
        with m.session(grad=True):
            assert not any(mod.training for mod in net.modules())
            assert not any(p.requires_grad for p in net.parameters())
            raise RuntimeError("inside")
    after = [(m.training) for m in net.modules()], [p.requires_grad for p in net.parameters()]
    assert before == after


def test_rnn_backward_fix_runs_recurrent_layers_as_in_eval_and_restores_them():
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(3, 8, num_layers=2, dropout=0.5, batch_first=True)
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    net = Net().eval()
    x = torch.randn(5, 7, 3)

    def input_grad(fix: bool):
        m = explain.ModelWrapper(net, "series", device="cpu", rnn_backward_fix=fix)
        xr = x.clone().requires_grad_(True)
        with m.session(grad=True):
            if fix:
                assert net.rnn.training and net.rnn.dropout == 0.0
            m.forward(xr)[:, 1].sum().backward()
        return xr.grad

    with_fix, without = input_grad(True), input_grad(False)
    torch.testing.assert_close(with_fix, without)  # dropout 0 in train mode == eval mode, exactly
    assert not net.rnn.training and net.rnn.dropout == 0.5


def test_layer_not_found_lists_the_available_names():
    m = explain.ModelWrapper(tiny_cnn(), "image", target_layer="layer5", device="cpu")
    with pytest.raises(LayerNotFoundError) as info:
        m.target_layer()
    assert "layer5" in str(info.value) and "available: 0, 1, 2" in str(info.value)


def test_automatic_layers_follow_the_input_kind(cnn, lstm, transformer, conv1d, gru):
    assert cnn.wrapper.target_layer()[0] == "conv"
    assert lstm.wrapper.target_layer()[0] == "embedding"
    assert transformer.wrapper.embedding_layer()[0] == "embedding"
    assert conv1d.wrapper.target_layer()[0] == "conv2"
    assert gru.wrapper.target_layer()[0] == "gru"
    assert cnn.wrapper.feature_layer()[0] == "head"


def test_model_without_a_conv_layer_gets_a_clear_error():
    m = explain.ModelWrapper(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)), "image", device="cpu")
    with pytest.raises(LayerNotFoundError, match="Conv2d"):
        explain.gradcam(m, torch.rand(2, 3, 2, 2))


def test_features_are_the_input_of_the_classifier_head(any_model):
    m = any_model.wrapper
    x = any_model.x[:8]
    z = m.features(x)
    head = m.feature_layer()[1]
    torch.testing.assert_close(head(z).detach(), m.logits(x), atol=1e-5, rtol=1e-4)


def test_forward_embedded_with_the_models_own_embeddings_reproduces_the_logits(transformer):
    m = transformer.wrapper
    ids = transformer.x[:6]
    with m.session():
        direct = m.forward(ids)
        replaced = m.forward_embedded(ids, m.embed(ids))
    torch.testing.assert_close(direct, replaced)


def test_mask_argument_is_built_from_the_pad_id(transformer):
    ids = transformer.x[:4].clone()
    ids[:, 10:] = 0
    m = explain.ModelWrapper(transformer.net, "tokens", mask_arg="attention_mask", device="cpu")
    expected = transformer.net(ids, attention_mask=ids != 0)
    torch.testing.assert_close(m.logits(ids), expected.detach())


def test_bf16_autocast_stays_close_to_fp32(cnn):
    m16 = explain.ModelWrapper(cnn.net, "image", precision="bf16", device="cpu")
    p16 = m16.predict(cnn.x[:32])
    p32 = cnn.wrapper.predict(cnn.x[:32])
    assert (p16 == p32).float().mean() >= 0.9


def test_target_out_of_range_and_wrong_length_raise(cnn):
    with pytest.raises(InputValueError, match=r"\[0, 3\]"):
        cnn.wrapper.resolve_target(cnn.x[:2], 7)
    with pytest.raises(InputShapeError, match="one per sample"):
        cnn.wrapper.resolve_target(cnn.x[:3], [0, 1])


def test_requesting_cuda_without_a_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UnsupportedModelError, match="CUDA is not available"):
        explain.ModelWrapper(tiny_cnn(), "image", device="cuda")


@pytest.mark.gpu
def test_cuda_and_cpu_give_the_same_logits(cnn):
    import copy
    gpu = explain.ModelWrapper(copy.deepcopy(cnn.net), "image", device="cuda")
    torch.testing.assert_close(gpu.logits(cnn.x[:16]), cnn.wrapper.logits(cnn.x[:16]), atol=1e-4, rtol=1e-3)


@pytest.mark.gpu
def test_lstm_gradients_work_on_cuda_in_eval_mode(lstm):
    import copy
    m = explain.ModelWrapper(copy.deepcopy(lstm.net), "tokens", device="cuda")
    a = explain.gradcam(m, lstm.x[:8])
    assert torch.isfinite(a.values).all() and not m.model.training
