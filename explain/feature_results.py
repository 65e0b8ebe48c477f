"""Result types of feature visualisation: optimised images and top-activating dataset examples."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from .attribution import jsonable

__all__ = ["FeatureVisualization", "DatasetExamples"]


@dataclass(frozen=True)
class DatasetExamples:
    """The real samples that drive each unit (channel or class) most.

    Attributes:
        targets: the unit per row (``LongTensor K``). objective: ``"channel"`` or ``"class"``.
        indices: ``K×k`` indices into the data, strongest first. activation: ``K×k`` their values
            (a channel's peak over time for sequences or its spatial mean for images; a class's logit).
        windows: ``K×k×2`` ``[start, end)`` positions around the strongest place (tokens and
            series: the n-gram / time window; images: ``None``).
        inputs: ``K×k×…`` the samples themselves (CPU).
    """

    targets: torch.Tensor
    objective: str
    indices: torch.Tensor
    activation: torch.Tensor
    inputs: torch.Tensor
    layer: Optional[str] = None
    windows: Optional[torch.Tensor] = None

    def to_dict(self, include_inputs: bool = False) -> dict:
        out = {"targets": self.targets, "objective": self.objective, "indices": self.indices,
               "activation": self.activation, "layer": self.layer, "windows": self.windows}
        if include_inputs:
            out["inputs"] = self.inputs
        return jsonable(out)


@dataclass(frozen=True)
class FeatureVisualization:
    """What units or classes of a model respond to.

    Attributes:
        images: ``K×C×H×W`` optimised (or dreamt) images in the valid range; ``None`` for sequence
            models, whose optimised inputs would not be readable.
        targets: the channel or class per image (``LongTensor K``; empty for ``deep_dream``).
        objective: ``"channel"``, ``"class"`` or ``"dream"``.
        layer: the layer whose channels were maximised (``None`` for class logits).
        activation: the objective each image reached (``K``; for sequence models the top real sample's).
        start_activation: the objective at the start (random image, or the real image for a dream).
        params: steps, seed, regularisation settings. seconds: wall time.
        examples: top-activating real samples, when data was given.
    """

    images: Optional[torch.Tensor]
    targets: torch.Tensor
    objective: str
    layer: Optional[str]
    activation: torch.Tensor
    start_activation: Optional[torch.Tensor] = None
    params: dict = field(default_factory=dict)
    seconds: float = 0.0
    examples: Optional[DatasetExamples] = None

    def __len__(self) -> int:
        return int(self.activation.shape[0])

    def to_dict(self, include_images: bool = False) -> dict:
        """JSON-able dict (images as nested lists only with ``include_images=True``)."""
        out = {"targets": self.targets, "objective": self.objective, "layer": self.layer,
               "activation": self.activation, "start_activation": self.start_activation,
               "params": self.params, "seconds": round(float(self.seconds), 6),
               "shape": None if self.images is None else list(self.images.shape),
               "examples": None if self.examples is None else self.examples.to_dict()}
        if include_images and self.images is not None:
            out["images"] = self.images
        return jsonable(out)
