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
    ├── OutputExistsError(ToolkitError, FileExistsError)  a report's ``out`` holds files that are not a report
    ├── OutputBusyError(ToolkitError, BlockingIOError)  another process is writing into the same ``out``
    ├── OutputWriteError(ToolkitError, OSError)         ``out`` is not writable, or the disk filled up
    ├── SinglePassDataError(ToolkitError, TypeError)    a one-shot iterator where two passes are needed
    ├── OptionalDependencyError(ToolkitError, ImportError)  an extra that is not installed
    └── DistributedError(ToolkitError, RuntimeError)   a process group could not form, or a peer failed

Messages say what was expected, what arrived and, where possible, what to do.
"""

from __future__ import annotations

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
