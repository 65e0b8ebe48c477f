"""The Training section, ``xaiscope monitor``, the live view, the progress bar and the framework callbacks."""

from __future__ import annotations

import json
import types

import pytest
import torch
from torch import nn

import explain
import reports
from explain.zoo import planted_images
from reports.cli import main
from reports.history import read_history
from reports.sections import SECTION_BUILDERS, features, training


def tiny():
    data = planted_images(64, size=16, patch=6, seed=5)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4, 4))
    return explain.ModelWrapper(net, "image", class_names=data.class_names, device="cpu"), data


def train(m, data, mon, epochs=3):
    net = m.model
    opt = torch.optim.SGD(net.parameters(), lr=0.2)
    for _ in range(epochs):
        net.train()
        for i in range(0, 48, 16):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(data.x[i:i + 16]), data.y[i:i + 16])
            loss.backward()
            opt.step()
            mon.step(loss=loss, lr=0.2, batch_size=16)
        mon.epoch_end(val_loss=0.5)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    m, data = tiny()
    folder = tmp_path_factory.mktemp("monitor") / "exp1"
    mon = reports.Monitor(m, probe=(data.x[48:], data.y[48:]), probes=["accuracy", "explanations"], every="epoch", out=folder,
                          progress=False, live=False, explain_samples=3, grad_norm_share=None)
    train(m, data, mon)
    return m, data, folder


def test_history_records_every_step_and_epoch_with_scalars(run):
    _, _, folder = run
    h = read_history(folder)
    assert len(h.steps) == 9 and [e["epoch"] for e in h.epochs] == [1, 2, 3]
    assert all(s["grad_norm"] > 0 and s["samples_per_s"] > 0 and s["lr"] == 0.2 for s in h.steps)
    first = h.epochs[0]
    assert first["loss"] == pytest.approx(sum(s["loss"] for s in h.steps[:3]) / 3)
    assert first["val_loss"] == 0.5 and first["probes"]["explanation_rank_correlation"] is None
    assert h.epochs[2]["probes"]["explanation_rank_correlation"] is not None
    assert h.array(h.epochs[2]["maps"]).shape == (3, 16, 16)


def test_report_gains_a_training_section_only_with_a_history(run, tmp_path):
    m, data, folder = run
    from reports.build import _applies
    from reports.report import ReportContext
    ctx = ReportContext(wrapper=m, x=data.x, y=data.y, history=str(folder))
    defaults = [s for s in SECTION_BUILDERS if _applies(s, ctx)]
    assert "training" in defaults and "features" not in defaults and "performance" in defaults
    ctx.history = None
    assert "training" not in [s for s in SECTION_BUILDERS if _applies(s, ctx)]
    ctx.config = {"features": {}}
    assert _applies("features", ctx)
    rep = reports.build_report(m, (data.x, data.y), history=folder, sections=["training"])
    sec = rep.sections[0]
    assert sec.error is None and sec.summary["epochs"] == 3 and sec.summary["per_epoch"][2]["probes"]["accuracy"] >= 0
    assert {b.name for b in sec.blocks if isinstance(b, reports.report.Figure)} == {"curves", "probes", "maps"}


def test_xaiscope_monitor_renders_the_section_into_its_own_folder_and_keeps_user_files(run, tmp_path, capsys):
    _, _, folder = run
    assert main(["monitor", str(folder), "--quiet"]) == 0
    page = (folder / "report" / "index.html").read_text()
    assert "Training" in page and "data:image/png;base64" in page
    summary = json.loads((folder / "report" / "summary.json").read_text())
    assert summary["sections"]["training"]["summary"]["epochs"] == 3
    jsonschema = pytest.importorskip("jsonschema")
    from importlib import resources
    schema = json.loads(resources.files("reports").joinpath("templates", "summary.schema.json").read_text())
    jsonschema.validate(summary, schema)
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep")
    assert main(["monitor", str(folder), "--out", str(user)]) == 2
    assert (user / "notes.txt").read_text() == "keep"
    assert main(["monitor", str(tmp_path / "nothing-here")]) == 2


