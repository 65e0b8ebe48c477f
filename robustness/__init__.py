"""xaiscope's robustness layer: attacks, corruptions, out-of-distribution detection and bounds."""

__all__: list = []
