"""Grad-CAM for images (over a conv layer), series and tokens (over time steps).

Math: ``L_c = Σ_k α_k^c A^k``, ``α_k^c = mean_{i} ∂y_c / ∂A^k_i`` (Selvaraju et al., 2017,
https://arxiv.org/abs/1610.02391). xaiscope keeps the map signed (no ReLU) so nothing is lost;
figures clip or scale it.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch

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
    reshape: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> Attribution:
    """Grad-CAM maps upsampled to the input's size.

    Args:
        model: an ``explain.ModelWrapper``.
        x: a batch in the wrapper's input kind.
        target: class per sample (int, sequence or tensor); default the predicted class.
        layer: dotted module name; default the wrapper's target layer. CNNs: the last Conv2d whose
            output is at least 4×4 on this input size (found by one cached probe pass). Vision
            Transformers: the last block's pre-attention norm (timm ``blocks[-1].norm1``, Hugging
            Face ``layer[-1].layernorm_before``). Series: the last Conv1d, recurrent or Transformer
            encoder layer. Tokens: the embedding.
        batch_size: largest chunk per forward+backward pass (default: the wrapper's).
        progress: show a progress bar (default: only for large jobs on a terminal).
        reshape: a callable from the layer's output to ``N×C×h×w`` for unusual layouts (default:
            the wrapper's ``cam_reshape``). Without it, ViT token activations ``N×(extra+P)×D``
            lose their class/register tokens and are laid out on the ``h×w`` patch grid.

    Returns:
        An :class:`Attribution`; ``quality["degenerate"]`` is 1.0 for samples whose map is
        near-constant at the layer's resolution (e.g. a 1×1 layer) — a warning is issued too.

    Raises:
        LayerNotFoundError: ``layer`` does not exist, or its output cannot be laid out as a map.
    Shape:
        x: ``N×C×H×W`` / ``N×T`` / ``N×T×C``; ``values``: ``N×H×W`` / ``N×T`` / ``N×T``.

    Example:
        >>> a = explain.gradcam(m, images)            # doctest: +SKIP
        >>> a.values.shape                             # N×H×W, signed
        >>> explain.gradcam(vit, images, layer="blocks.5.norm1")   # doctest: +SKIP
    """
    with Timer() as timer:
        wrapper, xd, t = begin(model, x, target, lazy=True)
        values, t, name, flags = _cam.cam(wrapper, xd, t, feature_size(wrapper, xd), _cam.gradcam_weights,
                                          layer=layer, batch_size=batch_size, progress=progress, reshape=reshape)
    return Attribution(values=values, method="gradcam", target=t, params={}, layer=name, seconds=timer.seconds,
                       quality={"degenerate": flags})
