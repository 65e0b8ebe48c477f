"""Shards cover every sample once, in order; outside a process group the helpers change nothing;
corruption noise is seeded per sample, so a sample's outcome does not depend on where it is evaluated."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import robustness
from explain.errors import InputValueError
from robustness import distributed as dist
from robustness.registry import CORRUPTIONS


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 500), world=st.integers(1, 16))
def test_shards_are_contiguous_ordered_blocks_covering_each_sample_once(n, world):
    blocks = [dist.shard_indices(n, r, world) for r in range(world)]
    assert [i for b in blocks for i in b] == list(range(n))  # concatenated in rank order = sample order
    sizes = [len(b) for b in blocks]
    assert max(sizes) - min(sizes) <= 1  # balanced; no padding, no duplicate


def test_shard_indices_rejects_a_rank_outside_the_world():
    with pytest.raises(InputValueError, match="0 ≤ rank < world"):
        dist.shard_indices(10, rank=3, world=3)


def test_helpers_are_identities_outside_a_process_group():
    assert dist.rank_and_world() == (0, 1) and not dist.active() and dist.is_main()
    t = torch.arange(6.0).view(3, 2)
    assert torch.equal(dist.all_reduce_sum(t), t)
    assert torch.equal(dist.gather_in_order(t, 3), t)
    assert dist.local_range(7) == slice(0, 7)
    assert dist.gather_objects({"a": 1}) == [{"a": 1}]
    with pytest.raises(InputValueError, match="expected 3 rows"):
        dist.gather_in_order(t[:2], 3)


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise"])
def test_image_corruption_of_a_sample_is_the_same_in_any_batch(cnn, name):
    x = cnn.x[:12]
    gens = lambda xs: [torch.Generator().manual_seed(int(v.sum() * 1e6) % 1000003) for v in xs]  # noqa: E731
    whole = CORRUPTIONS["image"][name].apply(x, 3, gens(x))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    parts = torch.cat([CORRUPTIONS["image"][name].apply(x[perm[:5]], 3, gens(x[perm[:5]])),
                       CORRUPTIONS["image"][name].apply(x[perm[5:]], 3, gens(x[perm[5:]]))])
    assert not torch.equal(whole, x)
    assert torch.equal(parts, whole[perm])


def test_corruption_accuracy_does_not_depend_on_sample_order(cnn):
    x, y = cnn.x[:40], cnn.y[:40]
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    names = ["gaussian_noise", "shot_noise"]
    a = robustness.corruption_accuracy(cnn.wrapper, (x, y), corruptions=names, severities=[5], seed=4)
    b = robustness.corruption_accuracy(cnn.wrapper, (x[perm], y[perm]), corruptions=names, severities=[5], seed=4)
    assert a.accuracy == b.accuracy and a.clean_accuracy == b.clean_accuracy
    assert min(v[0] for v in a.accuracy.values()) < a.clean_accuracy  # severity 5 actually hurts
