"""Corruptions for token ids (``N×T``) and time series (``N×T×C``), at rising rates."""

from __future__ import annotations

from typing import Optional

import torch

from ._base import Corruption, noise_like, randint_rows, randn_rows, uniform_like

PAD_ID, UNK_ID = 0, 1


def _real(x: torch.Tensor, pad_id: int = PAD_ID, keep=None) -> torch.Tensor:
    """Word positions: not padding, and not a special token ([CLS], [SEP]) when ``keep`` marks them."""
    return (x != pad_id) if keep is None else ~keep.to(x.device)


def token_drop(x, rate, gen, pad_id=PAD_ID, unk_id=UNK_ID, keep=None):
    """Delete tokens (the rest shift left; padding fills the end). Special tokens stay."""
    real = _real(x, pad_id, keep)
    survive = ((uniform_like(x.float(), gen) >= rate) | ~real) & (x != pad_id)
    out = torch.full_like(x, pad_id)
    for i in range(len(x)):
        kept = x[i][survive[i]]
        out[i, :len(kept)] = kept
    return out


def token_swap(x, rate, gen, pad_id=PAD_ID, unk_id=UNK_ID, keep=None):
    """Swap neighbouring real tokens (never padding or special tokens)."""
    out = x.clone()
    real = _real(x, pad_id, keep)
    pick = (uniform_like(x[:, :-1].float(), gen) < rate) & real[:, :-1] & real[:, 1:]
    for i, t in pick.nonzero().tolist():
        out[i, t], out[i, t + 1] = out[i, t + 1].clone(), out[i, t].clone()
    return out


def token_mask(x, rate, gen, pad_id=PAD_ID, unk_id=UNK_ID, keep=None):
    """Replace tokens by the unknown id (the wrapper's ``unk_id``; 1 by default)."""
    hit = (uniform_like(x.float(), gen) < rate) & _real(x, pad_id, keep)
    return torch.where(hit, torch.full_like(x, pad_id if unk_id is None else unk_id), x)


def series_noise(x, sigma, gen):
    """Gaussian noise, σ relative to each series' per-channel standard deviation."""
    return x + sigma * x.std(dim=1, keepdim=True) * noise_like(x, gen)


def series_scaling(x, spread, gen):
    """Multiply each series by a random factor ``1 + spread · N(0, 1)``."""
    f = 1 + spread * randn_rows((len(x), 1, 1), gen).to(x.device, x.dtype)
    return x * f


def series_shift(x, fraction, gen):
    """Circular shift in time by ±``fraction`` of the length."""
    t = x.shape[1]
    shifts = (randint_rows(2, (len(x),), gen) * 2 - 1) * max(1, int(round(fraction * t)))
    return torch.stack([torch.roll(x[i], int(s), dims=0) for i, s in enumerate(shifts.tolist())])


def series_dropout(x, rate, gen):
    """Zero random time steps (sensor dropouts)."""
    hit = uniform_like(x[:, :, :1], gen) < rate
    return x.masked_fill(hit, 0.0)


TOKEN_CORRUPTIONS = {
    "token_drop": Corruption("token_drop", "tokens", token_drop, [0.05, 0.1, 0.2, 0.3, 0.4], token_drop.__doc__),
    "token_swap": Corruption("token_swap", "tokens", token_swap, [0.05, 0.1, 0.2, 0.3, 0.4], token_swap.__doc__),
    "token_mask": Corruption("token_mask", "tokens", token_mask, [0.05, 0.1, 0.2, 0.3, 0.4], token_mask.__doc__),
}
SERIES_CORRUPTIONS = {
    "noise": Corruption("noise", "series", series_noise, [0.1, 0.2, 0.4, 0.7, 1.0], series_noise.__doc__),
    "scaling": Corruption("scaling", "series", series_scaling, [0.05, 0.1, 0.2, 0.3, 0.5], series_scaling.__doc__),
    "time_shift": Corruption("time_shift", "series", series_shift, [0.02, 0.05, 0.1, 0.15, 0.2], series_shift.__doc__),
    "dropout": Corruption("dropout", "series", series_dropout, [0.05, 0.1, 0.2, 0.3, 0.5], series_dropout.__doc__),
}
