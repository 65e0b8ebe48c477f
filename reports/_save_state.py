"""What a save knows about a folder between runs: its lock, its manifest, and which files are its own.

Everything lives in one hidden folder ``.xaiscope`` inside the output folder, created by the first
save and never followed when it is a link:

* ``lock`` — an empty file; a save holds an exclusive ``flock`` on it from its first check to its
  last rename, so two processes never write into one folder at the same time;
* ``manifest.json`` — the files each kind of output wrote (``"report"``, ``"explain-gradcam"``, ...),
  each with the SHA-256 of the bytes written, and, while a save is publishing, the files it is about
  to move in (``pending``). A save killed at any step therefore leaves, on disk, the list of every
  file that may be its own; the next save reads it and removes the ones it does not rewrite;
* ``tmp-<pid>-<random>/`` — the staging folder of a save in progress.

A file counts as the toolkit's own only when the manifest (or an earlier report's ``summary.json``)
lists it, it is a regular file (never a link), and, where a hash was recorded, its bytes still have
that hash: a file a user put in place of one of the toolkit's, or edited, is the user's.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import time
from pathlib import Path
from typing import Dict, Iterator, Optional

from explain.errors import OutputBusyError, OutputExistsError, OutputWriteError

try:  # POSIX; elsewhere saves are not locked against each other
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

STATE_DIR = ".xaiscope"
LOCK_FILE = "lock"
MANIFEST_FILE = "manifest.json"
MANIFEST_SCHEMA = "xaiscope.manifest/1"
STAGING_PREFIX = "tmp-"
_STAGING = re.compile(r"^tmp-\d+-[A-Za-z0-9_]+$")
LEGACY_STAGING = re.compile(r"^\.xaiscope-tmp-(\d+)-[A-Za-z0-9_]+$")  # staging folders of earlier versions
_STALE_AFTER = 3600.0  # seconds; where a process cannot be asked whether it still runs
_REL = re.compile(r"^(figures/)?[A-Za-z0-9][A-Za-z0-9._-]*$")  # a name a save may write: flat, no dot-files
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)

#: seconds a save waits for another process's save into the same folder before it gives up
LOCK_TIMEOUT = 120.0

Hashes = Dict[str, Optional[str]]  # relative path → SHA-256 hex (None: not recorded, e.g. an older report)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def valid_rel(rel: object) -> bool:
    return isinstance(rel, str) and bool(_REL.match(rel))


def link_error(out: Path, rel: str) -> OutputExistsError:
    return OutputExistsError(
        f"report output {str(out)!r} holds a symbolic link {rel!r} where xaiscope writes its own file or folder; "
        "xaiscope never writes through a link it did not create (it could point outside the folder), so remove "
        "the link or pass another folder")


def check_state_dir(out: Path) -> None:
    """Refuse a ``.xaiscope`` entry that is a link or not a folder."""
    path = out / STATE_DIR
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise link_error(out, STATE_DIR)
    if not stat.S_ISDIR(st.st_mode):
        raise OutputExistsError(f"report output {str(out)!r} holds a file named {STATE_DIR!r} where xaiscope keeps "
                                "its lock and manifest; pass another folder")


def _regular(out: Path, rel: str) -> bool:
    """``out/rel`` is a regular file reached without a link (the figures folder included)."""
    if not valid_rel(rel):
        return False
    path = out / rel
    try:
        if "/" in rel and stat.S_ISLNK(os.lstat(path.parent).st_mode):
            return False
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def file_hash(out: Path, rel: str) -> Optional[str]:
    """SHA-256 of ``out/rel`` when it is a regular file reached without a link, else None."""
    if not _regular(out, rel):
        return None
    try:
        with open(out / rel, "rb") as fh:
            return sha256(fh.read())
    except OSError:
        return None


def is_own(out: Path, rel: str, digest: Optional[str]) -> bool:
    """True when ``out/rel`` is a regular file (not a link) whose bytes have ``digest`` (any bytes if None)."""
    if digest is None:
        return _regular(out, rel)
    return file_hash(out, rel) == digest


def read_manifest(out: Path) -> dict:
    """The manifest of ``out`` (an empty one when there is none or it is unreadable)."""
    empty = {"schema": MANIFEST_SCHEMA, "groups": {}, "pending": None}
    path = out / STATE_DIR / MANIFEST_FILE
    try:
        if stat.S_ISLNK(os.lstat(out / STATE_DIR).st_mode) or stat.S_ISLNK(os.lstat(path).st_mode):
            return empty
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return empty
    if not isinstance(data, dict) or data.get("schema") != MANIFEST_SCHEMA:
        return empty
    groups = data.get("groups") if isinstance(data.get("groups"), dict) else {}
    clean = {}
    for name, group in groups.items():
        files = group.get("files") if isinstance(group, dict) else None
        if isinstance(files, dict):
            clean[str(name)] = {"run": str(group.get("run", "")),
                                "files": {r: h for r, h in files.items() if valid_rel(r) and (h is None or
                                                                                            isinstance(h, str))}}
    pending = data.get("pending")
    if not (isinstance(pending, dict) and isinstance(pending.get("files"), dict)
            and isinstance(pending.get("previous", {}), dict)):
        pending = None
    return {"schema": MANIFEST_SCHEMA, "groups": clean, "pending": pending}


def settle(out: Path, manifest: dict) -> dict:
    """The manifest with an interrupted save's ``pending`` files folded into their group, checked against the disk.

    A file stays listed while it is a regular file (never a link). Its hash is then the file's current
    one when that is a hash the toolkit recorded for it (the earlier run's, or the killed save's, which
    may or may not have moved it in yet) — such a file may be removed; otherwise the user changed it
    after the toolkit wrote it: it may still be replaced under its name but is never removed.
    """
    candidates: Dict[str, Dict[str, list]] = {}
    for name, g in manifest["groups"].items():
        for rel, digest in g["files"].items():
            candidates.setdefault(name, {}).setdefault(rel, []).append(digest)
    pending = manifest.get("pending")
    if pending:
        name = str(pending.get("group", "report"))
        for source in (pending.get("previous", {}), pending["files"]):
            for rel, digest in source.items():
                if valid_rel(rel) and (digest is None or isinstance(digest, str)):
                    candidates.setdefault(name, {}).setdefault(rel, []).append(digest)
    groups = {}
    for name, files in candidates.items():
        kept: Hashes = {}
        for rel, digests in files.items():
            current = file_hash(out, rel)
            if current is None:
                continue
            kept[rel] = current if (current in digests or None in digests) else "changed:" + current
        run = manifest["groups"].get(name, {}).get("run", "")
        groups[name] = {"run": run, "files": kept}
    return {"schema": MANIFEST_SCHEMA, "groups": groups, "pending": None}


def own_files(out: Path) -> Hashes:
    """Every file in ``out`` that the toolkit wrote and that is still as it wrote it, over all groups."""
    merged: Hashes = {}
    for group in settle(out, read_manifest(out))["groups"].values():
        merged.update(group["files"])
    return merged


def write_bytes(path: Path, data: bytes) -> None:
    """Write a new file (refusing to open an existing link) and flush it to the disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as error:  # ENOSPC, EFBIG, EDQUOT...: name the file the system refused
        if error.filename is None:
            raise OSError(error.errno, error.strerror or str(error), str(path)) from error
        raise


