"""reports.Monitor: training with it is bit-identical to training without it; history on disk."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import explain
import reports
from explain.errors import InputShapeError
from explain.zoo import SmallCNN, planted_images
from reports.history import read_history
from robustness import probes as P

ROOT = Path(__file__).resolve().parents[2]


def _train(with_monitor: bool, tmp_path: Path, probes=("accuracy", "explanations", "robustness", "ood")):
    data = planted_images(96, size=16, patch=6, seed=3)
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Dropout(0.3),
                        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Dropout(0.2), nn.Linear(8, 4))
    m = explain.ModelWrapper(net, "image", class_names=data.class_names, device="cpu")
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    mon = None
    if with_monitor:
        mon = reports.Monitor(m, probe=(data.x[:32], data.y[:32]), probes=list(probes), every="epoch", out=tmp_path / "run",
                              ood=torch.rand(32, 3, 16, 16, generator=torch.Generator().manual_seed(9)), attack_steps=2, progress=False, live=False)
    net.train()
    draws = []
    for epoch in range(2):
        for i in range(0, 64, 16):
            xb, yb = data.x[i:i + 16], data.y[i:i + 16]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(xb), yb)
            loss.backward()
            opt.step()
            if mon is not None:
                mon.step(loss=loss, lr=opt.param_groups[0]["lr"], batch_size=len(xb))
        if mon is not None:
            rec = mon.epoch_end()
            assert net.training and all(p.requires_grad for p in net.parameters())
            assert all(p.grad is not None for p in net.parameters())
            assert set(rec["probes"]) >= {"accuracy", "ece", "robust_accuracy", "ood_auroc"}
        # random draws after the probes must continue the same streams
        draws.append((torch.rand(3).tolist(), float(np.random.rand()), random.random()))
    return net, opt, draws


def test_training_with_every_probe_gives_bit_identical_weights_and_random_streams(tmp_path):
    net_a, opt_a, draws_a = _train(False, tmp_path)
    net_b, opt_b, draws_b = _train(True, tmp_path)
    for (k, a), (_, b) in zip(net_a.state_dict().items(), net_b.state_dict().items()):
        assert torch.equal(a, b), k
    for pa, pb in zip(net_a.parameters(), net_b.parameters()):
        assert torch.equal(pa.grad, pb.grad)
    sa, sb = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
    assert all(torch.equal(sa[i]["momentum_buffer"], sb[i]["momentum_buffer"]) for i in sa)
    assert draws_a == draws_b
    h = read_history(tmp_path / "run")
    assert [e["epoch"] for e in h.epochs] == [1, 2] and len(h.steps) == 8
    assert h.epochs[1]["probes"]["explanation_rank_correlation"] is not None
    assert h.array(h.epochs[1]["maps"]).shape == (4, 16, 16)
    assert h.samples().shape == (4, 3, 16, 16)


def test_preserved_training_state_restores_flags_and_rng_even_when_the_block_raises():
    net = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))
    net.train()
    net[0].weight.requires_grad_(False)
    state = torch.get_rng_state()
    with pytest.raises(RuntimeError):
        with P.preserved_training_state(net):
            net.eval()
            net[0].weight.requires_grad_(True)
            torch.rand(10)
            np.random.rand(3)
            raise RuntimeError("probe failed")
    assert net.training and net[1].training and not net[0].weight.requires_grad
    assert torch.equal(torch.get_rng_state(), state)


def test_classification_metrics_agree_with_scikit_learn():
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (300,), generator=gen)
    pred = torch.where(torch.rand(300, generator=gen) < 0.6, y, torch.randint(0, 5, (300,), generator=gen))
    pred[pred == 4] = 3  # class 4 is never predicted: zero precision, by convention
    got = P.classification_metrics(pred, y, 5)
    p, r, f, _ = precision_recall_fscore_support(y, pred, labels=range(5), average="macro", zero_division=0)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((p, r, f))


def test_expected_calibration_error_matches_a_hand_computed_case():
    # two bins: confidences 0.9 (2 samples, 1 right) and 0.6 (2 samples, 2 right)
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    labels = torch.tensor([0, 1, 1, 1])
    assert P.expected_calibration_error(probs, labels, bins=10) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)


def test_rank_correlation_agrees_with_scipy_including_ties():
    stats = pytest.importorskip("scipy.stats")
    gen = torch.Generator().manual_seed(1)
    a = torch.randint(0, 4, (3, 5, 5), generator=gen).float()
    b = a + torch.randn(3, 5, 5, generator=gen)
    got = P.rank_correlation(a, b)
    for i in range(3):
        assert float(got[i]) == pytest.approx(stats.spearmanr(a[i].flatten(), b[i].flatten())[0], abs=1e-9)
    assert torch.isnan(P.rank_correlation(torch.ones(1, 4), torch.rand(1, 4)))[0]


def _tiny():
    data = planted_images(64, size=16, patch=6, seed=4)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4, 4))
    return explain.ModelWrapper(net, "image", class_names=data.class_names, device="cpu"), data.x, data.y


def test_monitor_refuses_unknown_probes_missing_data_and_foreign_folders(tmp_path):
    m, x, y = _tiny()
    with pytest.raises(InputShapeError, match="unknown probes"):
        reports.Monitor(m, probe=(x[:8], y[:8]), probes=["acuracy"])
    with pytest.raises(InputShapeError, match="ood"):
        reports.Monitor(m, probe=(x[:8], y[:8]), probes=["ood"])
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(InputShapeError, match="not a training history"):
        reports.Monitor(m, probe=(x[:8], y[:8]), out=tmp_path, progress=False)
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    run = tmp_path / "run"
    kw = dict(probes=["accuracy", "explanations"], progress=False, live=False)
    reports.Monitor(m, probe=(x[:8], y[:8]), out=run, **kw).epoch_end()
    with pytest.raises(InputShapeError, match="resume=True"):
        reports.Monitor(m, probe=(x[:8], y[:8]), out=run, **kw)
    rec = reports.Monitor(m, probe=(x[:8], y[:8]), out=run, resume=True, **kw).epoch_end()
    # epochs continue, and drift is measured against the maps saved before the restart (unchanged weights)
    assert rec["epoch"] == 2 and rec["probes"]["explanation_rank_correlation"] == pytest.approx(1.0, abs=1e-3)  # maps are stored as float16


def test_accuracy_probe_on_a_trained_model_matches_its_predictions(cnn):
    """The probe's accuracy equals the share of correct predictions; F1 is high on a trained model."""
    mon = reports.Monitor(cnn.wrapper, probe=(cnn.x[:64], cnn.y[:64]), progress=False)
    rec = mon.epoch_end()
    expected = float((cnn.wrapper.predict(cnn.x[:64]) == cnn.y[:64]).float().mean())
    assert rec["probes"]["accuracy"] == pytest.approx(expected)
    assert 0 <= rec["probes"]["ece"] <= 1 and rec["probes"]["f1"] > 0.5


