"""xaiscope's reporting layer: report tree, figures, HTML, summary JSON, CLI and notebook display.

Example:
    >>> rep = reports.build_report(m, (x, y), out="reports-out/run1")   # doctest: +SKIP
    >>> rep.failed                                                      # any configured check failed?
"""

from .build import SCHEMA_VERSION, Report, build_report
from .history import TrainingHistory, read_history
from .monitor import Monitor
from .monitor_adapters import hf_callback, lightning_callback


def _register_in_notebooks() -> None:
    import sys
    if "IPython" in sys.modules:  # only inside a running IPython; never imports it otherwise
        from .notebook import register
        register()


_register_in_notebooks()

__all__ = ["build_report", "Report", "SCHEMA_VERSION", "Monitor", "read_history", "TrainingHistory",
           "hf_callback", "lightning_callback"]
