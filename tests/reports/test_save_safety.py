"""Every writer refuses to write through a link it did not create and never replaces or deletes a user's file.

Victims are real PNG files outside the output folder, reached by real symbolic links; every test
checks the victim's bytes after the attempt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import explain
import reports
from explain.errors import OutputExistsError, OutputWriteError, ToolkitError
from reports import build as build_module
from reports.cli import main
from reports.history import HistoryWriter, save_array

from .test_save import ROOT, assert_is_report, fake_report, make_net, png, snapshot, user_project

pytestmark = pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="needs POSIX symlinks")


@pytest.fixture
def victim(tmp_path) -> Path:
    """A user's file outside any output folder."""
    (tmp_path / "elsewhere").mkdir()
    path = tmp_path / "elsewhere" / "holiday.png"
    path.write_bytes(png(200))
    return path


@pytest.fixture
def explain_args(tmp_path):
    torch.save(make_net().state_dict(), tmp_path / "w.pt")
    torch.save({"x": torch.rand(3, 1, 8, 8), "y": torch.arange(3) % 3}, tmp_path / "data.pt")
    return ["explain", "--model", "tests.reports.test_save:make_net", "--weights", str(tmp_path / "w.pt"),
            "--kind", "image", "--data", str(tmp_path / "data.pt"), "--device", "cpu", "--quiet",
            "--method", "gradcam"]


def run_cli(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


# ---------------------------------------------------------------- xaiscope explain
def test_explain_refuses_a_link_named_like_its_output_and_leaves_the_target_alone(tmp_path, victim, explain_args,
                                                                                     capsys, monkeypatch):
    out = tmp_path / "maps"
    out.mkdir()
    (out / "gradcam-sample1.png").symlink_to(victim)
    monkeypatch.setattr(explain, "run_explainer", lambda *a, **k: pytest.fail("the explainer ran before the check"))
    code, _, err = run_cli(capsys, explain_args + ["--out", str(out)])
    assert code == 2 and len(err) == 1 and "symbolic link" in err[0] and "gradcam-sample1.png" in err[0]
    assert victim.read_bytes() == png(200) and (out / "gradcam-sample1.png").is_symlink()
    assert sorted(p.name for p in out.iterdir()) == ["gradcam-sample1.png"]


def test_explain_never_replaces_a_users_file_of_the_same_name(tmp_path, explain_args, capsys):
    out = tmp_path / "maps"
    out.mkdir()
    (out / "gradcam-sample0.png").write_bytes(png(9))
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, explain_args + ["--out", str(out)])
    assert code == 2 and len(err) == 1 and "'gradcam-sample0.png', a file xaiscope did not write" in err[0]
    assert snapshot(tmp_path) == before


def test_explain_reruns_replace_only_its_own_files(tmp_path, explain_args, capsys):
    out = tmp_path / "maps"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, printed, _ = run_cli(capsys, explain_args + ["--out", str(out)])
    assert code == 0 and len(printed.split()) == 3
    first = snapshot(out)
    code, printed, _ = run_cli(capsys, explain_args + ["--out", str(out), "--samples", "2"])
    assert code == 0 and printed.split() == [str(out / f"gradcam-sample{i}.png") for i in range(2)]
    # its own third map of the first run is removed; the user's file is kept byte for byte
    assert sorted(p.name for p in out.iterdir()) == [".xaiscope", "gradcam-sample0.png", "gradcam-sample1.png",
                                                    "notes.txt"]
    assert snapshot(out)["notes.txt"] == first["notes.txt"]


# ---------------------------------------------------------------- reports
def test_force_never_follows_a_figures_link_out_of_the_folder(tmp_path, victim):
    user_project(tmp_path / "project")
    (tmp_path / "project" / "figures").symlink_to(victim.parent)
    victim.rename(victim.parent / "performance-confusion.png")
    before = snapshot(tmp_path / "elsewhere")
    with pytest.raises(OutputExistsError, match="symbolic link 'figures'"):
        fake_report("a").save(tmp_path / "project", force=True)
    assert snapshot(tmp_path / "elsewhere") == before
    assert not (tmp_path / "project" / "index.html").exists()


