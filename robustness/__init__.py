"""xaiscope's robustness layer: adversarial attacks, corruptions and out-of-distribution detection.

Example:
    >>> r = robustness.attack(m, x, y, method="pgd", eps=8/255, steps=10, seed=0)          # doctest: +SKIP
    >>> c = robustness.robust_accuracy(m, (x, y), eps=[0, 2/255, 8/255], method="pgd")      # doctest: +SKIP
    >>> k = robustness.corruption_accuracy(m, (x, y), corruptions=["gaussian_noise"])       # doctest: +SKIP
    >>> d = robustness.ood_detector("energy").fit(m, (x, y)); d.score(x_new)                # doctest: +SKIP
"""

from .attacks._base import embedding_scale
from .attacks.apgd import APGD
from .attacks.fgsm import FGSM
from .attacks.hotflip import HotFlip
from .attacks.pgd import PGD
from .evaluate import attack, corruption_accuracy, make_attack, robust_accuracy
from .ood import DETECTORS, evaluate_ood, ood_detector
from .ood_results import OODEvaluation, OODMethodResult
from .results import AttackResult, CorruptionResult, RobustAccuracyResult
from .verify import (CertifiedAccuracyResult, OutputBounds, UnsupportedOperationError, VerificationResult,
                     certified_accuracy, output_bounds, verify)

__all__ = [
    "attack", "robust_accuracy", "corruption_accuracy", "make_attack", "ood_detector", "evaluate_ood", "DETECTORS",
    "OODEvaluation", "OODMethodResult",
    "FGSM", "PGD", "APGD", "HotFlip",
    "AttackResult", "RobustAccuracyResult", "CorruptionResult", "embedding_scale",
    "output_bounds", "verify", "certified_accuracy", "OutputBounds", "VerificationResult", "CertifiedAccuracyResult",
    "UnsupportedOperationError",
]
