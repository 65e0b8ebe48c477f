"""Writing a report into a folder without ever touching a file that is not the report's own.

The report's own files are ``index.html``, ``summary.json`` and ``figures/<section>-<name>.png``
(:data:`OWN_FILES` plus the figures the report lists). A folder is recognised as an earlier
xaiscope report by its ``summary.json``, whose ``schema`` starts with ``xaiscope.summary/``; that
file also lists the report's figures, so a re-run knows exactly which files are its own.

What :func:`write_report` does with ``out``:

* does not exist → created;
* an empty folder, or an earlier report → the report's files are written; the earlier report's own
  figures that the new one does not have are removed; every other file in the folder is kept;
* an existing file, or a non-empty folder that is not an earlier report → :class:`OutputExistsError`;
  with ``force=True`` the report's files are written into the folder (files with the report's
  names are replaced, nothing else is touched or deleted).

The guarantee, step by step. Every file is first written completely (and flushed to disk) into a
staging folder ``.xaiscope-tmp-<pid>-<random>`` inside ``out``, on the same file system. Only then
are the files moved into place, each with one ``os.replace`` (atomic: a reader sees the whole old
file or the whole new one, never a part): the figures first, then ``summary.json``, then
``index.html`` last. ``index.html`` is self-contained (its figures are inlined), so the page a reader
opens is at every instant one complete report, old or new, and when the new page appears every new
figure and the new ``summary.json`` are already in place. A crash before the moves leaves the earlier
report byte for byte as it was; a crash during the moves (a window of a few ``rename`` calls) leaves
the earlier ``index.html`` in place and some figure files already new, each of them whole. Either
way the staging folder is the only stray entry, and the next save into ``out`` removes it together with
any figure the killed save had already moved in and the new report does not have (staging folders of a
process that is still running are left alone).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Set, Union

from explain.errors import OutputExistsError

__all__ = ["OWN_FILES", "FIGURES_DIR", "MARKER_PREFIX", "check_output", "is_report_dir", "write_report"]

MARKER_PREFIX = "xaiscope.summary/"
FIGURES_DIR = "figures"
OWN_FILES = ("index.html", "summary.json")  # plus FIGURES_DIR/<section>-<name>.png, listed in summary.json
STAGING_PREFIX = ".xaiscope-tmp-"
_STAGING = re.compile(r"^\.xaiscope-tmp-(\d+)-[A-Za-z0-9_]+$")
_FIGURE = re.compile(r"^figures/[^/\\]+\.png$")
_COMMIT = ".commit"  # written into the staging folder just before files start moving into place
_STALE_AFTER = 3600.0  # seconds; where a process cannot be asked whether it still runs

# Called after each file is staged (``"staged", rel``) and after each is moved into place
# (``"replaced", rel``). None in normal use; tests set it to interrupt a save at a chosen point.
_checkpoint: Optional[Callable[[str, str], None]] = None

PathLike = Union[str, os.PathLike]


def _read_summary(out: Path) -> Optional[dict]:
    try:
        with open(out / "summary.json", encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and str(data.get("schema", "")).startswith(MARKER_PREFIX):
        return data
    return None


def is_report_dir(path: PathLike) -> bool:
    """True when ``path`` is a folder holding an earlier xaiscope report (its ``summary.json`` marker)."""
    path = Path(path)
    return path.is_dir() and _read_summary(path) is not None


def _previous_files(out: Path) -> Set[str]:
    """The own files of the earlier report in ``out`` (relative POSIX paths), from its summary.json."""
    summary = _read_summary(out)
    if summary is None:
        return set()
    own = set(OWN_FILES)
    sections = summary.get("sections")
    for sec in (sections.values() if isinstance(sections, dict) else ()):
        figures = sec.get("figures") if isinstance(sec, dict) else None
        for rel in figures if isinstance(figures, list) else ():
            if isinstance(rel, str) and _FIGURE.match(rel) and not rel.split("/")[1].startswith("."):
                own.add(rel)
    return own


def _staging_dirs(out: Path) -> list:
    return [p for p in out.iterdir() if _STAGING.match(p.name) and p.is_dir() and not p.is_symlink()]


def _moved_by_killed_saves(out: Path) -> Set[str]:
    """Figures that interrupted saves had already moved into ``out`` (their staging folder holds ``.commit``)."""
    moved: Set[str] = set()
    for staging in _staging_dirs(out):
        if (staging / _COMMIT).exists():
            moved |= _previous_files(staging) - set(OWN_FILES)
    return moved


def _foreign_entries(out: Path) -> list:
    """Entries of ``out`` that are neither our staging folders nor a figures folder holding only our figures."""
    entries = [p for p in out.iterdir() if not (_STAGING.match(p.name) and p.is_dir())]
    figures = out / FIGURES_DIR
    if figures in entries and figures.is_dir():
        ours = _moved_by_killed_saves(out)
        if ours and all(f.is_file() and f"{FIGURES_DIR}/{f.name}" in ours for f in figures.iterdir()):
            entries.remove(figures)
    return sorted(p.name for p in entries)


def check_output(out: PathLike, force: bool = False) -> str:
    """Say how a report would be written to ``out``, or raise before any work is done.

    Returns:
        ``"new"`` (``out`` does not exist), ``"empty"``, ``"report"`` (an earlier report) or
        ``"forced"`` (a non-empty folder that is not a report, with ``force=True``).

    Raises:
        OutputExistsError: ``out`` is a file; or a non-empty folder that is not an earlier report
            and ``force`` is False; or one of the report's own names in it is taken by something of
            another type (e.g. a folder named ``index.html``).

    Example:
        >>> check_output("reports-out/new-run")   # doctest: +SKIP
        'new'
    """
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return "new"
    if not out.is_dir():
        raise OutputExistsError(
            f"report output {str(out)!r} is an existing file, not a folder; pass a folder path instead "
            "(a new folder, an empty one, or an earlier xaiscope report's folder)")
    for name in OWN_FILES:
        if (out / name).is_dir():
            raise OutputExistsError(f"report output {str(out)!r} holds a folder named {name!r} where the report "
                                    "writes a file; pass another folder")
    figures = out / FIGURES_DIR
    if (figures.exists() or figures.is_symlink()) and not figures.is_dir():
        raise OutputExistsError(f"report output {str(out)!r} holds a file named {FIGURES_DIR!r} where the report "
                                "writes its figures folder; pass another folder")
    entries = _foreign_entries(out)
    if not entries:
        return "empty"
    if _read_summary(out) is not None:
        return "report"
    if force:
        return "forced"
    shown = ", ".join(repr(e) for e in entries[:3]) + (", ..." if len(entries) > 3 else "")
    raise OutputExistsError(
        f"report output {str(out)!r} is a folder holding other files ({len(entries)} entries: {shown}) and no "
        f"earlier xaiscope report (no summary.json with schema {MARKER_PREFIX}...); pass a new or empty folder, "
        "or force=True (--force on the command line) to add the report's files to it without deleting anything")


def _alive(pid: int, path: Path) -> bool:
    if pid == os.getpid():
        return False
    if os.name == "nt":  # os.kill would end the process there; judge by age instead
        try:
            return time.time() - path.stat().st_mtime < _STALE_AFTER
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, run by someone else
        return True
    return True


def _remove_leftovers(out: Path) -> Set[str]:
    """Remove staging folders an interrupted save of ours left in ``out``; return the files it had moved in.

    A save that was killed after it began moving files (its staging folder holds ``.commit``) may have
    put figures into ``out`` that no ``summary.json`` lists yet; they are the report's own and are
    returned so the current save can remove the ones it does not replace.
    """
    moved: Set[str] = set()
    for entry in _staging_dirs(out):
        if _alive(int(_STAGING.match(entry.name).group(1)), entry):
            continue
        if (entry / _COMMIT).exists():
            moved |= _previous_files(entry) - set(OWN_FILES)
        shutil.rmtree(entry, ignore_errors=True)
    return moved


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _sync_dir(path: Path) -> None:
    if os.name == "nt":
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _step(phase: str, rel: str) -> None:
    if _checkpoint is not None:
        _checkpoint(phase, rel)


def write_report(out: PathLike, files: Dict[str, bytes], *, force: bool = False) -> Path:
    """Write the report's ``files`` (relative POSIX path → bytes) into ``out``; see the module docstring.

    ``files`` must hold ``index.html`` and ``summary.json``; figures are ``figures/<name>.png``.
    Returns the path of ``index.html``.

    Raises:
        OutputExistsError: see :func:`check_output`.
    """
    out = Path(out)
    state = check_output(out, force)
    bad = [rel for rel in files if rel not in OWN_FILES and not _FIGURE.match(rel)]
    if bad or any(name not in files for name in OWN_FILES):
        raise ValueError(f"not a report's file set: {sorted(files)}")  # a programming error, not user input
    out.mkdir(parents=True, exist_ok=True)
    previous = _previous_files(out) if state == "report" else set()
    previous |= _remove_leftovers(out)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=out))
    figures = sorted(rel for rel in files if rel not in OWN_FILES)
    order = figures + ["summary.json", "index.html"]  # index.html last: the new page appears complete
    try:
        for rel in order:
            _write(staging / rel, files[rel])
            _step("staged", rel)
        if figures:
            (out / FIGURES_DIR).mkdir(exist_ok=True)
        _write(staging / _COMMIT, b"")
        for rel in order:
            os.replace(staging / rel, out / rel)
            _step("replaced", rel)
        for rel in sorted(previous - set(files)):
            try:
                (out / rel).unlink()
            except FileNotFoundError:
                pass
        if not figures and previous:
            try:
                (out / FIGURES_DIR).rmdir()  # only succeeds when nothing else is in it
            except OSError:
                pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if figures:
        _sync_dir(out / FIGURES_DIR)
    _sync_dir(out)
    return out / "index.html"
