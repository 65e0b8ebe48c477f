"""Writing a report (or any of the toolkit's output files) into a folder without touching anything else.

The report's own files are ``index.html``, ``summary.json`` and ``figures/<section>-<name>.png``;
``xaiscope explain`` writes ``<method>-sample<i>.png``. Every writer goes through :func:`publish`
(:func:`write_report` for a report), which keeps its lock, manifest and staging folder in one hidden
folder ``.xaiscope`` inside ``out`` (see :mod:`reports._save_state`).

What a report save does with ``out``:

* does not exist → created (after checking that the nearest existing parent is writable);
* an empty folder, or an earlier report → the report's files are written; the earlier report's own
  files that the new one does not have are removed; every other file in the folder is kept;
* an existing file, or a non-empty folder that is not an earlier report → :class:`OutputExistsError`;
  with ``force=True`` the report's files are added to the folder and nothing else is touched.

Never, with or without ``force``: writing through a symbolic link (a link named ``index.html``,
``summary.json``, ``figures``, ``.xaiscope`` or like a figure is refused, so no file outside ``out`` is
ever written), replacing a file the toolkit did not write (a user's ``index.html`` or a figure of the
same name is refused, named in the error), or deleting one (only files the manifest lists, still with
the bytes the toolkit wrote, are removed).

The steps, in order (each is reported to :data:`_checkpoint`, which tests use to kill a save there):

1. ``("locked", "")`` — an exclusive ``flock`` on ``.xaiscope/lock``; a second writer into the same
   folder waits (at most :data:`reports._save_state.LOCK_TIMEOUT` s, then :class:`OutputBusyError`);
   the checks are repeated under the lock; staging folders of killed saves are removed;
2. ``("staged", rel)`` — each file written completely and flushed to disk in ``.xaiscope/tmp-*``;
3. ``("manifest", "pending")`` — the manifest records the files about to be moved in (with their
   hashes) and the earlier files about to be removed: from here on a kill loses no knowledge;
4. ``("replaced", rel)`` — each file moved into place with one ``os.replace`` (atomic per file), the
   figures first, then ``summary.json``, ``index.html`` last;
5. ``("removed", rel)`` — the earlier report's own files that the new one lacks are removed;
6. ``("manifest", "final")`` — the manifest lists exactly the new report's files.

``index.html`` is self-contained and is replaced last, so the page a reader opens is at every instant
one whole report: the earlier one until the last rename, the new one from then on. ``summary.json``
and ``index.html`` carry the same run id (``"run"`` in the JSON, ``<meta name="xaiscope-run">`` in the
page), so a reader that opens both between the two last renames, or after a kill between them, can
tell (:func:`report_run` returns None then); the next save puts the folder right. A kill at any other
step leaves the earlier report whole, every file in the folder whole, and the manifest listing every
file the killed save moved in, which the next save removes or replaces.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
import uuid
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

from explain.errors import OutputExistsError, OutputWriteError, ToolkitError

from . import _save_state as st

__all__ = ["OWN_FILES", "FIGURES_DIR", "MARKER_PREFIX", "check_output", "check_files", "is_report_dir",
           "publish", "report_run", "write_report"]

MARKER_PREFIX = "xaiscope.summary/"
FIGURES_DIR = "figures"
OWN_FILES = ("index.html", "summary.json")  # plus FIGURES_DIR/<section>-<name>.png, listed in summary.json
_FIGURE = re.compile(r"^figures/[^/\\]+\.png$")
_RUN = re.compile(rb'<meta name="xaiscope-run" content="([0-9a-f]+)">')

# Called between the steps listed in the module docstring as ``_checkpoint(phase, rel)``. None in
# normal use; tests set it to interrupt a save at a chosen point.
_checkpoint: Optional[Callable[[str, str], None]] = None

PathLike = Union[str, os.PathLike]


def _step(phase: str, rel: str) -> None:
    if _checkpoint is not None:
        _checkpoint(phase, rel)


def _read_summary(out: Path) -> Optional[dict]:
    try:
        if stat.S_ISLNK(os.lstat(out / "summary.json").st_mode):
            return None
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


def report_run(path: PathLike) -> Optional[str]:
    """The run id of the report in ``path`` when its ``index.html`` and ``summary.json`` are from one run, else None."""
    path = Path(path)
    summary = _read_summary(path)
    try:
        with open(path / "index.html", "rb") as fh:
            found = _RUN.search(fh.read())
    except OSError:
        return None
    if summary is None or found is None or summary.get("run") != found.group(1).decode("ascii"):
        return None
    return str(summary["run"])


def _legacy_own(out: Path) -> st.Hashes:
    """An earlier report's own files as its ``summary.json`` lists them (reports written before the manifest)."""
    summary = _read_summary(out)
    if summary is None:
        return {}
    own: st.Hashes = {name: None for name in OWN_FILES}
    sections = summary.get("sections")
    for sec in (sections.values() if isinstance(sections, dict) else ()):
        figures = sec.get("figures") if isinstance(sec, dict) else None
        for rel in figures if isinstance(figures, list) else ():
            if isinstance(rel, str) and _FIGURE.match(rel) and st.valid_rel(rel):
                own[rel] = None
    return {rel: h for rel, h in own.items() if st.is_own(out, rel, h)}


