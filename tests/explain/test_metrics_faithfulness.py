"""Deletion/insertion, faithfulness correlation and infidelity: known outcomes on the planted CNN
and agreement with Quantus (pixel flipping, faithfulness correlation) and captum (infidelity)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import explain
from explain.metrics.faithfulness import auc, feature_ranks

from .test_metrics_randomization import CHEAP

N = 8


def test_feature_ranks_order_groups_by_mean_attribution():
    values = torch.tensor([[[1.0, 1.0, 5.0, 5.0], [0.0, 0.0, 2.0, 2.0]]])
    groups = torch.tensor([[[0, 0, 1, 1], [2, 2, 3, 3]]])
    assert feature_ranks(values, groups).tolist() == [[2, 0, 3, 1]]


def test_auc_of_a_straight_line_is_its_mean_height():
    curve = torch.linspace(1, 0, 11)[None]
    assert auc(curve).item() == pytest.approx(0.5)


@pytest.mark.parametrize("method", ["gradcam", "occlusion", "integrated_gradients", "lime", "shap"])
def test_real_methods_beat_random_order_on_deletion_and_insertion(cnn, method):
    x = cnn.x[:N]
    p = CHEAP.get(method, {})
    a = explain.run_explainer(method, cnn.wrapper, x, **p)
    res = explain.metrics.deletion_insertion(cnn.wrapper, x, a, params=p, steps=10)
    for which in ("deletion", "insertion"):
        r = res[which]
        assert r.verdict == "better than random", (which, r.aggregate, r.details["random_aggregate"], r.interval)
        assert r.details["gain_aggregate"] > 0.1
    curve = res["deletion"].details["curve"]
    assert torch.allclose(curve[:, 0], torch.softmax(cnn.wrapper.logits(x), 1).gather(1, a.target[:, None])[:, 0], atol=1e-5)


def test_a_reversed_map_is_worse_than_random_on_deletion(cnn):
    x = cnn.x[:N]
    a = explain.gradcam(cnn.wrapper, x)
    flipped = explain.Attribution(values=-a.values, method="gradcam", target=a.target)
    r = explain.metrics.deletion(cnn.wrapper, x, flipped, steps=10)
    assert r.verdict == "not better than random" and r.details["gain_aggregate"] < 0
    assert r.values.shape == (N,) and r.higher_is_better is False


def test_deletion_curve_matches_quantus_pixel_flipping(cnn):
    quantus = pytest.importorskip("quantus")
    from explain.zoo import SmallCNN
    torch.manual_seed(0)
    net = SmallCNN(in_channels=1, num_classes=4).eval()  # one channel: Quantus flips elements, xaiscope pixels
    m = explain.ModelWrapper(net, "image", device="cpu")
    x = cnn.x[:4].mean(1, keepdim=True)
    a = explain.integrated_gradients(m, x, steps=8)
    jitter = 1e-6 * torch.rand(a.values.shape, generator=torch.Generator().manual_seed(0))  # no ties: one order
    a = explain.Attribution(values=a.values + jitter, method="integrated_gradients", target=a.target)
    ours = explain.metrics.deletion(m, x, a, features="pixels", baseline=0.0, steps=32)
    metric = quantus.PixelFlipping(features_in_step=32, perturb_baseline=0.0, normalise=False, abs=False,
                                   disable_warnings=True)
    ref = np.asarray(metric(model=net, x_batch=x.numpy(), y_batch=a.target.numpy(), a_batch=a.values[:, None].numpy(),
                            channel_first=True, softmax=True, device="cpu"))
    assert np.allclose(ours.details["curve"][:, 1:].numpy(), ref, atol=1e-5)


def test_faithfulness_correlation_matches_quantus_on_the_same_subsets(cnn):
    quantus = pytest.importorskip("quantus")
    x = cnn.x[:4]
    a = explain.integrated_gradients(cnn.wrapper, x, steps=8)
    runs, size, d = 20, 96, x[0].numel()
    metric = quantus.FaithfulnessCorrelation(nr_runs=runs, subset_size=size, perturb_baseline=0.0, normalise=False,
                                             abs=False, return_aggregate=False, disable_warnings=True)
    np.random.seed(0)
    ref = metric(model=cnn.net, x_batch=x.numpy(), y_batch=a.target.numpy(), a_batch=a.values[:, None].numpy(),
                 channel_first=True, softmax=False, device="cpu")
    np.random.seed(0)
    subsets = [np.stack([np.random.choice(d, size, replace=False) for _ in range(len(x))]) for _ in range(runs)]
    subsets = torch.from_numpy(np.stack(subsets, axis=1))
    ours = explain.metrics.faithfulness_correlation(cnn.wrapper, x, a, subsets=subsets, baseline=0.0, output="logit")
    assert np.allclose(ours.values.numpy(), np.asarray(ref), atol=1e-4)
    assert ours.aggregate > 0.3  # IG on the planted CNN: removing high-attribution pixels costs more


def test_infidelity_matches_captum_with_the_same_noise(cnn):
    from captum.metrics import infidelity as captum_infidelity
    x = cnn.x[:4]
    a = explain.saliency(cnn.wrapper, x)
    s = 5
    noise = torch.randn((len(x) * s,) + tuple(x.shape[1:]), generator=torch.Generator().manual_seed(3)) * 0.05
    ref = captum_infidelity(cnn.net, lambda inputs: (noise, inputs - noise), x, a.values[:, None].expand_as(x).contiguous(),
                            target=a.target, n_perturb_samples=s, normalize=True)
    ours = explain.metrics.infidelity(cnn.wrapper, x, a, noise=noise, normalize=True, output="logit")
    assert torch.allclose(ours.values, ref.float(), rtol=1e-3, atol=1e-6)


def test_infidelity_refuses_token_models(lstm):
    a = explain.occlusion(lstm.wrapper, lstm.x[:2])
    with pytest.raises(explain.errors.InputShapeError, match="token"):
        explain.metrics.infidelity(lstm.wrapper, lstm.x[:2], a)


def test_token_deletion_replaces_tokens_by_the_pad_id(lstm):
    x = lstm.x[:6]
    a = explain.occlusion(lstm.wrapper, x)
    r = explain.metrics.deletion(lstm.wrapper, x, a, steps=16, n_random=2)
    pad_only = torch.full_like(x, lstm.wrapper.pad_id)
    p_pad = torch.softmax(lstm.wrapper.logits(pad_only), 1).gather(1, a.target[:, None])[:, 0]
    assert torch.allclose(r.details["curve"][:, -1], p_pad, atol=1e-5)
    assert r.verdict == "better than random"


def test_metric_result_serialises_to_json(cnn):
    import json
    x = cnn.x[:2]
    r = explain.metrics.insertion(cnn.wrapper, x, explain.gradcam(cnn.wrapper, x), steps=4)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["metric"] == "insertion" and len(d["values"]) == 2 and len(d["details"]["curve"][0]) == 5


class _CountRows(torch.nn.Module):
    """The wrapped network, counting the rows it is asked to score."""

    def __init__(self, net):
        super().__init__()
        self.net, self.rows = net, 0

    def forward(self, x):
        self.rows += x.shape[0]
        return self.net(x)


def test_deletion_and_insertion_score_each_distinct_input_once(cnn):
    counter = _CountRows(cnn.net)
    m = explain.ModelWrapper(counter, "image", device="cpu")
    x, steps = cnn.x[:4], 20
    a = explain.gradcam(m, x)
    counter.rows = 0
    res = explain.metrics.deletion_insertion(m, x, a, steps=steps, n_random=1)
    # 32×32 inputs in 4-pixel cells: 64 features, and 64·k/20 never ends in one half, so deletion in the
    # reversed random order reuses every point of insertion in that order; full and empty are shared
    assert res["deletion"].details["features"].tolist() == [64] * 4
    assert counter.rows == res["deletion"].params["evaluations"] == len(x) * (3 * (steps - 1) + 2)
    curve = res["deletion"].details["curve"]
    full = torch.softmax(cnn.wrapper.logits(x), 1).gather(1, a.target[:, None])[:, 0]
    assert torch.allclose(curve[:, 0], full, atol=1e-5) and torch.allclose(res["insertion"].details["curve"][:, -1], full, atol=1e-5)
    assert torch.allclose(res["deletion"].details["random_curve"][:, -1], res["insertion"].details["curve"][:, 0], atol=1e-6)


def _direct_curve(m, x, a, cell, steps, insert):
    """One input at a time: rank the cells by mean attribution, zero the first round(k/S·F) of them."""
    out = torch.zeros(len(x), steps + 1)
    for i in range(len(x)):
        cells = a.values[i].unfold(0, cell, cell).unfold(1, cell, cell).mean((2, 3)).flatten()
        order = cells.argsort(descending=True, stable=True)
        f = len(order)
        for k in range(steps + 1):
            moved = order[: int(round(k / steps * f))]
            on = torch.zeros(f, dtype=torch.bool)
            on[moved] = True
            if not insert:
                on = ~on
            side = x.shape[-1] // cell
            keep = on.view(side, side).repeat_interleave(cell, 0).repeat_interleave(cell, 1)
            xi = torch.where(keep, x[i], torch.zeros_like(x[i]))
            out[i, k] = torch.softmax(m.logits(xi[None]), 1)[0, a.target[i]]
    return out


def test_curves_match_a_direct_one_input_at_a_time_computation(cnn):
    x, steps = cnn.x[:3], 8
    a = explain.gradcam(cnn.wrapper, x)
    res = explain.metrics.deletion_insertion(cnn.wrapper, x, a, steps=steps, n_random=1, baseline=0.0)
    for which in ("deletion", "insertion"):
        ref = _direct_curve(cnn.wrapper, x, a, 4, steps, which == "insertion")
        assert torch.allclose(res[which].details["curve"], ref, atol=1e-5), which


def test_n_random_zero_gives_the_attribution_curve_alone_without_a_verdict(cnn):
    x = cnn.x[:4]
    a = explain.integrated_gradients(cnn.wrapper, x, steps=8)
    alone = explain.metrics.deletion(cnn.wrapper, x, a, steps=10, n_random=0)
    judged = explain.metrics.deletion(cnn.wrapper, x, a, steps=10, n_random=1)
    assert torch.allclose(alone.details["curve"], judged.details["curve"], atol=1e-6)
    assert alone.verdict is None and alone.interval is None and "random_auc" not in alone.details
    assert alone.params["evaluations"] == len(x) * 11 < judged.params["evaluations"]
    with pytest.raises(explain.errors.InputShapeError, match="n_random"):
        explain.metrics.deletion(cnn.wrapper, x, a, n_random=-1)
