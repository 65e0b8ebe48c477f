"""The report's format-neutral tree: a ``Report`` holds ``Section``s, a section holds blocks.

Section builders (``reports/sections/<name>.py``, each exposing ``build(ctx) -> Section``) turn
results into blocks; the HTML renderer and ``summary.json`` read only this tree. A builder that
raises becomes a failure section with the error; the rest of the report still renders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional, Union

import torch

__all__ = ["Figure", "Table", "Text", "Check", "TokenStrips", "Section", "ReportContext", "Block"]


@dataclass
class Figure:
    """A PNG figure. ``name`` becomes ``figures/<section>-<name>.png``."""

    name: str
    png: bytes
    caption: str = ""
    alt: str = ""


@dataclass
class Table:
    """A table; cells are plain values (escaped when rendered)."""

    columns: List[str]
    rows: List[List[Any]]
    caption: str = ""
    sortable: bool = True


@dataclass
class Text:
    """A paragraph of plain text (escaped when rendered)."""

    text: str
    kind: str = "note"  # "note" | "warning"


@dataclass
class Check:
    """A pass / warn / fail verdict against a threshold (or a neutral headline number)."""

    name: str
    value: Optional[float]
    status: str  # "pass" | "warn" | "fail" | "info"
    threshold: Optional[float] = None
    text: str = ""


@dataclass
class TokenStrips:
    """Token text with a signed colour per token, one line per method (rendered as HTML spans).

    ``rows`` are ``(label, values, note)``; ``limit`` is the shared symmetric colour scale.
    """

    title: str
    tokens: List[str]
    rows: List[tuple]
    limit: float
    png: Optional[bytes] = None
    name: str = ""


Block = Union[Figure, Table, Text, Check, TokenStrips]


@dataclass
class Section:
    """One section of the report.

    ``summary`` holds every number the section shows (JSON-able); ``checks`` feed the verdict strip.
    """

    id: str
    title: str
    blocks: List[Block] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    checks: List[Check] = field(default_factory=list)
    error: Optional[str] = None
    seconds: float = 0.0


@dataclass
class ReportContext:
    """What a section builder gets: the wrapper, the evaluation samples and the configuration.

    ``x``/``y`` are the (possibly subsampled) evaluation inputs and labels, CPU tensors.
    ``config`` is the report configuration (a dict); each builder reads its own keys.
    ``cache`` lets builders share results (e.g. predictions) within one report.
    ``history`` is the folder of a training history (``reports.Monitor``), if one was given.
    """

    wrapper: Any
    x: torch.Tensor
    y: Optional[torch.Tensor]
    ood_x: Optional[torch.Tensor] = None
    config: dict = field(default_factory=dict)
    seed: int = 0
    dpi: int = 110
    vocab: Optional[List[str]] = None
    cache: dict = field(default_factory=dict)
    history: Optional[str] = None
