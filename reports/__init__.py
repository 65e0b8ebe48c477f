"""xaiscope's reporting layer: report tree, figures, HTML, summary JSON, CLI and notebook display.

Example:
    >>> rep = reports.build_report(m, (x, y), out="reports-out/run1")   # doctest: +SKIP
    >>> rep.failed                                                      # any configured check failed?
"""

from .build import SCHEMA_VERSION, Report, build_report

__all__ = ["build_report", "Report", "SCHEMA_VERSION"]
