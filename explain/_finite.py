"""Finiteness of the model's outputs, checked once per forward pass, with the samples named.

Policy: a NaN never becomes a number. Every forward pass of :class:`~explain.ModelWrapper` checks
its logits with one ``torch.isfinite(logits).all()``; when it fails the pass raises
:class:`~explain.errors.NonFiniteOutputError`, and nothing downstream (an argmax, a softmax, a map)
ever sees the NaN. The error names the affected samples *of the user's batch*:

* a forward pass reports the rows of its own batch;
* each chunk of :meth:`ModelWrapper.batched` moves them to rows of the whole job — a pass on
  ``k`` rows per chunk row (a chunk's perturbations) is divided back by ``k``;
* the outermost job maps its rows to samples: ``N`` rows are the batch itself, ``N·P`` rows are
  ``P`` derived inputs per sample in sample-major order (how every batched method lays them out);
* a job stops at its first failing chunk, so before raising, the outermost job runs the user's
  batch once more, gradient-free, to name *every* sample whose own logits are NaN/Inf. Only when
  all of them are finite does the error name the samples whose derived inputs (perturbed,
  interpolated or attacked copies) gave the NaN — those found before the job stopped. This costs
  one extra pass, and only when something is already wrong;
* the streamed entry points (``robust_accuracy``, ``corruption_accuracy``, ``evaluate_ood``, the
  report's data pass) add each batch's offset, so indices count from the data's first sample.

The batch is the one most recently checked (``check_inputs``) outside any model session, which is
how every public entry point begins.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Optional

import torch

from .errors import NonFiniteOutputError

__all__ = ["FiniteChecks", "nonfinite_rows", "check_finite_values"]


def nonfinite_rows(values: torch.Tensor) -> list:
    """Indices of the rows (first dimension) of ``values`` holding a NaN or an Inf."""
    v = values.detach()
    return (~torch.isfinite(v)).reshape(len(v), -1).any(1).nonzero().flatten().cpu().tolist()


def check_finite_values(values: torch.Tensor, what: str, *, scope: str = "batch", of: str = "",
                        derived: bool = False) -> torch.Tensor:
    """Return ``values`` when finite; else raise ``NonFiniteOutputError`` naming the rows that are not.

    For results computed from finite logits (gradients, maps, scores): one reduction when all is well.
    """
    if values.numel() == 0 or bool(torch.isfinite(values.detach()).all()):
        return values
    raise NonFiniteOutputError(nonfinite_rows(values), len(values), what=what, scope=scope, of=of, derived=derived)


class FiniteChecks:
    """Mixin for ``ModelWrapper``: the logits check and the index bookkeeping described above."""

    _finite_depth = 0                 # how many batched jobs are running (nested jobs count)
    _finite_batch_n: Optional[int] = None  # size of the last batch checked outside any session
    _finite_batch_ref: Optional[Callable[[], Optional[torch.Tensor]]] = None  # a weak reference to it

    def _note_batch(self, x: torch.Tensor) -> None:
        if getattr(self, "_session_depth", 0) == 0 and self._finite_depth == 0:
            self._finite_batch_n = int(x.shape[0])
            try:
                self._finite_batch_ref = weakref.ref(x)
            except TypeError:  # pragma: no cover - every tensor is weak-referenceable
                self._finite_batch_ref = None

    def _scan_batch(self) -> Optional[list]:
        """Every sample of the noted batch whose own logits are non-finite (``None`` if it is gone)."""
        x = self._finite_batch_ref() if self._finite_batch_ref is not None else None
        if x is None or len(x) != self._finite_batch_n:
            return None
        bad: list = []
        size = max(1, int(getattr(self, "batch_size", None) or 64))
        try:
            with self.session(grad=False):
                for start in range(0, len(x), size):
                    chunk = x[start:start + size].to(self.device)
                    try:
                        self.forward(chunk.float() if chunk.dtype.is_floating_point else chunk)
                    except NonFiniteOutputError as error:
                        bad.extend(start + i for i in error.indices)
        except Exception:  # noqa: BLE001 - the scan only refines an error already being raised
            return None
        return bad

    def _check_finite(self, logits: torch.Tensor, what: str = NonFiniteOutputError.LOGITS) -> torch.Tensor:
        """Return ``logits`` when finite; else raise ``NonFiniteOutputError`` (see the module docstring)."""
        if bool(torch.isfinite(logits.detach()).all()):
            return logits
        n = int(logits.shape[0])
        scope = "batch" if self._finite_depth == 0 and n == self._finite_batch_n else "rows"
        raise NonFiniteOutputError(nonfinite_rows(logits), n, what=what, scope=scope)

    def _finite_job(self, fn: Callable[[slice], Any], n: int) -> Callable[[slice], Any]:
        """``fn`` with a non-finite error's rows moved from one pass's batch to the job's ``range(n)``."""
        def run(sl: slice) -> Any:
            outer = self._finite_depth == 0
            self._finite_depth += 1
            try:
                return fn(sl)
            except NonFiniteOutputError as error:
                raise self._place(error, sl, n, outer) from error.__cause__
            finally:
                self._finite_depth -= 1
        return run

    def _place(self, error: NonFiniteOutputError, sl: slice, n: int, outer: bool) -> NonFiniteOutputError:
        if error.scope != "rows":  # already placed in the batch or the data, or untraceable
            return error
        chunk = sl.stop - sl.start
        if error.total == chunk:
            rows, derived = [sl.start + r for r in error.indices], error.derived
        elif chunk and error.total % chunk == 0:  # k inputs per chunk row, row-major
            k = error.total // chunk
            rows, derived = sorted({sl.start + r // k for r in error.indices}), True
        else:
            return error.moved(error.indices, error.total, scope="untraced")  # the message says so
        batch = self._finite_batch_n
        if not outer or not batch:
            return error.moved(rows, n, scope="rows", derived=derived)
        own = self._scan_batch()
        if own:  # the samples' own logits: the complete list
            return error.moved(own, batch, scope="batch", derived=False)
        if n == batch:
            return error.moved(rows, batch, scope="batch", derived=derived or own is not None)
        if n % batch == 0:
            per = n // batch
            return error.moved(sorted({r // per for r in rows}), batch, scope="batch", derived=True)
        return error.moved(rows, n, scope="rows", derived=derived)
