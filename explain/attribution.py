"""``Attribution``: the one result type of every explainer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from ._finite import check_finite_values

__all__ = ["Attribution", "jsonable"]


def jsonable(value: Any) -> Any:
    """Tensors, numpy scalars, dicts and sequences → plain JSON data (NaN and ±inf become None)."""
    if isinstance(value, torch.Tensor):
        return jsonable(value.detach().cpu().tolist())
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return None if value != value or value in (float("inf"), float("-inf")) else value
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if hasattr(value, "item") and callable(value.item):
        try:
            return jsonable(value.item())
        except (TypeError, ValueError):
            return str(value)
    return str(value)


@dataclass(frozen=True)
class Attribution:
    """Signed, raw attributions for a batch, with their provenance.

    Attributes:
        values: ``N×H×W`` (images) or ``N×T`` (tokens and series), CPU float. Signed and unscaled:
            positive = evidence for ``target``. Clipping or scaling happens only when drawing.
        method: registry name of the method (``"gradcam"``, ``"occlusion"``, ...).
        target: the explained class per sample (``LongTensor N``).
        params: the method's parameters (window, steps, seed, backend, ...).
        layer: the layer a layer method worked on, else ``None``.
        seconds: wall time of the computation.
        quality: per-sample trust measures, each a float tensor ``N`` (e.g. ``"r2"`` of a LIME
            surrogate, ``"efficiency_gap"`` of SHAP, ``"completeness_gap"`` of integrated gradients).

    Non-finite ``values`` (a NaN/Inf gradient or map from finite logits) raise
    ``NonFiniteOutputError`` naming the samples: no explainer returns one.
    """

    values: torch.Tensor
    method: str
    target: torch.Tensor
    params: dict = field(default_factory=dict)
    layer: Optional[str] = None
    seconds: float = 0.0
    quality: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.values.shape[0] != self.target.shape[0]:
            raise ValueError(f"values has {self.values.shape[0]} samples but target has {self.target.shape[0]}")
        # finite logits can still give NaN/Inf gradients or maps: no explainer returns one as a map
        check_finite_values(self.values, f"the {self.method} attributions")

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def to_dict(self, include_values: bool = True) -> dict:
        """JSON-able dict (values as nested lists unless ``include_values=False``)."""
        out = {
            "method": self.method,
            "target": self.target.tolist(),
            "params": jsonable(self.params),
            "layer": self.layer,
            "seconds": round(float(self.seconds), 6),
            "shape": list(self.values.shape),
            "quality": jsonable(self.quality),
        }
        if include_values:
            out["values"] = jsonable(self.values)
        return out
