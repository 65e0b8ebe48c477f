"""Layer access for ``ModelWrapper``: finding layers by role and hooking them inside ``with`` blocks."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Tuple, Union

import torch
from torch import nn

from . import _layers
from .errors import UnsupportedModelError


@dataclass
class Capture:
    """What a :meth:`ModelWrapper.capture` block recorded: the layer's output (and input)."""

    name: str
    module: nn.Module
    output: Optional[torch.Tensor] = None
    input: Optional[torch.Tensor] = None
    _extra: dict = field(default_factory=dict)


def compiled_original(model: nn.Module) -> Optional[nn.Module]:
    """The eager module inside a ``torch.compile`` wrapper, or ``None`` when ``model`` is not compiled."""
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")  # loaded whenever torch.compile was called
    compiled = getattr(eval_frame, "OptimizedModule", None)
    if compiled is not None and isinstance(model, compiled) and isinstance(getattr(model, "_orig_mod", None), nn.Module):
        return model._orig_mod
    return None


class LayerAccess:
    """Mixin: the layers methods need, and hooks that are always removed.

    A ``torch.compile`` model runs its compiled graph, which does not call hooks added after it was
    compiled; inside :meth:`capture` (and the target-layer probe) the wrapper therefore runs the
    eager module the compiled one wraps (``_orig_mod``: the same layers and weights).
    """

    model: nn.Module
    input_kind: str
    device: torch.device
    _names: dict

    @contextlib.contextmanager
    def eager(self) -> Iterator[None]:
        """Inside the block, ``self.model`` is the eager module when the model is ``torch.compile``'d."""
        compiled = self.model
        original = compiled_original(compiled)
        if original is None:
            yield
            return
        self.model = original
        try:
            yield
        finally:
            self.model = compiled

    # ------------------------------------------------------------------ layers
    def _layer(self, role: str, name: Optional[str], x: Optional[torch.Tensor] = None) -> Tuple[str, nn.Module]:
        name = name or self._names[role]
        if name:
            return name, _layers.get_layer(self.model, name)
        if role == "target":
            probed = self._probe_target(x) if x is not None and self.input_kind == "image" else None
            return probed or _layers.auto_target_layer(self.model, self.input_kind)
        if role == "embedding":
            return _layers.auto_embedding_layer(self.model)
        return _layers.auto_feature_layer(self.model)

    def target_layer(self, name: Optional[str] = None, x: Optional[torch.Tensor] = None) -> Tuple[str, nn.Module]:
        """``(name, module)`` of the CAM layer: ``name`` if given, else the wrapper's choice.

        With a device batch ``x`` of a CNN, the automatic choice is the last ``Conv2d`` whose output
        is at least 4×4 at that input size (one probe forward pass on one sample, cached per input
        shape); without ``x``, or on a Vision Transformer, it follows the model's structure alone
        (see ``explain._layers.auto_target_layer``).
        """
        return self._layer("target", name, x)

    def _probe_target(self, x: torch.Tensor) -> Optional[Tuple[str, nn.Module]]:
        if _layers.vit_target_layer(self.model) is not None:
            return None
        # The cache holds layer *names*, resolved on the current model each time, so a copy of the
        # wrapper around a copied model (e.g. for model randomisation) hooks its own modules.
        cache = self.__dict__.setdefault("_probed_layers", {})
        key = tuple(x.shape[1:])
        if key not in cache:
            with self.eager(), self.session(grad=False):
                found = _layers.probe_conv_layer(self.model, lambda: self.forward(x[:1]))  # type: ignore[attr-defined]
            cache[key] = None if found is None else found[0]
        name = cache[key]
        return None if name is None else (name, _layers.get_layer(self.model, name))

    def embedding_layer(self, name: Optional[str] = None) -> Tuple[str, nn.Module]:
        """``(name, module)`` of the token embedding."""
        return self._layer("embedding", name)

    def feature_layer(self, name: Optional[str] = None) -> Tuple[str, nn.Module]:
        """``(name, module)`` of the classifier head; its input is the penultimate feature vector."""
        return self._layer("features", name)

    @contextlib.contextmanager
    def capture(self, layer: Union[str, Tuple[str, nn.Module], None] = None, *, role: str = "target",
                replace: Optional[torch.Tensor] = None, grad: bool = False) -> Iterator[Capture]:
        """Record a layer's input and output during forward passes inside the block.

        Args:
            layer: a dotted name, a ``(name, module)`` pair, or ``None`` for the wrapper's choice for ``role``.
            role: ``"target"``, ``"embedding"`` or ``"features"`` (used when ``layer`` is ``None``).
            replace: if given, the layer's output is replaced by this tensor (e.g. perturbed embeddings).
            grad: make the captured output a tensor gradients can be taken against, even when
                nothing upstream requires grad (frozen parameters, integer token ids).

        The hook is removed when the block exits, also on error. On a ``torch.compile`` model the
        forward passes inside the block run the eager module, so the hook fires.
        """
        with self.eager():
            name, module = layer if isinstance(layer, tuple) else self._layer(role, layer)
            with self._hooked(name, module, replace, grad) as cap:
                yield cap

    @contextlib.contextmanager
    def _hooked(self, name: str, module: nn.Module, replace: Optional[torch.Tensor], grad: bool) -> Iterator[Capture]:
        cap = Capture(name=name, module=module)

        def hook(_mod: nn.Module, inputs: tuple, output: Any) -> Any:
            cap.input = inputs[0] if inputs else None
            if replace is not None:
                cap.output = replace
                return replace
            first = output[0] if isinstance(output, (tuple, list)) else output
            if grad and isinstance(first, torch.Tensor) and not first.requires_grad:
                first = first.detach().requires_grad_(True)
                cap.output = first
                if isinstance(output, tuple):
                    return (first,) + tuple(output[1:])
                if isinstance(output, list):
                    return [first] + list(output[1:])
                return first
            cap.output = first
            return None

        handle = module.register_forward_hook(hook)
        try:
            yield cap
        finally:
            handle.remove()

    def activation_map(self, cap: Capture, length: Optional[int] = None) -> torch.Tensor:
        """The captured output as ``N×C×(spatial)``: conv maps as they are, sequences as ``N×D×T``."""
        if cap.output is None:
            raise UnsupportedModelError(f"layer {cap.name!r} did not run during the forward pass; choose another layer=")
        return _layers.to_channels_first(cap.output, cap.module, length)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Embeddings ``N×T×D`` of token ids (on the device), as the model's embedding layer computes them."""
        _, emb = self.embedding_layer()
        return emb(ids.to(self.device))

    def forward_embedded(self, ids: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """Logits when the embedding layer outputs ``embeddings`` instead of embedding ``ids``.

        ``ids`` still drive everything outside the embedding (e.g. the attention mask).
        """
        with self.capture(role="embedding", replace=embeddings):
            return self.forward(ids)

