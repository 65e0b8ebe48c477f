"""Saving a report never touches a file that is not the report's own: API, CLI and crashes.

Every test snapshots the folder tree (path → SHA-256 of the bytes) before and after, and checks
that the only paths that changed are the report's own files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image

import explain
import reports
from explain.errors import OutputExistsError, ToolkitError
from reports import _save
from reports import build as build_module
from reports.build import Report
from reports.cli import main
from reports.report import Figure, Section, Text

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- helpers
def png(shade: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 3), (shade, 0, 255 - shade)).save(buf, format="PNG")
    return buf.getvalue()


def fake_report(title: str, figures=("confusion", "reliability")) -> Report:
    """A report built without a model: one section holding the given figures."""
    shade = sum(title.encode()) % 256
    blocks = [Text(f"report {title}")] + [Figure(name, png(shade), caption=name) for name in figures]
    return Report(title, [Section("performance", "Performance", blocks=blocks)],
                  {"xaiscope_version": explain.__version__, "input_kind": "image"})


def snapshot(root: Path) -> dict:
    """Every file and folder under ``root``: relative POSIX path → SHA-256 of its bytes (folders: 'dir')."""
    snap = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        snap[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return snap


def changed(before: dict, after: dict) -> set:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def state(prefix: str, first: bool = True) -> set:
    """The save's own bookkeeping: its hidden folder, lock and manifest (after a later save only the manifest changes)."""
    base = f"{prefix}/" if prefix else ""
    return {base + ".xaiscope/manifest.json"} | ({base + ".xaiscope", base + ".xaiscope/lock"} if first else set())


def own(prefix: str, figures=("confusion", "reliability")) -> set:
    base = f"{prefix}/" if prefix else ""
    return ({base + "index.html", base + "summary.json", base + "figures"} | state(prefix)
            | {f"{base}figures/performance-{f}.png" for f in figures})


def user_project(folder: Path) -> None:
    """A user's folder: code, data in a subfolder, a hidden file."""
    (folder / "data").mkdir(parents=True)
    (folder / "train.py").write_text("print('training')\n")
    (folder / "data" / "x.csv").write_text("a,b\n1,2\n")
    (folder / ".env").write_text("SEED=1\n")


def assert_is_report(folder: Path, title: str) -> None:
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["schema"].startswith("xaiscope.summary/") and summary["title"] == title
    page = (folder / "index.html").read_text()
    assert page.rstrip().endswith("</html>") and f"report {title}" in page
    for rel in summary["sections"]["performance"]["figures"]:
        with Image.open(folder / rel) as im:
            im.load()


# ---------------------------------------------------------------- the API
def test_a_new_nested_path_is_created_with_only_the_reports_files(tmp_path):
    before = snapshot(tmp_path)
    index = fake_report("a").save(tmp_path / "runs" / "r1")
    assert index == tmp_path / "runs" / "r1" / "index.html"
    assert changed(before, snapshot(tmp_path)) == own("runs/r1") | {"runs", "runs/r1"}
    assert_is_report(tmp_path / "runs" / "r1", "a")


def test_an_empty_folder_receives_the_report(tmp_path):
    (tmp_path / "r").mkdir()
    before = snapshot(tmp_path)
    fake_report("a").save(tmp_path / "r")
    assert changed(before, snapshot(tmp_path)) == own("r")


def test_a_folder_of_user_files_is_refused_and_left_untouched(tmp_path):
    user_project(tmp_path / "myproject")
    before = snapshot(tmp_path)
    with pytest.raises(OutputExistsError) as info:
        fake_report("a").save(tmp_path / "myproject")
    message = str(info.value)
    assert str(tmp_path / "myproject") in message and "force=True" in message and "train.py" in message
    assert isinstance(info.value, FileExistsError) and isinstance(info.value, ToolkitError)
    assert snapshot(tmp_path) == before


