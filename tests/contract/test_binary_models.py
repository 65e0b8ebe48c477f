"""Single-logit binary classifiers (``N×1`` or ``N`` outputs, trained with ``BCEWithLogitsLoss``).

Every method sees the two class scores ``[−z/2, z/2]``; predictions are ``z > 0``. Each number is
checked against a direct computation on the raw logit ``z`` (sign accuracy, sigmoid, closed-form
bounds of a linear model, a hand-written interval pass, sklearn's AUROC), and every registry entry
runs on binary image, token and series models.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import explain
import reports
import robustness
from explain.errors import InputValueError, ToolkitError, UnsupportedModelError
from explain.registry import EXPLAINERS
from explain.zoo import BiLSTMClassifier, Conv1dNet, SmallCNN, planted_images, planted_series, planted_tokens
from robustness.registry import ATTACK_SPECS, CORRUPTIONS, DETECTOR_SPECS
from robustness.verify.bounds import METHODS as VERIFY_METHODS

N_TRAIN = 400
VOCAB = 40


def train_bce(net: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int = 0) -> nn.Module:
    """A plain seeded loop with ``BCEWithLogitsLoss`` on the model's single logit."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 32):
            idx = order[i:i + 32]
            opt.zero_grad()
            loss_fn(net(x[idx])[:, 0], y[idx].float()).backward()
            opt.step()
    return net.eval()


class Binary:
    def __init__(self, net, kind, data):
        self.net = net
        self.m = explain.ModelWrapper(net, kind, device="cpu")
        self.x, self.y = data.x[N_TRAIN:], data.y[N_TRAIN:]

    def z(self, x) -> torch.Tensor:
        with torch.no_grad():
            return self.net(x)[:, 0]

    def z_adversarial(self, r) -> torch.Tensor:
        """The raw logit of an attack's result (token attacks in embedding space: the BiLSTM by hand)."""
        if r.adversarial_embeddings is None:
            return self.z(r.adversarial)
        with torch.no_grad():
            return self.net.head(self.net.lstm(r.adversarial_embeddings)[0].amax(1))[:, 0]


@pytest.fixture(scope="module")
def image() -> Binary:
    torch.manual_seed(0)
    data = planted_images(N_TRAIN + 100, size=16, num_classes=2, blank=False, seed=0)
    net = train_bce(SmallCNN(3, 1, width=8), data.x[:N_TRAIN], data.y[:N_TRAIN], epochs=4)
    return Binary(net, "image", data)


@pytest.fixture(scope="module")
def tokens() -> Binary:
    torch.manual_seed(1)
    data = planted_tokens(N_TRAIN + 100, length=12, vocab_size=VOCAB, num_classes=2, seed=1)
    net = train_bce(BiLSTMClassifier(VOCAB, 1, embed_dim=16, hidden=16), data.x[:N_TRAIN], data.y[:N_TRAIN], epochs=4)
    return Binary(net, "tokens", data)


@pytest.fixture(scope="module")
def series() -> Binary:
    torch.manual_seed(2)
    data = planted_series(N_TRAIN + 100, length=32, num_classes=2, seed=2)
    net = train_bce(Conv1dNet(1, 1, width=8), data.x[:N_TRAIN], data.y[:N_TRAIN], epochs=4)
    return Binary(net, "series", data)


def linear_image_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 1)).eval()


# ------------------------------------------------------------------ the wrapper's view


def test_single_logit_is_shown_as_two_classes_with_sign_predictions_and_sigmoid_probabilities(image):
    m, x = image.m, image.x[:40]
    z = image.z(x)
    fresh = explain.ModelWrapper(image.net, "image", device="cpu")
    assert fresh.binary is None                       # learnt at the first forward pass, as num_classes
    fresh.logits(x[:1])
    assert fresh.binary is True and fresh.num_classes == 2 and fresh.class_names == ["0", "1"]
    assert torch.allclose(m.logits(x), torch.stack([-z / 2, z / 2], 1), atol=1e-6)
    assert torch.equal(m.predict(x), (z > 0).long())
    assert torch.allclose(m.probs(x)[:, 1], torch.sigmoid(z), atol=1e-6)
    assert m.describe()["binary"] is True


def test_a_flat_output_of_n_logits_is_a_binary_classifier_too():
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = linear_image_model()

        def forward(self, x):
            return self.net(x).squeeze(1)          # N, not N×1

    net = Flat()
    m = explain.ModelWrapper(net, "image", class_names=["no", "yes"], device="cpu")
    x = torch.rand(7, 3, 2, 2)
    z = net(x).detach()
    assert torch.equal(m.predict(x), (z > 0).long())
    assert m.binary is True and m.class_names == ["no", "yes"]
    assert torch.equal(m.predict(x[:1]), (z[:1] > 0).long())   # a batch of one


