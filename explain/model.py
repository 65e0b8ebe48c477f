"""``ModelWrapper``: the one place that knows a model's input kind, device, batching and layers.

Every method in xaiscope receives a :class:`ModelWrapper`, never a bare ``nn.Module``. The wrapper

* validates inputs (rank, dtype, channels, NaN/Inf) and moves them to the device once;
* applies the normalisation (``mean``/``std``) *inside*, so budgets and perturbations are in the
  user's natural units (pixels in [0, 1], raw series values, token ids);
* runs every forward pass through one batched path that halves the batch on CUDA out-of-memory and
  remembers the size that fit;
* finds the layers methods need (CAM target layer, token embedding, penultimate features);
* sets eval mode and ``requires_grad`` flags inside context managers that always restore them.

Example:
    >>> import torch, explain
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
    ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> m = explain.ModelWrapper(net, input_kind="image", class_names=["cat", "dog"])
    >>> m.logits(torch.rand(5, 3, 8, 8)).shape
    torch.Size([5, 2])
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ._batching import BatchTuner, run_in_chunks
from ._finite import FiniteChecks
from ._calling import ModelCalls, call_spec
from ._formats import exported_auto_layer, unhookable_reason
from ._hooks import Capture, LayerAccess
from ._state import ModelState, check_materialised
from ._tokens import TokenIds
from ._inputs import LabelChecks, validate_inputs
from ._outputs import ClassScores, check_task, select_logits
from .errors import InputShapeError, InputValueError, UnsupportedModelError

__all__ = ["ModelWrapper", "Capture", "INPUT_KINDS", "check_wrapper"]

log = logging.getLogger(__name__)

INPUT_KINDS = ("image", "tokens", "series")
_PRECISIONS = {None: None, "fp32": None, "float32": None, "bf16": torch.bfloat16,
               "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
OutputSelector = Union[None, int, str, Callable[[Any], torch.Tensor]]


class ModelWrapper(TokenIds, ModelCalls, LabelChecks, ModelState, LayerAccess, FiniteChecks, ClassScores):
    """Wrap a classifier so every xaiscope method can use it the same way.

    Args:
        model: a classifier returning ``N×K`` class scores (or a tuple/dict/object holding them).
            ``N×K`` scores are always read as softmax classes. A model with a single logit ``z``
            per sample (``N×1`` or ``N``: a sigmoid / ``BCEWithLogitsLoss`` classifier) is a binary
            classifier, shown to every method as the two class scores ``[−z/2, z/2]``: class 1 is
            predicted when ``z > 0`` (``z = 0`` gives class 0, as argmax breaks ties), its softmax
            probability is ``sigmoid(z)``, the margin between the classes is exactly ``z``, and
            class 0's explanations are the exact negatives of class 1's (with ``[0, z]`` class 0's
            gradient would be identically zero). Class-1 attributions are those of ``z/2``.
        input_kind: ``"image"`` (float ``N×C×H×W`` in [0, 1]), ``"tokens"`` (``LongTensor N×T``) or
            ``"series"`` (float ``N×T×C``).
        class_names: one name per class; default ``"0".."K-1"``.
        mean, std: per-channel normalisation applied inside (``(x - mean) / std``), images and series.
        device: ``"auto"`` (CUDA when present, else CPU), or any ``torch.device`` spec. The model is
            moved there when the wrapper is made.
        precision: ``None``/``"fp32"``, ``"bf16"`` or ``"fp16"``: autocast for forward passes.
        channels_last: feed image batches in channels-last memory format (faster convs on GPUs).
        output: how to read logits from the model's output: ``None`` (tensor, first element of a
            tuple, ``"logits"`` key or ``.logits`` attribute), an index, a key, or a callable.
        target_layer, embedding_layer, feature_layer: dotted names overriding automatic choices
            (CAM layer; the token embedding; the classifier head whose *input* is the penultimate
            feature vector).
        cam_reshape: a callable from the CAM layer's output to ``N×C×h×w``, for layouts the
            automatic ViT handling does not cover (see ``explain.gradcam``'s ``reshape=``).
        batch_size: the batch per forward pass. ``None`` (default): chosen automatically by measuring
            throughput on the first calls — on a CPU the fastest of a few candidate sizes, on CUDA
            the largest that fits — and cached per device, input shape and gradient mode (see
            ``explain._batching``). An explicit size always wins; either way it halves on CUDA OOM.
        pad_id: the padding/baseline token id (token models). Default: ``model.config.pad_token_id``
            for Hugging Face models, else 0.
        mask_arg: the keyword under which token models receive the attention mask ``ids != pad_id``.
            ``"auto"`` (default): ``"attention_mask"`` for Hugging Face models (a ``config`` with a
            ``pad_token_id`` and a ``forward`` taking ``attention_mask``), else no mask. ``None``
            never passes a mask. Models whose inputs are keyword-only get the ids by name too.
        special_ids: token ids that perturbation methods and attacks never replace (``[CLS]``,
            ``[SEP]``, ``<s>``...: changing them is meaningless). :func:`explain.load_hf` fills them
            from the tokenizer. Padding is never perturbed either.
        unk_id: the unknown-token id the ``token_mask`` corruption writes (default 1; the
            tokenizer's for :func:`explain.load_hf`).
        valid_range: ``(lo, hi)`` of valid natural-unit values; images default to ``(0, 1)``.
        multilabel, task: a multi-label model (``N×K`` independent sigmoids) is ``K`` binary tasks:
            ``multilabel=True, task=k`` wraps output column ``k`` as one binary classifier (as a
            single-logit model); make one wrapper per task. Without ``multilabel=True`` an ``N×K``
            output is read as softmax classes — the two cannot be told apart from the output.
        rnn_backward_fix: cuDNN refuses RNN backward in eval mode. ``"auto"`` (on CUDA) runs the
            recurrent layers in train mode with inter-layer dropout set to 0 during gradient passes,
            which computes exactly the eval-mode function; ``True``/``False`` force it on/off.

    Raises:
        UnsupportedModelError: ``model`` is not an ``nn.Module``, or its weights are on the ``meta``
            device (built without values: load them first).
    """

    def __init__(
        self,
        model: nn.Module,
        input_kind: str = "image",
        *,
        class_names: Optional[Sequence[str]] = None,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        device: Union[str, torch.device] = "auto",
        precision: Optional[str] = None,
        channels_last: bool = False,
        output: OutputSelector = None,
        target_layer: Optional[str] = None,
        embedding_layer: Optional[str] = None,
        feature_layer: Optional[str] = None,
        cam_reshape: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        batch_size: Optional[int] = None,
        pad_id: Optional[int] = None,
        mask_arg: Optional[str] = "auto",
        special_ids: Optional[Sequence[int]] = None,
        unk_id: Optional[int] = None,
        valid_range: Optional[Tuple[float, float]] = None,
        rnn_backward_fix: Union[str, bool] = "auto",
        multilabel: bool = False,
        task: Optional[int] = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise UnsupportedModelError(
                f"expected a torch.nn.Module, got {type(model).__name__}; load files with explain.load_model"
            )
        if input_kind not in INPUT_KINDS:
            raise InputShapeError(f"input_kind must be one of {INPUT_KINDS}, got {input_kind!r}")
        check_materialised(model)
        if precision not in _PRECISIONS:
            raise InputShapeError(f"precision must be None, 'bf16' or 'fp16', got {precision!r}")
        if batch_size is not None and int(batch_size) < 1:
            raise InputShapeError(f"batch_size must be at least 1 or None (automatic), got {batch_size}")
        self.multilabel, self.task = check_task(multilabel, task)
        self.model = model
        self.input_kind = input_kind
        self.device = self._pick_device(device)
        self.precision = precision
        self.channels_last = bool(channels_last)
        self.output = output
        self.call = call_spec(model, input_kind)
        self.pad_id = self._pick_pad_id(pad_id)
        self.mask_arg = self._pick_mask_arg(mask_arg)
        self.special_ids = sorted({int(i) for i in special_ids or ()} - {self.pad_id})
        self.unk_id = 1 if unk_id is None else int(unk_id)
        self.batch_size: Optional[int] = None if batch_size is None else int(batch_size)
        self.tuner = BatchTuner(self.device.type)
        self.rnn_backward_fix = rnn_backward_fix
        self.valid_range = valid_range if valid_range is not None else ((0.0, 1.0) if input_kind == "image" else None)
        self.cam_reshape = cam_reshape
        self._names = {"target": target_layer, "embedding": embedding_layer, "features": feature_layer}
        self._mean = self._stat(mean, "mean")
        self._std = self._stat(std, "std")
        if self._std is not None and bool((self._std <= 0).any()):
            raise InputValueError(f"std must be positive, got {std}")
        self._class_names = list(map(str, class_names)) if class_names is not None else None
        self._num_classes: Optional[int] = len(self._class_names) if self._class_names else None
        self._binary: Optional[bool] = True if self.multilabel else None
        self._session_depth = 0
        self.model.to(self.device)

    # ------------------------------------------------------------------ basic facts
    @staticmethod
    def _pick_device(device: Union[str, torch.device]) -> torch.device:
        if device is None or device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise UnsupportedModelError(f"device {device!r} requested but CUDA is not available; use device='cpu'")
        return dev

    def _stat(self, values: Optional[Sequence[float]], what: str) -> Optional[torch.Tensor]:
        if values is None:
            return None
        if self.input_kind == "tokens":
            raise InputShapeError(f"{what} is for image and series inputs; token models take ids")
        t = torch.as_tensor(values, dtype=torch.float32).flatten()
        return t.to(self.device)

    @property
    def num_classes(self) -> Optional[int]:
        """Number of classes: from ``class_names``, else learnt at the first forward pass."""
        return self._num_classes

    @property
    def binary(self) -> Optional[bool]:
        """``True`` for a single-logit binary classifier (shown as two classes ``[−z/2, z/2]``),
        ``False`` for ``N×K`` class scores, ``None`` before the first forward pass."""
        return self._binary

    @property
    def class_names(self) -> list[str]:
        if self._class_names is not None:
            return list(self._class_names)
        return [str(i) for i in range(self._num_classes or 0)]

    @property
    def mean(self) -> Optional[torch.Tensor]:
        """Per-channel mean subtracted inside the wrapper (on the device), or ``None``."""
        return self._mean

    @property
    def std(self) -> Optional[torch.Tensor]:
        """Per-channel std divided by inside the wrapper (on the device), or ``None``."""
        return self._std

    @property
    def amp_dtype(self) -> Optional[torch.dtype]:
        return _PRECISIONS[self.precision]

    def __repr__(self) -> str:
        return (f"ModelWrapper({type(self.model).__name__}, input_kind={self.input_kind!r}, "
                f"device={str(self.device)!r}, precision={self.precision!r}, classes={self.num_classes})")

    # ------------------------------------------------------------------ layers
    def _layer(self, role: str, name: Optional[str], x: Optional[torch.Tensor] = None) -> Tuple[str, nn.Module]:
        why = unhookable_reason(self.model)
        if why is not None:
            raise UnsupportedModelError(f"this method needs the model's {role} layer, but {why}")
        if not (name or self._names[role]):
            found = exported_auto_layer(self.model, role, self.input_kind)
            if found is not None:
                return found
        return super()._layer(role, name, x)

    # ------------------------------------------------------------------ inputs
    def check_inputs(self, x: Any, *, name: str = "inputs") -> torch.Tensor:
        """Validate a batch for this wrapper's input kind and return it as a tensor (device unchanged).

        Raises:
            InputShapeError: wrong type, rank, dtype or channel count.
            InputValueError: NaN/Inf, float values that overflow float32 (the model runs in float32),
                or token ids outside the embedding's vocabulary.
            EmptyDataError: an empty batch.
        """
        vocab = self._vocab_size() if self.input_kind == "tokens" else None
        x = validate_inputs(x, self.input_kind, name=name, mean=self._mean, std=self._std,
                            valid_range=self.valid_range, vocab=vocab)
        self._note_batch(x)  # the batch non-finite outputs are reported against (explain._finite)
        return x

    def _vocab_size(self) -> Optional[int]:
        try:
            return int(self.embedding_layer()[1].num_embeddings)
        except Exception:  # noqa: BLE001 - a model without nn.Embedding still works for forward passes
            return None

    def prepare(self, x: Any, *, name: str = "inputs") -> torch.Tensor:
        """Validate and move a batch to the device (float inputs as float32)."""
        x = self.check_inputs(x, name=name)
        if x.dtype.is_floating_point and x.dtype != torch.float32:
            x = x.float()
        return x.to(self.device, non_blocking=True)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` over the channel axis (dim 1 for images, the last dim for series)."""
        if self._mean is None and self._std is None:
            return x
        shape = (1, -1, 1, 1) if self.input_kind == "image" else (1, 1, -1)
        if self._mean is not None:
            x = x - self._mean.view(shape)
        if self._std is not None:
            x = x / self._std.view(shape)
        return x

    # ------------------------------------------------------------------ forward passes
    def _select(self, out: Any) -> torch.Tensor:
        return select_logits(out, self.output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One differentiable forward pass on device inputs in natural units → float32 ``N×K`` logits.

        Use inside :meth:`session`; most callers want :meth:`logits` instead.

        Raises:
            NonFiniteOutputError: a logit is NaN or Inf. The error names the samples (of the user's
                batch when this pass runs inside :meth:`batched`; see ``explain._finite``); a NaN is
                never passed on as a number.
        """
        if self.input_kind == "image" and self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        model_in = self.normalize(x) if self.input_kind != "tokens" else x
        args, kwargs = self._model_arguments(x, model_in)
        if self.amp_dtype is not None:
            with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype):
                out = self._call_model(args, kwargs)
        else:
            out = self._call_model(args, kwargs)
        logits = self._select(out)
        logits = self._as_class_scores(logits, x.shape[0])
        self._check_finite(logits)
        return logits.float()

    def batched(
        self,
        fn: Callable[[slice], Any],
        n: int,
        *,
        batch_size: Optional[int] = None,
        desc: Optional[str] = None,
        progress: Optional[bool] = None,
        shape: Optional[Sequence[int]] = None,
    ) -> list:
        """Run ``fn(slice)`` over ``range(n)`` in chunks; halve the chunk on CUDA out-of-memory.

        Args:
            fn: computes the rows of one chunk (``slice`` of ``range(n)``).
            n: total rows.
            batch_size: rows per chunk; default the wrapper's ``batch_size``, or when that is
                ``None`` the automatic choice (measured on the first chunks, cached).
            desc, progress: progress-bar label and switch.
            shape: the shape of one row's model input (``C×H×W``, ``T``, …); part of the cache key
                for the automatic choice and bounds the candidates' memory.

        Returns:
            the list of ``fn`` results in order.

        Raises:
            OutOfMemoryError: when even a chunk of one does not fit.
            NonFiniteOutputError: a forward pass inside ``fn`` gave NaN/Inf logits; its indices are
                moved from the pass's rows to rows of ``range(n)`` and, at the outermost job, to the
                samples of the user's batch.

        Example:
            >>> parts = m.batched(lambda sl: m.forward(x[sl]), len(x), shape=x.shape[1:])  # doctest: +SKIP
        """
        size = batch_size or self.batch_size
        row = tuple(int(d) for d in shape) if shape is not None else None
        key = (str(self.device), torch.is_grad_enabled(), row if row is not None else (desc or "forward"))

        def shrink(new: int) -> None:
            if self.batch_size is not None and batch_size is None:
                self.batch_size = min(self.batch_size, new)
            log.warning("out of memory on %s: batch size halved to %d", self.device, new)

        return run_in_chunks(self._finite_job(fn, n), n, size, desc=desc or "forward", progress=progress, on_shrink=shrink,
                             where=str(self.device), tuner=self.tuner, key=key,
                             row_numel=None if row is None else math.prod(row))

    def logits(self, x: Any, *, batch_size: Optional[int] = None, progress: Optional[bool] = None) -> torch.Tensor:
        """Batched, gradient-free logits for a batch in natural units; returns a CPU float tensor ``N×K``.

        Raises:
            NonFiniteOutputError: the model gives NaN/Inf logits for some samples; the error's
                ``indices`` are their positions in ``x``.
        """
        x = self.check_inputs(x)

        def run(sl: slice) -> torch.Tensor:
            chunk = x[sl].to(self.device, non_blocking=True)
            if chunk.dtype.is_floating_point:
                chunk = chunk.float()
            return self.forward(chunk).cpu()

        with self.session(grad=False):
            parts = self.batched(run, x.shape[0], batch_size=batch_size, desc="forward", progress=progress,
                                 shape=x.shape[1:])
        return torch.cat(parts)

    def predict(self, x: Any, **kw: Any) -> torch.Tensor:
        """Predicted class per sample (``LongTensor N``, CPU)."""
        return self.logits(x, **kw).argmax(dim=1)

    def probs(self, x: Any, **kw: Any) -> torch.Tensor:
        """Softmax probabilities (``N×K``, CPU); ``[1 − sigmoid(z), sigmoid(z)]`` for a binary classifier."""
        return torch.softmax(self.logits(x, **kw), dim=1)



def check_wrapper(model: Any) -> ModelWrapper:
    """Return ``model`` if it is a :class:`ModelWrapper`; otherwise raise a message saying how to wrap it.

    Every public entry point of ``explain``, ``robustness`` and ``reports`` starts with this check.

    Raises:
        InputShapeError: ``model`` is not a ``ModelWrapper`` (e.g. a bare ``nn.Module``).

    Example:
        >>> wrapper = check_wrapper(explain.ModelWrapper(net, input_kind="image"))   # doctest: +SKIP
    """
    if not isinstance(model, ModelWrapper):
        raise InputShapeError(
            f"expected an explain.ModelWrapper, got {type(model).__name__}; wrap the model first: "
            "explain.ModelWrapper(net, input_kind='image')")
    return model
