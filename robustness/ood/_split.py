"""The fit/test split of in-distribution data: seeded, shuffled and stratified by class."""

from __future__ import annotations

from typing import Tuple

import torch


def split_fit_test(strata: torch.Tensor, fraction: float = 0.5, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Indices of a seeded, class-stratified split into a fitting part and a test part.

    Each class contributes ``round(fraction · count)`` of its samples (at least one to each side
    when it has two or more) to the fitting part, drawn at random with ``seed``; the rest is the
    test part. Data sorted by class therefore still fits detectors on every class.

    Args:
        strata: ``LongTensor N``, the class of each sample (labels, or predictions without labels).
        fraction: share of each class used for fitting, in (0, 1).
        seed: the same seed gives the same split.

    Returns:
        ``(fit_indices, test_indices)``, sorted ``LongTensor``s that partition ``range(N)``.

    Shape:
        strata: ``N``.

    Example:
        >>> fit, test = split_fit_test(torch.tensor([0, 0, 1, 1]), seed=0)
        >>> sorted(fit.tolist() + test.tolist())
        [0, 1, 2, 3]
    """
    strata = torch.as_tensor(strata).long().flatten().cpu()
    gen = torch.Generator().manual_seed(int(seed))
    fit, test = [], []
    for c in torch.unique(strata).tolist():
        idx = torch.nonzero(strata == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        k = int(round(fraction * len(idx)))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        fit.append(idx[:k])
        test.append(idx[k:])
    fit_idx = torch.cat(fit).sort().values if fit else torch.zeros(0, dtype=torch.long)
    test_idx = torch.cat(test).sort().values if test else torch.zeros(0, dtype=torch.long)
    return fit_idx, test_idx