def test_an_existing_file_is_refused_even_with_force(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    for force in (False, True):
        with pytest.raises(OutputExistsError, match="is an existing file, not a folder; pass a folder path"):
            fake_report("a").save(tmp_path / "notes.txt", force=force)
    assert snapshot(tmp_path) == before


def test_force_writes_the_reports_files_into_a_user_folder_and_deletes_nothing(tmp_path):
    user_project(tmp_path / "myproject")
    before = snapshot(tmp_path)
    fake_report("a").save(tmp_path / "myproject", force=True)
    assert changed(before, snapshot(tmp_path)) == own("myproject")
    assert_is_report(tmp_path / "myproject", "a")
    # Now the folder holds a report: a re-run needs no force and still keeps the user's files.
    fake_report("b", figures=("confusion",)).save(tmp_path / "myproject")
    assert changed(before, snapshot(tmp_path)) == own("myproject", figures=("confusion",))
    assert_is_report(tmp_path / "myproject", "b")


def test_rerun_into_an_earlier_report_replaces_its_files_and_keeps_the_users(tmp_path):
    out = tmp_path / "r"
    fake_report("first").save(out)
    (out / "review-notes.md").write_text("looks fine")
    (out / "figures" / "annotated.png").write_bytes(png(7))
    (out / "figures" / "performance-confusion.png.bak").write_text("kept")
    before = snapshot(tmp_path)
    fake_report("second", figures=("confusion", "roc")).save(out)
    after = snapshot(tmp_path)
    # own figure "reliability" of the earlier report is removed; "roc" is new; the user's three files stay
    assert changed(before, after) == {"r/index.html", "r/summary.json", "r/figures/performance-confusion.png",
                                      "r/.xaiscope/manifest.json",
                                      "r/figures/performance-reliability.png", "r/figures/performance-roc.png"}
    assert "r/figures/performance-reliability.png" not in after
    for kept in ("r/review-notes.md", "r/figures/annotated.png", "r/figures/performance-confusion.png.bak"):
        assert after[kept] == before[kept]
    assert_is_report(out, "second")


def test_a_report_without_figures_removes_only_its_own_figures_folder_when_empty(tmp_path):
    out = tmp_path / "r"
    fake_report("first").save(out)
    fake_report("second", figures=()).save(out)
    assert sorted(p.name for p in out.iterdir()) == [".xaiscope", "index.html", "summary.json"]
    fake_report("third").save(out)
    (out / "figures" / "mine.txt").write_text("x")
    fake_report("fourth", figures=()).save(out)
    assert sorted(p.name for p in out.iterdir()) == [".xaiscope", "figures", "index.html", "summary.json"]
    assert [p.name for p in (out / "figures").iterdir()] == ["mine.txt"]


def test_out_dot_follows_the_same_rules(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    fake_report("a").save(".")
    assert changed(before, snapshot(tmp_path)) == own("")
    (tmp_path / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    fake_report("b").save(".")
    assert changed(before, snapshot(tmp_path)) == own("") - {"figures", ".xaiscope", ".xaiscope/lock"}
    assert_is_report(tmp_path, "b")
    project = tmp_path / "project"
    user_project(project)
    monkeypatch.chdir(project)
    with pytest.raises(OutputExistsError, match="'.'"):
        fake_report("c").save(".")


def test_a_users_own_summary_json_is_not_mistaken_for_a_report(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"schema": "mytool/2", "accuracy": 0.9}))
    before = snapshot(tmp_path)
    with pytest.raises(OutputExistsError, match="no earlier xaiscope report"):
        fake_report("a").save(tmp_path)
    assert snapshot(tmp_path) == before


def test_a_folder_where_a_report_file_belongs_is_refused(tmp_path):
    (tmp_path / "index.html").mkdir()
    with pytest.raises(OutputExistsError, match="folder named 'index.html'"):
        fake_report("a").save(tmp_path, force=True)
    (tmp_path / "index.html").rmdir()
    (tmp_path / "figures").write_text("not a folder")
    with pytest.raises(OutputExistsError, match="file named 'figures'"):
        fake_report("a").save(tmp_path, force=True)


def test_a_tampered_summary_never_makes_a_save_delete_outside_the_figures(tmp_path):
    out = tmp_path / "r"
    fake_report("first").save(out)
    (tmp_path / "precious.png").write_bytes(png(1))
    (out / "figures" / "keep.txt").write_text("x")
    summary = json.loads((out / "summary.json").read_text())
    summary["sections"]["performance"]["figures"] += ["figures/../../precious.png", "../precious.png",
                                                      "figures/keep.txt", "/etc/passwd"]
    (out / "summary.json").write_text(json.dumps(summary))
    fake_report("second", figures=()).save(out)
    assert (tmp_path / "precious.png").read_bytes() == png(1) and (out / "figures" / "keep.txt").exists()


def test_an_exception_while_staging_leaves_the_earlier_report_byte_for_byte(tmp_path, monkeypatch):
    out = tmp_path / "r"
    fake_report("first").save(out)
    before = snapshot(tmp_path)

    def power_cut(phase, rel):
        if phase == "staged" and rel == "summary.json":
            raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(_save, "_checkpoint", power_cut)
    with pytest.raises(KeyboardInterrupt):
        fake_report("second").save(out)
    assert snapshot(tmp_path) == before  # no staging folder left either


def test_leftovers_of_a_running_save_are_kept_and_of_a_dead_one_removed(tmp_path):
    out = tmp_path / "r"
    fake_report("first").save(out)
    live = out / f".xaiscope-tmp-{os.getppid()}-abc123"
    dead = out / ".xaiscope-tmp-999999999-zz9"
    for d in (live, dead):
        d.mkdir()
        (d / "index.html").write_text("partial")
    fake_report("second").save(out)
    assert live.exists() and not dead.exists()


# ---------------------------------------------------------------- killed mid-write
CHILD = textwrap.dedent("""
    import pickle, sys, time
    from reports import _save
    out, files, phase, target = sys.argv[1:5]
    def stop_here(p, rel):
        if (p, rel) == (phase, target):
            print("ready", flush=True)
            time.sleep(120)
    _save._checkpoint = stop_here
    with open(files, "rb") as fh:
        _save.write_report(out, pickle.load(fh))   # what Report.save does once the files are rendered
    print("finished", flush=True)
""")


def kill_save_at(out: Path, phase: str, rel: str) -> None:
    """Save the report "second" (figures confusion, roc) into ``out`` in a child process; SIGKILL it at a point."""
    files = out.parent / "second.pickle"
    files.write_bytes(pickle.dumps(fake_report("second", figures=("confusion", "roc")).files()))
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(out), str(files), phase, rel], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        line = child.stdout.readline().strip()
        assert line == "ready", (line, child.stderr.read() if child.poll() is not None else "")
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(30)
        child.stdout.close()
        child.stderr.close()
        files.unlink()
    assert child.returncode == -signal.SIGKILL


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_save_killed_while_staging_leaves_the_earlier_report_intact_and_the_next_save_cleans_up(tmp_path):
    out = tmp_path / "r"
    fake_report("first").save(out)
    (out / "notes.md").write_text("mine")
    before = snapshot(tmp_path)
    kill_save_at(out, "staged", "index.html")  # everything staged, nothing moved yet
    after = snapshot(tmp_path)
    leftovers = {k for k in changed(before, after)}
    assert leftovers and all(k.startswith("r/.xaiscope/tmp-") for k in leftovers)  # only our staging folder
    assert {k: v for k, v in after.items() if k not in leftovers} == before  # earlier report byte for byte
    assert_is_report(out, "first")
    fake_report("third").save(out)
    assert changed(before, snapshot(tmp_path)) == own("r") - {"r/figures", "r/.xaiscope", "r/.xaiscope/lock"}
    assert_is_report(out, "third") and (out / "notes.md").read_text() == "mine"


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_save_killed_while_moving_files_leaves_a_whole_readable_report(tmp_path):
    out = tmp_path / "r"
    fake_report("first").save(out)
    (out / "notes.md").write_text("mine")
    kill_save_at(out, "replaced", "figures/performance-roc.png")  # figures moved, summary and page not yet
    assert_is_report(out, "first")  # the page and summary are the earlier ones, whole; every figure is a whole PNG
    assert any(p.name.startswith("tmp-") for p in (out / ".xaiscope").iterdir())
    fake_report("third").save(out)
    assert sorted(p.name for p in out.iterdir()) == [".xaiscope", "figures", "index.html", "notes.md", "summary.json"]
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["performance-confusion.png",
                                                                    "performance-reliability.png"]
    assert_is_report(out, "third")


