"""The explicit map from short method names to explainer functions.

The CLI's ``--method`` choices, the notebook widget's dropdown and the contract tests are all
generated from :data:`EXPLAINERS`. Adding a method = one module in ``explain/methods`` + one line here.
"""

from __future__ import annotations

from typing import Any, Callable, Dict

from .attribution import Attribution
from .errors import UnknownMethodError
from .methods.gradcam import gradcam
from .methods.integrated_gradients import integrated_gradients
from .methods.kernel_shap import shap
from .methods.lime import lime
from .methods.occlusion import occlusion
from .methods.saliency import saliency, smoothgrad

__all__ = ["EXPLAINERS", "get_explainer", "available_explainers", "run_explainer"]

#: name → function(model, x, target=None, **params) -> Attribution
EXPLAINERS: Dict[str, Callable[..., Attribution]] = {
    "gradcam": gradcam,
    "occlusion": occlusion,
    "lime": lime,
    "shap": shap,
    "integrated_gradients": integrated_gradients,
    "saliency": saliency,
    "smoothgrad": smoothgrad,
}


def available_explainers() -> list[str]:
    """Registered explainer names, in registration order."""
    return list(EXPLAINERS)


def get_explainer(name: str) -> Callable[..., Attribution]:
    """The explainer function registered as ``name``.

    Raises:
        UnknownMethodError: listing the registered names.
    """
    try:
        return EXPLAINERS[name]
    except KeyError:
        raise UnknownMethodError(f"unknown explanation method {name!r}; available: {', '.join(EXPLAINERS)}") from None


def run_explainer(name: str, model: Any, x: Any, target: Any = None, **params: Any) -> Attribution:
    """Run the explainer called ``name``: ``run_explainer("gradcam", m, x)``."""
    return get_explainer(name)(model, x, target, **params)
