"""The training history on disk: a JSON-lines file appended line by line, plus small ``.npy`` files.

Layout of a monitor folder::

    history.jsonl          one JSON object per line: {"type": "meta" | "step" | "epoch" | "probe", ...}
                           (a "probe" record adds probe values to an epoch written before them)
    samples.npy            the fixed probe samples whose explanations are tracked
    maps/epoch-0003.npy    their maps at epoch 3 (float16)

Each record is written with one ``write`` on a file opened for appending, so a reader never sees a
line from two records interleaved, and a run killed mid-write leaves at worst one incomplete last
line, which :func:`read_history` skips. Arrays are written to a temporary file and renamed into place.

Example:
    >>> h = read_history("runs/exp1")          # doctest: +SKIP
    >>> [e["probes"]["accuracy"] for e in h.epochs]
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Union

import numpy as np

from explain.attribution import jsonable
from explain.errors import EmptyDataError, InputShapeError

__all__ = ["HISTORY_FILE", "TrainingHistory", "read_history", "append_record", "append_records", "save_array",
           "prepare_folder",
           "sync_history", "HistoryWriter"]

HISTORY_FILE = "history.jsonl"


def append_record(folder: Union[str, os.PathLike], record: dict, *, sync: bool = False) -> None:
    """Append one record as one complete line (a single ``write`` in append mode)."""
    append_records(folder, [record], sync=sync)


def append_records(folder: Union[str, os.PathLike], records: List[dict], *, sync: bool = False) -> None:
    """Append records as complete lines, all in one ``write`` in append mode."""
    writer = HistoryWriter(folder)
    try:
        writer.append(records, sync=sync)
    finally:
        writer.close()


def _line(record: dict) -> str:
    # plain records (numbers, strings, None) go straight to json; anything else (tensors, NumPy
    # scalars, NaN or infinity, which allow_nan=False refuses) through jsonable
    try:
        text = json.dumps(record, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        text = json.dumps(jsonable(record), separators=(",", ":"), allow_nan=False)
    return text + "\n"


class HistoryWriter:
    """Appends records to a folder's history through one file descriptor kept open in append mode.

    Every :meth:`append` is one ``write`` of complete lines, so readers see whole records only,
    and what is written is in the file at once (the operating system's page cache), readable by
    other processes and kept if this one is killed; ``sync=True`` also flushes it to the disk.
    Keeping the file open spares an ``open``/``close`` per append, which on runs with epochs of a
    few milliseconds costs more than the record. :meth:`close` releases the descriptor; a later
    :meth:`append` reopens it.

    Example:
        >>> w = HistoryWriter("runs/exp1"); w.append([{"type": "step", "step": 1}]); w.close()  # doctest: +SKIP
    """

    def __init__(self, folder: Union[str, os.PathLike]) -> None:
        self.path = os.path.join(folder, HISTORY_FILE)
        self._fd: Optional[int] = None

    def append(self, records: List[dict], *, sync: bool = False) -> None:
        """Append ``records`` as complete lines in one ``write``; ``sync`` also flushes the file to the
        disk (``fsync``)."""
        if not records and not sync:
            return
        data = "".join(_line(r) for r in records).encode("utf-8")
        if self._fd is None:
            try:  # never through a link: it could point at any file outside the folder
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0),
                                   0o644)
            except OSError as error:
                if os.path.islink(self.path):
                    raise InputShapeError(f"{self.path} is a symbolic link; the monitor never writes through a link "
                                          "(it could point outside the folder): remove it or choose another out=") \
                        from error
                raise
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if sync:
            os.fsync(self._fd)

    def close(self) -> None:
        """Release the file descriptor (safe to call twice)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __del__(self) -> None:  # a monitor never closed still releases its descriptor
        try:
            self.close()
        except OSError:
            pass


def sync_history(folder: Union[str, os.PathLike]) -> None:
    """Flush the history file to the disk (``fsync``), if there is one."""
    path = os.path.join(folder, HISTORY_FILE)
    if not os.path.exists(path):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_array(folder: Union[str, os.PathLike], relative: str, array: np.ndarray) -> str:
    """Write ``array`` to ``folder/relative`` (``.npy``) atomically; returns ``relative``."""
    path = Path(folder) / relative
    for parent in path.relative_to(folder).parents:
        if parent != Path(".") and (Path(folder) / parent).is_symlink():
            raise InputShapeError(f"{Path(folder) / parent} is a symbolic link; the monitor never writes through a "
                                  "link (it could point outside the folder): remove it or choose another out=")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, array)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return relative


