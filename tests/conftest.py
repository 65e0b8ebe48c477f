"""Shared fixtures: small reference models trained once per session on planted-signal data.

Two cores are shared on CI machines; torch's default pool can collapse under contention, so the
suite uses two threads deliberately.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
import torch

torch.set_num_threads(int(os.environ.get("XAISCOPE_TEST_THREADS", "2")))

import explain  # noqa: E402
from explain.zoo import (  # noqa: E402
    BiLSTMClassifier, Conv1dNet, GRUClassifier, SmallCNN, TinyTransformer,
    planted_images, planted_series, planted_tokens, train_classifier,
)

N_TRAIN, N_TEST = 1000, 200
VOCAB = 60


@dataclass
class Trained:
    """A wrapped, trained reference model with its held-out planted data."""

    wrapper: explain.ModelWrapper
    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor

    @property
    def net(self) -> torch.nn.Module:
        return self.wrapper.model


def _train(make, data, kind, epochs, **wrap) -> Trained:
    torch.manual_seed(0)
    net = train_classifier(make(), data.x[:N_TRAIN], data.y[:N_TRAIN], epochs=epochs)
    wrapper = explain.ModelWrapper(net, kind, class_names=data.class_names, device="cpu", **wrap)
    return Trained(wrapper, data.x[N_TRAIN:], data.y[N_TRAIN:], data.mask[N_TRAIN:])


@pytest.fixture(scope="session")
def cnn() -> Trained:
    data = planted_images(N_TRAIN + N_TEST, seed=0)
    return _train(lambda: SmallCNN(num_classes=len(data.class_names)), data, "image", 5)


@pytest.fixture(scope="session")
def lstm() -> Trained:
    data = planted_tokens(N_TRAIN + N_TEST, vocab_size=VOCAB, seed=1)
    return _train(lambda: BiLSTMClassifier(VOCAB, 2), data, "tokens", 6)


@pytest.fixture(scope="session")
def transformer() -> Trained:
    data = planted_tokens(N_TRAIN + N_TEST, vocab_size=VOCAB, seed=1)
    return _train(lambda: TinyTransformer(VOCAB, 2), data, "tokens", 6)


@pytest.fixture(scope="session")
def conv1d() -> Trained:
    data = planted_series(N_TRAIN + N_TEST, seed=2)
    return _train(lambda: Conv1dNet(1, 3), data, "series", 6)


@pytest.fixture(scope="session")
def gru() -> Trained:
    data = planted_series(N_TRAIN + N_TEST, seed=2)
    return _train(lambda: GRUClassifier(1, 3), data, "series", 4)


MODEL_FIXTURES = ["cnn", "lstm", "transformer", "conv1d", "gru"]


@pytest.fixture(params=MODEL_FIXTURES)
def any_model(request) -> Trained:
    """Each reference model in turn (image CNN, BiLSTM, Transformer, 1-D CNN, GRU)."""
    return request.getfixturevalue(request.param)


def pointing_game(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per sample: does the attribution's maximum fall inside the planted region?"""
    idx = values.flatten(1).argmax(dim=1, keepdim=True)
    return mask.flatten(1).gather(1, idx).squeeze(1)


def has_gpu() -> bool:
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is available")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
