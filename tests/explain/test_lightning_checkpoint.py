"""Lightning checkpoints written by a real ``Trainer``: the attribute prefix is removed and named, and
weights that do not fit are described in one sentence."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import explain
from explain.errors import ModelLoadError
from explain.zoo import Conv1dNet, SmallCNN

L = pytest.importorskip("lightning")


class _Lit(L.LightningModule):
    """A LightningModule holding the network under ``attribute`` (and, optionally, a weighted loss)."""

    def __init__(self, attribute: str = "model", weighted_loss: bool = False) -> None:
        super().__init__()
        self.attribute = attribute
        torch.manual_seed(0)
        setattr(self, attribute, SmallCNN(num_classes=3, width=4))
        if weighted_loss:
            self.criterion = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 3.0]))
        else:
            self.criterion = nn.CrossEntropyLoss()

    def forward(self, x):
        return getattr(self, self.attribute)(x)

    def training_step(self, batch, _index):
        x, y = batch
        return self.criterion(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def _checkpoint(tmp_path, **kwargs):
    """Fit one step on random data and save the checkpoint the way Lightning users do."""
    lit = _Lit(**kwargs)
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.rand(8, 3, 16, 16, generator=g), torch.randint(0, 3, (8,), generator=g))
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(lit, torch.utils.data.DataLoader(data, batch_size=8))
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(str(path))
    return lit, path


def _build():
    return SmallCNN(num_classes=3, width=4)


@pytest.mark.parametrize("attribute", ["model", "net"])
def test_lightning_checkpoint_loads_into_the_factory_model_with_the_prefix_named(tmp_path, attribute):
    lit, path = _checkpoint(tmp_path, attribute=attribute)
    trained = getattr(lit, attribute)
    assert not torch.equal(trained.head.weight, _build().head.weight)  # the step changed the weights
    with pytest.warns(UserWarning, match=rf"removed the prefix '{attribute}\.'"):
        net = explain.load_model(path, factory=_build)
    for key, value in trained.state_dict().items():
        assert torch.equal(net.state_dict()[key], value), key
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(net.eval()(x), trained.eval()(x))


def test_lightning_module_with_a_weighted_loss_keeps_only_the_network(tmp_path):
    lit, path = _checkpoint(tmp_path, attribute="net", weighted_loss=True)
    assert "criterion.weight" in torch.load(path, weights_only=True)["state_dict"]
    with pytest.warns(UserWarning, match=r"kept the keys under 'net\.'.*criterion\.weight"):
        net = explain.load_model(path, factory=_build)
    assert torch.equal(net.head.weight, lit.net.head.weight)


def test_shape_mismatch_is_one_sentence_with_counts_names_and_the_fix(tmp_path):
    _, path = _checkpoint(tmp_path)
    with pytest.raises(ModelLoadError) as info:
        explain.load_model(path, factory=SmallCNN, factory_kwargs={"num_classes": 5, "width": 4})
    message = str(info.value)
    assert "\n" not in message and len(message) < 600
    assert "2 of another shape" in message and "head.weight: (3, 8) in the file, (5, 8) in the model" in message
    assert "factory_kwargs" in message
    assert "Error(s) in loading" not in message and "missing" not in message


def test_another_architecture_reports_missing_and_unexpected_keys(tmp_path):
    _, path = _checkpoint(tmp_path)
    with pytest.raises(ModelLoadError) as info:
        explain.load_model(path, factory=lambda: Conv1dNet(3, 3, width=4))
    message = str(info.value)
    assert "\n" not in message and len(message) < 600
    expected = set(Conv1dNet(3, 3, width=4).state_dict())
    file_keys = {k.split(".", 1)[1] for k in torch.load(path, weights_only=True)["state_dict"]}
    assert f"{len(expected - file_keys)} missing from the file" in message
    assert f"{len(file_keys - expected)} unexpected" in message
    assert "the key names differ" in message


def test_cli_loads_a_lightning_checkpoint_with_a_factory(tmp_path, capsys, monkeypatch):
    from reports.cli import main
    lit, path = _checkpoint(tmp_path)
    (tmp_path / "nets.py").write_text("from explain.zoo import SmallCNN\n\ndef build():\n"
                                      "    return SmallCNN(num_classes=3, width=4)\n")
    torch.save({"x": torch.rand(4, 3, 16, 16), "y": torch.tensor([0, 1, 2, 0])}, tmp_path / "data.pt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", list(__import__("sys").path))
    code = main(["explain", "--model", "nets:build", "--weights", str(path), "--data", "data.pt",
                 "--method", "occlusion", "--samples", "1", "--out", "png"])
    __import__("sys").modules.pop("nets", None)
    out, err = capsys.readouterr()
    assert code == 0, err
    said = [line for line in err.splitlines() if "removed the prefix 'model.'" in line]
    assert len(said) == 1 and said[0].startswith("xaiscope: warning: "), err  # one readable line
