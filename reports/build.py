"""``build_report``: run every section on a model and its data; ``Report.save`` writes only the report's own files."""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import os
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import explain
from explain.attribution import jsonable
from explain.data import collect
from explain.errors import DistributedError, InputShapeError
from robustness import distributed as dist

from . import html
from ._config import check_table_values
from ._data_pass import read_data
from ._save import FIGURES_DIR, check_output, write_report
from ._warnings import collect_warnings
from .report import Check, Figure, ReportContext, Section, TokenStrips
from .sections import SECTION_BUILDERS
from .sections.model_card import add_warnings

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
                                "figures": [rel for rel, _ in _figures([s])]}
                         for s in self.sections},
        })

    def html(self, run: str = "") -> str:
        meta = self.meta
        line = (f"{meta.get('input_kind', '')} model · {meta.get('num_classes', '?')} classes · "
                f"{meta.get('samples', '?')} samples · {meta.get('created', '')} · device {meta.get('device', '')} · "
                f"xaiscope {meta.get('xaiscope_version', '')}")
        return html.render(self.title, line, self.sections, self.checks, meta.get("xaiscope_version", ""), run=run)

    def _repr_html_(self) -> str:  # notebooks show the report inline
        return self.html()

    def files(self) -> Dict[str, bytes]:
        """The report's own files, relative path → bytes: ``figures/*.png``, ``summary.json``, ``index.html``.

        This is the whole set :meth:`save` writes; nothing else is ever written or removed.
        """
        files = {rel: png for rel, png in _figures(self.sections)}
        run = uuid.uuid4().hex  # the same id in both files: a reader can tell they belong together
        files["summary.json"] = json.dumps({**self.to_dict(), "run": run}, indent=1).encode("utf-8")
        files["index.html"] = self.html(run=run).encode("utf-8")
        return files

    def save(self, out: Union[str, os.PathLike], *, force: bool = False) -> Path:
        """Write ``index.html``, ``figures/*.png`` and ``summary.json`` into the folder ``out``.

        Only the report's own files are written. ``out`` may be a new path (created), an empty
        folder, or an earlier xaiscope report (recognised by its ``summary.json``): its own files are
        replaced and its own figures that this report lacks are removed, while every other file in
        the folder is kept. The save holds the folder's lock (a second writer waits), never writes
        through a link or over a file xaiscope did not write, writes every file completely into a
        staging folder first and then moves each into place with one ``os.replace``, ``index.html``
        last, so the page is at every instant either the whole earlier report or the whole new one,
        and a kill leaves no half-written file; its manifest lets the next save remove what a killed
        one left (see ``reports._save`` for the exact guarantee).

        Args:
            out: the report folder; ``"."`` works under the same rules.
            force: also write into a non-empty folder that is not an earlier report; files with
                the report's names are replaced, nothing else is touched or deleted.

        Returns:
            The path of ``index.html``.

        Raises:
            OutputExistsError: ``out`` is an existing file, or a non-empty folder that is not an
                earlier report (and ``force`` is False), or holds a link or a foreign file where the
                report writes one of its own. OutputBusyError: another process kept the folder's lock.
            OutputWriteError: no permission, or the disk is full (the message names the path).

        Example:
            >>> rep.save("reports-out/run1")                 # doctest: +SKIP
            >>> rep.save("my-project", force=True)          # doctest: +SKIP
        """
        check_output(out, force)  # before rendering: a wrong path fails fast
        return write_report(out, self.files(), force=force)


def _figures(sections: Sequence[Section]) -> List[tuple]:
    """``(relative path, png)`` of every figure the sections hold, in order (one naming rule)."""
    return [(f"{FIGURES_DIR}/{s.id}-{b.name}.png", b.png) for s in sections for b in s.blocks
            if isinstance(b, (Figure, TokenStrips)) and getattr(b, "png", None)]


def _run_section(name: str, module_path: str, ctx: ReportContext) -> Section:
    start = time.perf_counter()
    secondary = False
    try:
        section = importlib.import_module(module_path).build(ctx)
    except Exception as error:  # noqa: BLE001 - a failing section becomes a failure box; the rest renders
        detail = "".join(traceback.format_exception_only(type(error), error)).strip()
        section = Section(name, name.replace("_", " ").capitalize(), error=detail)
        secondary = bool(getattr(error, "secondary", False))
        if not secondary and dist.active():
            dist.announce_failure()  # the other ranks' pending collectives stop instead of waiting
    section.seconds = time.perf_counter() - start
    if dist.active():
        _agree(section, secondary)
    return section


