"""When the monitor probes: ``every="auto"`` keeps the probes within an overhead budget (checked
with a fake clock, never by timing), always probes the first and the last epoch, and the Training
section draws probe values only at the probed epochs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import explain
import reports
from reports import monitor as monitor_module
from explain.errors import InputShapeError
from explain.zoo import planted_images
from reports import figures_training as figs
from reports.history import read_history
from reports.sections.training import history_section


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _monitored_run(tmp_path, *, epochs_run: int, epochs_known, every="auto", step_s=0.25, probe_s=0.172,
                   probes=("accuracy",), close=True, record_s=0.0, **kw):
    """Simulated training: 4 steps of ``step_s`` fake seconds per epoch; each probe pass costs ``probe_s``;
    the monitor's own recording of each step (its gradient-norm read) costs ``record_s``."""
    data = planted_images(16, size=8, patch=3, seed=0)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))
    m = explain.ModelWrapper(net, "image", device="cpu")
    clock = FakeClock()
    mon = reports.Monitor(m, probe=(data.x, data.y), probes=list(probes), every=every, epochs=epochs_known,
                          out=tmp_path / "run", progress=False, live=False, clock=clock, explain_samples=2, **kw)
    real_probes = mon._run_probes

    def costly_probes():
        clock.now += probe_s
        return real_probes()
    mon._run_probes = costly_probes
    real_norm = monitor_module.gradient_norm_tensor

    def costly_norm(params):
        clock.now += record_s
        return real_norm(params)
    monitor_module.gradient_norm_tensor = costly_norm
    try:
        return _drive(mon, clock, epochs_run, step_s, close, tmp_path)
    finally:
        monitor_module.gradient_norm_tensor = real_norm


def _drive(mon, clock, epochs_run, step_s, close, tmp_path):
    for _ in range(epochs_run):
        for _ in range(4):
            clock.now += step_s
            mon.step(loss=1.0, lr=0.1, batch_size=4)
        mon.epoch_end()
    if close:
        mon.close()
    return mon, read_history(tmp_path / "run")


def test_auto_schedule_probes_first_and_last_epoch_and_stays_within_the_budget(tmp_path):
    # epochs of 1 s, probes of 0.172 s, budget 5 %: after k probes, the next one needs (k + 2) × 0.172 <= 0.05 × e,
    # i.e. e >= 10.3, 13.8, 17.2, 20.6 → epochs 11, 14, 18; then the last, epoch 20, always.
    mon, h = _monitored_run(tmp_path, epochs_run=20, epochs_known=20)
    assert h.probed_epochs() == [1, 11, 14, 18, 20]
    assert [e["epoch"] for e in h.epochs if e["probes"]] == [1, 11, 14, 18, 20]
    assert all(not e["probed"] and e["probes"] == {} for e in h.epochs if e["epoch"] not in (1, 11, 14, 18, 20))
    probe_total = sum(e["probe_seconds"] for e in h.epochs)
    train_total = sum(e["seconds"] for e in h.epochs)
    assert probe_total == pytest.approx(5 * 0.172) and train_total == pytest.approx(20.0)
    assert probe_total <= 0.05 * train_total
    assert h.meta["every"] == "auto" and h.meta["max_overhead"] == 0.05 and h.meta["epochs"] == 20


def test_auto_schedule_probes_every_epoch_when_probes_are_cheap(tmp_path):
    # probes of 0.01 s against 1 s epochs: 0.03 <= 0.05 × e from the first epoch on
    _, h = _monitored_run(tmp_path, epochs_run=5, epochs_known=None, probe_s=0.01)
    assert h.probed_epochs() == [1, 2, 3, 4, 5]


def test_close_probes_the_final_weights_when_the_run_length_was_unknown(tmp_path):
    mon, h = _monitored_run(tmp_path, epochs_run=13, epochs_known=None, probes=("accuracy", "explanations"))
    assert h.probed_epochs() == [1, 11, 13]  # 13 added by close(): the last epoch could not know it was last
    last = h.epochs[-1]
    assert last["epoch"] == 13 and "accuracy" in last["probes"] and h.array(last["maps"]).shape == (2, 8, 8)
    assert [r["type"] for r in (mon.records[-1],)] == ["probe"]
    assert sum(1 for e in h.epochs if e["epoch"] == 13) == 1  # merged into the epoch, not a second epoch
    mon.close()  # a second close adds nothing
    assert read_history(tmp_path / "run").probed_epochs() == [1, 11, 13]


def test_fixed_schedules_keep_their_meaning(tmp_path):
    _, h = _monitored_run(tmp_path / "a", epochs_run=6, epochs_known=None, every="epoch")
    assert h.probed_epochs() == [1, 2, 3, 4, 5, 6]
    _, h = _monitored_run(tmp_path / "b", epochs_run=7, epochs_known=None, every=3)
    assert h.probed_epochs() == [3, 6]  # fixed schedules add no final probe


