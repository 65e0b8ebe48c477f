"""What each model format allows: hooks on TorchScript, exported programs and black-box graphs.

Layer-based methods (Grad-CAM and the other CAM methods, gradient methods and attacks on token
embeddings, feature-based OOD detectors) read or replace a layer's output with a forward hook.

* TorchScript modules refuse hooks (``torch.jit`` has no ``register_forward_hook``);
* ``torch.export`` programs loaded with :func:`explain.load_model` are *unflattened*, so their layers
  run as sub-modules and take hooks; their classes are gone (every layer is an ``InterpreterModule``),
  so automatic layer choice reads the original class names recorded at export time;
* a flat ``ExportedProgram.module()`` has every layer inlined: hooks on its sub-modules never fire;
* ONNX graphs run by onnxruntime are black boxes: no layers, no gradients.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from .errors import LayerNotFoundError

_HOOKED = ("Grad-CAM and the other CAM methods, gradient methods and embedding attacks on token models, "
           "and the feature-based OOD detectors (mahalanobis, knn, vim)")


def unhookable_reason(model: nn.Module) -> Optional[str]:
    """Why layers of ``model`` cannot be hooked, or ``None`` when they can."""
    black_box = getattr(model, "xaiscope_black_box", None)
    if isinstance(black_box, str):
        return black_box
    if isinstance(model, torch.jit.ScriptModule):
        return ("a TorchScript module cannot be hooked (torch.jit refuses forward hooks), so methods that read "
                f"or replace a layer do not run on it: {_HOOKED}. Occlusion, LIME, KernelSHAP, gradient methods "
                "and attacks on images and series, corruptions and output-based OOD detectors work. For the "
                "others, load the original module: explain.load_model(weights, factory='pkg.module:build')")
    if isinstance(model, torch.fx.GraphModule) and hasattr(model, "_guards_fn") \
            and not any(node.op == "call_module" and node.target != "_guards_fn" for node in model.graph.nodes):
        return ("this torch.export program is flat (ExportedProgram.module() inlines every layer), so hooks on "
                f"its layers never fire and methods that read a layer cannot run: {_HOOKED}. Load the .pt2 file "
                "with explain.load_model(path), which unflattens it, or pass torch.export.unflatten(program)")
    return None


# Automatic choices by original class name, for unflattened torch.export programs.
_BY_ROLE = {
    ("target", "image"): (("Conv2d",), "last"),
    ("target", "series"): (("LSTM", "GRU", "RNN", "TransformerEncoderLayer", "Conv1d"), "last"),
    ("target", "tokens"): (("Embedding",), "first"),
    ("embedding", None): (("Embedding",), "first"),
    ("features", None): (("Linear",), "last"),
}


def exported_auto_layer(model: nn.Module, role: str, input_kind: str) -> Optional[Tuple[str, nn.Module]]:
    """The automatic layer of an unflattened ``torch.export`` program, or ``None`` for other models.

    ``model.xaiscope_layer_types`` maps each layer's dotted name to its class name before export.
    """
    types = getattr(model, "xaiscope_layer_types", None)
    if not isinstance(types, dict):
        return None
    wanted, which = _BY_ROLE.get((role, input_kind)) or _BY_ROLE[(role, None)]
    modules = dict(model.named_modules())
    found = [name for name, _ in model.named_modules() if name and types.get(name) in wanted]
    if not found:
        raise LayerNotFoundError(
            f"no {' / '.join(wanted)} layer in this torch.export program (its layers: "
            f"{', '.join(f'{n} ({t})' for n, t in list(types.items())[:12])}); pass the layer name explicitly")
    name = found[-1] if which == "last" else found[0]
    return name, modules[name]


def record_layer_types(program: "torch.export.ExportedProgram", module: nn.Module) -> None:
    """Store each sub-module's original class name (from the export's ``nn_module_stack``) on ``module``."""
    types: dict = {}
    for node in program.graph.nodes:
        stack = node.meta.get("nn_module_stack") or {}
        for _key, (path, cls) in stack.items():
            name = _fqn(path)
            cls_name = cls if isinstance(cls, str) else getattr(cls, "__name__", str(cls))
            if name:
                types.setdefault(name, cls_name.rsplit(".", 1)[-1])
    names = {n for n, _ in module.named_modules()}
    module.xaiscope_layer_types = {n: t for n, t in types.items() if n in names}


def _fqn(path: str) -> str:
    """``L['self'].layer1._modules['0']``-style paths and plain dotted names → ``layer1.0``."""
    import re
    if "L['self']" not in path and "L__self__" not in path:
        return path
    parts = re.findall(r"\.([A-Za-z_]\w*)|\['([^']+)'\]|\[(\d+)\]", path.split("L['self']", 1)[-1])
    out = [a or b or c for a, b, c in parts if (a or b or c) not in ("_modules",)]
    return ".".join(out)
