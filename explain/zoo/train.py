"""A plain, seeded training loop for the reference models."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn


def train_classifier(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 10,
    lr: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
    mean: Optional[torch.Tensor] = None,
    std: Optional[torch.Tensor] = None,
    weight_decay: float = 0.0,
    monitor: Optional[Any] = None,
) -> nn.Module:
    """Train ``model`` with Adam and cross-entropy on ``(x, y)``; returns it in eval mode.

    ``mean``/``std`` (broadcastable to ``x``) normalise the inputs as a ``ModelWrapper`` would.
    ``monitor`` (e.g. a ``reports.Monitor``) gets ``step(loss=, lr=, batch_size=)`` after every
    step and ``epoch_end()`` after every epoch.

    Example:
        >>> data = planted_images(256, seed=0)
        >>> net = train_classifier(SmallCNN(), data.x, data.y, epochs=3)   # doctest: +SKIP
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    n = len(x)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            xb = x[idx]
            if mean is not None:
                xb = xb - mean
            if std is not None:
                xb = xb / std
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), y[idx])
            loss.backward()
            opt.step()
            if monitor is not None:
                monitor.step(loss=loss.detach(), lr=opt.param_groups[0]["lr"], batch_size=len(idx))
        if monitor is not None:
            monitor.epoch_end()
    return model.eval()
