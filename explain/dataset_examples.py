"""Dataset examples: the real samples (and token n-grams / time windows) that drive a unit most.

For sequence models this is the honest analogue of feature visualisation — optimised token ids
are not readable — and for image models it shows real images beside the optimised ones.

Example:
    >>> ex = explain.dataset_examples(m, (x, y), channels=[0, 3], k=5, window=5)   # doctest: +SKIP
    >>> ex.indices[0], ex.windows[0]     # the five strongest samples of channel 0 and their 5-step windows
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from .data import collect
from .errors import InputShapeError
from .feature_results import DatasetExamples
from .model import check_wrapper

__all__ = ["dataset_examples", "targets_for"]


def targets_for(values: Sequence[int], limit: Optional[int], what: str) -> torch.Tensor:
    """Unit indices as a ``LongTensor``, checked against ``limit`` when it is known."""
    t = torch.as_tensor(list(values) if not isinstance(values, torch.Tensor) else values, dtype=torch.long).flatten()
    if t.numel() == 0:
        raise InputShapeError(f"{what}: give at least one index")
    if bool((t < 0).any()) or (limit is not None and bool((t >= limit).any())):
        raise InputShapeError(f"{what}: indices must be in [0, {(limit or 0) - 1 if limit else 'channels-1'}], got {t.tolist()}")
    return t


def _scores(wrapper, x: torch.Tensor, targets: torch.Tensor, layer: Optional[str], objective: str):
    """Per sample and unit: the value (``N×K``) and where along the sequence it peaks (``N×K``)."""
    seq = wrapper.input_kind != "image"

    def run(sl: slice):
        chunk = wrapper.prepare(x[sl])
        if objective == "class":
            logits = wrapper.forward(chunk)
            value = logits[:, targets.to(logits.device)]
            return value.cpu(), torch.zeros_like(value, dtype=torch.long).cpu()
        with wrapper.capture(layer) as cap:
            wrapper.forward(chunk)
        act = wrapper.activation_map(cap, chunk.shape[1] if seq else None).float()
        if int(targets.max()) >= act.shape[1]:
            raise InputShapeError(f"channels: layer {cap.name!r} has {act.shape[1]} channels, got {targets.tolist()}")
        act = act[:, targets.to(act.device)].flatten(2)
        peak, where = act.max(dim=2)
        if seq:  # activation positions → input positions (pooling layers shorten the sequence)
            where = ((where.float() + 0.5) * chunk.shape[1] / act.shape[2]).long().clamp(0, chunk.shape[1] - 1)
        return (peak if seq else act.mean(2)).cpu(), where.cpu()

    with wrapper.session(grad=False):
        parts = wrapper.batched(run, len(x), desc="dataset examples")
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def dataset_examples(model: Any, data: Any, *, layer: Optional[str] = None, channels: Optional[Sequence[int]] = None,
                     classes: Optional[Sequence[int]] = None, k: int = 5, window: int = 5) -> DatasetExamples:
    """The ``k`` real samples per channel (or class) with the largest activation (or logit).

    Args:
        model: an ``explain.ModelWrapper``.
        data: ``(inputs, labels)``, a ``Dataset`` or a ``DataLoader`` (labels unused).
        layer: for ``channels``: the layer (default the wrapper's target layer).
        channels, classes: the units (exactly one of the two).
        k: samples per unit. window: width of the token n-gram / time window around each peak.

    Returns:
        ``DatasetExamples``. Channels of sequence models rank samples by their peak over time and
        centre the window on it; classes rank by logit and centre the window on the peak of the
        Grad-CAM map for that class.

    Raises:
        InputShapeError: neither or both of channels/classes, or indices out of range.

    Shape:
        indices, activation: ``K×k``; windows: ``K×k×2`` (sequences) or ``None`` (images).
    """
    wrapper = check_wrapper(model)
    if (channels is None) == (classes is None):
        raise InputShapeError("give exactly one of channels=[...] or classes=[...]")
    x, _ = collect(data)
    wrapper.check_inputs(x, name="data")
    objective = "class" if classes is not None else "channel"
    if objective == "channel":
        layer = wrapper.target_layer(layer)[0]
        targets = targets_for(channels, None, "channels")
    else:
        wrapper.logits(x[:1])
        targets = targets_for(classes, wrapper.num_classes, "classes")
    value, where = _scores(wrapper, x, targets, layer, objective)
    k = min(int(k), len(x))
    top, idx = value.t().topk(k, dim=1)  # K×k
    windows = None
    if wrapper.input_kind != "image":
        peak = where.t().gather(1, idx)
        if objective == "class":
            from .methods.gradcam import gradcam
            cams = gradcam(wrapper, x[idx.flatten()], targets.repeat_interleave(k)).values
            peak = cams.argmax(dim=1).view_as(idx)
        start = (peak - window // 2).clamp_min(0)
        end = (start + window).clamp_max(x.shape[1])
        windows = torch.stack([(end - window).clamp_min(0), end], dim=2)
    return DatasetExamples(targets=targets, objective=objective, indices=idx, activation=top,
                           inputs=x[idx.flatten()].view(*idx.shape, *x.shape[1:]), layer=layer, windows=windows)
