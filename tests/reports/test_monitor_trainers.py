"""The monitor's callbacks inside the real training loops of PyTorch Lightning and the Hugging Face
``Trainer``: the history has the loop's epochs and steps, the probes ran, and the trained weights
are bit-identical to a run of the same loop without the monitor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import explain
import reports
from explain.zoo import planted_images, planted_tokens
from reports.history import read_history

PROBES = ["accuracy", "explanations", "robustness"]


# ---------------------------------------------------------------- PyTorch Lightning
def _lightning_run(pl, tmp_path, with_monitor: bool):
    data = planted_images(48, size=12, patch=4, seed=5)
    pl.seed_everything(0, verbose=False)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Dropout(0.2),
                        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 4))

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def training_step(self, batch, batch_idx):
            xb, yb = batch
            return nn.functional.cross_entropy(self.net(xb), yb)

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data.x[:40], data.y[:40]), batch_size=8,
                                         shuffle=True, generator=torch.Generator().manual_seed(1))
    callbacks = []
    if with_monitor:
        m = explain.ModelWrapper(net, "image", class_names=data.class_names, device="cpu")
        mon = reports.Monitor(m, probe=(data.x[:16], data.y[:16]), probes=PROBES, explain_samples=2, attack_steps=2,
                              out=tmp_path / "pl", progress=False, live=False, steps_per_epoch=len(loader),
                              grad_norm_share=None)  # every step's norm, compared below
        callbacks.append(reports.lightning_callback(mon))
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
                         default_root_dir=str(tmp_path), deterministic=True)
    module = Module()
    trainer.fit(module, loader)
    return module, trainer, torch.rand(4)


def test_lightning_trainer_with_the_monitor_trains_bit_identically_and_records_every_step(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    plain, plain_trainer, plain_draw = _lightning_run(pl, tmp_path, with_monitor=False)
    watched, trainer, draw = _lightning_run(pl, tmp_path, with_monitor=True)
    for (k, a), (_, b) in zip(plain.state_dict().items(), watched.state_dict().items()):
        assert torch.equal(a, b), k
    sa = plain_trainer.optimizers[0].state_dict()["state"]
    sb = trainer.optimizers[0].state_dict()["state"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[i]["momentum_buffer"], sb[i]["momentum_buffer"]) for i in sa)
    assert torch.equal(plain_draw, draw)  # the global random stream continues as without the monitor
    assert watched.net.training and all(p.requires_grad for p in watched.parameters())

    h = read_history(tmp_path / "pl")
    assert [e["epoch"] for e in h.epochs] == [1, 2]
    assert [s["step"] for s in h.steps] == list(range(1, 11)) == list(range(1, trainer.global_step + 1))
    assert [s["epoch"] for s in h.steps] == [1] * 5 + [2] * 5
    assert all(s["loss"] is not None and s["grad_norm"] > 0 for s in h.steps)
    # the learning rate each step used (the scheduler halves it every 3 steps)
    assert [s["lr"] for s in h.steps] == pytest.approx([0.1 * 0.5 ** (i // 3) for i in range(10)])
    for e in h.epochs:
        assert 0 <= e["probes"]["accuracy"] <= 1 and 0 <= e["probes"]["robust_accuracy"] <= e["probes"]["accuracy"]
        assert h.array(e["maps"]).shape == (2, 12, 12)
    assert h.epochs[0]["probes"]["explanation_rank_correlation"] is None
    assert -1 <= h.epochs[1]["probes"]["explanation_rank_correlation"] <= 1


# ---------------------------------------------------------------- Hugging Face Trainer
class _Tokens(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.x[i], "attention_mask": (self.x[i] != 0).long(), "labels": self.y[i]}


def _hf_run(transformers, tmp_path, with_monitor: bool, name: str):
    data = planted_tokens(48, length=10, vocab_size=40, seed=2)
    transformers.set_seed(0)
    cfg = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=16, num_labels=2, pad_token_id=0)
    net = transformers.BertForSequenceClassification(cfg)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / name), num_train_epochs=2, per_device_train_batch_size=8, learning_rate=1e-3,
        logging_steps=1, save_strategy="no", eval_strategy="no", report_to=[], use_cpu=True, seed=0, data_seed=0,
        disable_tqdm=True, dataloader_num_workers=0, full_determinism=False)
    callbacks = []
    if with_monitor:
        m = explain.ModelWrapper(net, "tokens", device="cpu", mask_arg="attention_mask", class_names=["a", "b"])
        mon = reports.Monitor(m, probe=(data.x[:16], data.y[:16]), probes=PROBES, explainer="integrated_gradients",
                              explainer_params={"steps": 4}, explain_samples=2, attack_steps=2,
                              out=tmp_path / "hf", progress=False, live=False, grad_norm_share=None)
        callbacks.append(reports.hf_callback(mon))
    trainer = transformers.Trainer(model=net, args=args, train_dataset=_Tokens(data.x[:40], data.y[:40]),
                                   callbacks=callbacks)
    out = trainer.train()
    return net, trainer, out, torch.rand(4)


def test_hugging_face_trainer_with_the_monitor_trains_bit_identically_and_records_every_log(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    plain, _, plain_out, plain_draw = _hf_run(transformers, tmp_path, False, "plain")
    watched, trainer, out, draw = _hf_run(transformers, tmp_path, True, "watched")
    for (k, a), (_, b) in zip(plain.state_dict().items(), watched.state_dict().items()):
        assert torch.equal(a, b), k
    assert plain_out.training_loss == out.training_loss and plain_out.global_step == out.global_step == 10
    assert torch.equal(plain_draw, draw)

    h = read_history(tmp_path / "hf")
    logged = [r for r in trainer.state.log_history if "loss" in r]
    assert [s["trainer_step"] for s in h.steps] == [r["step"] for r in logged] == list(range(1, 11))
    assert [s["loss"] for s in h.steps] == pytest.approx([r["loss"] for r in logged])
    assert [s["lr"] for s in h.steps] == pytest.approx([r["learning_rate"] for r in logged])
    # the rate each step used: the default linear decay from 1e-3 over 10 steps
    assert [s["lr"] for s in h.steps] == pytest.approx([1e-3 * (1 - k / 10) for k in range(10)])
    assert [s["epoch"] for s in h.steps] == [1] * 5 + [2] * 5
    assert [e["epoch"] for e in h.epochs] == [1, 2]
    assert h.epochs[0]["loss"] == pytest.approx(np.mean([r["loss"] for r in logged[:5]]))
    for e in h.epochs:
        assert 0 <= e["probes"]["robust_accuracy"] <= e["probes"]["accuracy"] <= 1
        assert h.array(e["maps"]).shape == (2, 10)
    assert -1 <= h.epochs[1]["probes"]["explanation_rank_correlation"] <= 1
