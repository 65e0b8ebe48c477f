"""Feature-based detectors on the wrapper's penultimate features. Higher score = more OOD.

``fit`` streams over the in-distribution data in batches and keeps only running sums (Mahalanobis,
ViM) or the normalised feature bank (KNN), so memory does not grow with the number of batches
beyond what the method itself needs.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch

from explain.errors import EmptyDataError, NotFittedError, TooFewSamplesError

from .. import distributed as dist
from ._base import Detector, head_weights, labelled_features


def mahalanobis_score(z: torch.Tensor, means: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """Smallest class-conditional Mahalanobis distance (Lee et al., 2018, https://arxiv.org/abs/1807.03888).

    Math: ``s(z) = min_c (z − μ_c)ᵀ Σ⁻¹ (z − μ_c)`` with a covariance ``Σ`` tied across classes.
    Shape: z ``N×D``, means ``K×D``, precision ``D×D`` → ``N``.
    """
    z = z.double()
    zp = z @ precision
    quad = (zp * z).sum(1, keepdim=True) - 2 * zp @ means.T + ((means @ precision) * means).sum(1)[None, :]
    return quad.min(dim=1).values.float()


def knn_score(z: torch.Tensor, bank: torch.Tensor, k: int, chunk: int = 4096) -> torch.Tensor:
    """Distance to the ``k``-th nearest normalised training feature (Sun et al., 2022,
    https://arxiv.org/abs/2204.06507). Both sides are L2-normalised; the bank is scanned in chunks.

    Shape: z ``N×D``, bank ``M×D`` (already normalised) → ``N``.
    """
    return _k_nearest(torch.nn.functional.normalize(z.float(), dim=1), bank, k, chunk)[:, k - 1]


def _k_nearest(q: torch.Tensor, bank: torch.Tensor, k: int, chunk: int = 4096) -> torch.Tensor:
    """Ascending distances ``N×k`` from normalised queries to their ``k`` nearest bank rows."""
    best = torch.full((len(q), k), float("inf"), device=q.device)
    for start in range(0, len(bank), chunk):
        d = torch.cdist(q, bank[start:start + chunk].to(q.device))
        best = torch.cat([best, d], dim=1).topk(k, dim=1, largest=False).values
    return best


def vim_score(z: torch.Tensor, logits: torch.Tensor, origin: torch.Tensor, residual: torch.Tensor, alpha: float) -> torch.Tensor:
    """Virtual-logit matching (Wang et al., 2022, https://arxiv.org/abs/2203.10807).

    Math: ``s = α ‖(z − u) R Rᵀ‖ − logsumexp(f(z))`` with ``u = −W⁺b`` and ``R`` spanning the
    feature covariance's minor directions.
    """
    resid = ((z.double() - origin) @ residual).norm(dim=1)
    return (alpha * resid - torch.logsumexp(logits.double(), dim=1)).float()


class Mahalanobis(Detector):
    """Class means with a tied covariance. Example: ``ood_detector("mahalanobis").fit(m, (x, y))``."""

    name = "mahalanobis"
    needs_features = True

    def __init__(self, ridge: float = 1e-6) -> None:
        self.ridge = ridge

    def _fit(self, model, in_data, batch_size):
        self.model_ = model
        for x, z, y in labelled_features(model, in_data, batch_size):
            self.input_shape_ = tuple(x.shape[1:])
            self._accumulate(z, y)
        self._finish()

    def fit_features(self, z: torch.Tensor, y: torch.Tensor) -> "Mahalanobis":
        """Fit from features ``N×D`` and labels ``N`` directly."""
        self._shard = False
        self._reset()
        self._accumulate(z.double(), y.long())
        self._finish()
        return self

    def _reset(self):
        for k in ("_n", "_sum", "_outer"):
            self.__dict__.pop(k, None)

    def _accumulate(self, z: torch.Tensor, y: torch.Tensor) -> None:
        k = int(y.max()) + 1
        if not hasattr(self, "_n"):
            d = z.shape[1]
            self._n = torch.zeros(0, dtype=torch.float64)
            self._sum = torch.zeros(0, d, dtype=torch.float64)
            self._outer = torch.zeros(d, d, dtype=torch.float64)
        if k > len(self._n):
            self._n = torch.cat([self._n, torch.zeros(k - len(self._n), dtype=torch.float64)])
            self._sum = torch.cat([self._sum, torch.zeros(k - len(self._sum), z.shape[1], dtype=torch.float64)])
        self._n.index_add_(0, y, torch.ones(len(y), dtype=torch.float64))
        self._sum.index_add_(0, y, z)
        self._outer += z.T @ z

    def _combine(self) -> None:
        """Sum the per-class counts, feature sums and outer-product sums over the process group."""
        k = max(dist.gather_objects(len(self._n)))  # a block may lack the last classes
        if k > len(self._n):
            pad = k - len(self._n)
            self._n = torch.cat([self._n, torch.zeros(pad, dtype=torch.float64)])
            self._sum = torch.cat([self._sum, torch.zeros(pad, self._sum.shape[1], dtype=torch.float64)])
        self._n = dist.all_reduce_sum(self._n)
        self._sum = dist.all_reduce_sum(self._sum)
        self._outer = dist.all_reduce_sum(self._outer)

    def _finish(self) -> None:
        if getattr(self, "_shard", False) and hasattr(self, "_n"):
            self._combine()
        if not hasattr(self, "_n") or self._n.sum() == 0:
            raise EmptyDataError("no in-distribution features to fit")
        present = self._n > 0
        self.means_ = self._sum[present] / self._n[present, None]
        total = self._n.sum()
        cov = (self._outer - (self.means_.T * self._n[present]) @ self.means_) / total
        eye = torch.eye(cov.shape[0], dtype=torch.float64)
        self.covariance_ = cov
        self.precision_ = torch.linalg.pinv(cov + self.ridge * eye, hermitian=True)

    def score_features(self, z: torch.Tensor) -> torch.Tensor:
        """Scores for penultimate features ``N×D``."""
        self._check_fitted()
        return mahalanobis_score(z, self.means_, self.precision_)

    def _score(self, x):
        return self.score_features(self.model_.features(x))

    def _check_fitted(self) -> None:
        if not hasattr(self, "precision_"):
            raise NotFittedError("Mahalanobis is not fitted yet; call fit(model, in_data) or fit_features(z, y) first")


class KNN(Detector):
    """k-th nearest-neighbour distance of normalised features. Example: ``ood_detector("knn", k=10)``.

    Fitted inside a process group (without ``max_bank``), each rank keeps its block of the
    feature bank (``sharded_``); scoring is then collective: every rank must call ``score`` at the
    same time (each with its own inputs), and each rank's k nearest are merged.

    With fewer fitting samples than ``k`` the detector uses every one of them (``k_`` is the
    k-th neighbour actually used, ``min(k, bank size)``) and warns once; an empty bank is an error.
    """

    name = "knn"
    needs_features = True

    def __init__(self, k: int = 10, max_bank: Optional[int] = None) -> None:
        self.k = k
        self.max_bank = max_bank

    def _fit(self, model, in_data, batch_size):
        self.model_ = model
        parts = []
        for x, z, _ in labelled_features(model, in_data, batch_size):
            self.input_shape_ = tuple(x.shape[1:])
            parts.append(torch.nn.functional.normalize(z.float(), dim=1))
        self._set_bank(torch.cat(parts))

    def fit_features(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> "KNN":
        self._shard = False
        self._set_bank(torch.nn.functional.normalize(z.float(), dim=1))
        return self

    def _set_bank(self, bank: torch.Tensor) -> None:
        self.sharded_ = False
        if getattr(self, "_shard", False):
            if self.max_bank is not None:  # the subsample is drawn from the whole bank
                bank = dist.gather_rows(bank)[0]
            else:  # each rank keeps its block; scoring merges the ranks' k nearest
                total = int(dist.all_reduce_sum(torch.tensor([len(bank)], dtype=torch.float64)).item())
                self.k_ = self._usable_k(total)
                self.bank_ = bank
                self.sharded_ = True
                return
        if self.max_bank is not None and len(bank) > self.max_bank:
            bank = bank[torch.randperm(len(bank), generator=torch.Generator().manual_seed(0))[: self.max_bank]]
        self.k_ = self._usable_k(len(bank))
        self.bank_ = bank

    def _usable_k(self, total: int) -> int:
        """``k``, or the bank size when the bank is smaller (with a warning); no bank is an error."""
        if total < 1:
            raise EmptyDataError("knn needs at least one in-distribution sample to fit, got 0")
        if total < self.k:
            warnings.warn(f"knn: k={self.k} is more than the {total} fitting sample(s); using k={total} "
                          "(the distance to the farthest of them)", stacklevel=4)
            return total
        return int(self.k)

    def _check_fitted(self) -> None:
        if not hasattr(self, "bank_"):
            raise NotFittedError("KNN is not fitted yet; call fit(model, in_data) or fit_features(z) first")

    def score_features(self, z: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        if getattr(self, "sharded_", False):
            return self._score_sharded(z)
        return knn_score(z, self.bank_, self.k_).cpu()

    def score_nothing(self) -> None:
        if getattr(self, "sharded_", False):
            self._score_sharded(torch.zeros(0, self.bank_.shape[1]))

    def _score_sharded(self, z: torch.Tensor) -> torch.Tensor:
        """Every rank's queries against this rank's bank block; the ranks' k nearest are merged."""
        queries, lengths = dist.gather_rows(torch.nn.functional.normalize(z.float(), dim=1).cpu())
        k = self.k_
        k_local = min(k, len(self.bank_))
        near = torch.full((len(queries), k), float("inf"))
        if k_local:
            near[:, :k_local] = _k_nearest(queries.to(self.bank_.device), self.bank_, k_local).cpu()
        merged = torch.cat(list(dist.gather_rows(near[None])[0]), dim=1).topk(k, dim=1, largest=False).values
        rank = dist.rank_and_world()[0]
        start = sum(lengths[:rank])
        return merged[start:start + len(z), k - 1]

    def _score(self, x):
        return self.score_features(self.model_.features(x))


def shown_head(model) -> tuple:
    """Weight ``K×D`` and bias ``K`` of the head as the class scores the wrapper shows.

    The wrapper's map from the model's output to class scores is linear, so it applies to the head's
    rows: a single-logit head ``w, b`` becomes ``[−w/2, w/2], [−b/2, b/2]`` (the same origin
    ``−W⁺b``, and logits equal to the wrapper's), a multi-label task keeps its own row.
    """
    w, b = head_weights(model)
    return model.class_scores(w.T).T.contiguous(), model.class_scores(b[None])[0]


class ViM(Detector):
    """Virtual-logit matching. Example: ``ood_detector("vim", dim=None).fit(m, (x, y))``.

    ``dim`` is the principal subspace's size (default: half the feature width, at most 512). The
    head is read as the wrapper shows it (:func:`shown_head`): a binary classifier's single-row head
    gives the two class scores ``[−z/2, z/2]``.
    """

    name = "vim"
    needs_features = True

    def __init__(self, dim: Optional[int] = None) -> None:
        self.dim = dim

    def _fit(self, model, in_data, batch_size):
        self.model_ = model
        w, b = shown_head(model)
        origin = -(torch.linalg.pinv(w) @ b)
        zs, logits = [], []
        for x, z, _ in labelled_features(model, in_data, batch_size):
            self.input_shape_ = tuple(x.shape[1:])
            zs.append(z)
            logits.append(z @ w.T + b)
        self._fit_from(torch.cat(zs), torch.cat(logits), origin)

    def fit_features(self, z: torch.Tensor, y: Optional[torch.Tensor] = None, *, weight: Optional[torch.Tensor] = None,
                     bias: Optional[torch.Tensor] = None) -> "ViM":
        """Fit from features and the head's ``weight``/``bias`` (default: the fitted model's head)."""
        w, b = (weight.double(), bias.double()) if weight is not None else shown_head(self.model_)
        self._shard = False
        self._fit_from(z.double(), z.double() @ w.T + b, -(torch.linalg.pinv(w) @ b))
        return self

    def _fit_from(self, z, logits, origin):
        d = z.shape[1]
        dim = self.dim if self.dim is not None else min(512, max(1, d // 2))
        centred = z - origin
        # sufficient statistics, summed over the process group when the data are sharded
        combine = dist.all_reduce_sum if getattr(self, "_shard", False) else (lambda t: t)
        n = float(combine(torch.tensor([float(len(z))], dtype=torch.float64)).item())
        if n <= dim:  # the fit samples span at most the principal subspace: no residual to measure
            raise TooFewSamplesError(
                f"ViM needs more fit samples than its principal subspace has dimensions ({dim} of the {d} features), "
                f"got {int(n)}: every fit sample then lies in that subspace, the residual is zero and the score is "
                "numerical noise; fit on more in-distribution samples or pass a smaller dim")
        cov = combine(centred.T @ centred) / n
        evals, evecs = torch.linalg.eigh(cov)
        order = evals.argsort(descending=True)
        self.origin_ = origin
        self.residual_ = evecs[:, order[dim:]]
        resid = (centred @ self.residual_).norm(dim=1)
        sums = combine(torch.stack([logits.max(dim=1).values.sum(), resid.sum()]).double())
        self.alpha_ = float((sums[0] / n) / (sums[1] / n).clamp_min(1e-12))
        self.head_ = shown_head(self.model_) if hasattr(self, "model_") else None

    def _check_fitted(self) -> None:
        if not hasattr(self, "residual_"):
            raise NotFittedError("ViM is not fitted yet; call fit(model, in_data) first")

    def score_features(self, z: torch.Tensor, logits: Optional[torch.Tensor] = None) -> torch.Tensor:
        self._check_fitted()
        if logits is None:
            w, b = self.head_
            logits = z.double() @ w.T + b
        return vim_score(z, logits, self.origin_, self.residual_, self.alpha_)

    def _score(self, x):
        return self.score_features(self.model_.features(x))
