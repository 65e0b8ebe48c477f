"""A NaN never becomes a number: every method, given a model whose outputs are NaN or Inf for some
inputs, raises ``NonFiniteOutputError`` naming those samples — of the user's batch, or of the data
for the streamed entry points — instead of returning a plausible map, score or accuracy.

The models are planted: a model returns NaN (or +Inf) logits exactly for the samples whose marked
pixel (or token) is set, so the expected indices are known in advance. Each family is taken from
its registry, so a method added later is covered without editing this file.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import explain
import reports
import robustness
from explain.errors import NonFiniteOutputError, ToolkitError
from explain.zoo import BiLSTMClassifier, SmallCNN
from reports.cli import main as cli_main
from robustness.registry import ATTACK_SPECS, DETECTOR_SPECS

BAD = [1, 4]  # the samples whose marker is set
N = 6


class MarkedCNN(SmallCNN):
    """SmallCNN whose logits are ``value`` (NaN or Inf) for every sample with pixel (0, 0, 0) above 0.999."""

    def __init__(self, value: float = float("nan")) -> None:
        torch.manual_seed(0)
        super().__init__(in_channels=3, num_classes=3, width=4)
        self.value = value

    def forward(self, x):
        out = super().forward(x)
        marked = x[:, 0, 0, 0] > 0.999
        return torch.where(marked[:, None], torch.full_like(out, self.value), out)


class MarkedLSTM(BiLSTMClassifier):
    """BiLSTM whose logits are NaN for every sequence holding token 7."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        super().__init__(20, 2, embed_dim=8, hidden=8)

    def forward(self, ids, attention_mask=None):
        out = super().forward(ids, attention_mask)
        marked = (ids == 7).any(1)
        return torch.where(marked[:, None], torch.full_like(out, float("nan")), out)


def make_marked_cnn() -> nn.Module:
    return MarkedCNN()


def images(bad=BAD, n=N, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 16, 16, generator=g) * 0.9
    x[bad, 0, 0, 0] = 1.0
    return x, torch.arange(n) % 3


def tokens(bad=BAD, n=N):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(8, 20, (n, 6), generator=g)
    x[bad, 2] = 7
    return x, torch.arange(n) % 2


def wrap(value=float("nan")):
    return explain.ModelWrapper(MarkedCNN(value), "image", device="cpu", batch_size=4)


def assert_names(error: NonFiniteOutputError, indices, total=N, scope="batch"):
    assert isinstance(error, ToolkitError)
    assert error.indices == list(indices), str(error)
    assert error.scope == scope and error.total == total and error.count == len(indices)
    assert f"indices {', '.join(map(str, indices))}" in str(error)
    assert "NaN or Inf" in str(error)


# ------------------------------------------------------------------------------ the wrapper itself
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_logits_name_the_samples_of_the_users_batch_across_chunks(value):
    m = wrap(value)
    x, _ = images(bad=[1, 4, 9], n=11)  # chunks of 4: the bad samples lie in all three chunks
    with pytest.raises(NonFiniteOutputError) as info:
        m.logits(x)
    assert_names(info.value, [1, 4, 9], total=11)
    assert info.value.from_model and not info.value.derived
    m.logits(x[[0, 2, 3]])  # the finite samples still run


def test_predict_never_reads_nan_rows_as_class_zero():
    m = wrap()
    x, _ = images()
    with pytest.raises(NonFiniteOutputError):
        m.predict(x)
    with pytest.raises(NonFiniteOutputError):
        m.probs(x)


def test_error_survives_pickling_with_its_indices():
    import pickle

    e = NonFiniteOutputError([3, 1], 8, scope="batch")
    back = pickle.loads(pickle.dumps(e))
    assert back.indices == [1, 3] and back.total == 8 and str(back) == str(e)


# ------------------------------------------------------------------------------ every explainer
@pytest.mark.parametrize("name", explain.available_explainers())
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("target", [None, 0])
def test_every_explainer_names_the_nonfinite_samples(name, value, target):
    m = wrap(value)
    x, _ = images()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(NonFiniteOutputError) as info:
            explain.run_explainer(name, m, x, target=target)
    assert_names(info.value, BAD)


