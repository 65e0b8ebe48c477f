"""``build_report``: run every section on a model and its data; ``Report.save`` writes it atomically."""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import os
import shutil
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, List, Optional, Sequence, Union


import explain
from explain.attribution import jsonable
from explain.data import collect
from explain.errors import EmptyDataError, InputShapeError

from . import html
from .report import Check, Figure, ReportContext, Section, TokenStrips
from .sections import SECTION_BUILDERS

__all__ = ["Report", "build_report", "SCHEMA_VERSION", "accepted_config", "validate_config"]

SCHEMA_VERSION = "xaiscope.summary/1"


@dataclass
class Report:
    """A built report: sections in reading order plus the facts for the title and ``summary.json``."""

    title: str
    sections: List[Section]
    meta: dict = field(default_factory=dict)

    @property
    def checks(self) -> List[Check]:
        return [c for s in self.sections for c in s.checks]

    @property
    def failed(self) -> bool:
        """True when any configured check failed (the CLI exits with 1)."""
        return any(c.status == "fail" for c in self.checks)

    def to_dict(self) -> dict:
        """The ``summary.json`` content (schema ``xaiscope.summary/1``)."""
        return jsonable({
            "schema": SCHEMA_VERSION,
            "title": self.title,
            **self.meta,
            "checks": [asdict(c) for c in self.checks],
            "sections": {s.id: {"title": s.title, "seconds": round(s.seconds, 4), "error": s.error,
                                "summary": s.summary,
                                "figures": [f"figures/{s.id}-{b.name}.png" for b in s.blocks
                                            if isinstance(b, (Figure, TokenStrips)) and (getattr(b, "png", None))]}
                         for s in self.sections},
        })

    def html(self) -> str:
        meta = self.meta
        line = (f"{meta.get('input_kind', '')} model · {meta.get('num_classes', '?')} classes · "
                f"{meta.get('samples', '?')} samples · {meta.get('created', '')} · device {meta.get('device', '')} · "
                f"xaiscope {meta.get('xaiscope_version', '')}")
        return html.render(self.title, line, self.sections, self.checks, meta.get("xaiscope_version", ""))

    def _repr_html_(self) -> str:  # notebooks show the report inline
        return self.html()

    def save(self, out: Union[str, os.PathLike]) -> Path:
        """Write ``index.html``, ``figures/*.png`` and ``summary.json`` into ``out``, atomically.

        Everything is written into a temporary folder next to ``out`` and swapped into place at the
        end, so a crash leaves the previous report intact and no half-written one.
        Returns the path of ``index.html``.
        """
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            tmp.chmod(0o755)
            figs = tmp / "figures"
            figs.mkdir()
            for s in self.sections:
                for b in s.blocks:
                    png = getattr(b, "png", None)
                    if isinstance(b, (Figure, TokenStrips)) and png:
                        (figs / f"{s.id}-{b.name}.png").write_bytes(png)
            (tmp / "summary.json").write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
            (tmp / "index.html").write_text(self.html(), encoding="utf-8")
            old = None
            if out.exists():
                old = out.parent / f".{out.name}.old-{os.getpid()}-{time.time_ns()}"
                out.rename(old)
            tmp.rename(out)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out / "index.html"


def _run_section(name: str, module_path: str, ctx: ReportContext) -> Section:
    start = time.perf_counter()
    try:
        section = importlib.import_module(module_path).build(ctx)
    except Exception as error:  # noqa: BLE001 - a failing section becomes a failure box; the rest renders
        detail = "".join(traceback.format_exception_only(type(error), error)).strip()
        section = Section(name, name.replace("_", " ").capitalize(), error=detail)
    section.seconds = time.perf_counter() - start
    return section


def accepted_config() -> tuple:
    """What a report config may hold, from each section module's declarations.

    Returns:
        ``(tables, checks)``: ``{section id: {key: description}}`` from each module's
        ``CONFIG_KEYS``, and ``{threshold: description}`` merged from every ``CHECK_KEYS``.
    """
    tables, checks = {}, {}
    for name, module_path in SECTION_BUILDERS.items():
        module = importlib.import_module(module_path)
        tables[name] = dict(getattr(module, "CONFIG_KEYS", {}))
        checks.update(getattr(module, "CHECK_KEYS", {}))
    return tables, checks