def write_manifest(out: Path, manifest: dict, staging: Path) -> None:
    """Replace the manifest atomically (written in the staging folder, then one rename)."""
    tmp = staging / (MANIFEST_FILE + ".new")
    write_bytes(tmp, json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8"))
    os.replace(tmp, out / STATE_DIR / MANIFEST_FILE)
    sync_dir(out / STATE_DIR)


def sync_dir(path: Path) -> None:
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


def remove_staging(out: Path) -> None:
    """Remove the staging folders of earlier saves: with the lock held, every one of them is a dead save's."""
    state = out / STATE_DIR
    for entry in state.iterdir():
        if _STAGING.match(entry.name) and not entry.is_symlink() and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


def remove_legacy_staging(out: Path) -> None:
    """Remove staging folders ``.xaiscope-tmp-<pid>-*`` that earlier versions left, unless their process still runs."""
    for entry in out.iterdir():
        match = LEGACY_STAGING.match(entry.name)
        if match and entry.is_dir() and not entry.is_symlink() and not _alive(int(match.group(1)), entry):
            shutil.rmtree(entry, ignore_errors=True)


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


@contextlib.contextmanager
def locked(out: Path, timeout: Optional[float] = None) -> Iterator[None]:
    """Hold the exclusive lock of ``out`` (created on first use) for the body; wait at most ``timeout`` s.

    Raises:
        OutputBusyError: another process held the lock for the whole wait.
        OutputExistsError: ``.xaiscope`` or its lock is a link.
    """
    check_state_dir(out)
    state = out / STATE_DIR
    try:
        os.mkdir(state, 0o755)
    except FileExistsError:
        pass
    check_state_dir(out)
    dir_fd = os.open(state, os.O_RDONLY | _DIRECTORY | _NOFOLLOW)
    try:
        fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644,
                     dir_fd=dir_fd)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise link_error(out, f"{STATE_DIR}/{LOCK_FILE}") from error
        raise
    finally:
        os.close(dir_fd)
    try:
        wait = LOCK_TIMEOUT if timeout is None else float(timeout)
        deadline = time.monotonic() + wait
        while fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise OutputBusyError(
                        f"report output {str(out)!r} is being written by another xaiscope process (it held "
                        f"{STATE_DIR}/{LOCK_FILE} for the {wait:g} s this save waited); wait for that run to "
                        "finish or pass another folder") from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # releases the lock


def write_error(out: Path, error: OSError) -> OutputWriteError:
    """One line naming the folder and the file the system refused, for permission and disk-full errors."""
    where = f" ({error.filename})" if getattr(error, "filename", None) else ""
    reason = error.strerror or str(error)
    return OutputWriteError(f"could not write into report output {str(out)!r}: {reason}{where}; free some space, "
                            "fix the folder's permissions, or pass another folder")