@pytest.mark.parametrize("name", explain.available_explainers())
def test_explainers_on_finite_samples_of_the_same_model_still_work(name):
    m = wrap()
    x, _ = images()
    keep = [i for i in range(N) if i not in BAD]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = explain.run_explainer(name, m, x[keep])
    assert bool(torch.isfinite(a.values).all())


class ZeroBaselineNaN(SmallCNN):
    """Finite on the given inputs (pixel (0,0,0) > 0), NaN once a method sets that pixel to exactly 0."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        super().__init__(in_channels=3, num_classes=3, width=4)

    def forward(self, x):
        out = super().forward(x)
        return torch.where((x[:, 0, 0, 0] == 0)[:, None], torch.full_like(out, float("nan")), out)


def test_nan_only_on_a_methods_derived_inputs_is_reported_as_such():
    m = explain.ModelWrapper(ZeroBaselineNaN(), "image", device="cpu", batch_size=4)
    x, _ = images(bad=[])
    x[:, 0, 0, 0] = 0.5
    with pytest.raises(NonFiniteOutputError) as info:
        explain.occlusion(m, x, window=4, stride=4, baseline=0.0)
    e = info.value
    assert e.derived and e.scope == "batch" and e.indices and max(e.indices) < N
    assert "derived" in str(e)


class SqrtAtZero(SmallCNN):
    """Finite logits everywhere, but an infinite input gradient where pixel (0,0,0) is exactly 0."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        super().__init__(in_channels=3, num_classes=3, width=4)

    def forward(self, x):
        return super().forward(x) + torch.sqrt(x[:, 0, 0, 0].abs())[:, None]


def test_nonfinite_gradients_from_finite_logits_never_become_a_map():
    m = explain.ModelWrapper(SqrtAtZero(), "image", device="cpu")
    x, _ = images(bad=[])
    x[2, 0, 0, 0] = 0.0
    assert bool(torch.isfinite(m.logits(x)).all())
    with pytest.raises(NonFiniteOutputError) as info:
        explain.saliency(m, x)
    assert_names(info.value, [2])
    assert "saliency attributions" in str(info.value)
    for name in explain.available_explainers():  # any other map that comes back is finite
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                a = explain.run_explainer(name, m, x)
        except NonFiniteOutputError as error:
            assert 2 in error.indices
        else:
            assert bool(torch.isfinite(a.values).all()), name


# ------------------------------------------------------------------------------ attacks
@pytest.mark.parametrize("method", [k for k, s in ATTACK_SPECS.items() if "image" in s.kinds])
def test_every_image_attack_names_the_nonfinite_samples(method):
    m = wrap()
    x, y = images()
    with pytest.raises(NonFiniteOutputError) as info:
        robustness.attack(m, x, y, method=method, eps=8 / 255, seed=0)
    assert_names(info.value, BAD)


@pytest.mark.parametrize("method", [k for k, s in ATTACK_SPECS.items() if "tokens" in s.kinds])
def test_every_token_attack_names_the_nonfinite_sequences(method):
    m = explain.ModelWrapper(MarkedLSTM(), "tokens", device="cpu")
    x, y = tokens()
    with pytest.raises(NonFiniteOutputError) as info:
        robustness.attack(m, x, y, method=method, seed=0)
    assert_names(info.value, BAD)


def test_a_nan_gradient_inside_an_attack_step_is_detected():
    m = explain.ModelWrapper(SqrtAtZero(), "image", device="cpu")
    x, y = images(bad=[])
    x[3, 0, 0, 0] = 0.0
    for method in ("fgsm", "pgd"):
        with pytest.raises(NonFiniteOutputError) as info:
            robustness.attack(m, x, y, method=method, eps=8 / 255, seed=0, **({"random_start": False} if method == "pgd" else {}))
        assert info.value.indices == [3] and info.value.derived, str(info.value)


