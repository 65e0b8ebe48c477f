"""Every registered attack and OOD detector gives each sample the same result whatever its batch-mates.

The batch is shuffled and split in two; each sample's result must match the one computed in the
whole batch (same seed). Methods are taken from the registries, so a new one is checked automatically.
"""

from __future__ import annotations

import pytest
import torch

import robustness
from robustness.registry import ATTACK_SPECS, DETECTOR_SPECS

FAST = {"pgd": {"steps": 3}, "apgd": {"steps": 4}, "hotflip": {"max_tokens": 1, "candidates": 4}}
KIND_FIXTURE = {"image": "cnn", "series": "conv1d", "tokens": "transformer"}
EPS = {"image": 8 / 255, "series": 0.3, "tokens": 0.5}


def _split_runs(fn, x, seed=0):
    """fn on the whole batch, and on a shuffled batch split in two, mapped back to the original order."""
    whole = fn(x)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    half = len(x) // 2
    parts = torch.cat([fn(x[perm[:half]]), fn(x[perm[half:]])])
    back = torch.empty_like(parts)
    back[perm] = parts
    return whole, back


@pytest.mark.parametrize("kind", list(KIND_FIXTURE))
@pytest.mark.parametrize("name", list(ATTACK_SPECS))
def test_attack_result_of_a_sample_does_not_depend_on_its_batch(name, kind, request):
    spec = ATTACK_SPECS[name]
    if kind not in spec.kinds:
        pytest.skip(f"{name} does not attack {kind} inputs")
    d = request.getfixturevalue(KIND_FIXTURE[kind])
    x, y = d.x[:10], d.y[:10]
    ys = dict(zip(map(lambda t: t.numpy().tobytes(), x), y))
    budget = {} if spec.budget == "count" else {"eps": EPS[kind]}

    def run(xb):
        yb = torch.stack([ys[t.numpy().tobytes()] for t in xb])
        r = robustness.attack(d.wrapper, xb, yb, name, seed=3, **budget, **FAST.get(name, {}))
        out = r.adversarial_embeddings if r.adversarial_embeddings is not None else r.adversarial
        return out.float().flatten(1)

    whole, split = _split_runs(run, x)
    assert torch.allclose(whole, split, atol=1e-5), f"{name} on {kind}: results change with the batch"


@pytest.mark.parametrize("kind", list(KIND_FIXTURE))
@pytest.mark.parametrize("name", list(DETECTOR_SPECS))
def test_detector_score_of_a_sample_does_not_depend_on_its_batch(name, kind, request):
    spec = DETECTOR_SPECS[name]
    if kind not in spec.kinds:
        pytest.skip(f"{name} does not score {kind} inputs")
    d = request.getfixturevalue(KIND_FIXTURE[kind])
    det = robustness.ood_detector(name, **spec.defaults).fit(d.wrapper, (d.x[:60], d.y[:60]))
    whole, split = _split_runs(lambda xb: det.score(xb).double(), d.x[60:76])
    assert torch.allclose(whole, split, rtol=1e-4, atol=1e-5), f"{name} on {kind}: scores change with the batch"
