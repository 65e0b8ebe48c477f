"""How a section says it adapted to a small data set, or why it was skipped.

A section that changes a setting because too few samples were kept (a smaller ``k``, fewer gallery
rows) lists each change in ``summary["adapted"]`` and shows it as a note; a section that cannot run
at all returns :func:`skipped`, whose ``summary["skipped"]`` is the reason in words.
"""

from __future__ import annotations

from typing import List

from ..report import Section, Text


def adapted(summary: dict, blocks: List, text: str) -> None:
    """Record one adaptation to few samples in ``summary["adapted"]`` and as a note in ``blocks``."""
    summary.setdefault("adapted", []).append(text)
    blocks.append(Text(f"Adapted to the small data set: {text}.", kind="note"))


def skipped(section_id: str, title: str, reason: str, summary: dict = None) -> Section:
    """A section that did not run, with the reason (``summary["skipped"]``) shown as a warning."""
    return Section(section_id, title, blocks=[Text(f"Skipped: {reason}.", kind="warning")],
                   summary={**(summary or {}), "skipped": reason})
