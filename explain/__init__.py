"""xaiscope's explanation layer: the model wrapper, attribution methods and their result type.

Example:
    >>> import explain
    >>> m = explain.ModelWrapper(net, input_kind="image", class_names=names)   # doctest: +SKIP
    >>> a = explain.gradcam(m, x)                                              # doctest: +SKIP
    >>> a.values.shape                                                         # N×H×W
"""

from . import errors
from .attribution import Attribution
from .data import collect, iter_batches
from .loading import load_model
from .methods.gradcam import gradcam
from .methods.integrated_gradients import integrated_gradients
from .methods.kernel_shap import shap
from .methods.lime import lime
from .methods.occlusion import occlusion
from .methods.saliency import saliency, smoothgrad
from .model import ModelWrapper, check_wrapper
from .registry import EXPLAINERS, available_explainers, get_explainer, run_explainer
from . import metrics  # noqa: E402 - after the registry it imports

__version__ = "0.1.0"

__all__ = [
    "ModelWrapper",
    "check_wrapper",
    "Attribution",
    "gradcam",
    "occlusion",
    "lime",
    "shap",
    "integrated_gradients",
    "saliency",
    "smoothgrad",
    "load_model",
    "iter_batches",
    "collect",
    "errors",
    "EXPLAINERS",
    "available_explainers",
    "get_explainer",
    "run_explainer",
    "metrics",
    "__version__",
]