# ------------------------------------------------------------------------------ streamed evaluations
def test_robust_accuracy_names_positions_in_the_data():
    m = wrap()
    x, y = images(bad=[5], n=8)
    with pytest.raises(NonFiniteOutputError) as info:
        robustness.robust_accuracy(m, (x, y), eps=[0, 2 / 255], method="fgsm", batch_size=4)
    assert info.value.scope == "data" and info.value.indices == [5], str(info.value)


def test_corruption_accuracy_names_positions_in_the_data():
    m = wrap()
    x, y = images(bad=[6], n=8)
    with pytest.raises(NonFiniteOutputError) as info:
        robustness.corruption_accuracy(m, (x, y), corruptions=["gaussian_noise"], severities=[1], batch_size=4)
    assert info.value.scope == "data" and info.value.indices == [6], str(info.value)


class OneIsNaN(SmallCNN):
    """NaN exactly where pixel (0,0,0) equals 1.0: finite on 0.6, NaN once brightening (+0.5, clipped) reaches 1."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        super().__init__(in_channels=3, num_classes=3, width=4)

    def forward(self, x):
        out = super().forward(x)
        return torch.where((x[:, 0, 0, 0] == 1.0)[:, None], torch.full_like(out, float("nan")), out)


def test_corrupted_copies_that_turn_nan_are_named_with_the_corruption():
    m = explain.ModelWrapper(OneIsNaN(), "image", device="cpu")
    x, y = images(bad=[], n=8)
    x[:, 0, 0, 0] = 0.1
    x[[2, 7], 0, 0, 0] = 0.6
    r = robustness.corruption_accuracy(m, (x, y), corruptions=["brightness"], severities=[1], batch_size=4)
    assert r.n == 8  # +0.1 keeps every sample finite
    with pytest.raises(NonFiniteOutputError) as info:
        robustness.corruption_accuracy(m, (x, y), corruptions=["brightness"], severities=[1, 5], batch_size=4)
    e = info.value
    assert e.scope == "data" and e.derived and "brightness at severity 5" in str(e), str(e)
    assert e.indices == [2], str(e)  # the stream stops at the first batch that fails


@pytest.mark.parametrize("detector", list(DETECTOR_SPECS))
@pytest.mark.parametrize("where", ["in_data", "ood_data"])
def test_evaluate_ood_names_the_nonfinite_samples_and_never_reaches_sklearn(detector, where):
    m = wrap()
    x_in, y_in = images(bad=[], n=24, seed=1)
    x_out, _ = images(bad=[], n=12, seed=2)
    if where == "in_data":
        x_in[[3, 17], 0, 0, 0] = 1.0
        want = [3, 17]
    else:
        x_out[[8], 0, 0, 0] = 1.0
        want = [8]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(NonFiniteOutputError) as info:
            robustness.evaluate_ood(m, (x_in, y_in), x_out, methods=[detector], batch_size=8,
                                    params={"knn": {"k": 2}})
    e = info.value
    assert e.scope == "data" and e.indices == want and f"of {where}" in str(e), str(e)


def test_a_detector_whose_own_scores_are_nan_is_dropped_with_the_samples_named(monkeypatch):
    import robustness.ood as ood

    m = explain.ModelWrapper(SmallCNN(3, 3, 4), "image", device="cpu")
    x_in, y_in = images(bad=[], n=16, seed=1)
    x_out, _ = images(bad=[], n=8, seed=2)

    class NaNScores(ood.DETECTORS["energy"]):  # finite logits, a detector whose arithmetic gives NaN
        def _score(self, x):
            s = super()._score(x)
            s[0] = float("nan")
            return s

    monkeypatch.setitem(ood.DETECTOR_SPECS, "nan_energy", ood.DetectorSpec(NaNScores))
    monkeypatch.setitem(ood.DETECTORS, "nan_energy", NaNScores)
    o = robustness.evaluate_ood(m, (x_in, y_in), x_out, methods=["nan_energy", "msp"], batch_size=8)
    assert "nan_energy" not in o.methods and "msp" in o.methods
    assert "NonFiniteOutputError" in o.errors["nan_energy"] and "indices 0" in o.errors["nan_energy"]
    assert "detector's scores" in o.errors["nan_energy"]


def test_detector_score_refuses_nonfinite_logits():
    m = wrap()
    x, y = images(bad=[], n=8)
    d = robustness.ood_detector("energy").fit(m, (x, y))
    xb, _ = images()
    with pytest.raises(NonFiniteOutputError) as info:
        d.score(xb)
    assert_names(info.value, BAD)


def test_ood_metrics_refuse_nonfinite_scores():
    from robustness.ood import ood_metrics

    with pytest.raises(NonFiniteOutputError) as info:
        ood_metrics(torch.tensor([0.1, float("nan"), 0.3]), torch.tensor([1.0, 2.0]))
    assert info.value.indices == [1]


# ------------------------------------------------------------------------------ bounds and verification
class HugeLinear(nn.Module):
    """A linear classifier whose logits overflow float32 exactly when pixels 0..3 of channel 0 are all near 1."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 16 * 16, 3)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.bias.zero_()
            self.fc.weight[:, :4] = 1e38
            self.fc.weight[1, 10] = 1.0

    def forward(self, x):
        return self.fc(x.flatten(1))


