"""The automatic batch size: measured on the first chunks on a CPU, largest-that-fits on CUDA (faked
here), cached per key, overridden by an explicit size, and invisible in the results."""

from __future__ import annotations

import torch

import explain
from explain._batching import CPU_CANDIDATES, CUDA_START, BatchTuner, run_in_chunks


class FakeClock:
    """Time advances only when the fake model 'computes': ``cost(size)`` seconds per chunk."""

    def __init__(self, cost) -> None:
        self.now, self.cost, self.sizes = 0.0, cost, []

    def __call__(self) -> float:
        return self.now

    def fn(self, sl: slice):
        size = sl.stop - sl.start
        self.sizes.append(size)
        self.now += self.cost(size)
        return torch.arange(sl.start, sl.stop)


def u_shaped(size: int) -> float:
    """Per-call overhead plus a per-sample cost that grows past 32 (caches): fastest at 32."""
    return 1.0 + size * (1.0 if size <= 32 else 1.0 + (size - 32) / 16)


def test_cpu_tuner_measures_candidates_on_real_work_and_keeps_the_fastest():
    clock = FakeClock(u_shaped)
    tuner = BatchTuner("cpu", clock=clock)
    out = torch.cat(run_in_chunks(clock.fn, 3000, None, tuner=tuner, key="k"))
    assert torch.equal(out, torch.arange(3000))  # every row once, in order
    assert tuner.best["k"] == 32
    measured = clock.sizes[: clock.sizes.index(32) + 1 + 1 + 4]
    assert set(measured) <= set(CPU_CANDIDATES)
    assert 256 not in clock.sizes  # two losing candidates in a row (64, 128) end the measurement
    clock.sizes.clear()
    run_in_chunks(clock.fn, 100, None, tuner=tuner, key="k")
    assert clock.sizes == [32, 32, 32, 4]  # cached: straight to the best size


def test_measurement_spreads_over_small_first_calls_and_keys_are_separate():
    clock = FakeClock(u_shaped)
    tuner = BatchTuner("cpu", clock=clock)
    for _ in range(6):
        clock.sizes.clear()
        run_in_chunks(clock.fn, 40, None, tuner=tuner, key="a")
    assert clock.sizes == [32, 8]  # calls too small to try 64: the fastest measured size so far
    clock.sizes.clear()
    run_in_chunks(clock.fn, 8, None, tuner=tuner, key="b")
    assert clock.sizes == [8]


def test_candidates_that_would_not_fit_the_memory_bound_are_never_tried():
    clock = FakeClock(lambda size: float(size))
    tuner = BatchTuner("cpu", clock=clock)
    run_in_chunks(clock.fn, 2000, None, tuner=tuner, key="big", row_numel=3 * 1024 * 1024)  # 12 MB per row
    assert max(clock.sizes) <= 16


def test_cuda_path_starts_large_halves_on_oom_and_remembers_it():
    m = explain.ModelWrapper(torch.nn.Linear(4, 2), "series", device="cpu")
    m.tuner = BatchTuner("cuda")  # the policy a CUDA wrapper gets; fakes stand in for the device
    sizes = []

    def fn(sl: slice):
        size = sl.stop - sl.start
        if size > 300:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        sizes.append(size)
        return torch.arange(sl.start, sl.stop)

    out = torch.cat(m.batched(fn, 5000, shape=(4,)))
    assert torch.equal(out, torch.arange(5000))
    assert sizes[0] == CUDA_START // 4 == 256 and max(sizes) == 256
    sizes.clear()
    m.batched(fn, 600, shape=(4,))
    assert sizes == [256, 256, 88]  # no second out-of-memory: the size that fit is cached


def test_an_explicit_batch_size_always_wins():
    for wrapper_size, call_size, expected in ((None, 5, 5), (7, None, 7), (7, 3, 3)):
        m = explain.ModelWrapper(torch.nn.Linear(4, 2), "series", device="cpu", batch_size=wrapper_size)
        sizes = []
        m.batched(lambda sl: sizes.append(sl.stop - sl.start), 40, batch_size=call_size)
        assert max(sizes) == expected and not m.tuner.best


def test_lime_and_occlusion_results_do_not_depend_on_the_chosen_batch(cnn):
    x = cnn.x[:3]
    auto = explain.ModelWrapper(cnn.net, "image", device="cpu", class_names=cnn.wrapper.class_names)
    small = explain.ModelWrapper(cnn.net, "image", device="cpu", batch_size=7)
    for fn in (lambda m: explain.lime(m, x, n_samples=300, seed=0),
               lambda m: explain.occlusion(m, x, window=8, stride=4)):
        a, b = fn(auto), fn(small)
        torch.testing.assert_close(a.values, b.values, atol=1e-5, rtol=1e-4)
    assert auto.tuner.best or auto.tuner._timings  # the automatic path measured something
