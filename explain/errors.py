"""Exceptions raised by xaiscope for bad input, unsupported models and misuse.

Every error a user can cause derives from :class:`ToolkitError`, so one ``except`` catches them
all, and each also derives from the matching built-in exception so existing handlers keep working::

    ToolkitError(Exception)
    ├── InputShapeError(ToolkitError, ValueError)       wrong rank, shape or dtype
    ├── InputValueError(ToolkitError, ValueError)       NaN/Inf, values outside the valid range
    ├── EmptyDataError(ToolkitError, ValueError)        no samples where some were needed
    ├── LayerNotFoundError(ToolkitError, KeyError)      a layer name that does not exist / cannot be found
    ├── UnsupportedModelError(ToolkitError, TypeError)  a model whose output is not N×K logits, ...
    ├── ModelLoadError(ToolkitError, OSError)           a missing, corrupt or untrusted model file
    ├── NotFittedError(ToolkitError, AttributeError)    a detector used before ``fit``
    ├── UnknownMethodError(ToolkitError, KeyError)      a method name that is not registered
    ├── OutOfMemoryError(ToolkitError, RuntimeError)    even a batch of one does not fit
    ├── ModelCallError(ToolkitError, RuntimeError)      the model's own forward pass raised on the input
    │   └── NonFiniteOutputError(ModelCallError)        the model's outputs (or gradients) are NaN/Inf
    ├── OutputExistsError(ToolkitError, FileExistsError)  a report's ``out`` holds files that are not a report
    ├── OutputBusyError(ToolkitError, BlockingIOError)  another process is writing into the same ``out``
    ├── OutputWriteError(ToolkitError, OSError)         ``out`` is not writable, or the disk filled up
    ├── SinglePassDataError(ToolkitError, TypeError)    a one-shot iterator where two passes are needed
    ├── OptionalDependencyError(ToolkitError, ImportError)  an extra that is not installed
    └── DistributedError(ToolkitError, RuntimeError)   a process group could not form, or a peer failed

Messages say what was expected, what arrived and, where possible, what to do.
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "ToolkitError",
    "InputShapeError",
    "InputValueError",
    "EmptyDataError",
    "TooFewSamplesError",
    "LayerNotFoundError",
    "UnsupportedModelError",
    "ModelLoadError",
    "NotFittedError",
    "UnknownMethodError",
    "OutOfMemoryError",
    "ModelCallError",
    "NonFiniteOutputError",
    "OutputExistsError",
    "OutputBusyError",
    "OutputWriteError",
    "SinglePassDataError",
    "OptionalDependencyError",
    "DistributedError",
]


class ToolkitError(Exception):
    """Base class of every error xaiscope raises on purpose."""

    def __str__(self) -> str:  # KeyError subclasses would otherwise quote the message
        return str(self.args[0]) if self.args else self.__class__.__name__


class InputShapeError(ToolkitError, ValueError):
    """The input has the wrong rank, shape, dtype or kind."""


class InputValueError(ToolkitError, ValueError):
    """The input contains NaN/Inf or values outside the expected range."""


class EmptyDataError(ToolkitError, ValueError):
    """A data set, batch or loader holds no samples."""


class TooFewSamplesError(InputValueError):
    """The data are well formed but too few for this method to give a meaningful number."""


class LayerNotFoundError(ToolkitError, KeyError):
    """A layer name does not exist in the model, or no suitable layer could be found."""


class UnsupportedModelError(ToolkitError, TypeError):
    """The model's output cannot be read as ``N×K`` class scores, or the model lacks a needed part."""


class ModelLoadError(ToolkitError, OSError):
    """A model or weights file is missing, corrupt, or needs ``trust_code=True`` to load."""


class NotFittedError(ToolkitError, AttributeError):
    """An estimator was used before ``fit`` was called."""


class UnknownMethodError(ToolkitError, KeyError):
    """A method name is not in the registry."""


class OutOfMemoryError(ToolkitError, RuntimeError):
    """The device ran out of memory even with a batch of one sample."""


class ModelCallError(ToolkitError, RuntimeError):
    """The model's own forward pass raised on the input it was given.

    The message names the input's shape and dtype, the model's error in one line and, where it can
    be read, what the model's first layer expects; the original exception is chained as ``__cause__``.
    """


