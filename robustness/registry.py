"""Explicit maps from short names to attacks, corruptions and OOD detectors.

Adding a method = one module + one line here; the CLI and the report list these names.
"""

from __future__ import annotations

from .attacks.apgd import APGD
from .attacks.fgsm import FGSM
from .attacks.hotflip import HotFlip
from .attacks.pgd import PGD
from .corruptions import IMAGE_CORRUPTIONS, SERIES_CORRUPTIONS, TOKEN_CORRUPTIONS
from .ood import DETECTORS

ATTACKS = {"fgsm": FGSM, "pgd": PGD, "apgd": APGD, "hotflip": HotFlip}

CORRUPTIONS = {"image": IMAGE_CORRUPTIONS, "tokens": TOKEN_CORRUPTIONS, "series": SERIES_CORRUPTIONS}

DEFAULT_CORRUPTIONS = {
    "image": ["gaussian_noise", "shot_noise", "gaussian_blur", "brightness", "contrast", "jpeg", "pixelate"],
    "tokens": ["token_drop", "token_swap", "token_mask"],
    "series": ["noise", "scaling", "time_shift", "dropout"],
}

__all__ = ["ATTACKS", "CORRUPTIONS", "DEFAULT_CORRUPTIONS", "DETECTORS"]
