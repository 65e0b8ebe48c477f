"""Bound propagation on a :class:`BoundGraph`: IBP forward, CROWN backward, α-CROWN.

IBP (Gowal et al., 2018, https://arxiv.org/abs/1810.12715) pushes boxes forward: an affine op maps
centre and radius (``|W|·r``), monotone ops map the end points.

CROWN (Zhang et al., 2018, https://arxiv.org/abs/1811.00866) bounds ``A·y`` for a node ``y`` by
walking the graph backwards: affine ops transpose ``A`` (a vector-Jacobian product, batched over the
spec rows with ``torch.func.vmap``), non-linear ops replace ``y`` by the relaxation line that is
sound for the sign of each coefficient, and the input box concretises the result. Bounds of every
input of a non-linear op come from the same backward pass started at that node (with an identity
spec, chunked so at most ``max_memory`` bytes of ``A`` live at once), intersected with IBP's.

α-CROWN (Xu et al., 2021, https://arxiv.org/abs/2011.13824) treats the lower slopes of unstable
ReLUs as parameters, one per spec row, and improves the final bounds by projected gradient steps
(Adam); every iterate is a sound bound, so the best one per row is kept.

Math: for ``y = A·x`` over the box ``[lo, hi]``: ``min = A⁺·lo + A⁻·hi``. Upper bounds are the
negated lower bounds of ``−A``, so one backward pass serves both.
"""

from __future__ import annotations

import operator
from typing import Dict, Optional, Tuple

import torch
from torch import nn
from torch.func import vjp, vmap

from explain import run_in_chunks

from .graph import BoundGraph
from .packing import plan_packs
from .relax import elementwise, max_relaxation, max_windows

__all__ = ["ibp", "crown_node", "crown_spec", "intermediate_bounds"]

Bounds = Dict[str, Tuple[torch.Tensor, torch.Tensor]]
_NONLINEAR = ("relu", "leaky_relu", "tanh", "sigmoid", "max")


def ibp(graph: BoundGraph, lo: torch.Tensor, hi: torch.Tensor, known: Optional[Bounds] = None) -> Bounds:
    """Interval bounds of every node, tightened by ``known`` bounds where given."""
    b: Bounds = {graph.input: (lo, hi)}
    for name in graph.order[1:]:
        node = graph.nodes[name]
        ins = [b[i] for i in node.inputs]
        if node.kind == "affine":
            mids = [(l + u) / 2 for l, u in ins]
            rads = [(u - l) / 2 for l, u in ins]
            c = node.fn(*mids)
            if node.abs_fn is not None:
                r = node.abs_fn(*rads)
            else:
                r = node.fn(*rads) - node.fn(*[torch.zeros_like(t) for t in rads])
            l, u = c - r, c + r
        else:
            l, u = node.fn(ins[0][0]), node.fn(ins[0][1])   # relu, tanh, sigmoid, max are monotone
        if known is not None and name in known:
            l, u = torch.maximum(l, known[name][0]), torch.minimum(u, known[name][1])
        b[name] = (l, u)
    return b