def test_build_report_refuses_a_figures_link_before_any_work(tmp_path, victim, monkeypatch):
    out = tmp_path / "project"
    user_project(out)
    (out / "figures").symlink_to(victim.parent)
    monkeypatch.setattr(build_module, "read_data", lambda *a, **k: pytest.fail("the model ran before the check"))
    m = explain.ModelWrapper(make_net(), "image", device="cpu")
    with pytest.raises(OutputExistsError, match="symbolic link"):
        reports.build_report(m, (torch.rand(4, 1, 8, 8), torch.zeros(4).long()), out=out, force=True)


@pytest.mark.parametrize("name", ["index.html", "summary.json", ".xaiscope"])
def test_a_link_in_place_of_a_report_file_is_refused_with_and_without_force(tmp_path, victim, name):
    out = tmp_path / "r"
    fake_report("first").save(out)
    target = victim.parent if name == ".xaiscope" else victim
    if name == ".xaiscope":
        os.rename(out / ".xaiscope", tmp_path / "moved-state")
    else:
        (out / name).unlink()
    (out / name).symlink_to(target)
    before = snapshot(tmp_path / "elsewhere")
    for force in (False, True):
        with pytest.raises(OutputExistsError, match=f"symbolic link '{name}'"):
            fake_report("second").save(out, force=force)
    assert snapshot(tmp_path / "elsewhere") == before


def test_a_link_planted_in_place_of_an_own_figure_is_neither_written_through_nor_removed(tmp_path, victim):
    out = tmp_path / "r"
    fake_report("first").save(out)
    for name in ("confusion", "reliability"):
        (out / "figures" / f"performance-{name}.png").unlink()
        (out / "figures" / f"performance-{name}.png").symlink_to(victim)
    with pytest.raises(OutputExistsError, match="symbolic link 'figures/performance-confusion.png'"):
        fake_report("second", figures=("confusion",)).save(out)
    # a report that no longer has either figure removes neither link (they are not its files) nor the target
    fake_report("third", figures=()).save(out)
    assert victim.read_bytes() == png(200)
    assert all((out / "figures" / f"performance-{n}.png").is_symlink() for n in ("confusion", "reliability"))
    assert_is_report(out, "third")


def test_a_users_index_html_is_not_replaced_even_with_force(tmp_path):
    user_project(tmp_path / "site")
    (tmp_path / "site" / "index.html").write_text("<h1>my site</h1>")
    before = snapshot(tmp_path)
    with pytest.raises(OutputExistsError, match="'index.html', a file xaiscope did not write"):
        fake_report("a").save(tmp_path / "site", force=True)
    assert snapshot(tmp_path) == before


def test_a_users_figure_with_a_report_figure_name_is_not_replaced(tmp_path):
    out = tmp_path / "r"
    fake_report("first").save(out)
    (out / "figures" / "performance-roc.png").write_bytes(png(3))  # the user's own, not listed anywhere
    before = snapshot(tmp_path)
    with pytest.raises(OutputExistsError, match="'figures/performance-roc.png', a file xaiscope did not write"):
        fake_report("second", figures=("confusion", "roc")).save(out)
    assert snapshot(tmp_path) == before
    assert_is_report(out, "first")


def test_a_figure_the_user_edited_is_kept_when_the_next_report_drops_it(tmp_path):
    out = tmp_path / "r"
    fake_report("first").save(out)
    (out / "figures" / "performance-reliability.png").write_bytes(png(77))  # annotated by the user
    fake_report("second", figures=("confusion",)).save(out)
    assert (out / "figures" / "performance-reliability.png").read_bytes() == png(77)
    assert not (out / "figures" / "performance-reliability.png").is_symlink()
    assert_is_report(out, "second")


def test_a_forged_manifest_never_makes_a_save_delete_a_users_file(tmp_path):
    out = tmp_path / "r"
    fake_report("first").save(out)
    (out / "data.csv").write_text("a,b\n1,2\n")
    (tmp_path / "outside.txt").write_text("x")
    manifest = json.loads((out / ".xaiscope" / "manifest.json").read_text())
    files = manifest["groups"]["report"]["files"]
    files.update({"data.csv": "0" * 64, "../outside.txt": None, "/etc/hostname": None, "figures/../../outside.txt": None})
    (out / ".xaiscope" / "manifest.json").write_text(json.dumps(manifest))
    fake_report("second", figures=()).save(out)
    assert (out / "data.csv").read_text() == "a,b\n1,2\n" and (tmp_path / "outside.txt").read_text() == "x"