def _agree(section: Section, secondary: bool) -> None:
    """At a section's end every process learns every other's outcome and all take the same step.

    A section that failed on every process by itself becomes the same failure box everywhere. One
    that failed on some processes only cannot be completed, so the run stops: the first process
    that failed by itself raises its error and the others raise a secondary ``DistributedError``
    (which launchers do not print again).
    """
    rank = dist.rank_and_world()[0]
    try:
        outcomes = dist.agree_on_errors((section.error, secondary))
    except DistributedError:
        if section.error is not None and not secondary:  # the others are gone: report this rank's own error
            raise DistributedError(f"section {section.id!r} failed on rank {rank}: {section.error}") from None
        raise
    own = [r for r, (e, sec) in enumerate(outcomes) if e is not None and not sec]
    if len(own) == len(outcomes):
        section.error = outcomes[0][0]
        return
    if not own and all(e is None for e, _ in outcomes):
        return
    first = own[0] if own else next(r for r, (e, _) in enumerate(outcomes) if e is not None)
    raise DistributedError(f"section {section.id!r} failed on rank {first}: {outcomes[first][0]}",
                           secondary=rank != first)


def _applies(name: str, ctx: ReportContext) -> bool:
    """Optional sections (training, features) declare ``applies(ctx)``; the others always run."""
    applies = getattr(importlib.import_module(SECTION_BUILDERS[name]), "applies", None)
    return applies is None or bool(applies(ctx))


def accepted_config() -> tuple:
    """What a report config may hold, from each section module's declarations.

    Returns:
        ``(tables, checks)``: ``{section id: {key: description}}`` from each module's
        ``CONFIG_KEYS``, and ``{threshold: description}`` merged from every ``CHECK_KEYS``.
    """
    tables, checks = {}, {}
    for name, module_path in SECTION_BUILDERS.items():
        module = importlib.import_module(module_path)
        # a section may read a table under another name (the verification section reads [verify])
        tables[getattr(module, "CONFIG_TABLE", name)] = dict(getattr(module, "CONFIG_KEYS", {}))
        checks.update(getattr(module, "CHECK_KEYS", {}))
    return tables, checks


