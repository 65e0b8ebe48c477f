"""Feature groups for perturbation methods: which pixels, tokens or time steps move together.

A grouping is a ``LongTensor`` shaped like the attribution map (``N×H×W`` or ``N×T``) whose values
``0..F_i−1`` name each sample's features. Images: superpixels (SLIC by default, quickshift) or a
regular grid, or a user segmentation; tokens: one feature per position; series: time windows.

The value ``−1`` marks elements that are not features at all: padding (and the special ids a
wrapper declares, such as ``[CLS]``/``[SEP]``). They are never switched off, never enter a
surrogate fit, and their attribution is exactly 0 — padding provably has no effect on a model that
masks it, so any weight a regression gives it would be noise.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from ..errors import InputShapeError

Features = Union[str, torch.Tensor, np.ndarray, None]

#: SLIC's compactness for the default superpixels (Lab units; scikit-image's default is 10).
SLIC_COMPACTNESS = 100.0

#: Superpixels (SLIC, quickshift) are found on a copy whose longer side is at most this many
#: pixels, and the labels are scaled back up (nearest neighbour) to the input's size. Images up to
#: this size are segmented as they are; on larger ones segmentation costs the same as on a 256 px
#: image (SLIC on a full 4096×4096 image needs gigabytes and minutes).
SEGMENT_MAX_SIDE = 256

#: The most superpixels or grid cells an image gets by default, whatever its size or shape.
MAX_DEFAULT_SEGMENTS = 256


def default_segments(h: int, w: int) -> int:
    """How many superpixels an ``h×w`` image gets by default: cells of side ``max(4, min(h, w) // 8)``.

    About 64 compact segments on most images and fewer on tiny ones (16 on 16×16): small enough
    that an object is not merged with its background, large enough that each segment moves the
    model and the surrogate is fitted from a few hundred samples. The count does not grow with
    the image (64 on 4096×4096 too) and never exceeds :data:`MAX_DEFAULT_SEGMENTS` (long thin
    images would otherwise get thousands).
    """
    side = max(4, min(h, w) // 8)
    return min(MAX_DEFAULT_SEGMENTS, max(1, round(h / side) * round(w / side)))


def _segmentation_copy(x: torch.Tensor) -> torch.Tensor:
    """``1×C×H×W`` → the copy superpixels are found on: itself, or shrunk (area average) so that
    its longer side is :data:`SEGMENT_MAX_SIDE`."""
    h, w = x.shape[2:]
    if max(h, w) <= SEGMENT_MAX_SIDE:
        return x
    scale = SEGMENT_MAX_SIDE / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return torch.nn.functional.interpolate(x.detach().float(), size=size, mode="area")


def _upsample_labels(seg: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``h'×w'`` labels → ``h×w`` (nearest neighbour; every label survives when ``h ≥ h'``, ``w ≥ w'``)."""
    if tuple(seg.shape) == (h, w):
        return seg
    rows = torch.arange(h) * seg.shape[0] // h
    cols = torch.arange(w) * seg.shape[1] // w
    return seg[rows[:, None], cols[None, :]]


def _relabel(seg: torch.Tensor) -> torch.Tensor:
    """Consecutive ids ``0..F−1`` per sample."""
    out = torch.empty_like(seg)
    for i in range(seg.shape[0]):
        _, inv = torch.unique(seg[i], return_inverse=True)
        out[i] = inv.view_as(seg[i])
    return out


def image_groups(x: torch.Tensor, features: Features = "slic", n_segments: Optional[int] = None,
                 cell: Optional[int] = None) -> torch.Tensor:
    """Superpixels or grid cells for ``N×C×H×W`` images in [0, 1]; returns ``N×H×W`` ids.

    The default, ``"slic"``, makes :func:`default_segments` compact, connected superpixels (SLIC with
    compactness :data:`SLIC_COMPACTNESS` in Lab units: nearly square cells that snap to strong
    edges). Loose superpixels (quickshift, low-compactness SLIC) follow colour, and on small or
    smooth images they merge an object with the background around it — the explanation then points
    outside the cause. When SLIC returns fewer than a quarter of the requested segments, a regular
    grid is used instead. Images with a side over :data:`SEGMENT_MAX_SIDE` are segmented on a
    shrunk copy and the labels scaled back up, so memory and time stay bounded on any image size.
    """
    n, c, h, w = x.shape
    if n_segments is None:
        n_segments = default_segments(h, w)
    if isinstance(features, (torch.Tensor, np.ndarray)):
        seg = torch.as_tensor(features).long().cpu()
        if seg.dim() == 2:
            seg = seg.expand(n, h, w)
        if tuple(seg.shape) != (n, h, w):
            raise InputShapeError(f"features: a segmentation must have shape {(n, h, w)} or {(h, w)}, got {tuple(seg.shape)}")
        return _relabel(seg)
    if features == "grid":
        size = cell or max(1, int(round((h * w / n_segments) ** 0.5)))
        rows = torch.arange(h) // size
        cols = torch.arange(w) // size
        grid = rows[:, None] * (int(cols.max()) + 1) + cols[None, :]
        return grid.expand(n, h, w).clone()
    if features not in ("slic", "quickshift"):
        raise InputShapeError(f"features must be 'slic', 'quickshift', 'grid' or a segmentation tensor, got {features!r}")
    from skimage.segmentation import quickshift, slic

    segs = []
    for i in range(n):  # one image at a time: only one (shrunk) float64 copy exists at once
        small = _segmentation_copy(x[i:i + 1].detach().float().cpu())
        img = small[0].permute(1, 2, 0).numpy().astype(np.float64)
        if features == "slic":
            arr = img if c > 1 else img[..., 0]
            axis = -1 if c > 1 else None
            s = slic(arr, n_segments=n_segments, compactness=SLIC_COMPACTNESS, start_label=0, channel_axis=axis)
            if s.max() + 1 < max(2, n_segments // 4):  # degenerate: a regular grid, never a merged object
                s = image_groups(small, "grid", n_segments)[0].numpy()
        else:
            rgb = img if c == 3 else np.repeat(img[..., :1], 3, axis=-1)
            s = quickshift(rgb, kernel_size=4, max_dist=200, ratio=0.2)
        seg = _relabel(torch.from_numpy(np.asarray(s, dtype=np.int64))[None])[0]
        segs.append(_upsample_labels(seg, h, w))
    return torch.stack(segs)


def sequence_groups(n: int, length: int, window: int = 1) -> torch.Tensor:
    """Consecutive windows of ``window`` steps: ``N×T`` ids ``t // window``."""
    if window < 1:
        raise InputShapeError(f"window must be ≥ 1, got {window}")
    return (torch.arange(length) // window).expand(n, length).clone()


def non_feature_ids(wrapper: Any) -> tuple:
    """Token ids that are never features: the wrapper's ``pad_id`` and its ``special_ids`` (if any)."""
    ids = {int(wrapper.pad_id)} | {int(i) for i in (getattr(wrapper, "special_ids", None) or ())}
    return tuple(sorted(ids))


def exclude_ids(groups: torch.Tensor, x: torch.Tensor, ids: Sequence[int]) -> torch.Tensor:
    """Mark positions of ``x`` holding any of ``ids`` as non-features (``−1``); renumber the rest ``0..F_i−1``.

    Shape: groups and x ``N×T`` → ``N×T``.
    """
    if not ids:
        return groups
    off = torch.isin(x.cpu(), torch.tensor(list(ids), dtype=x.dtype))
    out = torch.full_like(groups, -1)
    for i in range(groups.shape[0]):
        keep = ~off[i] & (groups[i] >= 0)
        if bool(keep.any()):
            _, inv = torch.unique(groups[i][keep], return_inverse=True)
            out[i][keep] = inv
    return out


def count_features(groups: torch.Tensor) -> torch.Tensor:
    """``F_i`` per sample (``N`` longs); 0 for a sample without any feature."""
    return groups.reshape(len(groups), -1).amax(1).clamp_min(-1) + 1


def feature_groups(kind: str, x: torch.Tensor, features: Features = None, *, n_segments: Optional[int] = None,
                   window: Optional[int] = None, skip_ids: Sequence[int] = ()) -> torch.Tensor:
    """The grouping for a batch of the given input kind (see module docstring).

    For tokens, positions holding one of ``skip_ids`` (padding, special tokens) become ``−1``.
    """
    if kind == "tokens":
        return exclude_ids(_sequence_groups(kind, x, features, window), x, skip_ids)
    if kind == "image":
        return image_groups(x, "slic" if features is None else features, n_segments=n_segments)
    return _sequence_groups(kind, x, features, window)


def _sequence_groups(kind: str, x: torch.Tensor, features: Features, window: Optional[int]) -> torch.Tensor:
    n, t = x.shape[0], x.shape[1]
    if isinstance(features, (torch.Tensor, np.ndarray)):
        seg = torch.as_tensor(features).long().cpu()
        seg = seg.expand(n, t) if seg.dim() == 1 else seg
        if tuple(seg.shape) != (n, t):
            raise InputShapeError(f"features: a grouping must have shape {(n, t)} or {(t,)}, got {tuple(seg.shape)}")
        return _relabel(seg)
    if features not in (None, "tokens", "windows"):
        raise InputShapeError(f"features for {kind} inputs: None, 'tokens', 'windows' or a tensor, got {features!r}")
    default = 1 if kind == "tokens" else max(1, t // 16)
    return sequence_groups(n, t, window or default)


def expand_to_map(weights: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Per-feature weights ``N×F`` → a map shaped like ``groups`` (each element gets its feature's weight)."""
    n = groups.shape[0]
    flat = groups.reshape(n, -1).to(weights.device)
    if weights.shape[1] == 0:
        return torch.zeros(groups.shape, dtype=weights.dtype, device=weights.device)
    out = weights.gather(1, flat.clamp_min(0))
    return torch.where(flat >= 0, out, torch.zeros_like(out)).reshape(groups.shape)


def segment_means(x: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Each pixel replaced by the mean colour of its feature (superpixel): ``N×C×H×W``."""
    n, c = x.shape[:2]
    g = groups.to(x.device).reshape(n, 1, -1).expand(n, c, -1)
    f = int(groups.max()) + 1
    sums = torch.zeros(n, c, f, device=x.device, dtype=x.dtype).scatter_add_(2, g, x.reshape(n, c, -1))
    counts = torch.zeros(n, 1, f, device=x.device, dtype=x.dtype).scatter_add_(
        2, g[:, :1], torch.ones_like(x[:, :1].reshape(n, 1, -1)))
    return (sums / counts.clamp_min(1)).gather(2, g).reshape(x.shape)


def default_baseline(kind: str, x: torch.Tensor, pad_id: int, groups: Optional[torch.Tensor] = None,
                     keep: Optional[torch.Tensor] = None) -> torch.Tensor:
    """What an 'off' feature becomes: the image's mean colour (images), the pad id (tokens), 0 (series).

    Not the superpixel's own mean colour: a superpixel that hugs an object has the object's colour
    as its mean, so switching it 'off' would change nothing and the object would get no credit.
    Tokens where ``keep`` is true (padding, [CLS]/[SEP]) keep their id when switched off.
    """
    if kind == "image":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    if kind == "tokens":
        base = torch.full_like(x, pad_id)
        return base if keep is None else torch.where(keep.to(x.device), x, base)
    return torch.zeros_like(x)


def as_int(v: Any, name: str, low: int = 1) -> int:
    try:
        iv = int(v)
    except (TypeError, ValueError):
        raise InputShapeError(f"{name} must be an integer, got {v!r}") from None
    if iv < low:
        raise InputShapeError(f"{name} must be ≥ {low}, got {iv}")
    return iv
