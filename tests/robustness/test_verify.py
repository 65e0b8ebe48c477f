"""verify / certified_accuracy: verdicts that hold up against attacks, re-checked counterexamples, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import explain
import robustness
from reports.cli import main


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 3 * 3, 3)

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


def make_tiny():
    return TinyCNN()


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    x = torch.rand(96, 1, 6, 6)
    y = torch.stack([x[:, 0, :2].mean((1, 2)), x[:, 0, 2:4].mean((1, 2)), x[:, 0, 4:].mean((1, 2))], 1).argmax(1)
    net = TinyCNN()
    opt = torch.optim.Adam(net.parameters(), 0.03)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    net.zero_grad(set_to_none=True)
    return explain.ModelWrapper(net, "image", device="cpu", mean=[0.5], std=[0.3]), x[:24], y[:24]


def test_verdicts_split_the_batch_and_verified_samples_resist_a_strong_attack(trained):
    m, x, y = trained
    v = robustness.verify(m, x, y, eps=0.03, method="crown")
    counts = v.counts
    assert sum(counts.values()) == len(x)
    assert counts["verified"] > 0 and counts["violated"] > 0
    ok = v.mask("verified")
    r = robustness.attack(m, x[ok], y[ok], method="pgd", eps=0.03, steps=100, seed=1)
    assert bool((r.adv_pred == y[ok]).all())
    assert bool((v.certified_margin[ok] > 0).all()) and bool((v.certified_margin[~ok] <= 0).all())


def test_every_reported_counterexample_is_inside_the_ball_and_misclassified(trained):
    m, x, y = trained
    v = robustness.verify(m, x, y, eps=0.05, method="ibp")
    idx = v.violated_indices
    assert idx
    adv = v.counterexamples[idx]
    assert float((adv - x[idx]).abs().max()) <= 0.05 + 1e-6
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    pred = m.predict(adv)
    assert bool((pred != y[idx]).all()) and bool((pred == v.adv_pred[idx]).all())
    assert bool((v.adv_margin[idx] < 0).all())
    d = v.to_dict()
    assert json.loads(json.dumps(d))["counts"] == v.counts and len(d["counterexamples"]) == len(idx)


def test_a_verified_sample_never_has_a_counterexample(trained):
    m, x, y = trained
    v = robustness.verify(m, x, y, eps=0.01, method="alpha-crown", alpha_steps=5)
    for s, adv_margin, cm in zip(v.status, v.adv_margin, v.certified_margin):
        if s == "verified":
            assert float(cm) > 0 and float(adv_margin) > 0


def test_certified_accuracy_is_monotone_and_below_the_empirical_accuracy(trained):
    m, x, y = trained
    ca = robustness.certified_accuracy(m, (x, y), eps=[0.04, 0, 0.01], method="crown")
    assert ca.eps == [0, 0.01, 0.04]
    assert ca.certified[0] == pytest.approx(ca.clean_accuracy)      # ε = 0: correct ⇔ certified
    assert all(a >= b for a, b in zip(ca.certified, ca.certified[1:]))
    assert all(a >= b for a, b in zip(ca.empirical, ca.empirical[1:]))
    assert all(c <= e <= ca.clean_accuracy + 1e-9 for c, e in zip(ca.certified, ca.empirical))
    assert all(u >= -1e-9 for u in ca.unknown)
    json.dumps(ca.to_dict())


def test_verify_leaves_the_model_state_unchanged(trained):
    m, x, y = trained
    net = m.model
    net.train()
    flags = [p.requires_grad for p in net.parameters()]
    state = {k: v.clone() for k, v in net.state_dict().items()}
    robustness.verify(m, x[:4], y[:4], eps=0.02, method="alpha-crown", alpha_steps=3)
    assert net.training and [p.requires_grad for p in net.parameters()] == flags
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    assert all(p.grad is None for p in net.parameters())
    net.eval()


def test_cli_verify_prints_a_verdict_table_and_fails_an_unmet_check(trained, tmp_path, capsys):
    m, x, y = trained
    torch.save(m.model.state_dict(), tmp_path / "w.pt")
    torch.save({"x": x[:8], "y": y[:8]}, tmp_path / "data.pt")
    (tmp_path / "c.toml").write_text("[checks]\nmin_certified_accuracy = 0.99\n")
    code = main(["verify", "--model", "tests.robustness.test_verify:make_tiny", "--weights", str(tmp_path / "w.pt"),
                 "--kind", "image", "--channels", "1", "--mean", "0.5", "--std", "0.3", "--data",
                 str(tmp_path / "data.pt"), "--eps", "0,0.2", "--method", "crown", "--config",
                 str(tmp_path / "c.toml"), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1, err
    lines = out.splitlines()
    assert "verified" in lines[1] and "violated" in lines[1] and "unknown" in lines[1]
    assert len(lines) == 4 and "[fail] certified accuracy" in err