def test_a_tie_at_zero_logit_predicts_class_0():
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 1))
    nn.init.zeros_(net[1].weight), nn.init.zeros_(net[1].bias)
    with torch.no_grad():
        net[1].weight[0, 0] = 1.0                   # z = the first pixel
    x = torch.rand(3, 3, 2, 2)
    x[:, 0, 0, 0] = torch.tensor([0.0, 1e-3, 0.0])
    m = explain.ModelWrapper(net, "image", device="cpu")
    assert m.predict(x).tolist() == [0, 1, 0]
    assert m.probs(x)[:, 1].tolist()[0] == 0.5


def test_one_class_name_for_a_single_logit_model_is_refused_with_a_message_naming_two_classes():
    m = explain.ModelWrapper(linear_image_model(), "image", class_names=["positive"], device="cpu")
    with pytest.raises(UnsupportedModelError, match="binary classifier.*pass two names"):
        m.logits(torch.rand(2, 3, 2, 2))


def test_multilabel_task_wraps_one_output_column_as_a_binary_classifier():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 4)).eval()
    x = torch.rand(9, 3, 2, 2)
    z = net(x).detach()
    m = explain.ModelWrapper(net, "image", multilabel=True, task=2, device="cpu")
    assert m.binary is True
    assert torch.equal(m.predict(x), (z[:, 2] > 0).long())
    assert torch.allclose(m.probs(x)[:, 1], torch.sigmoid(z[:, 2]), atol=1e-6)
    xc, eps = 0.3 + 0.4 * x, 0.05
    zc = net(xc).detach()[:, 2]
    r = eps * net[1].weight.detach()[2].abs().sum()
    lo, hi = robustness.output_bounds(m, xc, eps=eps, method="crown")
    assert torch.allclose(lo[:, 1], (zc - r) / 2, atol=1e-5) and torch.allclose(hi[:, 0], -(zc - r) / 2, atol=1e-5)
    plain = explain.ModelWrapper(net, "image", device="cpu")      # N×K without the flag: softmax classes
    assert torch.equal(plain.predict(x), z.argmax(1)) and plain.binary is False
    with pytest.raises(InputValueError, match="needs task"):
        explain.ModelWrapper(net, "image", multilabel=True)
    with pytest.raises(InputValueError, match="multilabel=True"):
        explain.ModelWrapper(net, "image", task=1)
    with pytest.raises(UnsupportedModelError, match="task=7"):
        explain.ModelWrapper(net, "image", multilabel=True, task=7, device="cpu").logits(x)


# ------------------------------------------------------------------ accuracy


def test_labels_all_zero_with_half_positive_predictions_give_half_accuracy_everywhere():
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 1))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].weight[0, 0] = 1.0
        net[1].bias.fill_(-0.5)                     # z > 0 exactly when the first pixel exceeds 0.5
    x = torch.rand(40, 3, 2, 2)
    x[:20, 0, 0, 0] = 0.2
    x[20:, 0, 0, 0] = 0.8
    y = torch.zeros(40, dtype=torch.long)
    m = explain.ModelWrapper(net, "image", device="cpu")
    rep = reports.build_report(m, (x, y), sections=["performance"])
    assert rep.to_dict()["sections"]["performance"]["summary"]["accuracy"] == pytest.approx(0.5)
    assert robustness.robust_accuracy(m, (x, y), eps=[0], method="pgd").accuracy[0] == pytest.approx(0.5)


def test_report_and_robust_accuracy_at_zero_equal_the_direct_sign_accuracy(image):
    m, x, y = image.m, image.x, image.y
    direct = float(((image.z(x) > 0).long() == y).float().mean())
    assert 0.6 < direct < 1.0 or direct == 1.0
    rep = reports.build_report(m, (x, y), sections=["performance", "model_card"])
    summary = rep.to_dict()["sections"]
    assert summary["performance"]["summary"]["accuracy"] == pytest.approx(direct)
    assert robustness.robust_accuracy(m, (x, y), eps=[0], method="apgd").accuracy[0] == pytest.approx(direct)
    assert "binary classifier (single logit, shown as two classes)" in rep.html()


