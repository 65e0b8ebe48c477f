"""Streamed data gives exactly the numbers of in-memory tensors, and is never materialised.

Every entry point that takes data is run twice on the same samples: once on ``(inputs, labels)``
tensors and once on a ``DataLoader`` with batch size 7 (or a generator of batches where one pass
suffices). Every number must be equal, not merely close: the data is re-batched to fixed-size
batches before any work, so the model sees the same batches either way.
"""

from __future__ import annotations

import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader, Dataset, TensorDataset

import explain
import reports
import robustness
from explain.data import stream
from explain.errors import EmptyDataError, InputShapeError, SinglePassDataError
from explain.zoo import SmallCNN

N = 23  # not a multiple of the chunk (8) nor of the loader's batch (7)


@pytest.fixture(scope="module")
def img():
    torch.manual_seed(0)
    net = SmallCNN(in_channels=3, num_classes=3, width=4)
    wrapper = explain.ModelWrapper(net, "image", class_names=["a", "b", "c"], device="cpu", batch_size=8)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(N, 3, 12, 12, generator=gen)
    y = wrapper.predict(x)  # labels the model mostly gets right, so attacks have work to do
    y[::5] = (y[::5] + 1) % 3
    return wrapper, x, y


def loader(x, y=None, batch_size=7):
    return DataLoader(TensorDataset(x) if y is None else TensorDataset(x, y), batch_size=batch_size)


def batches(x, y=None, size=5):
    """A one-shot generator of batches."""
    for i in range(0, len(x), size):
        yield (x[i:i + size], y[i:i + size]) if y is not None else x[i:i + size]


def test_robust_accuracy_from_a_loader_equals_tensors(img):
    m, x, y = img
    kw = dict(eps=[0, 2 / 255, 8 / 255], method="pgd", steps=2, bisect_steps=2, batch_size=8, seed=1)
    a = robustness.robust_accuracy(m, (x, y), **kw)
    b = robustness.robust_accuracy(m, loader(x, y), **kw)
    c = robustness.robust_accuracy(m, batches(x, y), **kw)  # one pass: a generator is enough
    assert a.n == b.n == c.n == N
    assert torch.equal(a.minimal_eps, b.minimal_eps) and torch.equal(a.minimal_eps, c.minimal_eps)
    assert a.accuracy == b.accuracy == c.accuracy and a.clean_accuracy == b.clean_accuracy
    assert a.accuracy[-1] < a.accuracy[0]  # the attack did flip samples: the comparison is not vacuous


def test_robust_accuracy_per_sample_budgets_do_not_depend_on_the_chunk(img):
    m, x, y = img
    kw = dict(eps=[0, 8 / 255], method="pgd", steps=2, bisect_steps=1, seed=1)
    small = robustness.robust_accuracy(m, (x, y), batch_size=4, **kw)
    whole = robustness.robust_accuracy(m, (x, y), batch_size=256, **kw)
    assert torch.allclose(small.minimal_eps, whole.minimal_eps, atol=1e-5)


def test_corruption_accuracy_from_a_loader_equals_tensors(img):
    m, x, y = img
    kw = dict(corruptions=["gaussian_noise", "blur"], severities=[1, 5], seed=2, batch_size=8)
    a = robustness.corruption_accuracy(m, (x, y), **kw)
    b = robustness.corruption_accuracy(m, loader(x, y), **kw)
    assert a.n == b.n == N
    assert a.accuracy == b.accuracy and a.clean_accuracy == b.clean_accuracy
    # counts over the whole set, not over the last batch: accuracy is a multiple of 1/N
    assert all(abs(v * N - round(v * N)) < 1e-4 for row in a.accuracy.values() for v in row)