class _Backward:
    """Backward passes over one graph and one input box, with cached Jacobian transposes."""

    def __init__(self, graph: BoundGraph, lo: torch.Tensor, hi: torch.Tensor, bounds: Bounds) -> None:
        self.g, self.lo, self.hi, self.bounds = graph, lo, hi, bounds
        self._vjp: Dict[str, tuple] = {}
        self._max: Dict[str, tuple] = {}
        self.index = {n: i for i, n in enumerate(graph.order)}

    def _affine(self, name: str):
        if name not in self._vjp:
            node = self.g.nodes[name]
            zeros = [torch.zeros_like(self.g.center[i]) for i in node.inputs]
            fast = _transpose(node.params.get("module"), tuple(zeros[0].shape[1:])) or _sum_transpose(node, zeros)
            if fast is not None:
                bias = node.fn(*zeros).detach()
            else:
                bias, fn = vjp(node.fn, *zeros)
                bias, fast = bias.detach(), vmap(fn)
            self._vjp[name] = (None if not bool(bias.any()) else bias, fast)
        return self._vjp[name]

    def _max_relax(self, name: str):
        if name not in self._max:
            node = self.g.nodes[name]
            l, u = self.bounds[node.inputs[0]]
            gfun, dom, umax = max_relaxation(l, u, node.params, node.shape)
            n, d = l.shape[0], l[0].numel()
            ids = torch.arange(1, d + 1, dtype=torch.float64, device=l.device).view(1, *l.shape[1:]).expand_as(l)
            chosen = gfun(ids).round().long().reshape(n, -1) - 1            # flat input index per output; −1: padding
            chosen = torch.where(chosen < 0, d, chosen)

            def transpose(a: torch.Tensor) -> tuple:
                s = a.shape[0]
                out = torch.zeros(s, n, d + 1, dtype=a.dtype, device=a.device)
                out.scatter_add_(2, chosen.unsqueeze(0).expand(s, -1, -1), a.reshape(s, n, -1))
                return (out[..., :d].reshape(s, *l.shape),)
            self._max[name] = (transpose, dom, umax)
        return self._max[name]

    def lower(self, target: str, a0: torch.Tensor, alphas: Optional[Dict[str, torch.Tensor]] = None,
              labels: Optional[Dict[str, torch.Tensor]] = None, m: int = 0) -> torch.Tensor:
        """Lower bounds ``S×N`` of ``a0·y`` (``a0``: ``S×N×shape``) for the node ``y = target``.

        With ``labels`` (per visited node, ``S×positions`` slot indices in ``[0, m]``; see
        :mod:`.packing`) each spec row carries ``m`` neurons with disjoint receptive fields and the
        result is ``S×N×m``, one bound per neuron.
        """
        s, n = a0.shape[:2]
        acc: Dict[str, torch.Tensor] = {target: a0}
        if labels is None:
            const = torch.zeros(s, n, dtype=a0.dtype, device=a0.device)

            def dot(where, a, b):
                return (a * b).reshape(s, n, -1).sum(-1)
        else:
            const = torch.zeros(s, n, m, dtype=a0.dtype, device=a0.device)

            def dot(where, a, b):
                v = (a * b).sum(2).reshape(s, n, -1)                  # channels summed: S×N×(H·W)
                idx = labels[where].unsqueeze(1).expand(s, n, -1)
                out = torch.zeros(s, n, m + 1, dtype=v.dtype, device=v.device)
                return out.scatter_add_(2, idx, v)[..., :m]
        for name in reversed(self.g.order[: self.index[target] + 1]):
            a = acc.pop(name, None)
            if a is None:
                continue
            node = self.g.nodes[name]
            if node.kind == "input":
                ap, an = a.clamp(min=0), a.clamp(max=0)
                return const + dot(name, ap, self.lo) + dot(name, an, self.hi)
            if node.kind == "affine":
                bias, fn = self._affine(name)
                if bias is not None:
                    const = const + dot(name, a, bias)
                outs = fn(a)
                for i, g in zip(node.inputs, outs):
                    acc[i] = acc[i] + g if i in acc else g
                continue
            src = node.inputs[0]
            ap, an = a.clamp(min=0), a.clamp(max=0)
            if node.kind == "max":
                fn, dom, umax = self._max_relax(name)
                const = const + dot(name, an, torch.where(dom, 0.0, umax))
                new = fn(ap + an * dom)[0]
            else:
                l, u = self.bounds[src]
                alpha = None if alphas is None else alphas.get(name)
                al, bl, au, bu = elementwise(node.kind, l, u, node.params.get("slope", 0.0), alpha)
                if node.kind not in ("relu", "leaky_relu"):   # ReLU lower lines pass through 0
                    const = const + dot(name, ap, bl)
                const = const + dot(name, an, bu)
                new = ap * al + an * au
            acc[src] = acc[src] + new if src in acc else new
        raise RuntimeError("the backward pass never reached the input")  # pragma: no cover


_ADD = {operator.add, torch.add, "add", "__add__"}


def _sum_transpose(node, zeros):
    """``A ↦ (A, A, …)`` for an addition whose every input enters once, unscaled and unbroadcast (checked by
    evaluating it); ``None`` otherwise."""
    if node.params.get("op") not in _ADD or any(tuple(z.shape[1:]) != node.shape for z in zeros):
        return None
    base = node.fn(*zeros)
    for i in range(len(zeros)):
        probe = [torch.ones_like(z) if j == i else z for j, z in enumerate(zeros)]
        if not torch.equal(node.fn(*probe) - base, torch.ones_like(base)):
            return None
    return lambda a: tuple(a for _ in zeros)


def _transpose(mod, in_shape: tuple):
    """``A ↦ A·J`` for a module applied per sample, on ``S×N×out`` with the rows folded into the batch
    (much faster than ``vmap`` over a vector-Jacobian product for convolutions)."""
    if isinstance(mod, nn.Linear):
        return lambda a: (a @ mod.weight,)
    if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
        grad = torch.nn.grad.conv1d_input if isinstance(mod, nn.Conv1d) else torch.nn.grad.conv2d_input

        def conv_t(a):
            s, n = a.shape[:2]
            flat = a.reshape(s * n, *a.shape[2:])
            out = grad((s * n, *in_shape), mod.weight, flat, mod.stride, mod.padding, mod.dilation, mod.groups)
            return (out.view(s, n, *in_shape),)
        return conv_t
    if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
        def bn_t(a):
            scale = (mod.weight if mod.weight is not None else 1) / torch.sqrt(mod.running_var + mod.eps)
            return (a * scale.view((1, 1, -1) + (1,) * (a.dim() - 3)),)
        return bn_t
    if isinstance(mod, (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d)):
        return lambda a: (a,)
    if isinstance(mod, nn.Flatten):
        return lambda a: (a.reshape(*a.shape[:2], *in_shape),)
    return None