def _worst_case_linear(net, x, y, eps):
    """Exact worst case of a linear image model over the L∞ ball clipped to [0, 1]: push each pixel
    to the end of its interval that moves ``z`` against the label."""
    w, b = net[1].weight.detach()[0], net[1].bias.detach()[0]
    flat = x.flatten(1)
    lo, hi = (flat - eps).clamp(0, 1), (flat + eps).clamp(0, 1)
    z_min = b + torch.where(w > 0, lo, hi) @ w
    z_max = b + torch.where(w > 0, hi, lo) @ w
    return torch.where(y == 1, z_min > 0, z_max <= 0)


@pytest.mark.parametrize("method", [k for k, s in ATTACK_SPECS.items() if "image" in s.kinds])
def test_robust_accuracy_of_a_linear_binary_model_equals_the_exact_worst_case(method):
    net = linear_image_model(3)
    x = torch.rand(60, 3, 2, 2)
    y = (net(x)[:, 0] > 0).long().detach()
    y[:10] = 1 - y[:10]                         # some misclassified clean samples too
    m = explain.ModelWrapper(net, "image", device="cpu")
    eps = [0, 0.02, 0.05, 0.1]
    params = {"steps": 10} if method != "fgsm" else {}
    r = robustness.robust_accuracy(m, (x, y), eps=eps, method=method, minimal_eps=False, **params)
    exact = [float(_worst_case_linear(net, x, y, e).double().mean()) for e in eps]
    assert r.accuracy == pytest.approx(exact, abs=1e-9)
    assert exact[-1] < exact[0]


def test_pgd_on_a_binary_cnn_flips_exactly_the_samples_the_raw_logit_says_it_flips(image):
    m, x, y = image.m, image.x[:40], image.y[:40]
    eps = 0.1
    r = robustness.attack(m, x, y, method="pgd", eps=eps, steps=10, seed=0)
    z_adv = image.z(r.adversarial)
    assert float((r.adversarial - x).abs().max()) <= eps + 1e-6
    assert torch.equal(r.adv_pred, (z_adv > 0).long())
    clean = float(((image.z(x) > 0).long() == y).float().mean())
    robust = float(((z_adv > 0).long() == y).float().mean())
    assert r.robust_accuracy == pytest.approx(robust) and robust < clean


# ------------------------------------------------------------------ OOD detection


def test_ood_scores_and_auroc_equal_the_hand_computed_ones_on_the_single_logit(image):
    from sklearn.metrics import roc_auc_score
    m, x_in = image.m, image.x
    x_out = torch.rand(60, 3, 16, 16) * 0.4 + 0.3
    o = robustness.evaluate_ood(m, (x_in, image.y), x_out, methods=["energy", "msp", "maxlogit"])
    z_in, z_out = image.z(x_in[o.test_indices]), image.z(x_out)
    by_hand = {
        "energy": lambda z: -torch.logsumexp(torch.stack([-z / 2, z / 2], 1), 1),   # = −log(2·cosh(z/2))
        "msp": lambda z: -torch.maximum(torch.sigmoid(z), 1 - torch.sigmoid(z)),
        "maxlogit": lambda z: -z.abs() / 2,
    }
    for name, score in by_hand.items():
        s = torch.cat([score(z_in), score(z_out)]).numpy()
        truth = [0] * len(z_in) + [1] * len(z_out)
        assert o.methods[name].auroc == pytest.approx(roc_auc_score(truth, s), abs=1e-6), name
    e = robustness.ood_detector("energy").fit(m, (x_in, image.y)).score(x_out)
    assert torch.allclose(e, -torch.log(2 * torch.cosh(z_out.double() / 2)).float(), atol=1e-5)


def test_vim_reads_a_one_row_head_as_the_two_class_scores_the_wrapper_shows(image):
    m = image.m
    det = robustness.ood_detector("vim").fit(m, (image.x, image.y))
    w, b = det.head_
    assert tuple(w.shape) == (2, m.features(image.x[:1]).shape[1])
    feats = m.features(image.x[:20]).double()
    assert torch.allclose((feats @ w.T + b).float(), m.logits(image.x[:20]), atol=1e-5)
    s = det.score(torch.rand(10, 3, 16, 16))
    assert s.shape == (10,) and bool(torch.isfinite(s).all())


# ------------------------------------------------------------------ bounds and verification


