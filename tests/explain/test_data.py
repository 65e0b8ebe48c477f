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
