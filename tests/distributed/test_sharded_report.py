"""Sharded reports: the same summary.json from 1, 2 and 3 gloo processes, and failures that stop every rank.

The processes are real: each is ``python -m tests.distributed._worker`` with the environment
torchrun would give it (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), or torchrun
itself for the command line. The single-process reference is the plain API in this process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.distributed import _worker
from tests.distributed._compare import differences

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), XAISCOPE_DIST_TIMEOUT="60", **extra)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None) if key not in extra else None
    return env


def _spawn(folder: Path, world: int, fail_rank: int = -1, form: str = "tensors") -> list:
    """Start ``world`` worker processes and wait for all; returns ``(returncode, stderr)`` per rank."""
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, "-m", "tests.distributed._worker", str(folder), str(fail_rank), form],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env(RANK=str(r), WORLD_SIZE=str(world), LOCAL_RANK=str(r), MASTER_ADDR="127.0.0.1",
                                       MASTER_PORT=port))
             for r in range(world)]
    out = []
    try:
        for p in procs:
            _, err = p.communicate(timeout=TIMEOUT)
            out.append((p.returncode, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return out


@pytest.fixture(scope="module")
def folder(cnn, tmp_path_factory) -> Path:
    """Weights of the trained planted-image CNN and 37 samples (a prime: no world size divides it)."""
    path = tmp_path_factory.mktemp("sharded")
    state = _worker.SmallCNN(num_classes=len(_worker.CLASSES))
    assert len(cnn.wrapper.class_names) == len(_worker.CLASSES)
    state.load_state_dict(cnn.net.state_dict())
    torch.save(state.state_dict(), path / "w.pt")
    torch.save({"x": cnn.x[:37].clone(), "y": cnn.y[:37].clone()}, path / "data.pt")
    return path


@pytest.mark.slow
def test_summary_is_the_same_on_one_two_and_three_processes(folder, tmp_path):
    reference = json.loads(json.dumps(_worker.build(folder).to_dict()))  # one plain process, no group
    assert reference["sections"]["robustness"]["error"] is None and reference["sections"]["ood"]["error"] is None
    assert reference["world_size"] == 1
    for world in (2, 3):
        run = tmp_path / f"w{world}"
        run.mkdir()
        for name in ("w.pt", "data.pt"):
            (run / name).write_bytes((folder / name).read_bytes())
        results = _spawn(run, world)
        assert all(code == 0 for code, _ in results), results
        summary = json.loads((run / "out" / "summary.json").read_text())
        assert summary["world_size"] == world
        assert summary["sections"]["model_card"]["summary"]["world_size"] == world
        errors = {k: v["error"] for k, v in summary["sections"].items() if v["error"]}
        assert not errors, errors
        assert differences(reference, summary) == [], f"world {world} differs from one process"
        # only rank 0 wrote: the folder holds exactly the report's own files
        written = sorted(p.relative_to(run / "out").as_posix() for p in (run / "out").rglob("*") if p.is_file())
        figures = [f for s in summary["sections"].values() for f in s["figures"]]
        assert figures and written == sorted(["index.html", "summary.json", *figures,
                                              ".xaiscope/lock", ".xaiscope/manifest.json"])


@pytest.mark.slow
@pytest.mark.parametrize("form", ["loader", "generator"])
def test_streamed_data_gives_the_same_summary_on_one_and_two_processes(folder, tmp_path, form):
    """37 samples in batches of 8 (5 batches, so rank 0 runs 3 and rank 1 runs 2), 20 kept whole:
    an unshuffled DataLoader is read only where each rank's batches lie, a generator whole by both."""
    reference = json.loads(json.dumps(_worker.build(folder, form=form).to_dict()))
    assert reference["samples"] == 37 and reference["kept_samples"] == 20
    assert sum(map(sum, reference["sections"]["performance"]["summary"]["confusion_matrix"])) == 37
    for name in ("w.pt", "data.pt"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    results = _spawn(tmp_path, 2, form=form)
    assert all(code == 0 for code, _ in results), results
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert not {k: v["error"] for k, v in summary["sections"].items() if v["error"]}
    diff = differences(reference, summary)
    assert diff == [], f"{form} on two processes differs from one process:\n" + "\n".join(diff)


@pytest.mark.parametrize("form", ["loader", "batches"])
def test_public_functions_stream_each_rank_its_own_batches_with_the_same_results(folder, tmp_path, form):
    """robust_accuracy, corruption_accuracy and evaluate_ood (Mahalanobis and ViM fitted from
    all-reduced statistics, KNN from a bank split across ranks) on 37 samples in batches of 8:
    rank 0 takes batches 0, 2, 4 and rank 1 batches 1, 3, so rank 1 sits out the last round,
    in which KNN's collective scoring must still meet. Every number equals one process's."""
    reference = json.loads(json.dumps(_worker.api(folder, form)))
    assert reference["ood"]["errors"] == {} and set(reference["ood"]["methods"]) == {"msp", "mahalanobis", "knn", "vim"}
    assert 0 < reference["robust"]["flipped_share"] <= 1
    for name in ("w.pt", "data.pt"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    results = _spawn(tmp_path, 2, form=f"api-{form}")
    assert all(code == 0 for code, _ in results), results
    diff = differences(reference, json.loads((tmp_path / "api.json").read_text()))
    assert diff == [], "\n".join(diff)


@pytest.mark.slow
def test_a_rank_that_fails_inside_a_section_stops_every_rank_with_its_error_printed_once(folder, tmp_path):
    for name in ("w.pt", "data.pt"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    results = _spawn(tmp_path, 3, fail_rank=1)
    assert all(code != 0 for code, _ in results), results
    stderr = "".join(err for _, err in results)
    assert stderr.count("planted failure on rank 1") == 1, stderr
    assert "rank 1" in results[1][1]
    assert not (tmp_path / "out" / "summary.json").exists()


def test_torchrun_cli_stops_every_rank_when_one_cannot_run_the_model(folder, tmp_path):
    model = _worker.failing_cnn()
    model.net.load_state_dict(torch.load(folder / "w.pt", weights_only=True))
    torch.save(model.state_dict(), tmp_path / "w.pt")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "reports.cli",
           "report", "--model", "tests.distributed._worker:failing_cnn", "--weights", str(tmp_path / "w.pt"),
           "--kind", "image", "--data", str(folder / "data.pt"), "--class-names", ",".join(_worker.CLASSES),
           "--out", str(tmp_path / "out"), "--quiet"]
    done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode != 0
    assert done.stderr.count("planted failure on rank 1") == 1, done.stderr
    assert "xaiscope report: error: rank 1 of 2:" in done.stderr
    assert not (tmp_path / "out").exists()
