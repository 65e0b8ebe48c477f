"""Occlusion: equals a brute-force loop exactly, agrees with captum (its pointing game is in tests/contract/test_pointing_game.py)."""

from __future__ import annotations

import pytest
import torch
from captum.attr import Occlusion
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import explain
from explain.methods._common import spread, window_masks


def brute_force_occlusion(f, x, target, window, stride, baseline=0.0):
    """One window at a time, one sample at a time: the definition, written as a loop."""
    n, _, h, w = x.shape
    total = torch.zeros(n, h, w)
    count = torch.zeros(n, h, w)
    clean = f(x).gather(1, target[:, None])[:, 0]
    r = 0
    while True:
        c = 0
        while True:
            xp = x.clone()
            xp[:, :, r:r + window, c:c + window] = baseline
            drop = clean - f(xp).gather(1, target[:, None])[:, 0]
            total[:, r:r + window, c:c + window] += drop[:, None, None]
            count[:, r:r + window, c:c + window] += 1
            if c + window >= w:
                break
            c += stride
        if r + window >= h:
            break
        r += stride
    return total / count


def test_occlusion_equals_a_brute_force_loop_on_a_tiny_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 5 * 5, 4)).double()
    x = torch.rand(3, 2, 7, 7, dtype=torch.float64)
    m = explain.ModelWrapper(net.float(), "image", device="cpu", batch_size=7)
    a = explain.occlusion(m, x.float(), target=[0, 1, 3], window=3, stride=2)
    ref = brute_force_occlusion(lambda z: net(z.float()).detach(), x.float(), torch.tensor([0, 1, 3]), 3, 2)
    torch.testing.assert_close(a.values, ref, atol=1e-6, rtol=1e-6)


def test_occlusion_agrees_with_captum_on_the_small_cnn(cnn):
    x = cnn.x[:4]
    a = explain.occlusion(cnn.wrapper, x, window=8, stride=4)
    ref = Occlusion(cnn.net).attribute(x, sliding_window_shapes=(3, 8, 8), strides=(3, 4, 4),
                                       target=a.target, baselines=0.0)
    torch.testing.assert_close(a.values, ref[:, 0], atol=1e-5, rtol=1e-4)


def test_token_occlusion_is_the_score_drop_when_each_token_becomes_the_pad_id(lstm):
    ids = lstm.x[:3]
    a = explain.occlusion(lstm.wrapper, ids)
    t = a.target
    clean = lstm.wrapper.logits(ids).gather(1, t[:, None])[:, 0]
    for pos in (0, 7, 15):
        changed = ids.clone()
        changed[:, pos] = 0
        drop = clean - lstm.wrapper.logits(changed).gather(1, t[:, None])[:, 0]
        torch.testing.assert_close(a.values[:, pos], drop, atol=1e-5, rtol=1e-4)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 3), t=st.integers(2, 20), data=st.data())
def test_one_window_over_the_whole_series_equals_the_output_difference_from_the_baseline(n, c, t, data):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(t * c, 3))
    m = explain.ModelWrapper(net, "series", device="cpu")
    x = torch.randn(n, t, c)
    base = data.draw(st.floats(-2, 2))
    a = explain.occlusion(m, x, target=1, window=t, stride=1, baseline=base)
    expected = (net(x) - net(torch.full_like(x, base)))[:, 1].detach()
    torch.testing.assert_close(a.values, expected[:, None].expand(n, t), atol=1e-5, rtol=1e-4)


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 12), w=st.integers(1, 12), wh=st.integers(1, 5), sh=st.integers(1, 4))
def test_window_masks_cover_every_pixel_and_spread_of_ones_is_one(h, w, wh, sh):
    win = (min(wh, h), min(wh, w))
    stride = (min(sh, win[0]), min(sh, win[1]))  # a stride longer than the window leaves gaps by design
    masks = window_masks((h, w), win, stride)
    assert masks.any(0).all()
    out = spread(torch.ones(2, masks.shape[0]), (h, w), win, stride)
    torch.testing.assert_close(out, torch.ones(2, h, w))


def test_bad_window_and_baseline_raise_input_errors(cnn, lstm):
    with pytest.raises(explain.errors.InputShapeError, match="window"):
        explain.occlusion(cnn.wrapper, cnn.x[:1], window=0)
    with pytest.raises(explain.errors.InputShapeError, match="baseline"):
        explain.occlusion(cnn.wrapper, cnn.x[:1], baseline=torch.zeros(2, 2))
    with pytest.raises(explain.errors.InputShapeError, match="token id"):
        explain.occlusion(lstm.wrapper, lstm.x[:1], baseline=0.5)