def test_evaluate_ood_from_loaders_equals_tensors(img):
    m, x, y = img
    ood = torch.rand(17, 3, 12, 12, generator=torch.Generator().manual_seed(5)) * 0.2
    kw = dict(methods=["msp", "energy", "mahalanobis", "knn"], params={"knn": {"k": 3}}, batch_size=8, seed=3)
    a = robustness.evaluate_ood(m, (x, y), ood, **kw)
    b = robustness.evaluate_ood(m, loader(x, y), loader(ood), **kw)
    assert not a.errors and not b.errors
    assert torch.equal(a.fit_indices, b.fit_indices) and (a.n_fit, a.n_in, a.n_out) == (b.n_fit, b.n_in, b.n_out)
    assert a.n_in + a.n_fit == N and a.n_out == 17
    for name in kw["methods"]:
        ra, rb = a.methods[name], b.methods[name]
        assert torch.equal(ra.scores_in, rb.scores_in) and torch.equal(ra.scores_out, rb.scores_out), name
        assert (ra.auroc, ra.fpr95, ra.threshold) == (rb.auroc, rb.fpr95, rb.threshold), name


def test_evaluate_ood_refuses_a_generator_it_must_read_twice(img):
    m, x, y = img
    with pytest.raises(SinglePassDataError, match="DataLoader"):
        robustness.evaluate_ood(m, batches(x, y), x, methods=["msp"])


def test_detector_fit_reads_a_generator_of_bare_inputs_once(img):
    m, x, y = img
    a = robustness.ood_detector("mahalanobis").fit(m, (x, y), batch_size=8)
    b = robustness.ood_detector("mahalanobis").fit(m, ((xb, yb) for xb, yb in batches(x, y)), batch_size=8)
    assert torch.equal(a.means_, b.means_) and torch.equal(a.precision_, b.precision_)
    k1 = robustness.ood_detector("knn", k=3).fit(m, x, batch_size=8)
    k2 = robustness.ood_detector("knn", k=3).fit(m, batches(x), batch_size=8)
    assert torch.equal(k1.bank_, k2.bank_) and len(k1.bank_) == N


def test_certified_accuracy_from_a_loader_equals_tensors(img):
    m, x, y = img
    kw = dict(eps=[0, 1 / 255, 4 / 255], method="ibp", attack_steps=2, chunk_size=8, seed=0)
    a = robustness.certified_accuracy(m, (x[:12], y[:12]), **kw)
    b = robustness.certified_accuracy(m, loader(x[:12], y[:12]), **kw)
    assert a.n == b.n == 12
    assert (a.clean_accuracy, a.certified, a.empirical, a.counts) == (b.clean_accuracy, b.certified, b.empirical, b.counts)
    assert len(a.verifications) == 3 and all(len(v) == 8 for v in a.verifications)  # only the first chunk is kept


def test_report_performance_from_a_generator_equals_tensors(img):
    m, x, y = img
    kw = dict(sections=["performance", "model_card"], max_samples=None, keep_samples=5)
    a = reports.build_report(m, (x, y), **kw).to_dict()
    b = reports.build_report(m, batches(x, y, size=3), **kw).to_dict()
    pa, pb = a["sections"]["performance"]["summary"], b["sections"]["performance"]["summary"]
    assert pa == pb and sum(map(sum, pa["confusion_matrix"])) == N
    assert a["samples"] == b["samples"] == N and a["kept_samples"] == 5
    acc = float((m.predict(x) == y).float().mean())
    assert pa["accuracy"] == pytest.approx(acc)


class LiveItems(Dataset):
    """Inputs made from the index on access; counts how many item tensors are alive at once."""

    def __init__(self, n: int) -> None:
        self.n, self.alive, self.peak = n, 0, 0

    def __len__(self) -> int:
        return self.n

    def _gone(self) -> None:
        self.alive -= 1

    def __getitem__(self, i: int):
        x = torch.rand(3, 12, 12, generator=torch.Generator().manual_seed(i))
        self.alive += 1
        self.peak = max(self.peak, self.alive)
        weakref.finalize(x, self._gone)
        return x, i % 3