def validate_config(cfg: dict) -> None:
    """Reject report settings that no section reads, and values of the wrong type or out of range.

    Raises:
        InputShapeError: an unknown top-level table, an unknown key in a section's table or an
            unknown threshold in ``checks``; the message lists the accepted ones.
        InputValueError: a value of the wrong type or out of range (``samples = "many"``,
            ``min_accuracy = nan``, a negative budget), naming the table and key.
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
        check_table_values(name, table)  # types and ranges: NaN, a string for a count, ... (reports/_config.py)


def build_report(
    model: explain.ModelWrapper,
    data: Any,
    *,
    ood_data: Any = None,
    out: Union[str, os.PathLike, None] = None,
    methods: Sequence[str] = ("gradcam", "occlusion", "lime", "shap", "integrated_gradients"),
    sections: Optional[Iterable[str]] = None,
    config: Optional[dict] = None,
    max_samples: Optional[int] = 256,
    samples: int = 6,
    seed: int = 0,
    vocab: Optional[List[str]] = None,
    title: Optional[str] = None,
    dpi: int = 110,
    force: bool = False,
    history: Union[str, os.PathLike, None] = None,
    masks: Any = None,
    keep_samples: int = 256,
    batch_size: int = 256,
) -> Report:
    """Build the audit report for ``model`` on ``data`` and, with ``out``, save it there.

    Args:
        model: an ``explain.ModelWrapper``.
        data: ``(inputs, labels)``, a ``Dataset``, a ``DataLoader`` or any iterable of ``(inputs, labels)``
            batches (a generator works: the data is read once). It is streamed in batches: the
            performance metrics cover the first ``max_samples`` samples (all with ``None``) while
            only per-sample outcomes (label, prediction, confidence) are kept, and the first
            ``keep_samples`` of them are kept whole for the sections that need inputs
            (explanations, attacks, corruptions, OOD detection, verification, trust).
        ood_data: out-of-distribution inputs for the OOD section (optional).
        out: folder to write ``index.html``, ``figures/`` and ``summary.json`` into: a new path, an
            empty folder or an earlier report's folder (its own files are replaced, every other file
            is kept). It is checked before any work is done. See :meth:`Report.save`.
        methods: explainers for the gallery (names from ``explain.available_explainers()``).
        sections: which sections to build (default: all registered, in reading order).
        config: per-section settings and ``checks`` thresholds, e.g.
            ``{"checks": {"min_accuracy": 0.9}, "explanations": {"samples": 8}}``. Each section
            module declares the keys of its table (``CONFIG_KEYS``) and the thresholds it reads
            (``CHECK_KEYS``); anything else is an error (see :func:`accepted_config`).
        samples: rows in the explanation gallery.
        seed: seeds every stochastic step.
        vocab: id → word list so token models show words.
        force: with ``out``, also write into a non-empty folder that is not an earlier report (only
            the report's own files are written; nothing else is touched or deleted).
        history: a folder ``reports.Monitor`` wrote; adds the "Training" section.
        max_samples: samples evaluated (``None``: the whole data set, streamed).
        keep_samples: samples kept in memory for the input-level sections (the first ones read).
        batch_size: samples per streamed batch (source batches are split or joined to this size).
        masks: ground-truth masks shaped like the attribution maps (``N×H×W`` / ``N×T``), aligned
            with ``data``; the trust section then reports pointing game and relevance mass.

    Inside a ``torch.distributed`` process group (``torchrun``) every rank calls this with the same
    arguments: each section's sample work is split across the ranks and combined (counts by
    all-reduce, per-sample outcomes gathered in sample order), every rank returns the same numbers,
    and only rank 0 renders figures and writes ``out``.

    Warnings raised while the report is built still reach the caller as usual and are also listed,
    each distinct message once, in ``report.meta["warnings"]`` (``summary.json``'s ``warnings``) and
    in the model card.

    Returns:
        The ``Report``; ``report.failed`` is True when a configured check failed.

    Raises:
        OutputExistsError: ``out`` is a file, or a non-empty folder that is not a report (without ``force``).
        InputShapeError, InputValueError, EmptyDataError: bad data (also batches of the wrong form or an
            empty data set), or labels outside the model's classes.
        UnsupportedModelError: ``class_names`` does not match the model's number of outputs.
        ModelCallError: the model's forward pass fails on the data.
        DistributedError: in a process group, a section failed on some ranks only, or another rank stopped.

    Example:
        >>> rep = reports.build_report(m, (x, y), out="reports-out/run1")   # doctest: +SKIP
    """
    if not isinstance(model, explain.ModelWrapper):
        raise InputShapeError(f"expected an explain.ModelWrapper, got {type(model).__name__}")
    if out is not None:
        check_output(out, force)  # fail before the work, not after it
    start = time.perf_counter()
    if isinstance(keep_samples, bool) or not isinstance(keep_samples, int) or keep_samples < 1:
        raise InputShapeError(f"keep_samples must be a positive integer, got {keep_samples!r}")
    with collect_warnings() as raised:
        report = _build(model, data, ood_data, methods, sections, config, max_samples, samples, seed, vocab, title,
                        dpi, history, masks, keep_samples, batch_size, start)
    report.meta["warnings"] = list(raised)
    add_warnings(report.sections, raised)
    if out is not None and dist.is_main():  # in a process group only rank 0 writes
        report.save(out, force=force)
    return report


def _build(model, data, ood_data, methods, sections, config, max_samples, samples, seed, vocab, title, dpi, history,
           masks, keep_samples, batch_size, start) -> Report:
    x, y, n_evaluated, outcomes, head_probs = read_data(model, data, max_samples, keep_samples, batch_size)
    ood_x = None
    if ood_data is not None:
        ood_x, _ = collect(ood_data, max_samples=len(x), name="ood_data")
        model.check_inputs(ood_x, name="ood_data")
        if tuple(ood_x.shape[1:]) != tuple(x.shape[1:]) and model.input_kind == "image":
            raise InputShapeError(f"ood_data samples have shape {tuple(ood_x.shape[1:])} but data samples "
                                  f"have {tuple(x.shape[1:])}")
        if model.input_kind == "series" and ood_x.shape[2] != x.shape[2]:
            raise InputShapeError(f"ood_data series have {ood_x.shape[2]} channels but data series have {x.shape[2]} "
                                  "(layout N×T×C)")
    cfg = json.loads(json.dumps(config or {}, default=str))
    validate_config(cfg)
    cfg.setdefault("explanations", {}).setdefault("methods", list(methods))
    cfg["explanations"].setdefault("samples", samples)
    ctx = ReportContext(wrapper=model, x=x, y=y, ood_x=ood_x, config=cfg, seed=seed, dpi=dpi, vocab=vocab,
                        history=None if history is None else str(history))
    wanted = list(sections) if sections is not None else [s for s in SECTION_BUILDERS if _applies(s, ctx)]
    ctx.cache["sections"] = tuple(wanted)
    ctx.cache.update({"outcomes": outcomes, "n_evaluated": n_evaluated})
    if head_probs is not None:  # one process: its block is every kept sample, already through the model
        ctx.cache["local_probs"] = head_probs
    if masks is not None:
        ctx.cache["masks"] = masks
    unknown = [s for s in wanted if s not in SECTION_BUILDERS]
    if unknown:
        raise InputShapeError(f"unknown report sections {unknown}; available: {', '.join(SECTION_BUILDERS)}")
    built = [_run_section(name, SECTION_BUILDERS[name], ctx) for name in wanted]
    d = model.describe()
    meta = {
        "xaiscope_version": explain.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "model": d["architecture"], "input_kind": d["input_kind"], "num_classes": d["num_classes"],
        "class_names": d["class_names"], "device": d["device"], "precision": d["precision"],
        "samples": n_evaluated, "kept_samples": len(x), "seed": seed, "config": cfg, "seconds": round(time.perf_counter() - start, 3),
        "world_size": dist.rank_and_world()[1],
    }
    return Report(title or f"{d['architecture']} — xaiscope audit", built, meta)