def overflow_images():
    x, y = images(bad=[])
    x[:, 0, 0, :4] = 0.1
    x[BAD, 0, 0, :4] = 1.0
    return x, y


def test_overflowing_logits_are_refused():
    m = explain.ModelWrapper(HugeLinear(), "image", device="cpu")
    x, _ = overflow_images()
    with pytest.raises(NonFiniteOutputError) as info:
        m.logits(x)
    assert_names(info.value, BAD)


@pytest.mark.parametrize("method", ["ibp", "crown"])
def test_output_bounds_and_verify_name_the_nonfinite_samples(method):
    m = explain.ModelWrapper(HugeLinear(), "image", device="cpu")
    x, y = overflow_images()
    with pytest.raises(NonFiniteOutputError) as info:
        robustness.output_bounds(m, x, eps=1 / 255, method=method)
    assert_names(info.value, BAD)
    with pytest.raises(NonFiniteOutputError) as info:
        robustness.verify(m, x, y, eps=1 / 255, method=method)
    assert_names(info.value, BAD)


# ------------------------------------------------------------------------------ the report and the CLI
def test_build_report_refuses_with_the_positions_in_the_data(tmp_path):
    m = wrap()
    x, y = images(bad=[13], n=20)
    with pytest.raises(NonFiniteOutputError) as info:
        reports.build_report(m, (x, y), out=tmp_path / "r", sections=["model_card", "performance"],
                             batch_size=8)
    assert info.value.scope == "data" and info.value.indices == [13], str(info.value)
    assert not (tmp_path / "r" / "index.html").exists()


def test_performance_counts_never_read_a_nan_confidence_as_a_prediction():
    from reports.sections.performance import counts_from_outcomes

    with pytest.raises(NonFiniteOutputError) as info:
        counts_from_outcomes(torch.tensor([0, 0, 1]), torch.tensor([0.9, float("nan"), 0.8]), torch.tensor([0, 1, 1]), 2)
    assert info.value.indices == [1]


def test_cli_exits_2_with_one_line_naming_the_samples(tmp_path, capsys):
    x, y = images(bad=[2], n=8)
    torch.save({"x": x, "y": y}, tmp_path / "data.pt")
    torch.save(MarkedCNN().state_dict(), tmp_path / "w.pt")
    code = cli_main(["report", "--model", "tests.contract.test_nonfinite:make_marked_cnn", "--weights",
                     str(tmp_path / "w.pt"), "--kind", "image", "--data", str(tmp_path / "data.pt"), "--device", "cpu",
                     "--quiet", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "NaN or Inf" in err[0] and "indices 2" in err[0]