# Coefficient bytes per backward chunk beyond which a CPU slows down (caches): measured on the
# reference CNN, 8 MB chunks run 3× faster than 1 GB ones (benchmarks/RESULTS.md).
_CHUNK_BYTES = 2 ** 23


def _rows(graph: BoundGraph, name: str, n: int, max_memory: int) -> int:
    """Spec rows per backward chunk: within ``max_memory`` (≈ 6 live copies of the coefficients) and,
    on a CPU, within :data:`_CHUNK_BYTES` per copy."""
    biggest = max(t[0].numel() for t in graph.center.values())
    rows = max_memory // (4 * 6 * n * biggest)
    if graph.center[name].device.type == "cpu":
        rows = min(rows, _CHUNK_BYTES // (4 * n * biggest))
    return max(1, int(rows))


def crown_node(bw: _Backward, name: str, max_memory: int, rows: Optional[torch.Tensor] = None,
               progress: Optional[bool] = False, pack: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """CROWN bounds of the elements ``rows`` (flat indices; default all) of node ``name``, as
    ``(lower, upper)`` shaped ``N×len(rows)``.

    Each row is an identity spec row; rows whose receptive fields are disjoint share a backward pass
    (see :mod:`.packing`; ``pack=False`` turns that off), and the passes run in chunks so that at most
    ``max_memory`` bytes of coefficients live at once.
    """
    center = bw.g.center[name]
    n, d = center.shape[0], center[0].numel()
    rows = torch.arange(d, device=center.device) if rows is None else rows
    step = max(1, _rows(bw.g, name, n, max_memory) // 2)
    low_out = torch.empty(n, len(rows), dtype=center.dtype, device=center.device)
    up_out = torch.empty_like(low_out)
    plan = plan_packs(bw.g, name, rows) if pack and len(rows) > 1 else None
    if plan is None:
        def run(sl: slice):
            idx = rows[sl]
            r = len(idx)
            eye = torch.zeros(r, n, d, dtype=center.dtype, device=center.device)
            eye[torch.arange(r), :, idx] = 1.0
            eye = eye.view(r, n, *center.shape[1:])
            low = bw.lower(name, torch.cat([eye, -eye]))
            low_out[:, sl] = low[:r].t()
            up_out[:, sl] = -low[r:].t()
        run_in_chunks(run, len(rows), step, desc=f"CROWN {name}", progress=progress, unit="neuron")
        return low_out, up_out
    position = torch.full((d,), -1, dtype=torch.long, device=center.device)
    position[rows] = torch.arange(len(rows), device=center.device)
    phases = torch.tensor(plan.phases, device=center.device)

    def run_packs(sl: slice):
        packs, slots = plan.packs[sl], plan.slots[sl]
        r = len(packs)
        sizes = torch.tensor([len(p) for p in packs], device=center.device)
        which = torch.repeat_interleave(torch.arange(r, device=center.device), sizes)
        flat, slot = torch.cat(packs), torch.cat(slots)
        a0 = torch.zeros(r, n, d, dtype=center.dtype, device=center.device)
        a0[which, :, flat] = 1.0
        a0 = a0.view(r, n, *center.shape[1:])
        lab = {k: torch.cat([v[phases[sl]]] * 2) for k, v in plan.labels.items()}
        low = bw.lower(name, torch.cat([a0, -a0]), labels=lab, m=plan.m)     # 2r × N × m
        pos = position[flat]
        low_out[:, pos] = low[which, :, slot].t()
        up_out[:, pos] = -low[r + which, :, slot].t()
    run_in_chunks(run_packs, len(plan.packs), step, desc=f"CROWN {name}", progress=progress, unit="pass")
    return low_out, up_out


def _needed_rows(graph: BoundGraph, src: str, l: torch.Tensor, u: torch.Tensor) -> Optional[torch.Tensor]:
    """Flat indices of the elements of ``src`` whose bounds can change the relaxation of one of its
    non-linear users (``None``: all). ReLUs: the unstable ones (stable ReLUs are exact for any bounds).
    Max: the elements whose upper bound reaches their window's best lower bound (the others can neither
    win the window nor raise its upper bound, however tight their own bounds get)."""
    n = l.shape[0]
    need = torch.zeros(n, l[0].numel(), dtype=torch.bool, device=l.device)
    for node in (graph.nodes[c] for c in graph.consumers()[src]):
        if node.kind in ("relu", "leaky_relu"):
            need |= ((l < 0) & (u > 0)).reshape(n, -1)
        elif node.kind == "max":
            ids = torch.arange(l[0].numel(), device=l.device, dtype=l.dtype).view(1, *l.shape[1:])
            win_id = max_windows(ids, node.params, node.shape, -1.0).long()[0]          # M×R
            wl = max_windows(l, node.params, node.shape, float("-inf"))
            wu = max_windows(u, node.params, node.shape, float("-inf"))
            cand = (wu >= wl.max(-1, keepdim=True).values) & (win_id >= 0)
            flat_ids = win_id.clamp(min=0).reshape(1, -1).expand(n, -1)
            hits = torch.zeros(need.shape, dtype=torch.int32, device=l.device)
            need |= hits.scatter_add(1, flat_ids, cand.reshape(n, -1).to(torch.int32)) > 0
        elif node.kind in _NONLINEAR:
            return None
    return need.any(0).nonzero().flatten()


def intermediate_bounds(graph: BoundGraph, lo: torch.Tensor, hi: torch.Tensor, method: str,
                        max_memory: int, progress: Optional[bool] = False, pack: bool = True
                        ) -> Tuple[Bounds, _Backward]:
    """Bounds of every input of a non-linear node: IBP (``method="ibp"``, CROWN-IBP), or CROWN ∩ IBP.

    CROWN is run only for the elements whose bounds can change a relaxation (see
    :func:`_needed_rows`); the others keep their IBP bounds, which the relaxations of their users
    treat exactly.
    """
    box = ibp(graph, lo, hi)
    bounds: Bounds = {graph.input: (lo, hi)}
    bw = _Backward(graph, lo, hi, bounds)
    for name in graph.order:
        node = graph.nodes[name]
        if node.kind not in _NONLINEAR or node.inputs[0] in bounds:
            continue
        src = node.inputs[0]
        l, u = box[src]
        if method == "ibp":
            bounds[src] = (l, u)
            continue
        n = l.shape[0]
        rows = _needed_rows(graph, src, l, u)
        l, u = l.reshape(n, -1).clone(), u.reshape(n, -1).clone()
        if rows is None or len(rows):
            cl, cu = crown_node(bw, src, max_memory, rows, progress, pack)
            sel = slice(None) if rows is None else rows
            l[:, sel] = torch.maximum(l[:, sel], cl)
            u[:, sel] = torch.minimum(u[:, sel], cu)
        shape = box[src][0].shape
        bounds[src] = (l.reshape(shape), u.reshape(shape))
        # later nodes' IBP boxes improve with the tighter bounds
        box = ibp(graph, lo, hi, known=bounds)
    return bounds, bw


def crown_spec(bw: _Backward, spec: torch.Tensor, alpha_steps: int = 0, lr: float = 0.1) -> Tuple[torch.Tensor, torch.Tensor]:
    """Lower and upper bounds ``N×S`` of ``spec·logits`` (``spec``: ``S×N×K``); α-CROWN when ``alpha_steps > 0``."""
    s = spec.shape[0]
    a0 = torch.cat([spec, -spec])
    with torch.no_grad():
        low = bw.lower(bw.g.output, a0)
    best = low
    relus = [n for n in bw.g.order if bw.g.nodes[n].kind in ("relu", "leaky_relu")]
    if alpha_steps > 0 and relus:
        alphas = {}
        for name in relus:
            l, u = bw.bounds[bw.g.nodes[name].inputs[0]]
            slope = bw.g.nodes[name].params.get("slope", 0.0)
            init = torch.where(u >= -l, 1.0, slope).expand(2 * s, *l.shape).clone()
            alphas[name] = init.requires_grad_(True)
        opt = torch.optim.Adam(list(alphas.values()), lr=lr)
        with torch.enable_grad():
            for _ in range(alpha_steps):
                opt.zero_grad()
                low = bw.lower(bw.g.output, a0, alphas)
                best = torch.maximum(best, low.detach())
                (-low.sum()).backward()
                opt.step()
                with torch.no_grad():
                    for name in relus:
                        alphas[name].clamp_(bw.g.nodes[name].params.get("slope", 0.0), 1.0)
            with torch.no_grad():
                best = torch.maximum(best, bw.lower(bw.g.output, a0, alphas))
    return best[:s].t(), (-best[s:]).t()
