"""What the monitor records per step: numbers equal to torch's own gradient norm and loss, read in
bulk at write time; history lines encoded the same way whether a record is plain or needs conversion."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import explain
import reports
from explain.attribution import jsonable
from explain.zoo import planted_images
from reports import _monitor_parts as monitor_parts
from reports._monitor_parts import gradient_norm, gradient_norm_tensor, resolve_steps
from reports.history import HISTORY_FILE, HistoryWriter, _line, read_history


def test_step_records_hold_torchs_loss_and_gradient_norm_and_leave_nonfinite_losses_out_of_the_mean(tmp_path):
    data = planted_images(48, size=8, patch=3, seed=1)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))
    m = explain.ModelWrapper(net, "image", device="cpu")
    mon = reports.Monitor(m, probe=(data.x[:8], data.y[:8]), every="epoch", out=tmp_path / "run", progress=False,
                          live=False, grad_norm_share=None)  # the norm on every step, however cheap the step
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    losses, norms = [], []
    net.train()
    for epoch in range(2):
        for i in range(0, 48, 16):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(data.x[i:i + 16]), data.y[i:i + 16])
            loss.backward()
            norms.append(float(torch.nn.utils.get_total_norm([p.grad for p in net.parameters()])))
            losses.append(loss.item())
            rec = mon.step(loss=loss, lr=0.1, batch_size=16)
            opt.step()
        mon.step(loss=torch.tensor(float("nan")), lr=0.1, batch_size=16)  # a diverged step
        epoch_rec = mon.epoch_end()
        assert epoch_rec["loss"] == pytest.approx(np.mean(losses[-3:]), rel=1e-12)
    assert isinstance(rec["loss"], float) and isinstance(rec["grad_norm"], float)  # read at the epoch's end
    mon.close()
    h = read_history(tmp_path / "run")
    finite = [s for s in h.steps if s["loss"] is not None]
    assert len(h.steps) == 8 and len(finite) == 6
    assert [s["loss"] for s in finite] == pytest.approx(losses, rel=1e-6)
    assert [s["grad_norm"] for s in finite] == pytest.approx(norms, rel=1e-5)
    assert [s["step"] for s in h.steps] == list(range(1, 9))
    assert all(isinstance(e["monitor_seconds"], float) and e["monitor_seconds"] >= 0 for e in h.epochs)


def test_gradient_norm_matches_torch_for_mixed_dtypes_and_missing_gradients(monkeypatch):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4).double(), nn.Linear(4, 3))  # mixed dtypes take the per-tensor path
    assert gradient_norm(net) is None and gradient_norm_tensor(list(net.parameters())) is None
    net[1](net[0](torch.randn(7, 5, dtype=torch.float64)).float()).pow(2).sum().backward()
    net[1].bias.grad = None  # a parameter without a gradient is skipped
    grads = [p.grad.double() for p in net.parameters() if p.grad is not None]
    assert len(grads) == 3
    assert gradient_norm(net) == pytest.approx(float(torch.nn.utils.get_total_norm(grads)), rel=1e-6)
    net.float()
    net[1](net[0](torch.randn(7, 5))).pow(2).sum().backward()  # one dtype: the fused path
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    want = float(torch.nn.utils.get_total_norm(grads))
    assert gradient_norm(net) == pytest.approx(want, rel=1e-6)
    monkeypatch.setattr(monitor_parts, "CAT_NUMEL", 0)  # large models: one norm per tensor, fused
    assert gradient_norm(net) == pytest.approx(want, rel=1e-6)


def test_resolving_steps_reads_every_tensor_once_and_leaves_numbers_alone():
    recs = [{"loss": torch.tensor(0.5), "grad_norm": torch.tensor([2.0], dtype=torch.float64)},
            {"loss": 0.25, "grad_norm": None},
            {"loss": torch.tensor(float("inf"), dtype=torch.bfloat16), "grad_norm": 3.0}]
    resolve_steps(recs)
    assert recs[0] == {"loss": 0.5, "grad_norm": 2.0} and recs[1] == {"loss": 0.25, "grad_norm": None}
    assert math.isinf(recs[2]["loss"]) and recs[2]["grad_norm"] == 3.0
    assert all(type(v) in (float, type(None)) for r in recs for v in r.values())


@pytest.mark.parametrize("record", [
    {"type": "step", "step": 3, "loss": 0.125, "lr": None, "name": "a", "ok": True, "probes": {"accuracy": 0.5}},
    {"type": "step", "loss": float("nan"), "grad_norm": float("inf"), "lr": -float("inf")},
    {"type": "epoch", "loss": np.float32(0.5), "acc": np.float64(0.75), "maps": torch.tensor([1.0, 2.0]), 3: (1, 2)},
])
def test_history_line_equals_the_converting_encoder(record):
    line = _line(record)
    assert line.endswith("\n") and line.count("\n") == 1
    assert json.loads(line) == json.loads(json.dumps(jsonable(record), allow_nan=False))


def test_history_writer_appends_complete_lines_readable_before_close(tmp_path):
    w = HistoryWriter(tmp_path)
    w.append([{"type": "meta", "model": "m"}])
    w.append([{"type": "step", "step": 1, "loss": 0.5}, {"type": "epoch", "epoch": 1, "loss": 0.5}])
    h = read_history(tmp_path)  # the file is still open for writing
    assert h.meta["model"] == "m" and [s["step"] for s in h.steps] == [1] and h.epochs[0]["epoch"] == 1
    w.close()
    w.close()
    w.append([{"type": "step", "step": 2}], sync=True)  # reopens after close
    w.close()
    lines = (tmp_path / HISTORY_FILE).read_text().splitlines()
    assert [json.loads(x)["type"] for x in lines] == ["meta", "step", "epoch", "step"]


def test_log_every_reads_the_gradient_norm_on_written_steps_only(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    m = explain.ModelWrapper(net, "series", device="cpu")
    x, y = torch.randn(40, 4, 6), torch.randint(0, 3, (40,))
    mon = reports.Monitor(m, probes=[], out=tmp_path / "run", log_every=2, progress=False, live=False,
                          grad_norm_share=None)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    norms = []
    for i in range(4):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x[i * 10:(i + 1) * 10]).mean(1), y[i * 10:(i + 1) * 10])
        loss.backward()
        norms.append(float(torch.nn.utils.get_total_norm([p.grad for p in net.parameters()])))
        mon.step(loss=loss, lr=0.1)
        opt.step()
    epoch = mon.epoch_end()
    mon.close()
    steps = [r for r in mon.records if r["type"] == "step"]
    assert [s["grad_norm"] is None for s in steps] == [True, False, True, False]
    assert epoch["grad_norm"] == pytest.approx((norms[1] + norms[3]) / 2, rel=1e-6)
    h = read_history(tmp_path / "run")
    assert [s["step"] for s in h.steps] == [2, 4]
    assert [s["grad_norm"] for s in h.steps] == pytest.approx([norms[1], norms[3]], rel=1e-6)