class NonFiniteOutputError(ModelCallError):
    """The model's outputs — or what is computed from them (gradients, maps, scores) — are NaN or Inf.

    A NaN never becomes a number: the wrapper checks every forward pass's logits once, and the
    methods check the gradients, maps and scores they compute, so no NaN turns into a plausible
    map, a class-0 prediction or an accuracy. The message names the samples and how many there are.

    Attributes:
        indices: positions of the affected samples, sorted. Which positions they are says ``scope``:
            ``"batch"`` — samples of the batch the user passed; ``"data"`` — samples of a streamed data
            set, counted from its first sample; ``"rows"`` — rows of a batch the method derived
            (perturbations, interpolation points) not traced back to a sample yet; ``"untraced"`` — such
            rows that cannot be traced back.
        total: how many samples (or rows) there were in that scope; for ``"data"``, how many had been
            read when the stream stopped (all of them when the data was scanned to the end).
        what: what is non-finite, as the message says it: :attr:`LOGITS` (``"the model's logits"``) when
            the model's own outputs are, else e.g. ``"the gradcam attributions"``, ``"the knn
            detector's scores"``, ``"the pgd attack's adversarial inputs"``.
        derived: the non-finite values came from inputs a method derived from these samples
            (perturbed, interpolated or attacked copies), not from the samples themselves.
    """

    LOGITS = "the model's logits"

    def __init__(self, indices, total: int, *, what: str = LOGITS, scope: str = "rows", derived: bool = False,
                 of: str = "") -> None:
        self.indices = sorted(int(i) for i in indices)
        self.total = int(total)
        self.what = what
        self.scope = scope
        self.derived = bool(derived)
        self.of = of
        super().__init__(self._message())

    @property
    def from_model(self) -> bool:
        """True when the model's own logits are non-finite (not a method's gradients, maps or scores)."""
        return self.what == self.LOGITS

    @property
    def count(self) -> int:
        """Number of affected samples (or rows)."""
        return len(self.indices)

    def _message(self) -> str:
        shown = ", ".join(map(str, self.indices[:10])) + (", ..." if len(self.indices) > 10 else "")
        unit = ("row" if self.scope in ("rows", "untraced") else "sample") + ("" if self.count == 1 else "s")
        where = self.of or {"batch": "of the batch", "data": "of the data", "rows": "of a batch the method derived",
                            "untraced": "of a batch of inputs the method derived"}.get(self.scope, "")
        source = (" (on inputs derived from them — perturbed, interpolated or attacked copies — while their own "
                  "logits are finite; the method stopped at the first such pass)") if self.derived else ""
        if self.scope == "data":  # a stream stops at its first failing batch
            counted = f"{self.count} {unit} {where} (indices {shown}; among the first {self.total} read)"
        else:
            counted = f"{self.count} of {self.total} {unit} {where} (indices {shown})"
        return (f"{self.what} are NaN or Inf for {counted}{source}; a NaN is never turned into a number — check those inputs and the "
                "model (an overflow, a log of 0, a division by 0), or leave those samples out")

    def moved(self, indices, total: int, *, scope: str, derived: Optional[bool] = None,
              of: str = "") -> "NonFiniteOutputError":
        """The same error with positions in a wider scope (a chunk's rows → the batch → the data)."""
        error = NonFiniteOutputError(indices, total, what=self.what, scope=scope,
                                     derived=self.derived if derived is None else derived, of=of)
        error.__cause__ = self.__cause__
        return error

    def __reduce__(self):  # picklable across processes despite the keyword-only constructor
        return (_rebuild_nonfinite, (self.indices, self.total, self.what, self.scope, self.derived, self.of))


def _rebuild_nonfinite(indices, total, what, scope, derived, of) -> NonFiniteOutputError:
    return NonFiniteOutputError(indices, total, what=what, scope=scope, derived=derived, of=of)


class OutputExistsError(ToolkitError, FileExistsError):
    """A report's output path is a file, or a non-empty folder that is not an earlier xaiscope report.

    Pass a new or empty folder, an earlier report's folder, or ``force=True`` (``--force``) to write the
    report's own files into the folder without deleting anything else.
    """


class OutputBusyError(ToolkitError, BlockingIOError):
    """Another process holds the lock of the same output folder longer than the save waits for it.

    Wait for the other run to finish, or pass another folder.
    """


class OutputWriteError(ToolkitError, OSError):
    """The output folder cannot be written: no permission, a read-only or full disk. The message names the path."""


class SinglePassDataError(ToolkitError, TypeError):
    """A one-shot iterator (a generator) was given where the data must be read more than once.

    Pass a ``DataLoader``, a ``Dataset`` or a list of batches, which can be iterated again.
    """


class OptionalDependencyError(ToolkitError, ImportError):
    """An optional extra is needed; the message names the ``pip install`` command."""


class DistributedError(ToolkitError, RuntimeError):
    """A process group could not be formed, or a collective failed because another process stopped.

    ``secondary`` is True when the cause lies in another process (it reports its own error), so a
    launcher prints the failing process's message once instead of once per process.
    """

    def __init__(self, message: str, *, secondary: bool = False) -> None:
        super().__init__(message)
        self.secondary = secondary
