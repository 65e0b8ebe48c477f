"""xaiscope's explanation layer: the model wrapper, attribution methods and their result type.

Example:
    >>> import explain
    >>> m = explain.ModelWrapper(net, input_kind="image", class_names=names)   # doctest: +SKIP
    >>> a = explain.gradcam(m, x)                                              # doctest: +SKIP
    >>> a.values.shape                                                         # N×H×W
"""

from . import errors
from ._batching import deterministic, deterministic_mode, run_in_chunks
from .attention import AttentionMaps, attention
from .attribution import Attribution
from .data import collect, iter_batches, stream
from .hf import encode_texts, load_hf
from .dataset_examples import dataset_examples
from .feature_results import DatasetExamples, FeatureVisualization
from .feature_vis import deep_dream, feature_visualization
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
    "deterministic",
    "deterministic_mode",
    "run_in_chunks",
    "Attribution",
    "attention",
    "AttentionMaps",
    "gradcam",
    "occlusion",
    "lime",
    "shap",
    "integrated_gradients",
    "saliency",
    "smoothgrad",
    "feature_visualization",
    "deep_dream",
    "dataset_examples",
    "FeatureVisualization",
    "DatasetExamples",
    "load_model",
    "load_hf",
    "encode_texts",
    "iter_batches",
    "collect",
    "stream",
    "errors",
    "EXPLAINERS",
    "available_explainers",
    "get_explainer",
    "run_explainer",
    "metrics",
    "__version__",
]
