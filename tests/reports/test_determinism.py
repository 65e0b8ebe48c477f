"""The same seed gives the same numbers, bit for bit, in the deterministic mode the CLI's --seed turns on.

The automatic batch size is chosen by timing, so without the mode two identical seeded calls may
run in different chunk sizes. The tests force that with a fake clock for the batch tuner, then show
that inside ``explain.deterministic()`` the chunk size is fixed and the results are identical.
"""

from __future__ import annotations

import itertools
import json
import random

import pytest
import torch

import explain
import explain.model as wrapper_module
from explain._batching import BatchTuner
from reports.cli import main

from .test_config_values import SeriesNet, _files


class RandomClock:
    """A monotonic fake clock whose steps are random: every measured chunk size looks fastest at random."""

    def __init__(self, seed: int) -> None:
        self.rng, self.now = random.Random(seed), 0.0

    def __call__(self) -> float:
        self.now += self.rng.uniform(1e-4, 1.0)
        return self.now


def _sizes_seen(net: torch.nn.Module) -> list:
    sizes: list = []
    net.register_forward_pre_hook(lambda _m, args: sizes.append(int(args[0].shape[0])))
    return sizes


@pytest.fixture
def series():
    torch.manual_seed(0)
    net = SeriesNet()
    x = torch.randn(6, 12, 1, generator=torch.Generator().manual_seed(1))
    return net, x


def _lime(m, x):
    return explain.lime(m, x, n_samples=100, seed=0).values


def test_without_the_mode_the_tuner_picks_different_chunk_sizes_on_two_identical_calls(series):
    net, x = series
    m = explain.ModelWrapper(net, "series", device="cpu")
    m.tuner.clock = RandomClock(0)
    sizes = _sizes_seen(net)
    _lime(m, x)
    first = list(sizes)
    sizes.clear()
    _lime(m, x)
    assert first != sizes and len(set(first)) > 1  # the premise of the next test


def test_the_same_seeded_call_twice_is_bit_identical_in_deterministic_mode(series):
    net, x = series
    m = explain.ModelWrapper(net, "series", device="cpu")
    m.tuner.clock = RandomClock(0)
    sizes = _sizes_seen(net)
    with explain.deterministic(batch_size=16):
        a = _lime(m, x)
        first = list(sizes)
        sizes.clear()
        b = _lime(m, x)
    assert torch.equal(a, b)
    assert first == sizes and max(first) == 16  # the fixed size, not a timed choice
    fresh = explain.ModelWrapper(SeriesNet(), "series", device="cpu")
    fresh.tuner.clock = RandomClock(7)  # a new wrapper, another clock: same bits
    with explain.deterministic(batch_size=16):
        assert torch.equal(_lime(fresh, x), a)


def test_an_explicit_batch_size_still_wins_inside_the_mode(series):
    net, x = series
    m = explain.ModelWrapper(net, "series", device="cpu", batch_size=5)
    sizes = _sizes_seen(net)
    with explain.deterministic():
        m.logits(torch.randn(12, 12, 1))
    assert sizes == [5, 5, 2]


def test_the_mode_turns_on_deterministic_algorithms_and_restores_them_also_on_error():
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    assert explain.deterministic_mode() == {"deterministic": False, "batch_size": None}
    with pytest.raises(RuntimeError, match="inside"):
        with explain.deterministic(batch_size=8):
            assert torch.are_deterministic_algorithms_enabled()
            assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
            assert explain.deterministic_mode() == {"deterministic": True, "batch_size": 8}
            raise RuntimeError("inside")
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before
    assert explain.deterministic_mode()["deterministic"] is False


def _numbers(obj, path=()):
    """Every number in a summary, by its path, except timings and dates."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k.endswith("seconds") or k in ("created",) or "time" in k:
                continue
            yield from _numbers(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, path + (i,))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, obj


CONFIG = ("[robustness]\nmax_samples = 8\nsteps = 4\nbisect_steps = 2\nmethods = [\"pgd\"]\n"
          "[trust]\nquick = true\nsamples = 4\nmethods = [\"gradcam\"]\n[verify]\nsamples = 4\n"
          "[ood]\nmethods = [\"msp\", \"energy\", \"mahalanobis\"]\n")


def test_two_seeded_cli_runs_give_identical_numbers_and_record_the_mode(tmp_path, capsys, monkeypatch):
    seeds = itertools.count()

    class RandomTuner(BatchTuner):  # every wrapper the CLI builds times its chunks on its own random clock
        def __init__(self, device_type, *a, **k):
            super().__init__(device_type, *a, **k)
            self.clock = RandomClock(next(seeds))
    monkeypatch.setattr(wrapper_module, "BatchTuner", RandomTuner)
    (tmp_path / "c.toml").write_text(CONFIG)
    summaries = []
    for run in ("a", "b"):
        argv = _files(tmp_path)[:-1] + [str(tmp_path / run)]
        code = main(["report", "--config", str(tmp_path / "c.toml"), *argv, "--seed", "3", "--methods",
                     "gradcam,lime", "--samples", "1", "--quiet"])
        _, err = capsys.readouterr()
        assert code == 0, err
        summaries.append(json.loads((tmp_path / run / "summary.json").read_text()))
    a, b = (dict(_numbers(s)) for s in summaries)
    assert len(a) > 50 and a.keys() == b.keys()
    differ = {p: (a[p], b[p]) for p in a if a[p] != b[p]}
    assert not differ, differ
    record = summaries[0]["sections"]["model_card"]["summary"]["reproducibility"]
    assert record["deterministic"] is True and record["batch_size"] == 32
    assert not torch.are_deterministic_algorithms_enabled()  # the CLI restored torch's global flag


def test_without_a_seed_the_model_card_says_the_mode_is_off(tmp_path, capsys, monkeypatch):
    import reports.build as build
    monkeypatch.setattr(build, "SECTION_BUILDERS", {"model_card": build.SECTION_BUILDERS["model_card"]})
    code = main(["report", *_files(tmp_path), "--quiet"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "r" / "summary.json").read_text())["sections"]["model_card"]["summary"]
    assert record["reproducibility"]["deterministic"] is False
    assert record["reproducibility"]["batch_size"] is None
