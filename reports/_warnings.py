"""Warnings as one readable line each, and the warnings a report raised while it was built.

The CLI shows every warning as ``xaiscope: warning: <message>`` (no file, line number or source
line); ``build_report`` records the warnings raised while it runs (each distinct message once) so
the report lists them in its model card and in ``summary.json``, while they still reach the
terminal or the notebook as before.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from typing import Iterator, List


def one_line(message, category) -> str:
    """``"<message>"`` on one line (whitespace runs folded); the category only when it is not a plain warning."""
    text = " ".join(str(message).split())
    if category is not None and category not in (UserWarning, RuntimeWarning) and issubclass(category, Warning):
        text = f"{text} ({category.__name__})"
    return text


def show_one_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A ``warnings.showwarning`` that prints ``xaiscope: warning: <message>`` to stderr."""
    stream = file if file is not None else sys.stderr
    if stream is None:
        return
    try:
        stream.write(f"xaiscope: warning: {one_line(message, category)}\n")
    except OSError:  # a closed stderr must not turn a warning into a crash
        pass


@contextlib.contextmanager
def collect_warnings() -> Iterator[List[str]]:
    """Record the warnings raised inside the block (each distinct message once, in order) and
    still pass each to the current ``warnings.showwarning``.

    The warning filters are kept (an ``"ignore"`` filter still hides a warning, ``"error"`` still
    raises it); entering the block forgets which warnings were already shown, so one shown for an
    earlier report is recorded again for this one.
    """
    seen: List[str] = []
    with warnings.catch_warnings():
        previous = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            text = one_line(message, category)
            if text not in seen:
                seen.append(text)
            previous(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield seen
