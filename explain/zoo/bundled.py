"""Real data sets that installed packages ship inside their wheels (the ``demo`` extra)."""
