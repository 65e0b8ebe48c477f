"""The report tree → one self-contained HTML page (Jinja2, autoescaped, inline CSS and images)."""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources

import jinja2
import markupsafe

from . import figures
from .report import Figure, Section, Table, Text, TokenStrips


def _template_text(name: str) -> str:
    return resources.files("reports").joinpath("templates", name).read_text(encoding="utf-8")


def _environment() -> jinja2.Environment:
    return jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=False)


def _block_view(block) -> dict:
    if isinstance(block, Figure):
        return {"kind": "figure", "name": block.name, "b64": base64.b64encode(block.png).decode("ascii"),
                "caption": block.caption, "alt": block.alt}
    if isinstance(block, Table):
        return {"kind": "table", "columns": [str(c) for c in block.columns],
                "rows": [[c if isinstance(c, str) else ("—" if c is None else str(c)) for c in r] for r in block.rows],
                "caption": block.caption, "sortable": block.sortable}
    if isinstance(block, Text):
        return {"kind": "text", "text": block.text, "style": "warning" if block.kind == "warning" else "note"}
    if isinstance(block, TokenStrips):
        lines = [{"label": label, "note": note,
                  "tokens": [{"text": t, "value": float(v), "colour": figures.token_colour(float(v), block.limit)}
                             for t, v in zip(block.tokens, values)]}
                 for label, values, note in block.rows]
        return {"kind": "tokens", "name": block.name, "title": block.title, "lines": lines}
    return {"kind": "text", "text": str(block), "style": "note"}


def script_hash(script: str) -> str:
    """The CSP source that allows exactly this inline script: ``'sha256-<base64 digest of its UTF-8 bytes>'``."""
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")


def render(title: str, meta: str, sections: list[Section], checks: list, version: str, run: str = "") -> str:
    """The whole page as a string. Every user-supplied string is escaped by Jinja2's autoescape.

    The page's Content-Security-Policy allows no script but the toolkit's own (``templates/report.js``),
    named by its SHA-256 hash computed here from the exact text placed in the page. ``run`` (hex) is the
    run id shared with ``summary.json``.
    """
    env = _environment()
    template = env.from_string(_template_text("report.html"))
    views = [{"id": s.id, "title": s.title, "error": s.error, "seconds": s.seconds,
              "blocks": [_block_view(b) for b in s.blocks]} for s in sections]
    script = _template_text("report.js")
    if "</" in script:  # the script is the toolkit's own file; it must not close its element early
        raise ValueError("templates/report.js must not contain '</'")
    return template.render(title=title, meta=meta, css=_template_text("style.css"), sections=views,
                           checks=checks, failures=[v for v in views if v["error"]], version=version,
                           script=markupsafe.Markup(script), script_hash=script_hash(script),
                           run=run if re.fullmatch(r"[0-9a-f]{1,64}", run or "") else "")
