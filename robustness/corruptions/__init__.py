"""Common corruptions per input kind; each a pure, seeded, batched function."""

from ._base import Corruption
from .image import IMAGE_CORRUPTIONS
from .sequence import SERIES_CORRUPTIONS, TOKEN_CORRUPTIONS

__all__ = ["Corruption", "IMAGE_CORRUPTIONS", "TOKEN_CORRUPTIONS", "SERIES_CORRUPTIONS"]