SCRIPT = textwrap.dedent("""
    import sys, time, torch
    import explain, reports
    from torch import nn
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    m = explain.ModelWrapper(net, "image", device="cpu")
    x, y = torch.rand(16, 3, 2, 2), torch.randint(0, 3, (16,))
    mon = reports.Monitor(m, probe=(x, y), out=sys.argv[1], every="epoch", progress=False)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for epoch in range(10**6):
        for _ in range(5):
            opt.zero_grad(); loss = nn.functional.cross_entropy(net(x), y); loss.backward(); opt.step()
            mon.step(loss=loss, lr=0.1, batch_size=16)
        mon.epoch_end()
        if epoch == 3:
            print("ready", flush=True)
""")


def test_a_killed_run_leaves_a_readable_history_and_reading_while_writing_is_safe(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        seen = []
        for _ in range(20):  # read repeatedly while the run appends
            h = read_history(out)
            seen.append(len(h.epochs))
            assert all(isinstance(e["probes"]["accuracy"], float) for e in h.epochs)
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    h = read_history(out)
    assert h.meta["input_kind"] == "image" and len(h.epochs) >= 4 and h.skipped <= 1
    assert [e["epoch"] for e in h.epochs] == list(range(1, len(h.epochs) + 1))
    assert seen == sorted(seen) and seen[-1] >= 4
    with open(out / "history.jsonl") as fh:
        complete = [line for line in fh if line.endswith("\n")]
    assert all(json.loads(line)["type"] in ("meta", "step", "epoch") for line in complete)