# ---------------------------------------------------------------- build_report and the CLI
def make_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(4, 3))


@pytest.fixture
def only_model_card(monkeypatch):
    """Reports with just the model card: these tests are about files, not numbers."""
    monkeypatch.setattr(build_module, "SECTION_BUILDERS", {"model_card": build_module.SECTION_BUILDERS["model_card"]})


def test_build_report_refuses_a_user_folder_before_doing_any_work(tmp_path, monkeypatch):
    user_project(tmp_path / "myproject")
    before = snapshot(tmp_path)
    m = explain.ModelWrapper(make_net(), "image", device="cpu")
    monkeypatch.setattr(build_module, "collect", lambda *a, **k: pytest.fail("work started before the check"))
    with pytest.raises(OutputExistsError, match="myproject"):
        reports.build_report(m, (torch.rand(6, 1, 8, 8), torch.zeros(6).long()), out=tmp_path / "myproject")
    assert snapshot(tmp_path) == before


def test_build_report_with_force_keeps_the_users_files(tmp_path, only_model_card):
    user_project(tmp_path / "myproject")
    before = snapshot(tmp_path)
    m = explain.ModelWrapper(make_net(), "image", device="cpu")
    reports.build_report(m, (torch.rand(6, 1, 8, 8), torch.zeros(6).long()), out=tmp_path / "myproject", force=True)
    assert changed(before, snapshot(tmp_path)) == {"myproject/index.html", "myproject/summary.json"} | state("myproject")


