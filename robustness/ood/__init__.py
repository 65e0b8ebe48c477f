"""Out-of-distribution detection: detectors (higher score = more OOD), metrics and evaluation.

Example:
    >>> d = robustness.ood_detector("energy").fit(m, (x_train, y_train))   # doctest: +SKIP
    >>> d.calibrate((x_val, y_val)).is_ood(x_new)
    >>> o = robustness.evaluate_ood(m, (x_test, y_test), x_ood, methods=["msp", "energy", "mahalanobis"])
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple

import torch

from explain.data import stream
from explain.errors import (EmptyDataError, InputShapeError, InputValueError, ModelCallError, NonFiniteOutputError,
                            SinglePassDataError, TooFewSamplesError, UnknownMethodError)
from explain import check_wrapper

from .. import distributed as dist
from .._sharded_stream import gather_batches, rounds
from ..ood_results import OODEvaluation, OODMethodResult
from ._base import Detector
from ._split import split_fit_test
from .features import KNN, Mahalanobis, ViM, knn_score, mahalanobis_score, vim_score
from .metrics import ood_metrics
from .output import MSP, ODIN, Energy, MaxLogit, energy_score, maxlogit_score, msp_score

@dataclass(frozen=True)
class DetectorSpec:
    """What a detector can do, declared once.

    Attributes:
        cls: the detector class.
        kinds: input kinds it scores.
        needs_features: it reads the penultimate features (needs the wrapper's feature layer).
        needs_gradient: it takes an input-gradient step (ODIN).
        uses_labels: ``fit`` uses class labels (else it ignores them).
        defaults: constructor parameters used unless told otherwise.
    """

    cls: type
    kinds: Tuple[str, ...] = ("image", "series", "tokens")
    needs_features: bool = False
    needs_gradient: bool = False
    uses_labels: bool = False
    defaults: dict = field(default_factory=dict)


DETECTOR_SPECS: Dict[str, DetectorSpec] = {
    "msp": DetectorSpec(MSP),
    "maxlogit": DetectorSpec(MaxLogit),
    "energy": DetectorSpec(Energy, defaults={"temperature": 1.0}),
    "odin": DetectorSpec(ODIN, needs_gradient=True, defaults={"temperature": 1000.0, "eps": 0.0014}),
    "mahalanobis": DetectorSpec(Mahalanobis, needs_features=True, uses_labels=True),
    "knn": DetectorSpec(KNN, needs_features=True, defaults={"k": 10}),
    "vim": DetectorSpec(ViM, needs_features=True),
}

DETECTORS = {name: spec.cls for name, spec in DETECTOR_SPECS.items()}

__all__ = ["DETECTORS", "DETECTOR_SPECS", "DetectorSpec", "split_fit_test", "Detector", "ood_detector", "evaluate_ood", "ood_metrics", "msp_score", "maxlogit_score",
           "energy_score", "mahalanobis_score", "knn_score", "vim_score"]


def ood_detector(name: str, **params: Any) -> Detector:
    """A detector by name (``msp``, ``maxlogit``, ``energy``, ``odin``, ``mahalanobis``, ``knn``, ``vim``)."""
    if name not in DETECTORS:
        raise UnknownMethodError(f"unknown OOD detector {name!r}; available: {', '.join(DETECTORS)}")
    try:
        return DETECTORS[name](**params)
    except TypeError as error:
        raise InputShapeError(f"detector {name!r}: {error}") from None


def _scores(det: Detector, data: Any, batch_size: int) -> torch.Tensor:
    """Scores of ``data``, streamed; inside a process group each rank scores every W-th batch and the
    scores are gathered back in sample order."""
    if dist.rank_and_world()[1] == 1:
        return det.score_data(data, batch_size)
    parts = []
    for b, x, _ in rounds(stream(data, batch_size)):
        if b is None:
            det.score_nothing()  # a collective scorer (KNN's sharded bank) still takes part in the round
        else:
            parts.append((b, det.score(x)))
    return gather_batches(parts, torch.zeros(0))


def _locate_nonfinite(wrapper, streams) -> Optional[NonFiniteOutputError]:
    """Scan each ``(name, stream)`` to its end for samples whose logits are NaN/Inf; the first set found.

    Runs only after a detector met a non-finite logit, to name every such sample by its position in
    the data (a detector stops at its first failing batch, and its batches may be a split's subset).
    """
    for name, s in streams:
        bad, seen = [], 0
        for x, _ in s:
            try:
                wrapper.logits(x)
            except NonFiniteOutputError as error:
                bad.extend(seen + i for i in error.indices)
            seen += len(x)
        if bad:
            return NonFiniteOutputError(bad, seen, scope="data", of=f"of {name}")
    return None


def evaluate_ood(model: Any, in_data: Any, ood_data: Any, methods: Sequence[str] = ("msp", "energy", "mahalanobis"),
                 *, fit_data: Any = None, max_samples: Optional[int] = None, tpr: float = 0.95,
                 params: Optional[dict] = None, seed: int = 0, fit_fraction: float = 0.5,
                 batch_size: int = 256) -> OODEvaluation:
    """Fit each detector and measure how well it separates ``in_data`` from ``ood_data``.

    The data is streamed in batches of ``batch_size`` (see :func:`explain.data.stream`): only
    per-sample scores, the split's indices and each detector's fitted state are kept, never the
    inputs. ``in_data`` is read once to check it and draw the split and then twice per detector
    (fit, score); ``ood_data`` once plus once per detector. Both must therefore be re-iterable
    (tensors, a ``Dataset``, a ``DataLoader``, a list of batches); a one-shot generator raises
    ``SinglePassDataError`` at once.

    Args:
        in_data: in-distribution data (labels optional) in any form :func:`explain.data.stream`
            reads; when ``fit_data`` is None it is split by
            :func:`split_fit_test` — a seeded shuffle stratified by class (the labels, else the
            model's predictions) — into ``fit_fraction`` for fitting the detectors and the rest as
            the in-distribution test set. The indices of both parts are kept in the result.
        ood_data: out-of-distribution inputs (labels unused), same per-sample shape as ``in_data``.
        methods: detector names; ``params`` maps a name to its constructor arguments.
        fit_data: separate fitting data; then all of ``in_data`` is the test set.
        tpr: the in-distribution share kept by the calibrated threshold.
        seed: seeds the split.
        batch_size: samples per batch; source batches are split or joined to this size, so the
            numbers do not depend on how the data was batched.

    Inside a ``torch.distributed`` process group every rank passes the same data: detectors are
    fitted from statistics summed over the ranks' blocks (KNN keeps a sharded feature bank and
    merges each rank's nearest neighbours) and scores are gathered in sample order, so every rank
    returns a single process's result.

    Returns:
        ``OODEvaluation`` with AUROC, AUPR-In, AUPR-Out, FPR@95%TPR, threshold, scores and ROC per
        detector, and the split; a detector that cannot run on this model is listed in ``errors``.

    Raises:
        InputShapeError: shapes differ, too few samples, or a bad ``fit_fraction``.
        UnknownMethodError: a detector name is not registered.
        EmptyDataError: ``in_data`` or ``ood_data`` holds no samples.
        SinglePassDataError: a one-shot iterator where several passes are needed.
        NonFiniteOutputError: the model's logits are NaN/Inf for some samples; the error names their
            positions in ``in_data`` (else in ``ood_data``, else ``fit_data``), counted from the first
            sample. A detector whose *own* scores are NaN/Inf on finite logits is not raised but
            listed in ``errors`` with the samples named; no NaN reaches the metrics.

    Shape:
        in_data inputs: ``N×…``; ood_data inputs: ``M×…`` (same per-sample shape; token lengths may
        differ); scores in the result: ``N_test`` and ``M``.

    Example:
        >>> o = robustness.evaluate_ood(m, (x, y), x_ood, methods=["msp", "knn"])   # doctest: +SKIP
        >>> o.methods["knn"].auroc, o.fit_indices[:5]
    """
    wrapper = check_wrapper(model)
    unknown = [m for m in methods if m not in DETECTOR_SPECS]
    if unknown:
        raise UnknownMethodError(f"unknown OOD detector(s) {unknown}; available: {', '.join(DETECTOR_SPECS)}")
    if fit_data is None and not 0 < fit_fraction < 1:
        raise InputShapeError(f"fit_fraction must be in (0, 1), got {fit_fraction}")
    in_s = stream(in_data, batch_size, max_samples=max_samples, name="in_data")
    out_s = stream(ood_data, batch_size, max_samples=max_samples, name="ood_data")
    # in_data: the first pass checks it (and draws the split), then each detector fits and scores
    in_s.require_passes(1 + 2 * len(methods) if fit_data is None else 1 + len(methods), "evaluate_ood")
    out_s.require_passes(1 + len(methods), "evaluate_ood")
    shape, strata, labelled = None, [], False
    for x, y in in_s:
        wrapper.check_inputs(x, name="in_data")
        shape = shape or tuple(x.shape[1:])
        labelled = y is not None
        if y is not None:
            y = wrapper.check_labels(y, x, name="in_data labels")
        if fit_data is None:
            try:
                strata.append(y if y is not None else wrapper.predict(x).cpu())
            except NonFiniteOutputError as error:
                raise (_locate_nonfinite(wrapper, [("in_data", in_s)]) or error) from error
    n_out = 0
    for x, _ in out_s:
        wrapper.check_inputs(x, name="ood_data")
        if tuple(x.shape[1:]) != shape and (wrapper.input_kind != "tokens" or x.shape[2:] != shape[1:]):
            raise InputShapeError(f"ood_data samples have shape {tuple(x.shape[1:])} but in_data samples have {shape}")
        n_out += len(x)
    fit_idx = test_idx = None
    split = "given"
    if fit_data is None:
        n_in = in_s.n_seen or 0
        if n_in < 4:
            raise InputShapeError("in_data needs at least 4 samples to split into fitting and test parts")
        split = "class-stratified shuffle by " + ("label" if labelled else "predicted class")
        fit_idx, test_idx = split_fit_test(torch.cat(strata), fit_fraction, seed)
        fit_pair, x_test = in_s.select(fit_idx), in_s.select(test_idx)
        n_fit = len(fit_idx)
    else:
        fit_pair, x_test = stream(fit_data, batch_size, name="fit_data"), in_s
        fit_pair.require_passes(len(methods) + 1, "evaluate_ood")
        n_fit = sum(len(x) for x, _ in fit_pair)
    results, errors = {}, {}
    for name in methods:
        start = time.perf_counter()
        spec = DETECTOR_SPECS[name]
        try:
            det = ood_detector(name, **{**spec.defaults, **(params or {}).get(name, {})})
            det.fit(wrapper, fit_pair, batch_size=batch_size)
            s_in, s_out = _scores(det, x_test, batch_size), _scores(det, out_s, batch_size)
        except NonFiniteOutputError as error:
            if not error.from_model:  # the detector's own arithmetic: list it with the samples, go on
                errors[name] = f"{type(error).__name__}: {error}"
                continue
            streams = [("in_data", in_s), ("ood_data", out_s)] + ([] if fit_data is None else [("fit_data", fit_pair)])
            raise (_locate_nonfinite(wrapper, streams) or error) from error
        except TooFewSamplesError as error:  # this detector needs more data than the others: list it, go on
            errors[name] = f"{type(error).__name__}: {error}"
            continue
        except (InputShapeError, InputValueError, ModelCallError, UnknownMethodError, EmptyDataError,
                SinglePassDataError):
            raise  # bad input, not a detector that cannot run on this model
        except Exception as error:  # noqa: BLE001 - one detector failing must not hide the others
            errors[name] = f"{type(error).__name__}: {error}"
            continue
        metrics = ood_metrics(s_in, s_out, tpr)
        threshold = float(torch.quantile(s_in.double(), tpr))
        results[name] = OODMethodResult(name=name, auroc=metrics["auroc"], aupr_in=metrics["aupr_in"],
                                        aupr_out=metrics["aupr_out"], fpr95=metrics["fpr95"], threshold=threshold,
                                        scores_in=s_in, scores_out=s_out, roc=metrics["roc"],
                                        seconds=time.perf_counter() - start,
                                        params={k: v for k, v in vars(det).items() if not k.endswith("_") and not k.startswith("_")})
    return OODEvaluation(methods=results, n_fit=n_fit, n_in=len(test_idx) if test_idx is not None else in_s.n_seen, n_out=n_out, errors=errors,
                         fit_indices=fit_idx, test_indices=test_idx, split=split, seed=seed)
