"""ONNX files: converted to a torch module with onnx2torch when it imports, else run by onnxruntime.

The onnxruntime path is a black box: forward passes work (perturbation explainers, output-based OOD
detectors, corruptions, accuracy), gradients and layer hooks do not, and methods that need them raise
:class:`~explain.errors.UnsupportedModelError` naming the limitation.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import ModelLoadError, OptionalDependencyError, UnsupportedModelError

log = logging.getLogger(__name__)

_NUMPY = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
          "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_,
          "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}

BLACK_BOX = ("an ONNX model run by onnxruntime is a black box: it has no layers to hook and gives no gradients, so "
             "gradient explainers (saliency, integrated gradients, SHAP's expected gradients), CAM methods, "
             "gradient attacks, ODIN and feature-based OOD detectors (mahalanobis, knn, vim) do not run on it. "
             "Occlusion, LIME, KernelSHAP, corruptions, accuracy and msp/max_logit/energy work. Install "
             "onnx2torch (it needs torchvision) to convert the graph to torch, or load the original module")


class OnnxRuntimeModule(nn.Module):
    """An ONNX graph as a (non-differentiable) ``nn.Module``; inputs by position or by graph input name.

    Attributes:
        input_names: the graph's input names, in order (the first is the main input).
        path: the ONNX file.
    """

    xaiscope_black_box = BLACK_BOX

    def __init__(self, path: str) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError as error:
            raise OptionalDependencyError(
                f"loading {path!r} needs onnxruntime (or onnx2torch): pip install onnxruntime") from error
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, torch.get_num_threads())
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ModelLoadError(f"cannot load ONNX file {path!r}: {str(error).splitlines()[0]}") from error
        inputs = self._session.get_inputs()
        self.path = path
        self.input_names = [i.name for i in inputs]
        self._types = {i.name: _NUMPY.get(i.type, np.float32) for i in inputs}
        self._shapes = {i.name: list(i.shape) for i in inputs}

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        if len(args) > len(self.input_names):
            raise UnsupportedModelError(f"the ONNX graph takes {len(self.input_names)} inputs "
                                        f"({', '.join(self.input_names)}), got {len(args)} positional ones")
        given = dict(zip(self.input_names, args))
        unknown = sorted(set(kwargs) - set(self.input_names))
        if unknown:
            raise UnsupportedModelError(f"the ONNX graph has no input named {', '.join(unknown)}; its inputs are "
                                        f"{', '.join(self.input_names)}")
        given.update(kwargs)
        tensors = [v for v in given.values() if isinstance(v, torch.Tensor)]
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            raise UnsupportedModelError(BLACK_BOX)
        main = tensors[0] if tensors else None
        if "token_type_ids" in self.input_names and "token_type_ids" not in given and main is not None:
            given["token_type_ids"] = torch.zeros_like(main, dtype=torch.long)
        missing = [n for n in self.input_names if n not in given]
        if missing:
            raise UnsupportedModelError(f"the ONNX graph needs inputs {', '.join(missing)} that xaiscope does not "
                                        "give; export the model with the main input (and attention_mask) only")
        feeds = {n: np.ascontiguousarray(v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
                 .astype(self._types[n], copy=False) for n, v in given.items()}
        try:
            out = self._session.run(None, feeds)[0]
        except Exception as error:  # noqa: BLE001 - shape/type mismatches come as onnxruntime exceptions
            shapes = ", ".join(f"{n}: {tuple(v.shape)}" for n, v in feeds.items())
            raise UnsupportedModelError(
                f"the ONNX graph cannot run on inputs {shapes} (it declares "
                f"{', '.join(f'{n}: {s}' for n, s in self._shapes.items())}): {str(error).splitlines()[0][:300]}"
            ) from error
        result = torch.from_numpy(np.array(out))
        return result.to(main.device) if main is not None else result


def load_onnx(path: str, backend: str = "auto") -> nn.Module:
    """An ONNX file as a torch module.

    Args:
        path: the ``.onnx`` file.
        backend: ``"auto"`` (onnx2torch when it imports and converts, else onnxruntime),
            ``"onnx2torch"`` or ``"onnxruntime"``.

    Raises:
        ModelLoadError: the file cannot be read or converted.
        OptionalDependencyError: neither onnx2torch nor onnxruntime is installed (or the asked one).
    """
    if backend not in ("auto", "onnx2torch", "onnxruntime"):
        raise ModelLoadError(f"onnx backend must be 'auto', 'onnx2torch' or 'onnxruntime', got {backend!r}")
    if backend in ("auto", "onnx2torch"):
        try:
            from onnx2torch import convert
        except Exception as error:  # noqa: BLE001 - a broken torchvision raises more than ImportError
            if backend == "onnx2torch":
                raise OptionalDependencyError(
                    f"onnx2torch does not import ({type(error).__name__}: {str(error).splitlines()[0][:200]}); "
                    "pip install onnx2torch torchvision, or use backend='onnxruntime'") from error
        else:
            try:
                return convert(path)
            except Exception as error:  # noqa: BLE001
                if backend == "onnx2torch":
                    raise ModelLoadError(f"onnx2torch cannot convert {path!r}: {str(error).splitlines()[0]}") from error
                log.warning("onnx2torch cannot convert %s (%s); running it with onnxruntime as a black box",
                            path, str(error).splitlines()[0][:200])
    return OnnxRuntimeModule(path)
