"""Data in every form users hold it: pairs, tensors, Datasets, DataLoaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from explain.data import collect, iter_batches
from explain.errors import EmptyDataError, InputShapeError

X = torch.arange(10.0).view(10, 1)
Y = torch.arange(10) % 3


@pytest.mark.parametrize("data", [
    (X, Y),
    (X.numpy(), Y.numpy()),
    TensorDataset(X, Y),
    DataLoader(TensorDataset(X, Y), batch_size=3),
])
def test_every_data_form_yields_the_same_samples_in_order(data):
    x, y = collect(data)
    assert torch.equal(x.float(), X) and torch.equal(y, Y)


def test_bare_tensor_has_no_labels_and_max_samples_truncates():
    x, y = collect(X, max_samples=4)
    assert y is None and x.shape[0] == 4


def test_batches_respect_the_batch_size():
    sizes = [len(x) for x, _ in iter_batches((X, Y), batch_size=4)]
    assert sizes == [4, 4, 2]


def test_empty_data_and_mismatched_labels_raise():
    with pytest.raises(EmptyDataError):
        collect((torch.zeros(0, 1), torch.zeros(0)))
    with pytest.raises(InputShapeError, match="10 samples but labels hold 9"):
        collect((X, Y[:9]))
    with pytest.raises(InputShapeError, match="expected an"):
        collect("not data")
    with pytest.raises(EmptyDataError):
        collect(np.zeros((0, 3)))


class _Counted(torch.utils.data.Dataset):
    """23 inputs whose value is their index; remembers which indices were read."""

    def __init__(self):
        self.read = set()

    def __len__(self):
        return 23

    def __getitem__(self, i):
        self.read.add(int(i))
        return torch.tensor([float(i)])


_X = torch.arange(23.).view(23, 1)
_FORMS = {
    "tensors": lambda: (_X, _X.flatten().long() % 3),
    "dataset": lambda: TensorDataset(_X, _X.flatten().long() % 3),
    "loader": lambda: DataLoader(TensorDataset(_X, _X.flatten().long() % 3), batch_size=5),
    "lazy pair": lambda: (_Counted(), _X.flatten().long() % 3),
    "generator": lambda: iter([(_X[:10], _X[:10].flatten().long() % 3), (_X[10:], _X[10:].flatten().long() % 3)]),
}


@pytest.mark.parametrize("form", list(_FORMS))
@pytest.mark.parametrize("world", [1, 2, 3, 7])
@pytest.mark.parametrize("limit", [None, 17])
def test_shards_of_a_stream_cover_every_sample_once_with_its_own_label(form, world, limit):
    from explain.data import stream
    seen = []
    for rank in range(world):
        for b, x, y in stream(_FORMS[form](), batch_size=4, max_samples=limit).shard(rank, world):
            assert b % world == rank
            assert torch.equal(y, x.flatten().long() % 3)
            seen += x.flatten().long().tolist()
    assert sorted(seen) == list(range(limit or 23))


def test_indexable_data_is_read_only_where_the_process_batches_lie():
    from explain.data import stream
    data = _Counted()
    s = stream((data, None), batch_size=4)
    assert s.indexable and s.n_samples == 23
    got = [b for b, _, _ in s.shard(1, 3)]
    assert got == [1, 4]
    assert data.read == set(range(4, 8)) | set(range(16, 20))
    assert not stream(iter([_X]), batch_size=4).indexable


def test_a_shuffling_loader_cannot_be_sharded():
    from explain.data import stream
    loader = DataLoader(TensorDataset(_X), batch_size=5, shuffle=True)
    with pytest.raises(InputShapeError, match="shuffling DataLoader"):
        stream(loader).shard(0, 2)
    assert len(list(stream(loader).shard(0, 1))) == 1  # one process reads it in any order
