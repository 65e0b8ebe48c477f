"""Small reference classifiers that train on a CPU in seconds."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(out)))


class SmallCNN(nn.Module):
    """Conv-BN-ReLU stem, one residual block, a last conv, global pooling and a linear head.

    Shape: ``N×C×H×W`` → ``N×num_classes``.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 3, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        self.block = _ResidualBlock(width)
        self.pool = nn.MaxPool2d(2)
        self.conv = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.block(self.stem(x)))
        x = torch.relu(self.conv(x))
        return self.head(torch.amax(x, dim=(2, 3)))


class BiLSTMClassifier(nn.Module):
    """Embedding → bidirectional LSTM → max over time → linear. Shape: ``N×T`` ids → ``N×K``."""

    def __init__(self, vocab_size: int, num_classes: int = 2, embed_dim: int = 32, hidden: int = 32,
                 pad_id: int = 0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, num_classes)

    def forward(self, ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(ids))
        if attention_mask is not None:
            out = out.masked_fill(~attention_mask.bool().unsqueeze(-1), -1e4)
        return self.head(out.amax(dim=1))


class TinyTransformer(nn.Module):
    """Token + position embeddings → Transformer encoder → mean pooling → linear.

    Shape: ``N×T`` ids (``T ≤ max_len``) → ``N×K``. ``attention_mask`` (True = real token) is optional.
    """

    def __init__(self, vocab_size: int, num_classes: int = 2, dim: int = 32, heads: int = 2, layers: int = 1,
                 max_len: int = 256, pad_id: int = 0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        self.position = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.embedding(ids) + self.position[: ids.shape[1]]
        pad = None if attention_mask is None else ~attention_mask.bool()
        h = self.encoder(h, src_key_padding_mask=pad)
        if attention_mask is None:
            pooled = h.mean(dim=1)
        else:
            w = attention_mask.float().unsqueeze(-1)
            pooled = (h * w).sum(1) / w.sum(1).clamp_min(1.0)
        return self.head(pooled)


class Conv1dNet(nn.Module):
    """Two Conv1d layers over time, global max pooling, linear. Shape: ``N×T×C`` → ``N×K``."""

    def __init__(self, in_channels: int = 1, num_classes: int = 3, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, width, 7, padding=3)
        self.bn1 = nn.BatchNorm1d(width)
        self.conv2 = nn.Conv1d(width, 2 * width, 5, padding=2)
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x.transpose(1, 2))))
        h = torch.relu(self.conv2(h))
        return self.head(h.amax(dim=2))


class GRUClassifier(nn.Module):
    """GRU over time (``batch_first``), max over time, linear. Shape: ``N×T×C`` → ``N×K``."""

    def __init__(self, in_channels: int = 1, num_classes: int = 3, hidden: int = 32, layers: int = 1) -> None:
        super().__init__()
        self.gru = nn.GRU(in_channels, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.head(out.amax(dim=1))