class LargestInputBatch(TorchDispatchMode):
    """Records the largest leading size of any tensor op output shaped like a batch of inputs."""

    def __init__(self, sample_shape) -> None:
        super().__init__()
        self.sample_shape, self.largest = tuple(sample_shape), 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor) and t.dim() == 4 and tuple(t.shape[1:]) == self.sample_shape:
                self.largest = max(self.largest, int(t.shape[0]))
        return out


@pytest.mark.parametrize("call", ["robust_accuracy", "corruption_accuracy", "evaluate_ood", "build_report"])
def test_a_lazy_dataset_is_never_materialised(img, call):
    m = img[0]
    data = LiveItems(120)
    dl = DataLoader(data, batch_size=7)
    runs = {
        "robust_accuracy": lambda: robustness.robust_accuracy(m, dl, eps=[0, 2 / 255], method="fgsm", batch_size=16,
                                                              bisect_steps=0),
        "corruption_accuracy": lambda: robustness.corruption_accuracy(m, dl, corruptions=["gaussian_noise"],
                                                                      severities=[3], batch_size=16),
        "evaluate_ood": lambda: robustness.evaluate_ood(m, dl, DataLoader(LiveItems(40), batch_size=7),
                                                        methods=["energy", "mahalanobis"], batch_size=16),
        "build_report": lambda: reports.build_report(m, dl, sections=["performance"], max_samples=None,
                                                     keep_samples=10, batch_size=16),
    }
    with LargestInputBatch((3, 12, 12)) as mode:
        runs[call]()
    # a batch being joined from source pieces is at most two batches long; the whole set is 120
    assert 0 < mode.largest < 2 * 16, f"{call} built a tensor of {mode.largest} inputs"
    assert data.peak <= 7 + 1, f"{data.peak} items alive at once"


@pytest.mark.parametrize("bad, error, phrase", [
    ([(torch.rand(4, 3, 12, 12), torch.zeros(4, 2, dtype=torch.long))], InputShapeError, "one class label per sample"),
    ([(torch.rand(4, 3, 12, 12), torch.zeros(3, dtype=torch.long))], InputShapeError, "4 inputs but 3 labels"),
    ([(torch.rand(4, 3, 12, 12), torch.zeros(4)), (torch.rand(4, 3, 10, 10), torch.zeros(4))], InputShapeError,
     "samples shaped"),
    ([(torch.tensor(1.0), torch.tensor(0))], InputShapeError, "leading batch dimension"),
    ([(torch.rand(4, 3, 12, 12), torch.zeros(4)), torch.rand(4, 3, 12, 12)], InputShapeError, "earlier batches"),
    ([], EmptyDataError, "holds no samples"),
    (DataLoader(TensorDataset(torch.zeros(0, 3, 12, 12), torch.zeros(0)), batch_size=4), EmptyDataError,
     "holds no samples"),
    (iter(["not a batch"]), InputShapeError, "expected a tensor"),
])
def test_bad_batches_raise_specific_errors(img, bad, error, phrase):
    with pytest.raises(error, match=phrase):
        robustness.robust_accuracy(img[0], bad, eps=[0, 1 / 255], method="fgsm")


def test_a_second_pass_over_a_generator_is_refused_with_advice():
    s = stream(batches(torch.rand(6, 2), torch.zeros(6)), batch_size=4)
    assert [len(x) for x, _ in s] == [4, 2]
    with pytest.raises(SinglePassDataError, match="DataLoader"):
        list(s)
    with pytest.raises(SinglePassDataError, match="2 passes"):
        stream(batches(torch.rand(6, 2)), passes=2)


def test_stream_joins_and_splits_source_batches_to_a_fixed_size():
    x = torch.arange(23.0)[:, None]
    got = list(stream(loader(x, torch.arange(23), batch_size=7), batch_size=8, max_samples=20))
    assert [len(b) for b, _ in got] == [8, 8, 4]
    assert torch.equal(torch.cat([b for b, _ in got]), x[:20])
    assert torch.equal(torch.cat([t for _, t in got]), torch.arange(20))
