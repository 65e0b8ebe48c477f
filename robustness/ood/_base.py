"""The detector protocol: constructors store parameters; ``fit`` learns; scores: higher = more OOD."""

from __future__ import annotations

from typing import Any, Optional, Tuple

import torch

from explain.data import collect, iter_batches, stream

from .. import distributed as dist
from .._sharded_stream import OwnBatches, batch_count
from explain.errors import EmptyDataError, InputShapeError, NonFiniteOutputError, NotFittedError
from explain import check_wrapper


class Detector:
    """Base class of the out-of-distribution detectors.

    Convention: **higher score = more out-of-distribution**, for every detector.

    * ``fit(model, in_data) -> self`` learns from in-distribution data (streamed in batches);
    * ``score(x)`` scores inputs; feature detectors also ``fit_features``/``score_features``;
    * ``calibrate(in_val_data, tpr=0.95)`` sets ``threshold_`` so that a share ``tpr`` of
      in-distribution data scores at or below it; ``is_ood(x)`` is then ``score(x) > threshold_``.
    Fitted state ends in ``_``; using a detector before ``fit`` raises ``NotFittedError``.
    """

    name = "detector"
    needs_features = False

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.endswith("_"))
        return f"{type(self).__name__}({params})"

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, model: Any, in_data: Any, *, batch_size: int = 256) -> "Detector":
        """Learn from in-distribution ``in_data`` in one streamed pass.

        Inside a ``torch.distributed`` process group every rank passes the same data and fits on
        every W-th batch of it (reading only those when the data is indexable); the detectors
        combine the shares from all-reduced sufficient statistics (or, for KNN, keep a sharded
        feature bank), so the fitted detector equals a single process's.

        Args:
            model: an ``explain.ModelWrapper``.
            in_data: ``(inputs, labels)``, bare inputs, a ``Dataset``, a ``DataLoader`` or any iterable
                of ``(x, y)`` or ``x`` batches (a generator works: one pass is enough). It is read in
                batches of ``batch_size`` (see :func:`explain.data.stream`); Mahalanobis keeps running
                sums, KNN the normalised feature bank it needs, ViM the features.
            batch_size: samples per batch.

        Returns:
            ``self``, fitted.

        Raises:
            InputShapeError, InputValueError: inputs or labels that do not fit the model.
            EmptyDataError: ``in_data`` holds no samples.
            TooFewSamplesError: fewer samples than the detector needs (ViM: more than its subspace size).

        Shape:
            inputs: the wrapper's kind, ``N×…``; labels (optional): ``N``.

        Example:
            >>> d = robustness.ood_detector("mahalanobis").fit(m, loader)   # doctest: +SKIP
        """
        self.model_ = check_wrapper(model)
        self._shard = False
        if dist.active():  # each process fits on every W-th batch; the statistics are combined
            s = stream(in_data, batch_size, name="in_data")
            if s.reiterable and batch_count(s) >= dist.rank_and_world()[1]:
                in_data, self._shard = OwnBatches(s), True
            else:  # fewer batches than processes (or a one-shot source): read whole, split by sample
                x, y = collect(s)
                if len(x) >= dist.rank_and_world()[1]:
                    part = dist.local_range(len(x))
                    in_data = (x[part], None if y is None else y[part])
                    self._shard = True
        self._fit(self.model_, in_data, batch_size)
        return self

    def _fit(self, model, in_data, batch_size: int) -> None:
        # Output-based detectors learn nothing; still check the data is usable.
        for x, y in iter_batches(in_data, batch_size):
            model.check_inputs(x, name="in_data")
            if y is not None:
                model.check_labels(y, x, name="in_data labels")
            self.input_shape_ = tuple(x.shape[1:])
            break

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit(model, in_data) first")

    # -- scoring -------------------------------------------------------------------------------
    def score(self, x: Any) -> torch.Tensor:
        """OOD scores for a batch (``N``, CPU float); higher = more out-of-distribution.

        Raises:
            NonFiniteOutputError: the model's logits for some samples are NaN/Inf (``what="logits"``),
                or the detector's own scores are (``what`` names the detector) — e.g. a covariance
                that is singular for these features. Either way the samples are named; no NaN is
                returned as a score.
        """
        self._check_fitted()
        x = self.model_.check_inputs(x)
        shape = getattr(self, "input_shape_", None)
        if shape is not None and self.model_.input_kind != "tokens" and tuple(x.shape[1:]) != shape:
            raise InputShapeError(f"inputs have shape {tuple(x.shape[1:])} per sample but the detector was fitted on "
                                  f"{shape}")
        return finite_scores(self._score(x), self.name)

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score_nothing(self) -> None:
        """Take part in a round of sharded scoring without samples of this process's own.

        Only detectors whose scoring is collective (KNN with its bank split across processes)
        do anything; the others score each process's samples independently.
        """

    def score_data(self, data: Any, batch_size: int = 256, max_samples: Optional[int] = None) -> torch.Tensor:
        """Scores for every sample of ``data``."""
        out, seen = [], 0
        for x, _ in iter_batches(data, batch_size):
            out.append(self.score(x))
            seen += len(x)
            if max_samples is not None and seen >= max_samples:
                break
        return torch.cat(out)[:max_samples] if max_samples else torch.cat(out)

    # -- thresholds ----------------------------------------------------------------------------
    def calibrate(self, in_val_data: Any, tpr: float = 0.95) -> "Detector":
        """Set ``threshold_`` so that a share ``tpr`` of in-distribution validation data is kept."""
        if not 0 < tpr <= 1:
            raise InputShapeError(f"tpr must be in (0, 1], got {tpr}")
        scores = self.score_data(in_val_data)
        self.threshold_ = float(torch.quantile(scores.double(), tpr))
        self.tpr_ = tpr
        return self

    def is_ood(self, x: Any) -> torch.Tensor:
        """Booleans: ``score(x) > threshold_`` (needs :meth:`calibrate`)."""
        if not hasattr(self, "threshold_"):
            raise NotFittedError(f"{type(self).__name__} has no threshold yet; call calibrate(in_val_data) first")
        return self.score(x) > self.threshold_


