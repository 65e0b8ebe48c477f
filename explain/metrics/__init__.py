"""How far to trust an explanation, measured: sanity checks, faithfulness, stability, localisation
and agreement. Every metric returns a :class:`MetricResult` (per-sample values, the aggregate, the
parameters, seconds, ``to_dict()``), and runs its perturbations batched through the wrapper.

Example:
    >>> q = explain.metrics.randomization(m, x, method="gradcam")          # doctest: +SKIP
    >>> q.verdict                                                          # "passes" / "fails"
    >>> d = explain.metrics.deletion(m, x, explain.gradcam(m, x))          # doctest: +SKIP
    >>> d.aggregate, d.details["random_auc"].mean(), d.verdict

Label randomisation (Adebayo et al.'s second sanity check) needs retraining the model on shuffled
labels and is out of scope.
"""

from ._result import MetricResult
from .agreement import agreement
from .faithfulness import deletion, deletion_insertion, insertion
from .local_faithfulness import faithfulness_correlation, infidelity
from .localisation import pointing_game, relevance_mass
from .randomization import randomizable_layers, randomization
from .stability import seed_agreement, sensitivity

__all__ = [
    "MetricResult", "randomization", "randomizable_layers", "deletion", "insertion", "deletion_insertion",
    "faithfulness_correlation", "infidelity", "sensitivity", "seed_agreement", "pointing_game",
    "relevance_mass", "agreement",
]