def _ours(out: Path) -> st.Hashes:
    """Every file in ``out`` that is the toolkit's own (manifest first; an older report's summary.json else)."""
    manifest = st.settle(out, st.read_manifest(out))
    merged: st.Hashes = {} if "report" in manifest["groups"] else _legacy_own(out)
    for group in manifest["groups"].values():
        merged.update(group["files"])
    return merged


def _lexists(path: Path) -> bool:
    return os.path.lexists(path)


def _check_creatable(out: Path) -> None:
    parent = out
    while not _lexists(parent) and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputExistsError(f"report output {str(out)!r} cannot be created: {str(parent)!r} is a file, not a "
                                "folder; pass another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputWriteError(f"report output {str(out)!r} cannot be created: no permission to write in "
                               f"{str(parent)!r}; pass a folder you can write to")


def _check_writable(out: Path) -> None:
    for folder in (out, out / FIGURES_DIR, out / st.STATE_DIR):
        if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
            raise OutputWriteError(f"report output {str(out)!r} is not writable: no permission to write in "
                                   f"{str(folder)!r}; fix its permissions or pass another folder")


def _check_folder(out: Path) -> bool:
    """Checks every writer shares; False when ``out`` does not exist yet."""
    if not _lexists(out):
        _check_creatable(out)
        return False
    if not out.is_dir():
        raise OutputExistsError(
            f"report output {str(out)!r} is an existing file, not a folder; pass a folder path instead "
            "(a new folder, an empty one, or an earlier xaiscope report's folder)")
    st.check_state_dir(out)
    _check_writable(out)
    return True


def _foreign_entries(out: Path, ours: st.Hashes) -> List[str]:
    """Entries of ``out`` that are not the toolkit's: neither its files, its state folder, nor its figures folder."""
    entries = []
    for p in out.iterdir():
        if p.name == st.STATE_DIR or (st.LEGACY_STAGING.match(p.name) and p.is_dir() and not p.is_symlink()):
            continue
        if p.name == FIGURES_DIR and p.is_dir() and not p.is_symlink():
            if all(f"{FIGURES_DIR}/{f.name}" in ours for f in p.iterdir()):
                continue
        elif p.name in ours:
            continue
        entries.append(p.name)
    return sorted(entries)


