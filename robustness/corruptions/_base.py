"""A corruption is a pure, batched, seeded function ``apply(inputs, severity, generator) -> inputs``."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from explain.errors import InputValueError


class Corruption:
    """A named corruption for one input kind with five severities (1 = mild … 5 = strong).

    ``levels[severity - 1]`` is the strength passed to ``fn(x, level, generator)``.
    """

    def __init__(self, name: str, kind: str, fn: Callable, levels: Sequence[float], doc: str = "") -> None:
        self.name = name
        self.kind = kind
        self.fn = fn
        self.levels = list(levels)
        self.__doc__ = doc

    def __repr__(self) -> str:
        return f"Corruption({self.name!r}, kind={self.kind!r})"

    def apply(self, x: torch.Tensor, severity: int, generator: Optional[torch.Generator] = None,
              **token_ids) -> torch.Tensor:
        """Corrupt a batch; severity 0 returns the inputs unchanged.

        Token corruptions also take ``pad_id``, ``unk_id`` and ``keep`` (a mask of ids that must stay:
        padding and special tokens), normally from the model wrapper.
        """
        if severity == 0:
            return x.clone()
        if not 1 <= int(severity) <= len(self.levels):
            raise InputValueError(f"severity must be 0..{len(self.levels)}, got {severity}")
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        if self.kind != "tokens":
            token_ids = {}
        return self.fn(x, self.levels[int(severity) - 1], gen, **token_ids)


def noise_like(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator).to(x.device, x.dtype)


def uniform_like(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(x.shape, generator=generator).to(x.device, x.dtype)
