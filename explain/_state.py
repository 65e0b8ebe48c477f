"""Model state of ``ModelWrapper``: sessions that always restore it, penultimate features, a description."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

import torch
from torch import nn

from .errors import UnsupportedModelError


class ModelState:
    """Mixin: eval-mode sessions restored in ``finally``, feature extraction and ``describe()``."""

    # ------------------------------------------------------------------ state
    @contextlib.contextmanager
    def session(self, grad: bool = False) -> Iterator[None]:
        """Put the model in eval mode with frozen parameters; restore everything on exit.

        ``grad=False`` also disables gradient recording (``torch.no_grad``). With ``grad=True`` on CUDA,
        recurrent layers run in train mode with dropout 0 (see ``rnn_backward_fix``). Nested
        sessions restore only when the outermost one exits. Whatever happens inside, the
        ``training`` flag of every module and the ``requires_grad`` of every parameter are restored.
        """
        outer = self._session_depth == 0
        modes = [(m, m.training) for m in self.model.modules()] if outer else []
        flags = [(p, p.requires_grad) for p in self.model.parameters()] if outer else []
        rnn_state = []
        self._session_depth += 1
        try:
            if outer:
                _eval_mode(self.model)
                for p, _ in flags:
                    p.requires_grad_(False)
            if grad and self._want_rnn_fix():
                for m in self.model.modules():
                    if isinstance(m, nn.RNNBase) and not m.training:
                        rnn_state.append((m, m.dropout))
                        m.dropout = 0.0
                        m.train(True)
            # no_grad rather than inference_mode: tensors made here may later need gradients
            # (e.g. embeddings an attack starts from), which inference tensors refuse.
            ctx = torch.enable_grad() if grad else torch.no_grad()
            with ctx:
                yield
        finally:
            for m, dropout in rnn_state:
                m.dropout = dropout
                m.train(False)
            self._session_depth -= 1
            if outer:
                for m, mode in modes:
                    m.training = mode
                for p, flag in flags:
                    p.requires_grad_(flag)

    def _want_rnn_fix(self) -> bool:
        if self.rnn_backward_fix == "auto":
            return self.device.type == "cuda"
        return bool(self.rnn_backward_fix)

    def features(self, x: Any, *, batch_size: Optional[int] = None, progress: Optional[bool] = None) -> torch.Tensor:
        """Penultimate features (the input of the classifier head), batched, CPU float ``N×D``."""
        x = self.check_inputs(x)

        def run(sl: slice) -> torch.Tensor:
            chunk = x[sl].to(self.device)
            with self.capture(role="features") as cap:
                self.forward(chunk.float() if chunk.dtype.is_floating_point else chunk)
            return cap.input.flatten(1).float().cpu()

        with self.session(grad=False):
            parts = self.batched(run, x.shape[0], batch_size=batch_size, desc="features", progress=progress,
                                 shape=x.shape[1:])
        return torch.cat(parts)

    # ------------------------------------------------------------------ description
    def describe(self) -> dict:
        """JSON-able facts about the model for model cards and summaries."""
        params = sum(p.numel() for p in self.model.parameters())
        layers = [f"{n}: {type(m).__name__}" for n, m in self.model.named_modules() if n and not list(m.children())]
        def safe(fn):
            try:
                return fn()[0]
            except Exception:  # noqa: BLE001 - a missing layer is reported as None in a description
                return None
        return {
            "architecture": type(self.model).__name__,
            "parameters": int(params),
            "input_kind": self.input_kind,
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "binary": bool(getattr(self, "binary", False)),
            "task": getattr(self, "task", None),
            "device": str(self.device),
            "precision": self.precision or "fp32",
            "mean": None if self._mean is None else [float(v) for v in self._mean.cpu()],
            "std": None if self._std is None else [float(v) for v in self._std.cpu()],
            "target_layer": safe(self.target_layer),
            "embedding_layer": safe(self.embedding_layer) if self.input_kind == "tokens" else None,
            "feature_layer": safe(self.feature_layer),
            "leaf_layers": len(layers),
            "layers": layers[:200],
        }


def _eval_mode(model: nn.Module) -> None:
    """``model.eval()``; programs from ``torch.export`` refuse it (their mode was fixed at export), so
    there only the ``training`` flags are cleared."""
    try:
        model.eval()
    except NotImplementedError:
        for m in model.modules():
            m.training = False


def check_materialised(model: nn.Module) -> None:
    """Refuse a model whose weights are on the ``meta`` device (shapes only, no values)."""
    empty = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if empty:
        shown = ", ".join(empty[:3]) + (f" and {len(empty) - 3} more" if len(empty) > 3 else "")
        raise UnsupportedModelError(
            f"the model has no weights materialised: {len(empty)} parameter(s)/buffer(s) are on the 'meta' device "
            f"({shown}); load the weights first, e.g. model.to_empty(device='cpu') then "
            "model.load_state_dict(torch.load(path, weights_only=True)), or load_state_dict(..., assign=True)")