@pytest.fixture
def cli_files(tmp_path):
    torch.save(make_net().state_dict(), tmp_path / "w.pt")
    torch.save({"x": torch.rand(8, 1, 8, 8), "y": torch.arange(8) % 3}, tmp_path / "data.pt")
    return ["report", "--model", "tests.reports.test_save:make_net", "--weights", str(tmp_path / "w.pt"),
            "--kind", "image", "--data", str(tmp_path / "data.pt"), "--device", "cpu", "--quiet"]


def run_cli(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


def test_cli_refuses_a_user_folder_and_a_file_with_exit_2_and_one_line(tmp_path, cli_files, capsys, only_model_card):
    user_project(tmp_path / "myproject")
    (tmp_path / "file.txt").write_text("mine")
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, cli_files + ["--out", str(tmp_path / "myproject")])
    assert code == 2 and len(err) == 1 and "--force" in err[0] and "myproject" in err[0]
    code, _, err = run_cli(capsys, cli_files + ["--out", str(tmp_path / "file.txt")])
    assert code == 2 and len(err) == 1 and "existing file" in err[0]
    assert snapshot(tmp_path) == before


def test_cli_force_and_rerun_keep_the_users_files(tmp_path, cli_files, capsys, only_model_card):
    user_project(tmp_path / "myproject")
    before = snapshot(tmp_path)
    code, out, _ = run_cli(capsys, cli_files + ["--out", str(tmp_path / "myproject"), "--force"])
    assert code == 0 and out.strip() == str(tmp_path / "myproject" / "index.html")
    (tmp_path / "myproject" / "review.md").write_text("ok")
    code, _, _ = run_cli(capsys, cli_files + ["--out", str(tmp_path / "myproject")])  # now an earlier report
    assert code == 0
    assert changed(before, snapshot(tmp_path)) == {"myproject/index.html", "myproject/summary.json",
                                                   "myproject/review.md"} | state("myproject")


def test_cli_out_dot_writes_into_the_current_folder_under_the_same_rules(tmp_path, cli_files, capsys, monkeypatch,
                                                                         only_model_card):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code, _, _ = run_cli(capsys, cli_files + ["--out", "."])
    assert code == 0 and sorted(p.name for p in work.iterdir()) == [".xaiscope", "index.html", "summary.json"]
    (work / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    code, _, _ = run_cli(capsys, cli_files + ["--out", "."])
    assert code == 0 and changed(before, snapshot(tmp_path)) <= {"work/index.html", "work/summary.json", "work/.xaiscope/manifest.json"}
    assert "work/notes.txt" in before and (work / "notes.txt").read_text() == "mine"
    monkeypatch.chdir(tmp_path)  # holds w.pt and data.pt: not a report
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, cli_files + ["--out", "."])
    assert code == 2 and len(err) == 1 and "--force" in err[0]
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_first_save_killed_while_moving_files_does_not_block_the_next_save(tmp_path):
    out = tmp_path / "new"
    out.mkdir()
    kill_save_at(out, "replaced", "figures/performance-confusion.png")  # one figure in place, nothing else
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["performance-confusion.png"]
    fake_report("third", figures=("reliability",)).save(out)  # no force needed: the figure is ours
    assert changed({}, snapshot(tmp_path)) == own("new", figures=("reliability",)) | {"new"}
    assert_is_report(out, "third")