def test_monitor_refuses_a_budget_that_is_not_a_fraction(tmp_path):
    m = explain.ModelWrapper(nn.Linear(3, 2), "series", device="cpu")
    data = (torch.randn(4, 5, 3), torch.tensor([0, 1, 0, 1]))
    for bad in (dict(max_overhead=0), dict(max_overhead=1.5), dict(every="sometimes"), dict(epochs=0),
                dict(every=True)):
        with pytest.raises(InputShapeError):
            reports.Monitor(m, probe=data, progress=False, live=False, **bad)


def test_training_section_draws_probes_only_at_probed_epochs(tmp_path):
    pytest.importorskip("matplotlib")
    _, h = _monitored_run(tmp_path, epochs_run=20, epochs_known=20, probes=("accuracy", "explanations"))
    fig = figs.probes_figure(h.epochs)
    lines = [ln for ax in fig.axes for ln in ax.get_lines()]
    xs = {ln.get_label(): list(ln.get_xdata()) for ln in lines}
    assert xs["accuracy"] == [1, 11, 14, 18, 20]
    assert xs["explanation rank correlation"] == [11, 14, 18, 20]  # drift needs a probed epoch before
    assert all(set(x) <= {1, 11, 14, 18, 20} for x in xs.values())
    section = history_section(h)
    text = " ".join(getattr(b, "text", "") for b in section.blocks)
    assert "Probes ran at 5 of 20 epochs" in text and "1, 11, 14, 18, 20" in text
    assert section.summary["probed_epochs"] == [1, 11, 14, 18, 20]
    maps = next(b for b in section.blocks if getattr(b, "name", None) == "maps")
    assert "rank correlation to the probed epoch before" in maps.caption


def test_auto_budget_counts_the_monitors_own_recording_cost(tmp_path):
    # Training 1 s per epoch; the monitor's own recording 4 × 0.005 = 0.02 s per epoch (measured inside
    # step, so epochs take 1.02 s); probes 0.172 s. After k probes the next needs
    # k × 0.172 + 0.02 e + 2 × 0.172 <= 0.05 × 1.0 e, i.e. e >= 17.2 for k = 1 → epoch 18, then the last.
    mon, h = _monitored_run(tmp_path, epochs_run=20, epochs_known=20, record_s=0.005, grad_norm_share=None)
    assert h.probed_epochs() == [1, 18, 20]
    assert all(e["monitor_seconds"] == pytest.approx(0.02) for e in h.epochs)
    assert all(e["seconds"] == pytest.approx(1.02) for e in h.epochs)
    spent = sum(e["probe_seconds"] + e["monitor_seconds"] for e in h.epochs)
    assert spent == pytest.approx(3 * 0.172 + 20 * 0.02) and spent <= 0.05 * 20 * 1.0
    # the same run with free recording probes as the probe-only budget does
    _, free = _monitored_run(tmp_path / "free", epochs_run=20, epochs_known=20)
    assert free.probed_epochs() == [1, 11, 14, 18, 20]
    assert all(e["monitor_seconds"] == 0.0 for e in free.epochs)


def test_a_costly_gradient_norm_is_read_on_every_kth_step_within_its_share(tmp_path, monkeypatch):
    # steps of 0.25 s, one norm read 0.0075 s = 3 % of a step; share 1 % → k = 4 (the smallest power of
    # two with 3 % / k ≤ 1 %): read on steps 1, 5, 9, …; the epoch's mean norm is over those steps.
    # (The simulated loop runs no backward pass, so the norm itself is a stand-in value.)
    monkeypatch.setattr(monitor_module, "gradient_norm_tensor", lambda params: torch.tensor(2.0))
    _, h = _monitored_run(tmp_path, epochs_run=3, epochs_known=3, record_s=0.0075)
    assert [r["step"] for r in h.steps if r["grad_norm"] is not None] == [1, 5, 9]
    assert [r["loss"] for r in h.steps] == [1.0] * 12  # every step is still written
    assert all(e["monitor_seconds"] == pytest.approx(0.0075) and e["grad_norm"] is not None for e in h.epochs)
    # read on every step without the share, and with a share the read fits in
    _, every = _monitored_run(tmp_path / "all", epochs_run=1, epochs_known=1, record_s=0.0075, grad_norm_share=None)
    assert [r["grad_norm"] is not None for r in every.steps] == [True] * 4
    _, cheap = _monitored_run(tmp_path / "cheap", epochs_run=1, epochs_known=1, record_s=0.002)
    assert [r["grad_norm"] is not None for r in cheap.steps] == [True] * 4


def test_gradient_norm_schedule_rechooses_k_when_steps_grow_longer():
    from reports._monitor_parts import NormSchedule
    s = NormSchedule(0.01)
    s.measured(cost=0.05, step_seconds=0.001)  # 5000 % of a step: capped
    assert s.every == NormSchedule.MAX_EVERY
    s.measured(cost=0.001, step_seconds=0.05)  # 2 %: every other step
    assert s.every == 2
    s.measured(cost=0.001, step_seconds=1.0)
    assert s.every == 1
    assert [s.due() for _ in range(3)] == [True, True, True]
    with pytest.raises(InputShapeError, match="grad_norm_share"):
        reports.Monitor(explain.ModelWrapper(nn.Linear(2, 2), "series", device="cpu"), grad_norm_share=2)
