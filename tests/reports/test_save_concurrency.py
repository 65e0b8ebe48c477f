"""Saves into one folder from several real processes, and saves killed with SIGKILL between any two steps.

The processes are forked from the test (so they start in milliseconds); each runs the real save and
is stopped by the kernel, not by an exception: nothing in the save gets to clean up after itself.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from PIL import Image

from explain.errors import OutputBusyError, ToolkitError
from reports import _save

from .test_save import fake_report, png, snapshot

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or not hasattr(signal, "SIGKILL"),
                                reason="needs fork and SIGKILL")
CTX = multiprocessing.get_context("fork") if hasattr(os, "fork") else None


def child(target) -> multiprocessing.Process:
    proc = CTX.Process(target=target, daemon=True)
    proc.start()
    return proc


def figures_on_disk(out: Path) -> set:
    folder = out / "figures"
    return {f"figures/{p.name}" for p in folder.iterdir()} if folder.is_dir() else set()


def assert_whole_report(out: Path, titles) -> dict:
    """index.html and summary.json are each whole, from one of ``titles``, and every listed figure is a whole PNG."""
    summary = json.loads((out / "summary.json").read_text())
    assert summary["title"] in titles
    page = (out / "index.html").read_text()
    assert page.rstrip().endswith("</html>") and any(f"report {t}" in page for t in titles)
    for rel in summary["sections"]["performance"]["figures"]:
        with Image.open(out / rel) as im:
            im.load()
    return summary


# ---------------------------------------------------------------- the lock
def test_a_second_writer_waits_a_bounded_time_then_fails_naming_the_folder(tmp_path):
    out = tmp_path / "r"
    fake_report("first").save(out)
    holding = CTX.Event()

    def hold_the_lock():
        def stop(phase, rel):
            if phase == "locked":
                holding.set()
                time.sleep(60)
        _save._checkpoint = stop
        fake_report("slow").save(out)

    proc = child(hold_the_lock)
    try:
        assert holding.wait(60)
        before = snapshot(tmp_path)
        start = time.monotonic()
        with pytest.raises(OutputBusyError) as info:
            _save.write_report(out, fake_report("second").files(), lock_timeout=0.5)
        assert 0.5 <= time.monotonic() - start < 10
        assert str(out) in str(info.value) and "another xaiscope process" in str(info.value)
        assert isinstance(info.value, ToolkitError)
        assert snapshot(tmp_path) == before
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)
    # the kernel released the dead holder's lock: the next save goes through and cleans its staging folder
    fake_report("third").save(out)
    assert_whole_report(out, ["third"]) and _save.report_run(out)
    assert sorted(p.name for p in (out / ".xaiscope").iterdir()) == ["lock", "manifest.json"]


def test_a_waiting_writer_proceeds_once_the_other_save_finishes(tmp_path):
    out = tmp_path / "r"
    holding = CTX.Event()

    def slow_save():
        def pause(phase, rel):
            if phase == "locked":
                holding.set()
                time.sleep(1.0)
        _save._checkpoint = pause
        fake_report("slow", figures=("a", "b", "c")).save(out)

    proc = child(slow_save)
    assert holding.wait(60)
    fake_report("fast", figures=("a",)).save(out)  # waits for the lock, then replaces the slow report whole
    proc.join(60)
    assert proc.exitcode == 0
    assert assert_whole_report(out, ["fast"])["sections"]["performance"]["figures"] == ["figures/performance-a.png"]
    assert figures_on_disk(out) == {"figures/performance-a.png"}


def test_processes_racing_into_one_folder_leave_one_whole_report_and_no_stray_figure(tmp_path):
    out = tmp_path / "r"
    fake_report("seed", figures=("seed",)).save(out)
    (out / "notes.md").write_text("mine")
    go = CTX.Event()
    plans = {"red": ("confusion", "reliability", "roc"), "blue": ("confusion", "histograms"), "green": ()}

    def racer(name):
        def run():
            _save._checkpoint = lambda phase, rel: time.sleep(0.002)  # widen every window between two steps
            go.wait(60)
            for i in range(4):
                fake_report(f"{name}{i}", figures=plans[name]).save(out)
        return run

    procs = [child(racer(name)) for name in plans]
    go.set()
    for proc in procs:
        proc.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    summary = assert_whole_report(out, [f"{n}{i}" for n in plans for i in range(4)])
    assert _save.report_run(out) == summary["run"]  # page and summary from one save
    listed = set(summary["sections"]["performance"]["figures"])
    assert figures_on_disk(out) == listed  # every figure of the losing saves is gone, the winner's are all there
    assert sorted(p.name for p in out.iterdir()) == [".xaiscope", *(["figures"] if listed else []), "index.html",
                                                     "notes.md", "summary.json"]
    assert (out / "notes.md").read_text() == "mine"
    assert sorted(p.name for p in (out / ".xaiscope").iterdir()) == ["lock", "manifest.json"]


# ---------------------------------------------------------------- killed between any two steps
def save_steps(tmp_path: Path) -> list:
    """Every step a save of "second" over "first" reports, in order, recorded on a scratch folder."""
    scratch = tmp_path / "scratch"
    fake_report("first").save(scratch)
    steps = []
    _save._checkpoint = lambda phase, rel: steps.append((phase, rel))
    try:
        fake_report("second", figures=("confusion", "roc")).save(scratch)
    finally:
        _save._checkpoint = None
    shutil.rmtree(scratch)
    return steps


def test_a_save_killed_after_any_step_leaves_a_whole_report_and_the_next_save_cleans_up(tmp_path):
    steps = save_steps(tmp_path)
    phases = [phase for phase, _ in steps]
    assert phases[0] == "locked" and phases[-1] == ("manifest") and "removed" in phases
    assert steps.index(("manifest", "pending")) < steps.index(("replaced", "figures/performance-confusion.png"))
    for n, step in enumerate(steps):
        out = tmp_path / f"r{n}"
        fake_report("first").save(out)
        (out / "notes.md").write_text("mine")
        (out / "figures" / "mine.png").write_bytes(png(5))
        first_run = _save.report_run(out)

        def killed_save():
            def kill_here(phase, rel):
                if (phase, rel) == step:
                    os.kill(os.getpid(), signal.SIGKILL)
            _save._checkpoint = kill_here
            fake_report("second", figures=("confusion", "roc")).save(out)

        proc = child(killed_save)
        proc.join(60)
        assert proc.exitcode == -signal.SIGKILL, step
        summary = assert_whole_report(out, ["first", "second"])
        if step == ("replaced", "summary.json"):  # between the last two renames: the page is the earlier one
            assert summary["title"] == "second" and "report first" in (out / "index.html").read_text()
            assert _save.report_run(out) is None  # and a reader can tell
        else:
            assert _save.report_run(out) in {first_run, summary["run"]}, step
        assert (out / "notes.md").read_text() == "mine" and (out / "figures" / "mine.png").read_bytes() == png(5)
        # the next save finds every file the killed one may have moved in, and removes those it does not rewrite
        fake_report("third", figures=("other",)).save(out)
        assert_whole_report(out, ["third"]) and _save.report_run(out)
        assert figures_on_disk(out) == {"figures/performance-other.png", "figures/mine.png"}, step
        assert sorted(p.name for p in out.iterdir()) == [".xaiscope", "figures", "index.html", "notes.md",
                                                         "summary.json"], step
        assert sorted(p.name for p in (out / ".xaiscope").iterdir()) == ["lock", "manifest.json"], step
