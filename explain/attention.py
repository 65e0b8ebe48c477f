"""Attention maps of Transformer models: every layer and head, and attention rollout.

What they mean, and what they do not: an attention weight says how much a query token *mixed in*
the value of a key token at one layer. It is not an attribution — it ignores the values, the
residual stream, the MLPs and the head, and it is never checked against the model's output.
Rollout (Abnar & Zuidema, 2020, https://arxiv.org/abs/2005.00928) follows the mixing through the
layers, still without the model's weights on values. Use attention maps to see *where the model
looks*; use the gradient and perturbation methods (Grad-CAM, integrated gradients, occlusion) to
ask *what changed the score*, and compare the two in the report.

Supported: ``nn.MultiheadAttention`` (also inside ``nn.TransformerEncoder``), Hugging Face
models (``output_attentions``; the eager attention implementation is switched on for the call and
switched back) and timm ViTs (``fused_attn`` switched off for the call; the weights are read
after the softmax). The model is left exactly as it was.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ._patches import token_grid
from .attribution import jsonable
from .errors import InputShapeError, UnsupportedModelError
from .methods._common import Timer, begin

__all__ = ["AttentionMaps", "attention", "attention_backend"]


@dataclass(frozen=True)
class AttentionMaps:
    """Per-layer, per-head attention weights of a batch, with rollout and per-token maps.

    Attributes:
        weights: ``N×L×H×T×T`` CPU float: sample, layer, head, query, key. Rows sum to 1 (over
            unmasked keys). The sample axis comes first, as in :class:`Attribution`.
        layers: the attention modules' dotted names (Hugging Face: ``"layer 0"``, ...), one per ``L``.
        input_kind: ``"image"``, ``"tokens"`` or ``"series"``.
        prefix_tokens: class/register tokens before the content tokens (images; 0 if none).
        grid: ``(h, w)`` patch grid of an image model, else ``None``.
        input_size: ``(H, W)`` of the images, or ``(T,)``.
        query: the row read for per-token maps: a token index (the class token) or ``"mean"``
            (the average over the real queries).
        mask: ``N×T`` bool, True = a real token (token models: ``ids != pad_id``), else ``None``.
        backend: ``"torch"``, ``"timm"`` or ``"transformers"``.
        seconds: wall time.
    """

    weights: torch.Tensor
    layers: List[str]
    input_kind: str
    prefix_tokens: int = 0
    grid: Optional[Tuple[int, int]] = None
    input_size: Tuple[int, ...] = ()
    query: Union[int, str] = "mean"
    mask: Optional[torch.Tensor] = None
    backend: str = ""
    seconds: float = 0.0
    params: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.weights.shape[0])

    def _key_mask(self) -> Optional[torch.Tensor]:
        return None if self.mask is None else self.mask.float()

    def rollout(self, discard_ratio: float = 0.0, head_fusion: str = "mean") -> torch.Tensor:
        """Attention rollout ``R = Ã_L ··· Ã_1`` with ``Ã_l = rownorm(fuse_heads(A_l) + I)``.

        Abnar & Zuidema (2020) average the heads and add the identity for the residual connection.
        Padded keys are zeroed before the identity is added (so they receive nothing).

        Args:
            discard_ratio: before adding the identity, zero this fraction of the smallest fused
                weights of each layer (a common denoising variant; the class-token column is kept).
                0 (default) is the published method.
            head_fusion: ``"mean"`` (published), ``"max"`` or ``"min"`` over heads.

        Returns:
            ``N×T×T``: row ``q`` says how much each input token flowed into token ``q`` at the top.

        Raises:
            InputShapeError: ``discard_ratio`` outside [0, 1) or an unknown ``head_fusion``.
        """
        if not 0.0 <= float(discard_ratio) < 1.0:
            raise InputShapeError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
        fuse = {"mean": lambda w: w.mean(2), "max": lambda w: w.amax(2), "min": lambda w: w.amin(2)}
        if head_fusion not in fuse:
            raise InputShapeError(f"head_fusion must be 'mean', 'max' or 'min', got {head_fusion!r}")
        fused = fuse[head_fusion](self.weights.double())  # N×L×T×T
        n, layers, t, _ = fused.shape
        eye = torch.eye(t, dtype=fused.dtype)
        keys = self._key_mask()
        result = eye.expand(n, t, t).clone()
        for layer in range(layers):
            a = fused[:, layer].clone()
            if keys is not None:
                a = a * keys.double()[:, None, :]
            if discard_ratio > 0:
                flat = a.flatten(1)
                keep = torch.zeros_like(flat, dtype=torch.bool)
                if self.prefix_tokens > 0:
                    keep.view(n, t, t)[:, :, 0] = True
                k = int(flat.shape[1] * discard_ratio)
                low = flat.masked_fill(keep, float("inf")).topk(k, dim=1, largest=False).indices
                flat.scatter_(1, low, 0.0)
                a = flat.view(n, t, t)
            a = a + eye
            a = a / a.sum(-1, keepdim=True)
            result = a @ result
        return result.float()

    def _matrices(self, layer: Optional[int], head: Optional[int], discard_ratio: float) -> torch.Tensor:
        if layer is None:
            return self.rollout(discard_ratio)
        w = self.weights[:, layer]
        return w.mean(1) if head is None else w[:, head]

    def scores(self, layer: Optional[int] = None, head: Optional[int] = None,
               discard_ratio: float = 0.0) -> torch.Tensor:
        """Per-token (or per-patch) attention read from the class token, or averaged over queries.

        Args:
            layer: ``None`` for rollout (default), else a layer index (negative counts from the end).
            head: with ``layer``, one head; ``None`` averages the heads.
            discard_ratio: passed to :meth:`rollout`.

        Returns:
            Tokens and series: ``N×T`` (padded tokens 0). Images: ``N×h×w`` over the patch grid,
            class/register tokens dropped. Non-negative; unscaled.
        """
        m = self._matrices(layer, head, discard_ratio)
        keys = self._key_mask()
        if isinstance(self.query, int):
            row = m[:, self.query]
        elif keys is None:
            row = m.mean(1)
        else:
            row = (m * keys[:, :, None]).sum(1) / keys.sum(1, keepdim=True).clamp_min(1)
        if keys is not None:
            row = row * keys
        if self.grid is None:
            return row
        h, w = self.grid
        return row[:, self.prefix_tokens:self.prefix_tokens + h * w].reshape(-1, h, w)

    def image_map(self, layer: Optional[int] = None, head: Optional[int] = None,
                  discard_ratio: float = 0.0) -> torch.Tensor:
        """:meth:`scores` of an image model upsampled (bilinear) to the input: ``N×H×W``.

        Raises:
            InputShapeError: the model is not an image model.
        """
        if self.grid is None:
            raise InputShapeError(f"image_map is for image models; this one takes {self.input_kind} — use scores()")
        s = self.scores(layer, head, discard_ratio)
        return F.interpolate(s[:, None], size=tuple(self.input_size), mode="bilinear", align_corners=False)[:, 0]

    def to_dict(self, include_values: bool = False) -> dict:
        """JSON-able dict; ``weights`` (large: ``N×L×H×T×T``) and the rollout maps only if asked."""
        out = {"method": "attention", "layers": list(self.layers), "shape": list(self.weights.shape),
               "input_kind": self.input_kind, "prefix_tokens": self.prefix_tokens,
               "grid": None if self.grid is None else list(self.grid), "query": self.query,
               "backend": self.backend, "seconds": round(float(self.seconds), 6), "params": jsonable(self.params)}
        if include_values:
            out["weights"] = jsonable(self.weights)
            out["rollout_scores"] = jsonable(self.scores())
        return out


# ---------------------------------------------------------------------- capturing
def _hf_root(model: nn.Module) -> Optional[nn.Module]:
    for _, module in model.named_modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "output_attentions"):
            return module
    return None


def _timm_attentions(model: nn.Module) -> list:
    return [(n, m) for n, m in model.named_modules()
            if isinstance(getattr(m, "fused_attn", None), bool) and isinstance(getattr(m, "attn_drop", None), nn.Module)]


def _mha(model: nn.Module) -> list:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]


def attention_backend(model: nn.Module) -> Optional[str]:
    """``"transformers"``, ``"timm"``, ``"torch"`` (``nn.MultiheadAttention``) or ``None`` if unsupported."""
    if _hf_root(model) is not None:
        return "transformers"
    if _timm_attentions(model):
        return "timm"
    if _mha(model):
        return "torch"
    return None


@contextlib.contextmanager
def _switch_hf(root: nn.Module, records: list) -> Iterator[None]:
    config = root.config
    before_impl = getattr(config, "_attn_implementation", None)
    before_flag = config.output_attentions
    handle = None
    try:
        if before_impl not in (None, "eager"):
            if hasattr(root, "set_attn_implementation"):
                root.set_attn_implementation("eager")
            else:
                config._attn_implementation = "eager"
        config.output_attentions = True

        def hook(_m: nn.Module, _i: Any, out: Any) -> None:
            found = out.get("attentions") if isinstance(out, dict) else getattr(out, "attentions", None)
            if found:
                records.extend((f"layer {i}", a) for i, a in enumerate(found))

        handle = root.register_forward_hook(hook)
        yield
    finally:
        if handle is not None:
            handle.remove()
        config.output_attentions = before_flag
        if before_impl not in (None, "eager"):
            if hasattr(root, "set_attn_implementation"):
                root.set_attn_implementation(before_impl)
            else:
                config._attn_implementation = before_impl


@contextlib.contextmanager
def _switch_timm(modules: list, records: list) -> Iterator[None]:
    flags = [(m, m.fused_attn) for _, m in modules]
    handles = []
    try:
        for name, m in modules:
            m.fused_attn = False
            handles.append(m.attn_drop.register_forward_hook(
                lambda _m, _i, out, name=name: records.append((name, out))))
        yield
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags:
            m.fused_attn = flag


@contextlib.contextmanager
def _switch_torch(modules: list, records: list) -> Iterator[None]:
    """Ask every ``nn.MultiheadAttention`` for per-head weights; torch's fused fast path is off meanwhile."""
    mha = getattr(torch.backends, "mha", None)
    fast = mha.get_fastpath_enabled() if mha is not None else None
    handles = []

    def pre(_m: nn.Module, args: tuple, kwargs: dict) -> Tuple[tuple, dict]:
        args, kwargs = list(args), dict(kwargs)
        for pos, key, value in ((4, "need_weights", True), (6, "average_attn_weights", False)):
            if len(args) > pos:
                args[pos] = value
            else:
                kwargs[key] = value
        return tuple(args), kwargs

    try:
        if mha is not None:
            mha.set_fastpath_enabled(False)
        for name, m in modules:
            handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(m.register_forward_hook(lambda _m, _i, out, name=name: records.append((name, out[1]))))
        yield
    finally:
        for h in handles:
            h.remove()
        if mha is not None:
            mha.set_fastpath_enabled(fast)