def test_sections_declare_their_config_and_check_keys():
    for mod in (training, features):
        assert isinstance(mod.CONFIG_KEYS, dict) and isinstance(mod.CHECK_KEYS, dict)
    assert "min_explanation_stability" in training.CHECK_KEYS
    assert {"training", "features"} <= set(SECTION_BUILDERS)


def test_live_view_updates_one_display_in_place(monkeypatch):
    display_mod = pytest.importorskip("IPython.display")
    calls = []

    class Handle:
        def update(self, obj):
            calls.append(("update", type(obj).__name__))

    def fake_display(obj, display_id=None):
        calls.append(("display", type(obj).__name__))
        return Handle()

    monkeypatch.setattr(display_mod, "display", fake_display)
    m, data = tiny()
    mon = reports.Monitor(m, probe=(data.x[:16], data.y[:16]), live=True, progress=False)
    train(m, data, mon, epochs=2)
    assert calls == [("display", "Image"), ("update", "Image")]


def test_terminal_progress_bar_shows_epoch_loss_and_accuracy(capsys):
    m, data = tiny()
    mon = reports.Monitor(m, probe=(data.x[:16], data.y[:16]), progress=True, live=False, steps_per_epoch=3)
    train(m, data, mon, epochs=1)
    mon.close()
    err = capsys.readouterr().err
    assert "epoch 1 loss" in err and "acc" in err


def test_hugging_face_callback_records_logged_steps_and_epochs(tmp_path):
    transformers = pytest.importorskip("transformers")
    m, data = tiny()
    mon = reports.Monitor(m, probe=(data.x[:16], data.y[:16]), out=tmp_path / "hf", progress=False, live=False)
    cb = reports.hf_callback(mon)
    assert isinstance(cb, transformers.TrainerCallback)
    state, control = transformers.TrainerState(), transformers.TrainerControl()
    args = types.SimpleNamespace(per_device_train_batch_size=8, gradient_accumulation_steps=1, logging_steps=2)
    for step in (2, 4):
        state.global_step = step
        cb.on_log(args, state, control, logs={"loss": 1.0 / step, "learning_rate": 1e-3, "grad_norm": 0.5})
    cb.on_log(args, state, control, logs={"eval_loss": 0.3})  # evaluation logs are not training steps
    cb.on_epoch_end(args, state, control)
    cb.on_train_end(args, state, control)
    h = read_history(tmp_path / "hf")
    assert [s["loss"] for s in h.steps] == [0.5, 0.25] and h.steps[1]["trainer_step"] == 4
    assert h.epochs[0]["loss"] == pytest.approx(0.375) and h.epochs[0]["grad_norm"] == 0.5
    assert "accuracy" in h.epochs[0]["probes"]


def test_lightning_callback_uses_the_documented_hooks(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    m, data = tiny()
    mon = reports.Monitor(m, probe=(data.x[:16], data.y[:16]), out=tmp_path / "pl", progress=False, live=False)
    cb = reports.lightning_callback(mon)
    assert isinstance(cb, pl.Callback)
    trainer = types.SimpleNamespace(optimizers=[torch.optim.SGD(m.model.parameters(), lr=0.1)])
    cb.on_train_batch_end(trainer, None, {"loss": torch.tensor(0.7)}, (data.x[:8], data.y[:8]), 0)
    cb.on_train_epoch_end(trainer, None)
    h = read_history(tmp_path / "pl")
    assert h.steps[0]["loss"] == pytest.approx(0.7) and h.steps[0]["lr"] == 0.1 and len(h.epochs) == 1


def test_explorer_class_tab_shows_the_target_class_only_when_opened():
    pytest.importorskip("ipywidgets")
    from reports.widgets import Explorer
    m, data = tiny()
    ex = Explorer(m, (data.x[:8], data.y[:8]), methods=["gradcam"], feature_steps=4)
    before = ex.computations
    assert "<img" not in ex.class_view.value
    ex.widget.selected_index = 3
    assert "<img" in ex.class_view.value and ex.computations == before + 1
    ex.widget.selected_index = 0
    ex.widget.selected_index = 3
    assert ex.computations == before + 1  # cached per class