# ---------------------------------------------------------------- the monitor's history
def test_the_history_writer_refuses_a_link_named_like_its_file(tmp_path, victim):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "history.jsonl").symlink_to(victim)
    with pytest.raises(ToolkitError, match="symbolic link"):
        HistoryWriter(folder).append([{"type": "step", "step": 1}])
    (folder / "maps").symlink_to(victim.parent)
    with pytest.raises(ToolkitError, match="symbolic link"):
        save_array(folder, "maps/epoch-1.npy", np.zeros(3))
    assert victim.read_bytes() == png(200) and sorted(p.name for p in victim.parent.iterdir()) == ["holiday.png"]


# ---------------------------------------------------------------- unwritable folders and full disks
@pytest.fixture
def unwritable(tmp_path):
    """A folder nobody may write into, root included: marked immutable (``chattr +i``)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    res = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    if res.returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=False)


def test_an_unwritable_folder_fails_before_any_work_naming_the_path(tmp_path, unwritable, capsys, monkeypatch):
    torch.save(make_net().state_dict(), tmp_path / "w.pt")
    torch.save({"x": torch.rand(4, 1, 8, 8), "y": torch.arange(4) % 3}, tmp_path / "data.pt")
    argv = ["report", "--model", "tests.reports.test_save:make_net", "--weights", str(tmp_path / "w.pt"), "--kind",
            "image", "--data", str(tmp_path / "data.pt"), "--device", "cpu", "--quiet"]
    monkeypatch.setattr(build_module, "read_data", lambda *a, **k: pytest.fail("the model ran before the check"))
    for out in (unwritable, unwritable / "new" / "deeper"):
        code, _, err = run_cli(capsys, argv + ["--out", str(out)])
        assert code == 2 and len(err) == 1 and "no permission to write in" in err[0], err
        assert repr(str(unwritable)) in err[0]
    m = explain.ModelWrapper(make_net(), "image", device="cpu")
    with pytest.raises(OutputWriteError, match="no permission to write in"):
        reports.build_report(m, (torch.rand(4, 1, 8, 8), torch.zeros(4).long()), out=unwritable / "r")
    code, _, err = run_cli(capsys, ["explain", *argv[1:], "--out", str(unwritable)])
    assert code == 2 and len(err) == 1 and "no permission to write in" in err[0]
    assert list(unwritable.iterdir()) == []


DISK_FULL = textwrap.dedent("""
    import pickle, resource, signal, sys
    from reports import _save
    from explain.errors import ToolkitError
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)          # a write past the limit fails with EFBIG instead
    with open(sys.argv[2], "rb") as fh:
        files = pickle.load(fh)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), int(sys.argv[3])))
    try:
        _save.write_report(sys.argv[1], files)
    except ToolkitError as error:
        print(type(error).__name__, error, file=sys.stderr)
        sys.exit(2)
""")


def test_a_full_disk_gives_one_line_naming_the_path_and_keeps_the_earlier_report(tmp_path):
    import pickle
    out = tmp_path / "r"
    fake_report("first").save(out)
    before = snapshot(tmp_path)
    files = fake_report("second", figures=("confusion", "roc")).files()
    files["figures/performance-roc.png"] = os.urandom(200_000)  # larger than the file-size limit below
    (tmp_path / "files.pickle").write_bytes(pickle.dumps(files))
    before["files.pickle"] = snapshot(tmp_path)["files.pickle"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", DISK_FULL, str(out), str(tmp_path / "files.pickle"), "100000"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and len(lines) == 1, res.stderr[-2000:]
    assert lines[0].startswith("OutputWriteError") and str(out) in lines[0] and "File too large" in lines[0]
    assert "performance-roc.png" in lines[0]
    assert snapshot(tmp_path) == before  # staging removed, earlier report byte for byte
    assert issubclass(OutputWriteError, OSError)
