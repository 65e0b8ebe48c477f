"""Certified output bounds (IBP, CROWN, α-CROWN) and verification with counterexamples.

Example:
    >>> lo, hi = robustness.output_bounds(m, x, eps=1/255, method="crown")     # doctest: +SKIP
    >>> v = robustness.verify(m, x, y, eps=1/255)                              # doctest: +SKIP
    >>> v.counts                                     # {'verified': …, 'violated': …, 'unknown': …}
"""

from .bounds import METHODS, output_bounds
from .graph import UnsupportedOperationError
from .decide import certified_accuracy, verify
from .results import CertifiedAccuracyResult, OutputBounds, VerificationResult

__all__ = ["output_bounds", "verify", "certified_accuracy", "METHODS", "UnsupportedOperationError", "OutputBounds", "VerificationResult",
           "CertifiedAccuracyResult"]