def check_output(out: PathLike, force: bool = False) -> str:
    """Say how a report would be written to ``out``, or raise before any work is done.

    Returns:
        ``"new"`` (``out`` does not exist), ``"empty"``, ``"report"`` (an earlier report) or
        ``"forced"`` (a non-empty folder that is not a report, with ``force=True``).

    Raises:
        OutputExistsError: ``out`` is a file; or a non-empty folder that is not an earlier report
            and ``force`` is False; or one of the report's own names in it is a link, a folder where
            a file belongs, or a file xaiscope did not write (also with ``force``).
        OutputWriteError: ``out`` (or, for a new path, its nearest existing parent) is not writable.

    Example:
        >>> check_output("reports-out/new-run")   # doctest: +SKIP
        'new'
    """
    out = Path(out)
    if not _check_folder(out):
        return "new"
    for name in (*OWN_FILES, FIGURES_DIR):
        if (out / name).is_symlink():
            raise st.link_error(out, name)
    for name in OWN_FILES:
        if (out / name).is_dir():
            raise OutputExistsError(f"report output {str(out)!r} holds a folder named {name!r} where the report "
                                    "writes a file; pass another folder")
    if _lexists(out / FIGURES_DIR) and not (out / FIGURES_DIR).is_dir():
        raise OutputExistsError(f"report output {str(out)!r} holds a file named {FIGURES_DIR!r} where the report "
                                "writes its figures folder; pass another folder")
    ours = _ours(out)
    entries = _foreign_entries(out, ours)
    report = _read_summary(out) is not None
    if not entries:
        return "report" if report else "empty"
    if report:
        return "report"
    if not force:
        shown = ", ".join(repr(e) for e in entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise OutputExistsError(
            f"report output {str(out)!r} is a folder holding other files ({len(entries)} entries: {shown}) and no "
            f"earlier xaiscope report (no summary.json with schema {MARKER_PREFIX}...); pass a new or empty folder, "
            "or force=True (--force on the command line) to add the report's files to it without deleting anything")
    _refuse_foreign(out, OWN_FILES, ours)
    return "forced"


def _refuse_foreign(out: Path, names, ours: st.Hashes) -> None:
    for rel in names:
        path = out / rel
        if path.is_symlink() or (rel.startswith(FIGURES_DIR + "/") and (out / FIGURES_DIR).is_symlink()):
            raise st.link_error(out, rel)
        if _lexists(path) and not path.is_file():
            raise OutputExistsError(f"report output {str(out)!r} holds a folder named {rel!r} where xaiscope writes "
                                    "a file; pass another folder")
        if _lexists(path) and rel not in ours:
            raise OutputExistsError(f"report output {str(out)!r} already holds {rel!r}, a file xaiscope did not "
                                    "write; it is never replaced, also not with force: move or rename it, or pass "
                                    "another folder")


def check_files(out: PathLike, names) -> None:
    """Check before any work that ``names`` (flat file names) can be written into ``out`` by :func:`publish`."""
    out = Path(out)
    bad = [n for n in names if not st.valid_rel(n) or "/" in n or n in OWN_FILES]
    if bad:
        raise ValueError(f"not output file names: {bad}")  # a programming error, not user input
    if _check_folder(out):
        _refuse_foreign(out, names, _ours(out))


def _run_id(files: Dict[str, bytes]) -> str:
    try:
        run = json.loads(files["summary.json"]).get("run")
    except (KeyError, ValueError, AttributeError):
        run = None
    return str(run) if isinstance(run, str) and run else uuid.uuid4().hex


def write_report(out: PathLike, files: Dict[str, bytes], *, force: bool = False,
                 lock_timeout: Optional[float] = None) -> Path:
    """Write the report's ``files`` (relative POSIX path → bytes) into ``out``; see the module docstring.

    ``files`` must hold ``index.html`` and ``summary.json``; figures are ``figures/<name>.png``.
    Returns the path of ``index.html``.

    Raises:
        OutputExistsError: see :func:`check_output`. OutputBusyError: another save held the folder's
            lock for ``lock_timeout`` s. OutputWriteError: a permission or disk-full error, naming the path.
    """
    bad = [rel for rel in files if rel not in OWN_FILES and not (_FIGURE.match(rel) and st.valid_rel(rel))]
    if bad or any(name not in files for name in OWN_FILES):
        raise ValueError(f"not a report's file set: {sorted(files)}")  # a programming error, not user input
    publish(out, files, group="report", force=force, lock_timeout=lock_timeout)
    return Path(out) / "index.html"


def publish(out: PathLike, files: Dict[str, bytes], *, group: str, force: bool = False,
            lock_timeout: Optional[float] = None) -> List[Path]:
    """Write ``files`` into ``out`` as the output group ``group`` (``"report"``, ``"explain-gradcam"``, ...).

    The group's earlier files that ``files`` lacks are removed. For any other group than
    ``"report"`` the folder may hold other files (only same-named foreign files are refused).
    Returns the written paths.
    """
    out = Path(out)
    report = group == "report"
    if report:
        check_output(out, force)  # fail fast, before waiting for the lock
    else:
        check_files(out, list(files))
    try:
        out.mkdir(parents=True, exist_ok=True)
        with st.locked(out, lock_timeout):
            _step("locked", "")
            _publish_locked(out, files, group, force, report)
    except ToolkitError:
        raise
    except OSError as error:
        raise st.write_error(out, error) from error
    return [out / rel for rel in files]


def _publish_locked(out: Path, files: Dict[str, bytes], group: str, force: bool, report: bool) -> None:
    state = check_output(out, force) if report else None  # again, now that no one else writes
    if not report:
        check_files(out, list(files))
    st.remove_legacy_staging(out)
    st.remove_staging(out)
    manifest = st.settle(out, st.read_manifest(out))
    groups = manifest["groups"]
    previous: st.Hashes = dict(groups.get(group, {}).get("files", {}))
    if report and "report" not in groups and state == "report":
        previous.update(_legacy_own(out))
    ours = dict(previous)
    for g in groups.values():
        ours.update(g["files"])
    _refuse_foreign(out, list(files), ours)
    figures = sorted(rel for rel in files if rel not in OWN_FILES and "/" in rel)
    order = figures + sorted(rel for rel in files if rel not in figures and rel not in OWN_FILES)
    order += [name for name in OWN_FILES[::-1] if name in files]  # summary.json, then index.html last
    staging = Path(tempfile.mkdtemp(prefix=f"{st.STAGING_PREFIX}{os.getpid()}-", dir=out / st.STATE_DIR))
    try:
        hashes: st.Hashes = {}
        for rel in order:
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            st.write_bytes(staging / rel, files[rel])
            hashes[rel] = st.sha256(files[rel])
            _step("staged", rel)
        run = _run_id(files)
        manifest["pending"] = {"group": group, "run": run, "files": hashes, "previous": previous}
        st.write_manifest(out, manifest, staging)
        _step("manifest", "pending")
        _move_in(out, staging, order)
        for rel in sorted(set(previous) - set(files)):
            if st.is_own(out, rel, previous[rel]):
                os.unlink(out / rel)
                _step("removed", rel)
        if report and not figures and any(rel.startswith(FIGURES_DIR + "/") for rel in previous):
            try:
                (out / FIGURES_DIR).rmdir()  # only succeeds when nothing else is in it
            except OSError:
                pass
        groups[group] = {"run": run, "files": hashes}
        manifest["pending"] = None
        st.write_manifest(out, manifest, staging)
        _step("manifest", "final")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if figures:
        st.sync_dir(out / FIGURES_DIR)
    st.sync_dir(out)


def _move_in(out: Path, staging: Path, order: List[str]) -> None:
    """``os.replace`` each staged file into ``out``, through folder descriptors opened without following links."""
    if not hasattr(os, "O_DIRECTORY"):  # no folder descriptors (Windows): check each path just before its move
        for rel in order:
            if (out / rel).is_symlink() or ("/" in rel and (out / FIGURES_DIR).is_symlink()):
                raise st.link_error(out, rel)
            (out / rel).parent.mkdir(exist_ok=True)
            os.replace(staging / rel, out / rel)
            _step("replaced", rel)
        return
    out_fd = os.open(out, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    fig_fd = None
    try:
        for rel in order:
            folder_fd, name = out_fd, rel
            if "/" in rel:
                if fig_fd is None:
                    try:
                        os.mkdir(FIGURES_DIR, 0o755, dir_fd=out_fd)
                    except FileExistsError:
                        pass
                    if stat.S_ISLNK(os.lstat(FIGURES_DIR, dir_fd=out_fd).st_mode):
                        raise st.link_error(out, FIGURES_DIR)
                    fig_fd = os.open(FIGURES_DIR, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
                                     | getattr(os, "O_NOFOLLOW", 0), dir_fd=out_fd)
                folder_fd, name = fig_fd, rel.split("/", 1)[1]
            try:
                if stat.S_ISLNK(os.lstat(name, dir_fd=folder_fd).st_mode):
                    raise st.link_error(out, rel)
            except FileNotFoundError:
                pass
            os.replace(staging / rel, name, dst_dir_fd=folder_fd)
            _step("replaced", rel)
    finally:
        if fig_fd is not None:
            os.close(fig_fd)
        os.close(out_fd)
