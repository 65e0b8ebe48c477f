"""Sound linear relaxations of the non-linear ops, given bounds ``l ≤ z ≤ u`` on their input.

Elementwise ops get two lines, ``a_l·z + b_l ≤ f(z) ≤ a_u·z + b_u`` for every ``z`` in ``[l, u]``:

* ReLU / LeakyReLU (slope ``s``): exact when stable; otherwise the chord above and ``α·z`` below with
  ``α ∈ [s, 1]`` (CROWN's adaptive choice ``α = 1`` if ``u ≥ −l`` else ``s``; α-CROWN optimises it).
* tanh / sigmoid (convex for ``z ≤ 0``, concave for ``z ≥ 0``): chord and tangent at the midpoint on
  a one-signed interval; across zero both lines take the smaller end-point slope ``k`` and the
  intercepts ``f(l) − k·l`` (below) and ``f(u) − k·u`` (above), sound because ``f' ≥ k`` on ``[l, u]``.

Max (max pooling, ``amax``): below, ``y ≥ z_j`` for the input ``j`` with the largest lower bound;
above, ``y = z_j`` when ``l_j`` is at least every other input's upper bound in the window, else the
constant ``max u`` — sound, and exact for windows with a certain winner.
"""

from __future__ import annotations

from typing import Callable, Tuple

import torch
import torch.nn.functional as F

__all__ = ["elementwise", "adaptive_slope", "max_windows", "max_relaxation"]

_TINY = 1e-7


def adaptive_slope(l: torch.Tensor, u: torch.Tensor, slope: float) -> torch.Tensor:
    """CROWN's lower slope for unstable (leaky) ReLUs: 1 when ``u ≥ −l``, else the negative slope."""
    return torch.where(u >= -l, torch.ones_like(l), torch.full_like(l, slope))


def _act(kind: str):
    if kind == "tanh":
        return torch.tanh, lambda z: 1 - torch.tanh(z) ** 2
    s = torch.sigmoid
    return s, lambda z: s(z) * (1 - s(z))


def elementwise(kind: str, l: torch.Tensor, u: torch.Tensor, slope: float = 0.0,
                alpha: torch.Tensor = None) -> Tuple[torch.Tensor, ...]:
    """``(a_l, b_l, a_u, b_u)``, each shaped like ``l`` (or like ``alpha`` when it is given).

    Args:
        kind: ``"relu"``, ``"leaky_relu"``, ``"tanh"`` or ``"sigmoid"``.
        l, u: bounds on the input, ``l ≤ u``.
        slope: LeakyReLU's negative slope (0 for ReLU).
        alpha: optional lower slopes of unstable ReLUs (clamped to ``[slope, 1]``).
    """
    if kind in ("relu", "leaky_relu"):
        s = slope if kind == "leaky_relu" else 0.0
        active, inactive = l >= 0, u <= 0
        unstable = ~(active | inactive)
        width = (u - l).clamp_min(_TINY)
        au = torch.where(unstable, (u - s * l) / width, torch.where(active, 1.0, s))
        bu = torch.where(unstable, u - au * u, torch.zeros_like(u))
        al = adaptive_slope(l, u, s) if alpha is None else alpha.clamp(s, 1.0)
        al = torch.where(unstable, al, torch.where(active, 1.0, s))
        bl = torch.zeros_like(al)
        return al, bl, au, bu
    f, df = _act(kind)
    fl, fu = f(l), f(u)
    narrow = (u - l) < 1e-6
    mid = (l + u) / 2
    chord = (fu - fl) / (u - l).clamp_min(_TINY)
    tan_k, tan_b = df(mid), f(mid) - df(mid) * mid
    convex, concave = u <= 0, l >= 0
    k = torch.minimum(df(l), df(u))
    al = torch.where(convex, tan_k, torch.where(concave, chord, k))
    bl = torch.where(convex, tan_b, torch.where(concave, fl - chord * l, fl - k * l))
    au = torch.where(convex, chord, torch.where(concave, tan_k, k))
    bu = torch.where(convex, fl - chord * l, torch.where(concave, tan_b, fu - k * u))
    # nearly degenerate intervals: constants from the monotone end points
    al, au = torch.where(narrow, 0.0, al), torch.where(narrow, 0.0, au)
    bl, bu = torch.where(narrow, fl, bl), torch.where(narrow, fu, bu)
    return al, bl, au, bu


def max_windows(z: torch.Tensor, params: dict, out_shape: tuple, pad_value: float) -> torch.Tensor:
    """The inputs of every max as ``N×M×R`` (``M`` outputs per sample, ``R`` inputs per window)."""
    n = z.shape[0]
    pool = params.get("pool")
    if pool is not None:
        two_d = z.dim() == 4
        zz = z if two_d else z.unsqueeze(2)
        def pair(v, lead):
            if two_d:
                return (v, v) if isinstance(v, int) else tuple(v)
            return (lead, int(v if isinstance(v, int) else v[0]))
        stride = pool.stride if pool.stride else pool.kernel_size
        k, s = pair(pool.kernel_size, 1), pair(stride, 1)
        p, d = pair(pool.padding, 0), pair(pool.dilation, 1)
        zz = F.pad(zz, (p[1], p[1], p[0], p[0]), value=pad_value)
        cols = F.unfold(zz, k, dilation=d, stride=s)                    # N × C·kk × L
        c = zz.shape[1]
        cols = cols.view(n, c, k[0] * k[1], -1).transpose(2, 3)         # N × C × L × kk
        return cols.reshape(n, -1, k[0] * k[1])
    dims = params["dims"]
    if dims is None:
        raise ValueError("amax over every dimension mixes samples")
    dims = sorted(d % z.dim() for d in dims)
    if 0 in dims:
        raise ValueError("amax over the batch dimension mixes samples")
    keep = [i for i in range(z.dim()) if i not in dims]
    zt = z.permute(*keep, *dims)
    r = 1
    for dim in dims:
        r *= z.shape[dim]
    return zt.reshape(n, -1, r)


def max_relaxation(l: torch.Tensor, u: torch.Tensor, params: dict, out_shape: tuple
                   ) -> Tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor, torch.Tensor]:
    """``(g, dom, U)``: ``g(z)`` selects each window's input with the largest lower bound (linear in
    ``z``); ``y ≥ g(z)``; ``y ≤ g(z)`` where ``dom`` holds, else ``y ≤ U``. ``dom``, ``U``: ``N×out``."""
    n = l.shape[0]
    wl = max_windows(l, params, out_shape, float("-inf"))
    wu = max_windows(u, params, out_shape, float("-inf"))
    lmax, j = wl.max(-1)
    umax = wu.max(-1).values
    other = wu.scatter(-1, j.unsqueeze(-1), float("-inf")).max(-1).values
    dom = lmax >= other
    idx = j.unsqueeze(-1)

    def g(z: torch.Tensor) -> torch.Tensor:
        return max_windows(z, params, out_shape, 0.0).gather(-1, idx).squeeze(-1).reshape(n, *out_shape)
    return g, dom.reshape(n, *out_shape), umax.reshape(n, *out_shape)