def prepare_folder(folder: Union[str, os.PathLike], resume: bool) -> Path:
    """Create the monitor folder, or check that an existing one may be written to.

    Raises:
        InputShapeError: the folder holds other files (never overwritten), or a history while
            ``resume`` is False.
    """
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise InputShapeError(f"monitor out={str(path)!r} is a file; give a folder path")
    if path.is_dir() and any(path.iterdir()):
        if not (path / HISTORY_FILE).exists():
            raise InputShapeError(f"{path} already holds files that are not a training history; xaiscope writes only "
                                  "into a new folder or its own, so choose another out=")
        if not resume:
            raise InputShapeError(f"{path} already holds a training history; pass resume=True to continue it, or "
                                  "choose a new out= folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class TrainingHistory:
    """A history read back: the run's facts, step and epoch records, and where its arrays live.

    Attributes:
        meta: the last ``meta`` record (model facts, probe settings).
        steps, epochs: the records in file order.
        skipped: lines that were incomplete or not JSON (e.g. the last line of a killed run).
    """

    folder: Path
    meta: dict = field(default_factory=dict)
    steps: List[dict] = field(default_factory=list)
    epochs: List[dict] = field(default_factory=list)
    skipped: int = 0

    def array(self, relative: Optional[str]) -> Optional[np.ndarray]:
        """An array the history refers to (e.g. an epoch's ``maps``), or ``None`` if missing."""
        if not relative:
            return None
        path = self.folder / relative
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None

    def probed_epochs(self) -> List[int]:
        """The epochs whose ends ran the probes (older histories: those with probe values)."""
        return [int(e["epoch"]) for e in self.epochs if e.get("probed", bool(e.get("probes")))]

    def samples(self) -> Optional[np.ndarray]:
        """The fixed probe samples whose maps are tracked (``None`` without the explanation probe)."""
        return self.array(self.meta.get("samples_file"))

    def probe_names(self) -> List[str]:
        """Every probe value recorded in any epoch, in first-seen order."""
        names: List[str] = []
        for e in self.epochs:
            for k in (e.get("probes") or {}):
                if k not in names:
                    names.append(k)
        return names


def read_history(folder: Union[str, os.PathLike]) -> TrainingHistory:
    """Read a monitor folder (or its ``history.jsonl``); safe while training still appends to it.

    Raises:
        EmptyDataError: no history file, or one without a single complete record.
    """
    path = Path(folder)
    file = path if path.is_file() else path / HISTORY_FILE
    if not file.is_file():
        raise EmptyDataError(f"no training history at {file}; pass the folder a reports.Monitor wrote (out=...)")
    h = TrainingHistory(folder=file.parent)
    with open(file, "rb") as fh:
        data = fh.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        lines.pop()  # no newline yet: a record still being written
        h.skipped += 1
    for raw in lines:
        try:
            rec = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            h.skipped += 1
            continue
        kind = rec.get("type") if isinstance(rec, dict) else None
        if kind == "meta":
            h.meta = rec
        elif kind == "step":
            h.steps.append(rec)
        elif kind == "epoch":
            h.epochs.append(rec)
        elif kind == "probe":  # probes of an epoch run after its record was written (Monitor.close)
            target = next((e for e in reversed(h.epochs) if e.get("epoch") == rec.get("epoch")), None)
            if target is None:
                h.skipped += 1
            else:
                target.update({k: rec[k] for k in ("probes", "maps", "probe_seconds", "probed") if k in rec})
        else:
            h.skipped += 1
    if not (h.meta or h.steps or h.epochs):
        raise EmptyDataError(f"{file} holds no complete record yet")
    return h