def test_output_bounds_of_a_linear_binary_model_are_z_plus_minus_eps_times_the_l1_norm():
    net = linear_image_model(1)
    m = explain.ModelWrapper(net, "image", device="cpu")
    x = 0.3 + 0.4 * torch.rand(6, 3, 2, 2)          # far from the clip at 0 and 1
    eps = 0.05
    z = net(x)[:, 0].detach()
    r = eps * net[1].weight.detach().abs().sum()
    y = (z > 0).long()
    for method in VERIFY_METHODS:
        lo, hi = robustness.output_bounds(m, x, eps=eps, method=method)
        assert torch.allclose(lo, torch.stack([-(z + r) / 2, (z - r) / 2], 1), atol=1e-5), method
        assert torch.allclose(hi, torch.stack([-(z - r) / 2, (z + r) / 2], 1), atol=1e-5), method
        margin = robustness.output_bounds(m, x, eps=eps, method=method, spec="margin", labels=y)
        other = 1 - y
        assert torch.allclose(margin.lower[torch.arange(6), other], z.abs() - r, atol=1e-5), method


def test_certified_accuracy_with_ibp_equals_a_hand_written_interval_pass_on_a_small_mlp():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 1)).eval()
    with torch.no_grad():                           # hidden units centred on the data, logits of both signs
        net[1].weight.mul_(4)
        net[1].bias.copy_(-net[1].weight.sum(1) / 2)
        net[3].bias.zero_()
    x = 0.2 + 0.6 * torch.rand(50, 3, 2, 2)
    z = net(x)[:, 0].detach()
    y = (z > 0).long()
    y[:5] = 1 - y[:5]
    m = explain.ModelWrapper(net, "image", device="cpu")
    eps_list = [0, 0.005, 0.02, 0.1]

    def interval(e):
        lo, hi = (x - e).clamp(0, 1).flatten(1), (x + e).clamp(0, 1).flatten(1)
        for layer in net[1:]:
            if isinstance(layer, nn.Linear):
                c, r = (lo + hi) / 2, (hi - lo) / 2
                c, r = layer(c), r @ layer.weight.abs().T
                lo, hi = c - r, c + r
            else:
                lo, hi = lo.clamp(min=0), hi.clamp(min=0)
        zl, zh = lo[:, 0].detach(), hi[:, 0].detach()
        return torch.where(y == 1, zl > 0, zh < 0)

    ca = robustness.certified_accuracy(m, (x, y), eps=eps_list, method="ibp", attack_steps=3)
    expected = [float(interval(e).double().mean()) for e in eps_list]
    assert ca.certified == pytest.approx(expected)
    assert ca.clean_accuracy == pytest.approx(float(((z > 0).long() == y).double().mean()))
    assert expected[0] > expected[-1]


def test_a_verified_binary_sample_has_a_certified_margin_of_its_logits_lower_bound():
    net = linear_image_model(2)
    m = explain.ModelWrapper(net, "image", device="cpu")
    x = 0.3 + 0.4 * torch.rand(8, 3, 2, 2)
    z = net(x)[:, 0].detach()
    y = (z > 0).long()
    eps = 0.02
    v = robustness.verify(m, x, y, eps=eps)
    r = eps * net[1].weight.detach().abs().sum()
    assert torch.allclose(v.certified_margin, z.abs() - r, atol=1e-5)
    assert v.status == ["verified" if float(a) > 0 else "violated" for a in z.abs() - r]


# ------------------------------------------------------------------ every registry entry

KINDS = ["image", "tokens", "series"]
FAST = {"occlusion": {"window": 4, "stride": 4}, "lime": {"n_samples": 32}, "shap": {"n_samples": 32},
        "integrated_gradients": {"steps": 8}, "smoothgrad": {"n_samples": 4}}
ATTACK_FAST = {"pgd": {"steps": 3}, "apgd": {"steps": 4}, "hotflip": {"max_tokens": 1, "candidates": 4}}
EPS = {"image": 8 / 255, "series": 0.3, "tokens": 0.5}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", sorted(EXPLAINERS))
def test_every_explainer_runs_on_a_binary_model_with_finite_maps_of_the_input_shape(name, kind, request):
    d = request.getfixturevalue(kind)
    x = d.x[:3]
    kw = dict(FAST.get(name, {}))
    if kind != "image" and name == "occlusion":
        kw = {}
    for target in (None, 0, 1):
        a = EXPLAINERS[name](d.m, x, target, **kw)
        expected = tuple(x.shape[2:]) if kind == "image" else (x.shape[1],)
        assert tuple(a.values.shape) == (3,) + expected
        assert bool(torch.isfinite(a.values).all()), (name, target)


