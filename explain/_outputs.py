"""Reading class scores from whatever a model returns: a tensor, a tuple, a dict or an object."""

from __future__ import annotations

from typing import Any

import torch

from .errors import InputValueError, UnsupportedModelError


def select_logits(out: Any, sel: Any = None) -> torch.Tensor:
    """The logits in ``out``: ``sel`` (a callable, index or key) if given, else the tensor itself,
    the first element of a tuple/list, the ``"logits"`` key of a dict or the ``.logits`` attribute."""
    if callable(sel):
        out = sel(out)
    elif sel is not None:
        out = out[sel]
    elif isinstance(out, torch.Tensor):
        pass
    elif isinstance(out, (tuple, list)) and out:
        out = out[0]
    elif isinstance(out, dict):
        if "logits" not in out:
            raise UnsupportedModelError(
                f"the model returns a dict with keys {sorted(out)}; pass output='<key>' naming the logits")
        out = out["logits"]
    elif hasattr(out, "logits"):
        out = out.logits
    if not isinstance(out, torch.Tensor):
        raise UnsupportedModelError(
            f"the model output is a {type(out).__name__}; expected a tensor of N×K logits — pass output= "
            "(an index, a key or a function) to select it")
    return out


def as_class_scores(raw: torch.Tensor, task: Any = None) -> torch.Tensor:
    """The class scores every method sees, from the model's selected output.

    * ``task=k`` (multi-label models): column ``k`` of an ``N×K`` output, as one binary task;
    * one logit per sample (``N×1`` or ``N``), ``z``: the two class scores ``[−z/2, z/2]``;
    * anything else is returned unchanged (``N×K`` softmax class scores).

    Why ``[−z/2, z/2]`` and not ``[0, z]``: both give the same softmax (``sigmoid(z)`` for class 1), the
    same predictions and the same margin ``z`` between the classes, so everything built on those is
    the same either way. The symmetric form also makes class 0's gradient the exact negative of class
    1's (with ``[0, z]`` class 0's gradient is identically zero), and the logit-based OOD scores
    symmetric in ``z`` (with ``[0, z]`` a confident class-0 prediction would have the energy of an
    uncertain one). Halving is exact in floating point, so the margin is exactly ``z``.

    Shape:
        raw: ``N×K``, ``N×1`` or ``N``; returns ``N×K`` (``N×2`` for a single logit).

    Example:
        >>> as_class_scores(torch.tensor([[2.0], [-1.0]]))
        tensor([[-1.0000,  1.0000],
                [ 0.5000, -0.5000]])
    """
    if task is not None:
        raw = raw[:, task]
    if raw.dim() == 1:
        raw = raw.unsqueeze(1)
    if raw.dim() == 2 and raw.shape[1] == 1:
        half = raw / 2
        return torch.cat([-half, half], dim=1)
    return raw


def check_task(multilabel: Any, task: Any) -> tuple:
    """``(multilabel, task)`` checked: ``task`` is given exactly when ``multilabel`` is ``True``."""
    if not isinstance(multilabel, bool):
        raise InputValueError(f"multilabel must be True or False, got {multilabel!r}")
    if task is None:
        if multilabel:
            raise InputValueError("multilabel=True needs task=k: the output column wrapped as one binary task "
                                  "(make one ModelWrapper per task)")
        return False, None
    if not multilabel:
        raise InputValueError(f"task={task!r} selects one output column of a multi-label model; pass "
                              "multilabel=True with it (N×K outputs are otherwise read as softmax classes)")
    if isinstance(task, bool) or not isinstance(task, int) or task < 0:
        raise InputValueError(f"task must be an output column index (an int ≥ 0), got {task!r}")
    return True, int(task)


def check_output_shape(logits: torch.Tensor, n: int, task: Any = None) -> tuple:
    """``(logits, binary)``: the selected output checked for a batch of ``n`` (a scalar for a batch
    of one becomes a vector); ``binary`` when it holds one logit per sample or ``task`` picks one.

    Raises:
        UnsupportedModelError: not ``n×K``, ``n×1`` or ``n`` scores, or ``task`` beyond the columns.
    """
    if logits.dim() == 0 and n == 1:
        logits = logits.reshape(1)
    if task is not None:
        if logits.dim() != 2 or logits.shape[0] != n or task >= logits.shape[1]:
            raise UnsupportedModelError(
                f"multilabel=True, task={task}: expected {n}×K scores with K > {task} for a batch of {n}, "
                f"got shape {tuple(logits.shape)}")
        return logits, True
    if logits.dim() not in (1, 2) or logits.shape[0] != n:
        raise UnsupportedModelError(
            f"the model output has shape {tuple(logits.shape)} for a batch of {n}; expected {n}×K class "
            f"scores (or {n}×1 / {n} single logits of a binary classifier) — pass output= to select them, "
            "or wrap the model")
    return logits, logits.dim() == 1 or logits.shape[1] == 1


class ClassScores:
    """Mixin: the class scores every method sees, from the model's selected output."""

    def class_scores(self, raw: torch.Tensor) -> torch.Tensor:
        """The class scores methods see, from the model's selected output (no checks): the task's
        column of a multi-label output, ``[−z/2, z/2]`` for a single logit ``z``, else unchanged.

        It is linear, so bound propagation and linear heads (ViM) apply it to their own tensors.

        Shape:
            raw: ``N×K``, ``N×1`` or ``N`` → ``N×K`` (``N×2`` for a binary classifier).
        """
        return as_class_scores(raw, self.task)

    def _as_class_scores(self, logits: torch.Tensor, n: int) -> torch.Tensor:
        """Check the selected output's shape for a batch of ``n``, learn the class count, expand."""
        logits, binary = check_output_shape(logits, n, self.task)
        logits = self.class_scores(logits)
        k = int(logits.shape[1])
        if self._num_classes is None:
            self._num_classes = k
        elif k != self._num_classes:
            if binary:
                raise UnsupportedModelError(
                    f"the model gives one score per sample (a binary classifier, shown as two classes) but "
                    f"class_names has {self._num_classes} entries; pass two names, the class of z < 0 first")
            raise UnsupportedModelError(
                f"the model gives {k} scores per sample but {self._num_classes} classes were "
                f"declared (class_names has {self._num_classes} entries)")
        self._binary = binary
        return logits
