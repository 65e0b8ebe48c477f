"""Grad-CAM for images (over a conv layer), series and tokens (over time steps).

Math: ``L_c = Σ_k α_k^c A^k``, ``α_k^c = mean_{i} ∂y_c / ∂A^k_i`` (Selvaraju et al., 2017,
https://arxiv.org/abs/1610.02391). xaiscope keeps the map signed (no ReLU) so nothing is lost;
figures clip or scale it.
"""

from __future__ import annotations

from typing import Any, Optional

from ..attribution import Attribution
from . import _cam
from ._common import Timer, begin, feature_size


def gradcam(
    model: Any,
    x: Any,
    target: Any = None,
    *,
    layer: Optional[str] = None,
    batch_size: Optional[int] = None,
    progress: Optional[bool] = None,
) -> Attribution:
    """Grad-CAM maps upsampled to the input's size.

    Args:
        model: an ``explain.ModelWrapper``.
        x: a batch in the wrapper's input kind.
        target: class per sample (int, sequence or tensor); default the predicted class.
        layer: dotted module name; default the wrapper's target layer (last Conv2d for images; last
            Conv1d, recurrent or Transformer encoder layer for sequences).
        batch_size: largest chunk per forward+backward pass (default: the wrapper's).
        progress: show a progress bar (default: only for large jobs on a terminal).

    Shape:
        x: ``N×C×H×W`` / ``N×T`` / ``N×T×C``; ``values``: ``N×H×W`` / ``N×T`` / ``N×T``.

    Example:
        >>> a = explain.gradcam(m, images)            # doctest: +SKIP
        >>> a.values.shape                             # N×H×W, signed
    """
    with Timer() as timer:
        wrapper, xd, t = begin(model, x, target, lazy=True)
        values, t, name = _cam.cam(wrapper, xd, t, feature_size(wrapper, xd), _cam.gradcam_weights,
                                layer=layer, batch_size=batch_size, progress=progress)
    return Attribution(values=values, method="gradcam", target=t, params={}, layer=name, seconds=timer.seconds)