def _recording(model: nn.Module, backend: str, records: list):
    if backend == "transformers":
        return _switch_hf(_hf_root(model), records)
    if backend == "timm":
        return _switch_timm(_timm_attentions(model), records)
    return _switch_torch(_mha(model), records)


def _stack(records: list, n: int) -> Tuple[torch.Tensor, List[str]]:
    """Self-attention records (``N×H×T×T`` each) → ``N×L×H×T×T``; cross-attention is left out."""
    kept = [(name, w) for name, w in records
            if isinstance(w, torch.Tensor) and w.dim() == 4 and w.shape[0] == n and w.shape[-1] == w.shape[-2]]
    if not kept:
        raise UnsupportedModelError("the model's attention layers ran but returned no per-head self-attention weights")
    shape = kept[0][1].shape
    if any(w.shape != shape for _, w in kept):
        raise UnsupportedModelError("attention layers differ in heads or tokens "
                                    f"({sorted({tuple(w.shape[1:]) for _, w in kept})}); cannot stack them")
    return torch.stack([w.detach().float().cpu() for _, w in kept], dim=1), [name for name, _ in kept]


def attention(model: Any, x: Any, *, query: Union[str, int] = "auto", batch_size: Optional[int] = None,
              progress: Optional[bool] = None) -> AttentionMaps:
    """Attention weights of every layer and head, for a batch.

    Attention maps are not attributions: they show how tokens mix at each layer, not what moved
    the class score (see the module docstring); compare them with ``explain.gradcam`` or
    ``explain.integrated_gradients``.

    Args:
        model: an ``explain.ModelWrapper`` around a model with ``nn.MultiheadAttention`` layers,
            a Hugging Face Transformer or a timm ViT.
        x: a batch in the wrapper's input kind.
        query: which row gives per-token maps: ``"auto"`` (the class token of image models with
            prefix tokens and of Hugging Face token models, else the mean over real queries),
            ``"mean"``, or a token index.
        batch_size: largest chunk per forward pass (default: the wrapper's).
        progress: show a progress bar (default: only for large jobs on a terminal).

    Returns:
        :class:`AttentionMaps` (``weights`` ``N×L×H×T×T``, ``rollout()``, ``scores()``, ``image_map()``).

    Raises:
        UnsupportedModelError: the model has no attention layers xaiscope can read.

    Shape:
        x: ``N×C×H×W`` / ``N×T`` / ``N×T×C``; ``weights``: ``N×L×H×T×T``.

    Example:
        >>> maps = explain.attention(m, ids)             # doctest: +SKIP
        >>> maps.rollout().shape                          # N×T×T
        >>> maps.scores()                                 # per-token rollout from the class token
    """
    with Timer() as timer:
        wrapper, xd, _ = begin(model, x, None, lazy=True)
        backend = attention_backend(wrapper.model)
        if backend is None:
            raise UnsupportedModelError(
                f"no attention layers found in {type(wrapper.model).__name__}: expected nn.MultiheadAttention, "
                "a Hugging Face Transformer or a timm ViT (modules with fused_attn and attn_drop)")
        records: list = []

        def run(sl: slice) -> Tuple[torch.Tensor, List[str]]:
            records.clear()
            wrapper.forward(xd[sl])
            return _stack(records, xd[sl].shape[0])

        with wrapper.session(grad=False), _recording(wrapper.model, backend, records):
            parts = wrapper.batched(run, xd.shape[0], batch_size=batch_size, desc="attention", progress=progress)
        weights, names = torch.cat([p[0] for p in parts]), parts[0][1]
        tokens = int(weights.shape[-1])
        grid, prefix, mask = None, 0, None
        if wrapper.input_kind == "image":
            size = tuple(int(s) for s in xd.shape[2:])
            prefix, h, w = token_grid(wrapper.model, tokens, size)
            grid = (h, w)
        else:
            size = (int(xd.shape[1]),)
            if wrapper.input_kind == "tokens" and tokens == xd.shape[1]:
                mask = (xd != wrapper.pad_id).cpu()
        if query == "auto":
            query = 0 if (prefix > 0 or (backend == "transformers" and wrapper.input_kind == "tokens")) else "mean"
        elif query != "mean" and not (isinstance(query, int) and -tokens <= query < tokens):
            raise InputShapeError(f"query must be 'auto', 'mean' or a token index below {tokens}, got {query!r}")
    return AttentionMaps(weights=weights, layers=names, input_kind=wrapper.input_kind, prefix_tokens=prefix,
                         grid=grid, input_size=size, query=query, mask=mask, backend=backend,
                         seconds=timer.seconds, params={"query": query})