@pytest.mark.parametrize("kind", KINDS)
def test_explanations_of_class_0_are_the_exact_negatives_of_class_1(kind, request):
    d = request.getfixturevalue(kind)
    x = d.x[:3]
    for name, kw in (("integrated_gradients", {"steps": 8}), ("occlusion", FAST["occlusion"] if kind == "image" else {})):
        a0 = EXPLAINERS[name](d.m, x, 0, **kw).values
        a1 = EXPLAINERS[name](d.m, x, 1, **kw).values
        assert torch.allclose(a0, -a1, atol=1e-6), name
        assert float(a1.abs().max()) > 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(ATTACK_SPECS))
def test_every_attack_runs_on_a_binary_model_and_its_predictions_are_the_logits_sign(name, kind, request):
    spec = ATTACK_SPECS[name]
    if kind not in spec.kinds:
        pytest.skip(f"{name} does not attack {kind} inputs")
    d = request.getfixturevalue(kind)
    x, y = d.x[:8], d.y[:8]
    budget = {} if spec.budget == "count" else {"eps": EPS[kind]}
    r = robustness.attack(d.m, x, y, name, seed=0, **budget, **ATTACK_FAST.get(name, {}))
    assert r.adversarial.shape == x.shape and r.adv_pred.shape == (8,)
    assert torch.equal(r.adv_pred, (d.z_adversarial(r) > 0).long())
    assert torch.equal(r.clean_pred, (d.z(x) > 0).long())
    assert r.robust_accuracy <= float((r.clean_pred == y).float().mean())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(DETECTOR_SPECS))
def test_every_detector_fits_and_scores_a_binary_model(name, kind, request):
    spec = DETECTOR_SPECS[name]
    if kind not in spec.kinds:
        pytest.skip(f"{name} does not score {kind} inputs")
    d = request.getfixturevalue(kind)
    det = robustness.ood_detector(name, **spec.defaults).fit(d.m, (d.x[:60], d.y[:60]))
    s = det.score(d.x[60:80])
    assert s.shape == (20,) and bool(torch.isfinite(s).all()), name


@pytest.mark.parametrize("kind", KINDS)
def test_every_corruption_gives_an_accuracy_equal_to_the_direct_sign_accuracy_at_each_severity(kind, request):
    d = request.getfixturevalue(kind)
    x, y = d.x[:20], d.y[:20]
    names = list(CORRUPTIONS[kind])
    c = robustness.corruption_accuracy(d.m, (x, y), corruptions=names, severities=[1, 3])
    assert c.clean_accuracy == pytest.approx(float(((d.z(x) > 0).long() == y).float().mean()))
    assert sorted(c.accuracy) == sorted(names)
    for name in names:
        assert all(0.0 <= a <= 1.0 and math.isfinite(a) for a in c.accuracy[name]), name


@pytest.mark.parametrize("kind", ["image", "series"])
@pytest.mark.parametrize("method", VERIFY_METHODS)
def test_every_verify_method_bounds_a_binary_cnn_soundly(method, kind, request):
    d = request.getfixturevalue(kind)
    x, y = d.x[:3], d.y[:3]
    if kind == "image":
        x = x[:, :, :8, :8]
    eps = 1 / 255 if kind == "image" else 0.01
    lo, hi = robustness.output_bounds(d.m, x, eps=eps, method=method, alpha_steps=3)
    logits = d.m.logits(x)
    assert lo.shape == (3, 2) and bool(torch.isfinite(lo).all() and torch.isfinite(hi).all())
    assert bool((lo <= logits + 1e-5).all() and (logits <= hi + 1e-5).all())
    assert torch.allclose(lo[:, 0], -hi[:, 1], atol=1e-5)     # the class-0 score is −z/2
    v = robustness.verify(d.m, x, y, eps=eps, method=method, alpha_steps=3, attack_steps=3)
    assert len(v.status) == 3


def test_the_whole_report_builds_on_a_binary_model_without_a_failed_section(image, tmp_path):
    config = {"robustness": {"steps": 3, "bisect_steps": 1, "max_samples": 8}, "trust": {"quick": True},
              "verify": {"samples": 2, "attack_steps": 2}, "ood": {"methods": ["energy", "vim"]}}
    rep = reports.build_report(image.m, (image.x[:24], image.y[:24]), ood_data=torch.rand(16, 3, 16, 16),
                               methods=["gradcam", "integrated_gradients"], max_samples=24, samples=2,
                               config=config, out=tmp_path / "rep")
    errors = {s.id: s.error for s in rep.sections if s.error}
    assert not errors, errors
    assert rep.to_dict()["sections"]["model_card"]["summary"]["model"]["binary"] is True
