"""A corruption is a pure, batched, seeded function ``apply(inputs, severity, generator) -> inputs``."""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

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

    def apply(self, x: torch.Tensor, severity: int, generator: Union[None, torch.Generator, Sequence[torch.Generator]] = None,
              **token_ids) -> torch.Tensor:
        """Corrupt a batch; severity 0 returns the inputs unchanged.

        ``generator`` is one generator for the batch or a list of one per sample (then each
        sample's corruption is independent of the rest of the batch).

        Token corruptions also take ``pad_id``, ``unk_id`` and ``keep`` (a mask of ids that must stay:
        padding and special tokens), normally from the model wrapper.
        """
        if severity == 0:
            return x.clone()
        if not 1 <= int(severity) <= len(self.levels):
            raise InputValueError(f"severity must be 0..{len(self.levels)}, got {severity}")
        gen = generator if generator is not None else torch.Generator().manual_seed(0)  # or one per sample
        if self.kind != "tokens":
            token_ids = {}
        return self.fn(x, self.levels[int(severity) - 1], gen, **token_ids)


def _rows(draw: Callable, shape: tuple, generator) -> torch.Tensor:
    """``draw(shape, generator)`` for one generator, or row by row for one generator per sample.

    With a list of generators (one per sample, e.g. seeded from each sample's content) a sample's
    noise never depends on its batch-mates, its position or the process that evaluates it.
    """
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise InputValueError(f"expected one generator per sample ({shape[0]}), got {len(generator)}")
        if not generator:
            return draw(shape, None)
        return torch.stack([draw(tuple(shape[1:]), g) for g in generator])
    return draw(shape, generator)


def noise_like(x: torch.Tensor, generator) -> torch.Tensor:
    return _rows(lambda shape, g: torch.randn(shape, generator=g), tuple(x.shape), generator).to(x.device, x.dtype)


def uniform_like(x: torch.Tensor, generator) -> torch.Tensor:
    return _rows(lambda shape, g: torch.rand(shape, generator=g), tuple(x.shape), generator).to(x.device, x.dtype)


def randn_rows(shape: tuple, generator) -> torch.Tensor:
    """Standard normal draws of ``shape`` (first dimension: samples), per-sample generators allowed."""
    return _rows(lambda sh, g: torch.randn(sh, generator=g), tuple(shape), generator)


def randint_rows(high: int, shape: tuple, generator) -> torch.Tensor:
    """Integers in ``[0, high)`` of ``shape`` (first dimension: samples), per-sample generators allowed."""
    return _rows(lambda sh, g: torch.randint(0, high, sh, generator=g), tuple(shape), generator)


def poisson_rows(rate: torch.Tensor, generator) -> torch.Tensor:
    """Poisson draws with the given CPU ``rate``, per-sample generators allowed."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != len(rate):
            raise InputValueError(f"expected one generator per sample ({len(rate)}), got {len(generator)}")
        if not generator:
            return rate.clone()
        return torch.stack([torch.poisson(r, generator=g) for r, g in zip(rate, generator)])
    return torch.poisson(rate, generator=generator)
