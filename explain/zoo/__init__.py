"""Reference models and data: small classifiers for the three input kinds, planted-signal sets
whose cause is known, and loaders for real data sets that installed packages ship.

Used by the test suite, the benchmarks and ``xaiscope demo``; handy for trying xaiscope out.
"""

from .models import BiLSTMClassifier, Conv1dNet, GRUClassifier, SmallCNN, TinyTransformer
from .planted import PlantedSet, planted_images, planted_series, planted_tokens
from .train import train_classifier

__all__ = [
    "SmallCNN", "BiLSTMClassifier", "TinyTransformer", "Conv1dNet", "GRUClassifier",
    "PlantedSet", "planted_images", "planted_tokens", "planted_series", "train_classifier",
]