def finite_scores(scores: torch.Tensor, name: str) -> torch.Tensor:
    """``scores`` when every one is finite; else ``NonFiniteOutputError`` naming the samples."""
    if scores.numel() == 0 or bool(torch.isfinite(scores).all()):
        return scores
    bad = (~torch.isfinite(scores)).reshape(len(scores), -1).any(1).nonzero().flatten().tolist()
    raise NonFiniteOutputError(bad, len(scores), what=f"the {name} detector's scores", scope="batch")


def labelled_features(model, data, batch_size: int):
    """Yield ``(features, labels)`` batches; missing labels become the predicted classes."""
    seen = 0
    for x, y in iter_batches(data, batch_size):
        model.check_inputs(x, name="in_data")
        z = model.features(x)
        if y is None:
            y = model.predict(x)
        else:
            y = model.check_labels(y, x, name="in_data labels")
        seen += len(x)
        yield x, z.double(), y.long()
    if seen == 0:
        raise EmptyDataError("in_data holds no samples")


def head_weights(model) -> Tuple[torch.Tensor, torch.Tensor]:
    """Weight ``K×D`` and bias ``K`` of the classifier head (the feature layer)."""
    name, head = model.feature_layer()
    w = getattr(head, "weight", None)
    if w is None or w.dim() != 2:
        raise InputShapeError(f"the feature layer {name!r} has no 2-D weight; ViM needs a linear classifier head")
    b = getattr(head, "bias", None)
    return w.detach().double().cpu(), (torch.zeros(w.shape[0], dtype=torch.float64) if b is None else b.detach().double().cpu())
