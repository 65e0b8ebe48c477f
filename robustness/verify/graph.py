"""The bounded graph: the user's model traced with ``torch.fx``, the wrapper's normalisation in front.

Every traced node is either a *constant* (it does not depend on the perturbed input: parameters,
shapes, token ids, masks) or a *variable*. Variables are classified into the few kinds the bound
engine knows: ``affine`` (linear in its variable inputs plus a constant: Linear, Conv, BatchNorm in
eval mode, pooling by averaging, reshapes, additions, concatenation, means, indexing, scaling by a
constant), ``relu``/``leaky_relu``/``tanh``/``sigmoid`` (elementwise) and ``max`` (max pooling and
``amax``). Anything else raises :class:`UnsupportedOperationError` naming the op and the node.

A single-logit model's output ``z`` is followed by the wrapper's expansion to the class scores
``[−z/2, z/2]`` (an affine node), so bounds are on the scores every other method sees.

The graph is rebuilt per batch: the concrete forward pass at the centre of the ball gives every
node's shape and every constant's value.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from explain.errors import UnsupportedModelError

__all__ = ["UnsupportedOperationError", "BNode", "BoundGraph", "trace_graph"]


class UnsupportedOperationError(UnsupportedModelError):
    """The model contains an operation the bound engine cannot bound soundly."""


@dataclass
class BNode:
    """One variable node: ``fn(*inputs)`` on the values of the variable nodes in ``inputs``."""

    name: str
    kind: str                      # input | affine | relu | leaky_relu | tanh | sigmoid | max
    fn: Callable[..., torch.Tensor]
    inputs: List[str]
    shape: tuple                   # per-sample shape
    abs_fn: Optional[Callable[..., torch.Tensor]] = None   # |linear part| applied to radii (IBP)
    params: Dict[str, Any] = field(default_factory=dict)
    where: str = ""


@dataclass
class BoundGraph:
    """Variable nodes in topological order; the last one is the output (``N×K`` logits)."""

    nodes: Dict[str, BNode]
    order: List[str]
    input: str
    output: str
    center: Dict[str, torch.Tensor]          # every variable node's value at the centre of the ball

    def consumers(self) -> Dict[str, List[str]]:
        out: Dict[str, List[str]] = {n: [] for n in self.order}
        for n in self.order:
            for i in self.nodes[n].inputs:
                out[i].append(n)
        return out


_AFFINE_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool1d, nn.AvgPool2d,
                   nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout,
                   nn.Dropout1d, nn.Dropout2d)
_POSITIVE_FUNCS = {torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.squeeze, torch.unsqueeze,
                   torch.cat, torch.concat, torch.mean, torch.sum, operator.getitem, operator.add, torch.add,
                   F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.dropout,
                   torch.stack}
_POSITIVE_METHODS = {"view", "reshape", "flatten", "permute", "transpose", "squeeze", "unsqueeze", "contiguous",
                     "mean", "sum", "add", "__getitem__", "expand", "repeat", "view_as", "reshape_as"}
_SHAPE_METHODS = {"size", "dim", "numel"}
_ELEMENTWISE = {torch.relu: "relu", F.relu: "relu", torch.tanh: "tanh", torch.sigmoid: "sigmoid",
                F.leaky_relu: "leaky_relu", F.tanh: "tanh", F.sigmoid: "sigmoid"}
_ELEMENTWISE_METHODS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid"}
_ELEMENTWISE_MODULES = {nn.ReLU: "relu", nn.LeakyReLU: "leaky_relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}

SUPPORTED = ("Linear, Conv1d/Conv2d, BatchNorm (eval), ReLU/LeakyReLU, Tanh/Sigmoid, avg/max pooling, adaptive "
             "avg pooling, amax, flatten/reshape/permute/transpose/indexing, addition/subtraction, concatenation, "
             "mean/sum, scaling by a constant, the token embedding (as the perturbed input)")


def _describe(node: fx.Node, modules: Dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"{type(modules[node.target]).__name__} module '{node.target}'"
    if node.op == "call_function":
        return f"function {getattr(node.target, '__name__', node.target)}"
    return f"method .{node.target}()"


def _unsupported(node: fx.Node, modules, why: str = "") -> UnsupportedOperationError:
    return UnsupportedOperationError(
        f"cannot bound {_describe(node, modules)} at graph node '{node.name}'{': ' + why if why else ''}; "
        f"supported: {SUPPORTED}. Verification needs every op on the path from the input to the logits to "
        "have a sound relaxation — remove or replace this op, or bound a sub-model")


def trace(model: nn.Module, given: Optional[set] = None) -> fx.GraphModule:
    """``torch.fx.symbolic_trace`` (optional arguments not ``given`` fixed to their defaults), with the
    failure turned into a toolkit error."""
    import inspect

    concrete = {}
    try:
        params = list(inspect.signature(model.forward).parameters.values())[1:]
    except (TypeError, ValueError):
        params = []
    for p in params:
        if p.default is not inspect.Parameter.empty and p.name not in (given or set()):
            concrete[p.name] = p.default
    try:
        return fx.symbolic_trace(model, concrete_args=concrete or None)
    except Exception as error:  # noqa: BLE001 - fx raises many kinds of errors
        raise UnsupportedModelError(
            f"the model could not be traced with torch.fx ({type(error).__name__}: {str(error)[:200]}); output "
            "bounds need a model without data-dependent control flow") from error


def _abs_module(mod: nn.Module) -> Optional[Callable]:
    """|linear part| of an affine module, applied to a non-negative radius."""
    if isinstance(mod, nn.Linear):
        return lambda r: F.linear(r, mod.weight.abs())
    if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
        conv = F.conv1d if isinstance(mod, nn.Conv1d) else F.conv2d
        if mod.padding_mode != "zeros":
            return None
        return lambda r: conv(r, mod.weight.abs(), None, mod.stride, mod.padding, mod.dilation, mod.groups)
    if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
        def bn(r):
            scale = (mod.weight if mod.weight is not None else 1) / torch.sqrt(mod.running_var + mod.eps)
            shape = (1, -1) + (1,) * (r.dim() - 2)
            return r * scale.abs().view(shape)
        return bn
    return None  # positive linear maps: the op itself, without its constant part


def trace_graph(wrapper, x_center: torch.Tensor, extra: Dict[str, Any]) -> BoundGraph:
    """Trace ``wrapper.model`` and classify its nodes for inputs around ``x_center``.

    Args:
        wrapper: the ``ModelWrapper`` (already in an eval session).
        x_center: the centre of the ball, in natural units (images, series) or token ids.
        extra: keyword arguments the model receives (the attention mask of token models).

    Raises:
        UnsupportedModelError: tracing failed or the model has no usable input.
        UnsupportedOperationError: an op on the path from the input to the logits cannot be bounded.
    """
    gm = trace(wrapper.model, set(extra))
    modules = dict(gm.named_modules())
    tokens = wrapper.input_kind == "tokens"
    emb_name = wrapper.embedding_layer()[0] if tokens else None
    env: Dict[str, Any] = {}            # every fx node's concrete value at the centre
    var: Dict[str, str] = {}            # fx node name -> BNode name (variable nodes)
    nodes: Dict[str, BNode] = {}
    order: List[str] = []
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if not placeholders:
        raise UnsupportedModelError("the traced model takes no input")

    def add(node: BNode, value: torch.Tensor) -> None:
        nodes[node.name] = node
        order.append(node.name)
        env_center[node.name] = value

    env_center: Dict[str, torch.Tensor] = {}
    if not tokens:
        add(BNode("input", "input", lambda t: t, [], tuple(x_center.shape[1:])), x_center)
        norm_in = wrapper.normalize(x_center)
        if wrapper.mean is not None or wrapper.std is not None:
            std = wrapper.std
            shape = (1, -1, 1, 1) if wrapper.input_kind == "image" else (1, 1, -1)
            absf = (lambda r: r / std.view(shape)) if std is not None else (lambda r: r)
            add(BNode("normalise", "affine", wrapper.normalize, ["input"], tuple(x_center.shape[1:]), absf,
                      {"op": "normalise"}, where="the wrapper's normalisation"), norm_in)
            first = "normalise"
        else:
            first = "input"
        env[placeholders[0].name] = norm_in
        var[placeholders[0].name] = first
    else:
        env[placeholders[0].name] = x_center
    for ph in placeholders[1:]:
        if ph.name in extra or ph.target in extra:
            env[ph.name] = extra.get(ph.target, extra.get(ph.name))
        elif ph.args:
            env[ph.name] = ph.args[0]
        else:
            env[ph.name] = None

    out_node = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            continue
        if node.op == "output":
            out_node = node
            break
        args = fx.node.map_arg(node.args, lambda n: env[n.name])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n.name])
        if node.op == "get_attr":
            obj = gm
            for part in node.target.split("."):
                obj = getattr(obj, part)
            env[node.name] = obj
            continue
        if node.op == "call_module":
            value = modules[node.target](*args, **kwargs)
        elif node.op == "call_function":
            value = node.target(*args, **kwargs)
        else:
            value = getattr(args[0], node.target)(*args[1:], **kwargs)
        env[node.name] = value
        if tokens and node.op == "call_module" and node.target == emb_name:
            var[node.name] = node.name
            add(BNode(node.name, "input", lambda t: t, [], tuple(value.shape[1:]), where=node.target), value)
            continue
        deps = [n.name for n in node.all_input_nodes if n.name in var]
        if not deps:
            continue  # a constant
        if not isinstance(value, torch.Tensor):
            if node.op == "call_method" and node.target in _SHAPE_METHODS:
                continue
            if node.op == "call_function" and node.target is getattr:
                continue
            raise _unsupported(node, modules, "it returns a non-tensor computed from the input")
        bnode = _classify(node, modules, var, deps, value, env)
        if node.op != "call_module":
            bnode.params.setdefault("op", node.target)
        var[node.name] = node.name
        add(bnode, value)
    if out_node is None:
        raise UnsupportedModelError("the traced model has no output")
    result = out_node.args[0]
    if isinstance(result, (tuple, list)):
        sel = wrapper.output if isinstance(wrapper.output, int) else 0
        result = result[sel]
    elif isinstance(result, dict):
        key = wrapper.output if isinstance(wrapper.output, str) else "logits"
        result = result[key]
    if not isinstance(result, fx.Node) or result.name not in var:
        raise UnsupportedModelError("the logits do not depend on the input in the traced graph "
                                    "(or the output selector is not a plain index or key)")
    out_name = var[result.name]
    scores = wrapper.class_scores(env_center[out_name])
    if scores is not env_center[out_name]:  # a single logit z → [−z/2, z/2] (or a multi-label task's column)
        add(BNode("wrapper_class_scores", "affine", wrapper.class_scores, [out_name], tuple(scores.shape[1:]),
                  lambda r: wrapper.class_scores(r).abs(), {"op": "class_scores"},
                  where="the wrapper's class scores of a single logit"), scores)
        out_name = "wrapper_class_scores"
    return BoundGraph(nodes, order, order[0], out_name, env_center)


def _classify(node: fx.Node, modules, var: Dict[str, str], deps: List[str], value: torch.Tensor,
              env: Dict[str, Any]) -> BNode:
    """A ``BNode`` for an fx node that depends on the input, or an error."""
    inputs = [var[d] for d in deps]
    shape = tuple(value.shape[1:])

    def call(*tensors):
        sub = dict(zip(deps, tensors))
        a = fx.node.map_arg(node.args, lambda n: sub[n.name] if n.name in sub else env[n.name])
        k = fx.node.map_arg(node.kwargs, lambda n: sub[n.name] if n.name in sub else env[n.name])
        if node.op == "call_module":
            return modules[node.target](*a, **k)
        if node.op == "call_function":
            return node.target(*a, **k)
        return getattr(a[0], node.target)(*a[1:], **k)

    where = node.target if node.op == "call_module" else node.name
    mk = lambda kind, absf=None, **p: BNode(node.name, kind, call, inputs, shape, absf, p, str(where))  # noqa: E731
    if node.op == "call_module":
        mod = modules[node.target]
        for cls, kind in _ELEMENTWISE_MODULES.items():
            if isinstance(mod, cls):
                return mk(kind, slope=float(getattr(mod, "negative_slope", 0.0)))
        if isinstance(mod, (nn.MaxPool1d, nn.MaxPool2d)):
            if mod.ceil_mode or mod.return_indices:
                raise _unsupported(node, modules, "ceil_mode / return_indices are not supported")
            return mk("max", pool=mod)
        if isinstance(mod, _AFFINE_MODULES):
            if isinstance(mod, (nn.Conv1d, nn.Conv2d)) and mod.padding_mode != "zeros":
                raise _unsupported(node, modules, f"padding_mode={mod.padding_mode!r}")
            if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)) and (mod.training or mod.running_var is None):
                raise _unsupported(node, modules, "batch norm must be in eval mode with running statistics")
            return mk("affine", _abs_module(mod), module=mod)
        raise _unsupported(node, modules)
    if node.op == "call_function":
        t = node.target
        if t in _ELEMENTWISE:
            kind = _ELEMENTWISE[t]
            slope = float(node.kwargs.get("negative_slope", node.args[1] if len(node.args) > 1 else 0.01)) \
                if kind == "leaky_relu" else 0.0
            return mk(kind, slope=slope)
        if t in (F.max_pool1d, F.max_pool2d):
            raise _unsupported(node, modules, "use nn.MaxPool1d/2d modules for max pooling")
        if t is torch.amax:
            return mk("max", dims=_dims(node), keepdim=bool(node.kwargs.get("keepdim", False)))
        if t in (F.linear, F.conv1d, F.conv2d):
            if len(deps) != 1 or node.args[0].name != deps[0]:
                raise _unsupported(node, modules, "weights that depend on the input make the op bilinear")
            return mk("affine", _abs_functional(node, deps, env))
        if t in _POSITIVE_FUNCS:
            if "alpha" in node.kwargs:
                raise _unsupported(node, modules, "scaled addition (alpha=)")
            return mk("affine")
        if t in (operator.sub, torch.sub, operator.neg, torch.neg):
            return mk("affine", lambda *r: sum(r))
        if t in (operator.mul, torch.mul, operator.truediv, torch.div):
            return _scaled(node, modules, deps, mk, env)
        raise _unsupported(node, modules)
    name = node.target
    if name in _ELEMENTWISE_METHODS:
        return mk(_ELEMENTWISE_METHODS[name], slope=0.0)
    if name == "amax":
        return mk("max", dims=_dims(node), keepdim=bool(node.kwargs.get("keepdim", False)))
    if name in _POSITIVE_METHODS:
        if "alpha" in node.kwargs:
            raise _unsupported(node, modules, "scaled addition (alpha=)")
        return mk("affine")
    if name in ("sub", "neg", "__sub__", "__neg__"):
        return mk("affine", lambda *r: sum(r))
    if name in ("mul", "div", "__mul__", "__truediv__"):
        return _scaled(node, modules, deps, mk, env)
    raise _unsupported(node, modules)


def _dims(node: fx.Node):
    d = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    if d is None:
        return None
    return tuple(d) if isinstance(d, (tuple, list)) else (int(d),)


def _abs_functional(node: fx.Node, deps, env):
    t = node.target
    kw = {k: v for k, v in node.kwargs.items() if k not in ("weight", "bias")}

    def f(r):
        w = env[node.args[1].name] if isinstance(node.args[1], fx.Node) else node.args[1]
        if t is F.linear:
            return F.linear(r, w.abs())
        rest = [env[a.name] if isinstance(a, fx.Node) else a for a in node.args[3:]]
        return t(r, w.abs(), None, *rest, **kw)
    return f


def _scaled(node: fx.Node, modules, deps, mk, env) -> BNode:
    """``x * c`` or ``x / c`` with a constant ``c``; products of two input-dependent tensors are bilinear."""
    n_var = sum(1 for a in node.args if isinstance(a, fx.Node) and a.name in deps)
    if len(deps) != 1 or n_var != 1:
        raise _unsupported(node, modules, "a product of two input-dependent tensors is not linear")
    first = node.args[0]
    div = node.target in (operator.truediv, torch.div) or node.target in ("div", "__truediv__")
    if div and not (isinstance(first, fx.Node) and first.name == deps[0]):
        raise _unsupported(node, modules, "division by an input-dependent tensor")
    other = node.args[1] if isinstance(first, fx.Node) and first.name == deps[0] else first

    def absf(r):
        c = env[other.name] if isinstance(other, fx.Node) else other
        c = torch.as_tensor(c, dtype=r.dtype, device=r.device).abs()
        return r / c if div else r * c
    return mk("affine", absf)
