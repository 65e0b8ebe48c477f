"""Plumbing the metrics share: re-running an explainer, the features and baseline a method used,
and SSIM between maps."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional, Tuple, Union

import torch
import torch.nn.functional as F

from ..attribution import Attribution
from ..errors import InputShapeError
from ..methods import _features as feat
from ..model import ModelWrapper
from ..registry import get_explainer

Method = Union[str, Callable[..., Attribution]]

#: Parameter values an ``Attribution`` records only as a description; they cannot be passed back.
_NOT_REPLAYABLE = ("tensor", "custom", "pad_id")


def explainer_of(method: Method) -> Tuple[str, Callable[..., Attribution]]:
    """(name, function) for a registry name or an explainer function."""
    if callable(method):
        return getattr(method, "__name__", "custom"), method
    return str(method), get_explainer(str(method))


def replay_params(fn: Callable[..., Attribution], attribution: Optional[Attribution], params: Optional[dict]) -> dict:
    """Keyword arguments to recompute an explanation: ``params`` if given, else those recorded on
    ``attribution`` that ``fn`` accepts (descriptive entries such as ``"tensor"`` are dropped)."""
    if params is not None:
        return dict(params)
    if attribution is None:
        return {}
    try:
        accepted = set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return {}
    out = {}
    for k, v in attribution.params.items():
        if k in accepted and k not in ("model", "x", "target") and not (isinstance(v, str) and v in _NOT_REPLAYABLE):
            if k == "background" and not isinstance(v, torch.Tensor):
                continue
            out[k] = v
    return out


def flat_map(values: torch.Tensor) -> torch.Tensor:
    """``N×H×W`` / ``N×T`` maps → ``N×D`` float."""
    return values.reshape(values.shape[0], -1).float()


def method_groups(wrapper: ModelWrapper, x: torch.Tensor, method: str, params: dict,
                  features: Any = "auto", cell: Optional[int] = None) -> torch.Tensor:
    """The features (``N×H×W`` / ``N×T`` ids) a faithfulness curve removes together.

    ``"auto"``: the method's own features when it has them — LIME's and SHAP's superpixels (tokens,
    time windows), occlusion's stride-sized cells — otherwise a grid (images: cells of ``cell``
    pixels, default ``max(1, min(H, W) // 8)``), one feature per token, or time windows of ``T // 16``.
    ``"pixels"``: every pixel / time step alone. A tensor: a user grouping.
    """
    kind = wrapper.input_kind
    xc = x.detach().cpu()
    if isinstance(features, torch.Tensor) or features not in ("auto", "pixels"):
        return feat.feature_groups(kind, xc, features, n_segments=int(params.get("n_segments", 50)))
    n = xc.shape[0]
    if features == "pixels":
        if kind == "image":
            return feat.image_groups(xc, "grid", cell=1)
        return feat.sequence_groups(n, xc.shape[1], 1)
    if method in ("lime", "shap") and params.get("algorithm", "kernel") == "kernel":
        f = params.get("features")
        f = None if isinstance(f, str) and f in _NOT_REPLAYABLE else f
        return feat.feature_groups(kind, xc, f, n_segments=int(params.get("n_segments", 50)),
                                   window=params.get("window"))
    stride = params.get("stride") if method == "occlusion" else None
    stride = [stride] if isinstance(stride, int) else stride
    if kind == "image":
        h, w = xc.shape[2:]
        if stride:
            cell = cell or int(min(stride))
        return feat.image_groups(xc, "grid", cell=cell or max(1, min(h, w) // 8))
    if kind == "tokens":
        return feat.sequence_groups(n, xc.shape[1], 1)
    if stride:
        return feat.sequence_groups(n, xc.shape[1], int(stride[0]))
    return feat.sequence_groups(n, xc.shape[1], max(1, xc.shape[1] // 16))


def method_baseline(wrapper: ModelWrapper, xd: torch.Tensor, method: str, params: dict,
                    groups: torch.Tensor, baseline: Any = None) -> torch.Tensor:
    """What a removed feature becomes, shaped like ``xd`` (device).

    Default = the judged method's own baseline: LIME and SHAP replace a superpixel by its mean
    colour; occlusion and integrated gradients by their recorded constant (0 by default); methods
    without a baseline (Grad-CAM, saliency) by 0. Tokens always become the pad id; series 0.
    """
    kind = wrapper.input_kind
    if baseline is not None:
        b = torch.as_tensor(baseline, device=xd.device)
        if kind == "tokens":
            return b.to(xd.dtype).expand_as(xd).clone()
        try:
            return b.to(xd.dtype).expand_as(xd).clone()
        except RuntimeError:
            raise InputShapeError(f"baseline: expected a scalar or a tensor broadcastable to {tuple(xd.shape)}, "
                                  f"got {tuple(b.shape)}") from None
    if kind == "tokens":
        return torch.full_like(xd, wrapper.pad_id)
    if method in ("lime", "shap") and kind == "image":
        return feat.segment_means(xd, groups.to(xd.device))
    value = params.get("baseline", 0.0)
    value = float(value) if isinstance(value, (int, float)) else 0.0
    return torch.full_like(xd, value)


def _uniform(x: torch.Tensor, win: int) -> torch.Tensor:
    """Mean over a ``win``-wide window (2-D for ``N×H×W``, 1-D for ``N×T``), valid region only."""
    if x.dim() == 3:
        return F.avg_pool2d(x[:, None], win, stride=1)[:, 0]
    return F.avg_pool1d(x[:, None], win, stride=1)[:, 0]


def ssim(a: torch.Tensor, b: torch.Tensor, win_size: int = 7) -> torch.Tensor:
    """Structural similarity of each map pair, as ``skimage.metrics.structural_similarity`` computes
    it (uniform ``win_size`` window, sample covariance, ``K1 = 0.01``, ``K2 = 0.03``, mean over the
    valid region) with ``data_range`` the joint range of the pair. Maps are first scaled to [0, 1]
    each (as Adebayo et al. do), so the sign convention and scale of a method do not matter.

    Shape: ``N×H×W`` or ``N×T`` (both alike) → ``N``.
    """
    a, b = _unit(a.double()), _unit(b.double())
    win = max(1, min(win_size, *a.shape[1:]))
    win = win if win % 2 == 1 else win - 1
    n_px = win ** (a.dim() - 1)
    cov_norm = n_px / max(n_px - 1, 1)
    ux, uy = _uniform(a, win), _uniform(b, win)
    vx = cov_norm * (_uniform(a * a, win) - ux * ux)
    vy = cov_norm * (_uniform(b * b, win) - uy * uy)
    vxy = cov_norm * (_uniform(a * b, win) - ux * uy)
    c1, c2 = 0.01 ** 2, 0.03 ** 2  # data_range is 1 after scaling to [0, 1]
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1).float()


def _unit(m: torch.Tensor) -> torch.Tensor:
    flat = m.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    scale = (hi - lo).clamp_min(1e-12)
    return ((flat - lo[:, None]) / scale[:, None]).view_as(m)