def validate_config(cfg: dict) -> None:
    """Reject report settings that no section reads.

    Raises:
        InputShapeError: an unknown top-level table, an unknown key in a section's table or an
            unknown threshold in ``checks``; the message lists the accepted ones.
    """
    tables, checks = accepted_config()
    if not isinstance(cfg, dict):
        raise InputShapeError(f"config must be a mapping of tables, got {type(cfg).__name__}")
    unknown = sorted(set(cfg) - set(tables) - {"checks"})
    if unknown:
        raise InputShapeError(f"unknown report config table(s) {unknown}; accepted: checks, {', '.join(tables)}")
    for name, table in cfg.items():
        if not isinstance(table, dict):
            raise InputShapeError(f"config[{name!r}] must be a table of settings, got {type(table).__name__}")
        allowed = checks if name == "checks" else tables[name]
        bad = sorted(set(table) - set(allowed))
        if bad:
            what = "threshold(s) in [checks]" if name == "checks" else f"key(s) in [{name}]"
            listing = "; ".join(f"{k} ({v})" for k, v in allowed.items()) or "none"
            raise InputShapeError(f"unknown {what}: {bad}; accepted: {listing}")


def build_report(
    model: explain.ModelWrapper,
    data: Any,
    *,
    ood_data: Any = None,
    out: Union[str, os.PathLike, None] = None,
    methods: Sequence[str] = ("gradcam", "occlusion", "lime", "shap", "integrated_gradients"),
    sections: Optional[Iterable[str]] = None,
    config: Optional[dict] = None,
    max_samples: int = 256,
    samples: int = 6,
    seed: int = 0,
    vocab: Optional[List[str]] = None,
    title: Optional[str] = None,
    dpi: int = 110,
) -> Report:
    """Build the audit report for ``model`` on ``data`` and, with ``out``, save it there.

    Args:
        model: an ``explain.ModelWrapper``.
        data: ``(inputs, labels)``, a ``Dataset`` or a ``DataLoader``; the first ``max_samples`` are used.
        ood_data: out-of-distribution inputs for the OOD section (optional).
        out: folder to write ``index.html``, ``figures/`` and ``summary.json`` into.
        methods: explainers for the gallery (names from ``explain.available_explainers()``).
        sections: which sections to build (default: all registered, in reading order).
        config: per-section settings and ``checks`` thresholds, e.g.
            ``{"checks": {"min_accuracy": 0.9}, "explanations": {"samples": 8}}``. Each section
            module declares the keys of its table (``CONFIG_KEYS``) and the thresholds it reads
            (``CHECK_KEYS``); anything else is an error (see :func:`accepted_config`).
        samples: rows in the explanation gallery.
        seed: seeds every stochastic step.
        vocab: id → word list so token models show words.

    Returns:
        The ``Report``; ``report.failed`` is True when a configured check failed.

    Example:
        >>> rep = reports.build_report(m, (x, y), out="reports-out/run1")   # doctest: +SKIP
    """
    if not isinstance(model, explain.ModelWrapper):
        raise InputShapeError(f"expected an explain.ModelWrapper, got {type(model).__name__}")
    start = time.perf_counter()
    x, y = collect(data, max_samples=max_samples)
    model.check_inputs(x, name="data")
    ood_x = None
    if ood_data is not None:
        ood_x, _ = collect(ood_data, max_samples=max_samples)
        model.check_inputs(ood_x, name="ood_data")
        if tuple(ood_x.shape[1:]) != tuple(x.shape[1:]) and model.input_kind == "image":
            raise InputShapeError(f"ood_data samples have shape {tuple(ood_x.shape[1:])} but data samples "
                                  f"have {tuple(x.shape[1:])}")
    cfg = json.loads(json.dumps(config or {}, default=str))
    validate_config(cfg)
    cfg.setdefault("explanations", {}).setdefault("methods", list(methods))
    cfg["explanations"].setdefault("samples", samples)
    ctx = ReportContext(wrapper=model, x=x, y=y, ood_x=ood_x, config=cfg, seed=seed, dpi=dpi, vocab=vocab)
    wanted = list(sections) if sections is not None else list(SECTION_BUILDERS)
    unknown = [s for s in wanted if s not in SECTION_BUILDERS]
    if unknown:
        raise InputShapeError(f"unknown report sections {unknown}; available: {', '.join(SECTION_BUILDERS)}")
    built = [_run_section(name, SECTION_BUILDERS[name], ctx) for name in wanted]
    if len(x) == 0:
        raise EmptyDataError("data holds no samples")
    d = model.describe()
    meta = {
        "xaiscope_version": explain.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "model": d["architecture"], "input_kind": d["input_kind"], "num_classes": d["num_classes"],
        "class_names": d["class_names"], "device": d["device"], "precision": d["precision"],
        "samples": len(x), "seed": seed, "config": cfg, "seconds": round(time.perf_counter() - start, 3),
    }
    report = Report(title or f"{d['architecture']} — xaiscope audit", built, meta)
    if out is not None:
        report.save(out)
    return report
