"""Every bad input gets the toolkit's own error: one table of calls, their error type and a phrase.

Each row is ``Case(id, entry, call, error, phrase)``: ``call(c)`` makes the bad call with the shared
context ``c`` (tiny untrained models, tensors, files); it must raise ``error`` (a ``ToolkitError``
subclass) whose message contains ``phrase``. Rows with ``error=EXIT2`` call the CLI's ``main`` and
expect exit code 2 with exactly one line on stderr containing ``phrase``. ``entry`` names the public
entry point the row covers; :func:`test_every_public_entry_point_has_rows` fails when a public
callable of ``explain``, ``robustness`` or ``reports`` has no row, so a new one cannot ship without.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import explain
import reports
import robustness
from explain import errors as E
from explain.zoo import BiLSTMClassifier, Conv1dNet, SmallCNN
from reports.build import Report
from reports.cli import main
from reports.report import Section

EXIT2 = "exit code 2 and one line on stderr"


@dataclass
class Case:
    id: str
    entry: str
    call: Callable[[Any], Any]
    error: Any
    phrase: str


# ------------------------------------------------------------------------------- tiny models
def make_cnn() -> nn.Module:
    torch.manual_seed(0)
    return SmallCNN(in_channels=3, num_classes=3, width=4)


class NoConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(12, 3)

    def forward(self, x):
        return self.fc(x.flatten(1)[:, :12])


class WrongOutput(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3)).unsqueeze(-1)  # N×C×1, not N×K


class NeedsTwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x, lengths):
        return self.fc(x.mean(dim=(2, 3)))


class Flat(nn.Module):
    """Linear first layer on flattened 3×8×8 images."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(192, 3)

    def forward(self, x):
        return self.fc(x.flatten(1))


@pytest.fixture(scope="module")
def c(tmp_path_factory):
    """The shared context of every row: wrappers, inputs, labels and files."""
    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("bad_input")
    ns = types.SimpleNamespace(tmp=tmp)
    ns.net = make_cnn()
    ns.img = explain.ModelWrapper(ns.net, "image", class_names=["a", "b", "c"], device="cpu")
    ns.img_norm = explain.ModelWrapper(make_cnn(), "image", mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2], device="cpu")
    ns.tok = explain.ModelWrapper(BiLSTMClassifier(20, 2, embed_dim=8, hidden=8), "tokens", device="cpu")
    ns.ser = explain.ModelWrapper(Conv1dNet(1, 3, width=4), "series", device="cpu")
    ns.x = torch.rand(4, 3, 8, 8)
    ns.y = torch.tensor([0, 1, 2, 0])
    ns.y_bad = torch.tensor([0, 1, 7, -1])
    ns.xt = torch.randint(1, 20, (4, 6))
    ns.yt = torch.tensor([0, 1, 0, 1])
    ns.xs = torch.randn(4, 16, 1)
    ns.ys = torch.tensor([0, 1, 2, 0])
    nan = ns.x.clone()
    nan[0, 0, 0, 0] = float("nan")
    ns.x_nan = nan
    ns.report = Report("t", [Section("model_card", "Model card")], {"xaiscope_version": explain.__version__})
    # files
    torch.save(ns.net.state_dict(), tmp / "w.pt")
    torch.save(SmallCNN(3, 5, 4).state_dict(), tmp / "w_other.pt")
    torch.save(ns.net, tmp / "whole.pt")
    (tmp / "empty.pt").write_bytes(b"")
    (tmp / "corrupt.pt").write_bytes(b"\x00 not a checkpoint")
    torch.save({"x": ns.x, "y": ns.y}, tmp / "data.pt")
    torch.save({"x": ns.x, "y": ns.y_bad}, tmp / "data_bad_labels.pt")
    torch.save({"x": torch.rand(4, 1, 8, 8), "y": ns.y}, tmp / "data_grey.pt")
    (tmp / "bad.toml").write_text("methods = [unclosed\n")
    (tmp / "a_file.txt").write_text("mine")
    (tmp / "project").mkdir()
    (tmp / "project" / "train.py").write_text("print(1)\n")
    return ns


def cli(c, *args, model=True):
    base = ["report", "--model", "tests.contract.test_bad_input:make_cnn", "--weights", str(c.tmp / "w.pt"),
            "--kind", "image", "--data", str(c.tmp / "data.pt"), "--device", "cpu", "--quiet",
            "--out", str(c.tmp / "cli-out")] if model else []
    return main(base + [a.format(tmp=c.tmp) for a in args])


def batches_of(items):
    return DataLoader(items, batch_size=2, collate_fn=lambda b: b[0])


CUDA = torch.cuda.is_available()

CASES = [
    # ---------------------------------------------------------------- ModelWrapper construction
    Case("wrapper-not-a-module", "explain.ModelWrapper", lambda c: explain.ModelWrapper("net.pt"),
         E.UnsupportedModelError, "expected a torch.nn.Module"),
    Case("wrapper-unknown-input-kind", "explain.ModelWrapper", lambda c: explain.ModelWrapper(make_cnn(), "video"),
         E.InputShapeError, "input_kind must be one of"),
    Case("wrapper-unknown-precision", "explain.ModelWrapper",
         lambda c: explain.ModelWrapper(make_cnn(), precision="int8"), E.InputShapeError, "precision must be"),
    Case("wrapper-batch-size-zero", "explain.ModelWrapper",
         lambda c: explain.ModelWrapper(make_cnn(), batch_size=0), E.InputShapeError, "batch_size must be at least 1"),
    Case("run-in-chunks-without-a-size", "explain.run_in_chunks",
         lambda c: explain.run_in_chunks(lambda sl: sl, 3, None), E.InputValueError, "a chunk size"),
    Case("deterministic-batch-size-zero", "explain.deterministic",
         lambda c: explain.deterministic(batch_size=0).__enter__(), E.InputValueError, "whole number ≥ 1"),
    Case("wrapper-std-zero", "explain.ModelWrapper",
         lambda c: explain.ModelWrapper(make_cnn(), std=[0.2, 0.0, 0.2]), E.InputValueError, "std must be positive"),
    Case("wrapper-mean-for-tokens", "explain.ModelWrapper",
         lambda c: explain.ModelWrapper(c.tok.model, "tokens", mean=[0.5]), E.InputShapeError, "token models take ids"),
    Case("wrapper-cuda-without-gpu", "explain.ModelWrapper",
         lambda c: (pytest.skip("a GPU is present") if CUDA else explain.ModelWrapper(make_cnn(), device="cuda")),
         E.UnsupportedModelError, "CUDA is not available"),
    Case("check-wrapper-bare-module", "explain.check_wrapper", lambda c: explain.check_wrapper(c.net),
         E.InputShapeError, "wrap the model first"),
    # ---------------------------------------------------------------- inputs seen by the wrapper
    Case("logits-not-a-tensor", "explain.ModelWrapper", lambda c: c.img.logits([[0.1, 0.2]]),
         E.InputShapeError, "expected a torch.Tensor, got list"),
    Case("logits-missing-batch-dim", "explain.ModelWrapper", lambda c: c.img.logits(c.x[0]),
         E.InputShapeError, "add a batch dimension"),
    Case("logits-integer-image", "explain.ModelWrapper", lambda c: c.img.logits((c.x * 255).long()),
         E.InputShapeError, "must be floating point"),
    Case("logits-nan", "explain.ModelWrapper", lambda c: c.img.logits(c.x_nan), E.InputValueError, "NaN or Inf"),
    Case("logits-inf", "explain.ModelWrapper", lambda c: c.img.logits(c.x.clone().fill_(float("inf"))),
         E.InputValueError, "NaN or Inf"),
    Case("logits-empty-batch", "explain.ModelWrapper", lambda c: c.img.logits(c.x[:0]),
         E.EmptyDataError, "the batch is empty"),
    Case("image-wrong-channel-count", "explain.ModelWrapper", lambda c: c.img.logits(torch.rand(2, 1, 8, 8)),
         E.ModelCallError, "takes 3 input channels"),
    Case("image-wrong-channels-names-shape", "explain.ModelWrapper", lambda c: c.img.predict(torch.rand(2, 4, 8, 8)),
         E.ModelCallError, "shape (2, 4, 8, 8), dtype torch.float32"),
    Case("series-wrong-channel-count", "explain.ModelWrapper", lambda c: c.ser.logits(torch.randn(2, 16, 3)),
         E.ModelCallError, "takes 1 input channels"),
    Case("linear-first-layer-wrong-size", "explain.ModelWrapper",
         lambda c: explain.ModelWrapper(Flat(), device="cpu").logits(torch.rand(2, 3, 4, 4)),
         E.ModelCallError, "takes 192 input features"),
    Case("model-needs-another-argument", "explain.ModelWrapper",
         lambda c: explain.ModelWrapper(NeedsTwoInputs(), device="cpu").logits(c.x), E.ModelCallError, "TypeError"),
    Case("model-output-not-n-by-k", "explain.ModelWrapper",
         lambda c: explain.ModelWrapper(WrongOutput(), device="cpu").logits(c.x), E.UnsupportedModelError,
         "expected 4×K class scores"),
    Case("tokens-float-ids", "explain.ModelWrapper", lambda c: c.tok.logits(c.xt.float()),
         E.InputShapeError, "integer ids"),
    Case("tokens-3d", "explain.ModelWrapper", lambda c: c.tok.logits(c.xt.unsqueeze(-1)),
         E.InputShapeError, "expected token ids of shape N×T"),
    Case("tokens-beyond-vocabulary", "explain.ModelWrapper", lambda c: c.tok.logits(c.xt + 20),
         E.InputValueError, "the embedding has 20 rows"),
    Case("tokens-negative-ids", "explain.ModelWrapper", lambda c: c.tok.logits(-c.xt),
         E.InputValueError, "token ids span"),
    Case("mean-fewer-values-than-channels", "explain.ModelWrapper",
         lambda c: explain.ModelWrapper(make_cnn(), mean=[0.5, 0.5], device="cpu").logits(c.x),
         E.InputShapeError, "3 channels but mean has 2 values"),
    Case("std-more-values-than-channels", "explain.ModelWrapper",
         lambda c: c.img_norm.logits(torch.rand(2, 1, 8, 8)), E.InputShapeError, "1 channels but mean has 3 values"),
    Case("series-std-channel-mismatch", "explain.ModelWrapper",
         lambda c: explain.ModelWrapper(c.ser.model, "series", std=[1.0, 2.0], device="cpu").logits(c.xs),
         E.InputShapeError, "1 channels but std has 2 values"),
    Case("class-names-too-few", "explain.ModelWrapper",
         lambda c: explain.ModelWrapper(make_cnn(), class_names=["a", "b"], device="cpu").logits(c.x),
         E.UnsupportedModelError, "3 scores per sample but 2 classes were declared"),
    Case("class-names-too-many", "explain.ModelWrapper",
         lambda c: explain.ModelWrapper(make_cnn(), class_names=list("abcd"), device="cpu").predict(c.x),
         E.UnsupportedModelError, "3 scores per sample but 4 classes were declared"),
    Case("labels-outside-classes", "explain.ModelWrapper", lambda c: c.img.check_labels(c.y_bad, c.x),
         E.InputValueError, "outside the model's classes: -1, 7"),
    Case("labels-one-hot", "explain.ModelWrapper",
         lambda c: c.img.check_labels(torch.nn.functional.one_hot(c.y, 3), c.x), E.InputShapeError, "argmax(1)"),
    Case("labels-fractional", "explain.ModelWrapper", lambda c: c.img.check_labels([0.0, 1.5, 2.0, 0.0], c.x),
         E.InputValueError, "whole class indices"),
    Case("target-out-of-range", "explain.gradcam", lambda c: explain.gradcam(c.img, c.x, target=5),
         E.InputValueError, "class indices must be in [0, 2]"),
    Case("target-wrong-count", "explain.gradcam", lambda c: explain.gradcam(c.img, c.x, target=[0, 1]),
         E.InputShapeError, "expected one class or 4 classes"),
    # ---------------------------------------------------------------- explainers
    Case("gradcam-bare-module", "explain.gradcam", lambda c: explain.gradcam(c.net, c.x),
         E.InputShapeError, "explain.ModelWrapper"),
    Case("gradcam-unknown-layer", "explain.gradcam", lambda c: explain.gradcam(c.img, c.x, layer="features.99"),
         E.LayerNotFoundError, "features.99"),
    Case("gradcam-model-without-conv", "explain.gradcam",
         lambda c: explain.gradcam(explain.ModelWrapper(NoConv(), device="cpu"), c.x), E.LayerNotFoundError, "layer="),
    Case("gradcam-wrong-channels", "explain.gradcam", lambda c: explain.gradcam(c.img, torch.rand(2, 1, 8, 8)),
         E.ModelCallError, "takes 3 input channels"),
    Case("occlusion-window-zero", "explain.occlusion", lambda c: explain.occlusion(c.img, c.x, window=0),
         E.InputShapeError, "window"),
    Case("occlusion-baseline-shape", "explain.occlusion",
         lambda c: explain.occlusion(c.img, c.x, window=4, baseline=torch.zeros(2, 2)), E.InputShapeError, "baseline"),
    Case("occlusion-nan", "explain.occlusion", lambda c: explain.occlusion(c.img, c.x_nan), E.InputValueError, "NaN"),
    Case("lime-zero-samples", "explain.lime", lambda c: explain.lime(c.img, c.x, n_samples=0),
         E.InputShapeError, "n_samples"),
    Case("lime-unknown-backend", "explain.lime", lambda c: explain.lime(c.img, c.x, backend="nope"),
         E.InputShapeError, "backend must be"),
    Case("lime-unknown-output", "explain.lime", lambda c: explain.lime(c.img, c.x, output="odds"),
         E.InputShapeError, "output must be"),
    Case("lime-unknown-features", "explain.lime", lambda c: explain.lime(c.img, c.x, features="watershed"),
         E.InputShapeError, "features must be"),
    Case("shap-background-shape", "explain.shap",
         lambda c: explain.shap(c.img, c.x, background=torch.rand(3, 3, 4, 4)), E.InputShapeError, "background"),
    Case("shap-unknown-algorithm", "explain.shap", lambda c: explain.shap(c.img, c.x, algorithm="exact"),
         E.InputShapeError, "algorithm must be"),
    Case("shap-tokens-out-of-vocab", "explain.shap", lambda c: explain.shap(c.tok, c.xt + 50),
         E.InputValueError, "embedding has 20 rows"),
    Case("ig-zero-steps", "explain.integrated_gradients",
         lambda c: explain.integrated_gradients(c.img, c.x, steps=0), E.InputShapeError, "steps"),
    Case("ig-unknown-rule", "explain.integrated_gradients",
         lambda c: explain.integrated_gradients(c.img, c.x, method="simpson"), E.InputShapeError, "method must be"),
    Case("ig-baseline-shape", "explain.integrated_gradients",
         lambda c: explain.integrated_gradients(c.img, c.x, baseline=torch.zeros(5)), E.InputShapeError, "baseline"),
    Case("saliency-bare-module", "explain.saliency", lambda c: explain.saliency(c.net, c.x),
         E.InputShapeError, "explain.ModelWrapper"),
    Case("saliency-series-int", "explain.saliency", lambda c: explain.saliency(c.ser, c.xs.long()),
         E.InputShapeError, "floating point"),
    Case("smoothgrad-target-range", "explain.smoothgrad", lambda c: explain.smoothgrad(c.img, c.x, target=3),
         E.InputValueError, "class indices must be in [0, 2]"),
    Case("get-explainer-unknown", "explain.get_explainer", lambda c: explain.get_explainer("deeplift"),
         E.UnknownMethodError, "unknown explanation method 'deeplift'"),
    Case("run-explainer-unknown", "explain.run_explainer", lambda c: explain.run_explainer("nope", c.img, c.x),
         E.UnknownMethodError, "available"),
    Case("run-explainer-bad-input", "explain.run_explainer",
         lambda c: explain.run_explainer("gradcam", c.img, c.x_nan), E.InputValueError, "NaN"),
    # ---------------------------------------------------------------- loading
    Case("load-missing-file", "explain.load_model", lambda c: explain.load_model(c.tmp / "missing.pt"),
         E.ModelLoadError, "does not exist"),
    Case("load-empty-file", "explain.load_model", lambda c: explain.load_model(c.tmp / "empty.pt"),
         E.ModelLoadError, "is empty"),
    Case("load-corrupt-file", "explain.load_model", lambda c: explain.load_model(c.tmp / "corrupt.pt"),
         E.ModelLoadError, "cannot load"),
    Case("load-state-dict-without-factory", "explain.load_model", lambda c: explain.load_model(c.tmp / "w.pt"),
         E.ModelLoadError, "pass factory="),
    Case("load-factory-without-colon", "explain.load_model",
         lambda c: explain.load_model(c.tmp / "w.pt", factory="tests.contract.test_bad_input"),
         E.ModelLoadError, "expected 'package.module:function'"),
    Case("load-factory-missing-module", "explain.load_model",
         lambda c: explain.load_model(c.tmp / "w.pt", factory="no_such_pkg.models:make"), E.ModelLoadError,
         "cannot import module"),
    Case("load-factory-missing-function", "explain.load_model",
         lambda c: explain.load_model(c.tmp / "w.pt", factory="tests.contract.test_bad_input:nothing"),
         E.ModelLoadError, "has no attribute"),
    Case("load-weights-do-not-fit", "explain.load_model",
         lambda c: explain.load_model(c.tmp / "w_other.pt", factory="tests.contract.test_bad_input:make_cnn"),
         E.ModelLoadError, "do not fit the factory's model"),
    Case("load-pickled-module-untrusted", "explain.load_model", lambda c: explain.load_model(c.tmp / "whole.pt"),
         E.ModelLoadError, "trust_code=True"),
    Case("load-hf-missing-directory", "explain.load_hf", lambda c: explain.load_hf(c.tmp / "no-such-dir"),
         E.ModelLoadError, "save_pretrained"),
    Case("load-hf-directory-without-config", "explain.load_hf", lambda c: explain.load_hf(c.tmp),
         E.ModelLoadError, "save_pretrained"),
    Case("encode-texts-without-tokenizer", "explain.encode_texts", lambda c: explain.encode_texts(None, ["a b"]),
         E.InputShapeError, "need a tokenizer"),
    Case("encode-texts-not-strings", "explain.encode_texts", lambda c: explain.encode_texts(object(), ["a", 3]),
         E.InputShapeError, "texts must be strings"),
    # ---------------------------------------------------------------- data
    Case("collect-a-string", "explain.collect", lambda c: explain.collect("data/"), E.InputShapeError,
         "expected an (inputs, labels) pair"),
    Case("collect-label-count", "explain.collect", lambda c: explain.collect((c.x, c.y[:3])), E.InputShapeError,
         "inputs hold 4 samples but labels hold 3"),
    Case("collect-no-samples", "explain.collect", lambda c: explain.collect((c.x[:0], c.y[:0])), E.EmptyDataError,
         "no samples"),
    Case("collect-labels-not-numbers", "explain.collect", lambda c: explain.collect((c.x, "cats")),
         E.InputShapeError, "labels: expected a tensor"),
    Case("iter-batches-dict-without-inputs", "explain.iter_batches",
         lambda c: list(explain.iter_batches(batches_of([{"pixels": c.x}]))), E.InputShapeError, "'inputs'"),
    Case("iter-batches-empty-loader", "explain.iter_batches", lambda c: list(explain.iter_batches(batches_of([]))),
         E.EmptyDataError, "no samples"),
    Case("stream-generator-read-twice", "explain.stream",
         lambda c: explain.stream((b for b in [(c.x, c.y)]), passes=2), E.SinglePassDataError, "one-shot iterator"),
    Case("stream-bad-batch-size", "explain.stream", lambda c: explain.stream((c.x, c.y), batch_size=0),
         E.InputShapeError, "batch_size must be a positive integer"),
    Case("stream-labels-per-batch-count", "explain.stream", lambda c: list(explain.stream([(c.x, c.y[:3])])),
         E.InputShapeError, "4 inputs but 3 labels"),
    Case("stream-sample-shape-changes", "explain.stream",
         lambda c: list(explain.stream([c.x, torch.rand(2, 3, 6, 6)])), E.InputShapeError, "samples shaped"),
    Case("robust-accuracy-batches-without-labels", "robustness.robust_accuracy",
         lambda c: robustness.robust_accuracy(c.img, [c.x[:2], c.x[2:]], eps=[0, 0.01], method="fgsm"),
         E.InputShapeError, "needs labels"),
    Case("corruption-accuracy-empty-loader", "robustness.corruption_accuracy",
         lambda c: robustness.corruption_accuracy(c.img, batches_of([])), E.EmptyDataError, "no samples"),
    Case("evaluate-ood-generator-read-twice", "robustness.evaluate_ood",
         lambda c: robustness.evaluate_ood(c.img, ((c.x, c.y) for _ in range(2)), c.x, methods=["msp"]),
         E.SinglePassDataError, "pass a DataLoader"),
    Case("certified-accuracy-2d-labels-in-a-batch", "robustness.certified_accuracy",
         lambda c: robustness.certified_accuracy(c.img, [(c.x, c.y[:, None].repeat(1, 2))], eps=[0]),
         E.InputShapeError, "one class label per sample"),
    Case("build-report-generator-of-empty-batches", "reports.build_report",
         lambda c: reports.build_report(c.img, ((c.x[:0], c.y[:0]) for _ in range(3))), E.EmptyDataError,
         "data holds no samples"),
    # ---------------------------------------------------------------- attacks
    Case("attack-labels-outside-classes", "robustness.attack", lambda c: robustness.attack(c.img, c.x, c.y_bad),
         E.InputValueError, "labels must be class indices in [0, 2] (3 classes)"),
    Case("attack-labels-checked-before-classes-are-known", "robustness.attack",
         lambda c: robustness.attack(explain.ModelWrapper(make_cnn(), device="cpu"), c.x, c.y_bad), E.InputValueError,
         "2 labels are outside the model's classes: -1, 7; labels must be class indices in [0, 2]"),
    Case("attack-labels-count", "robustness.attack", lambda c: robustness.attack(c.img, c.x, c.y[:3]),
         E.InputShapeError, "expected 4 labels"),
    Case("attack-unknown-method", "robustness.attack", lambda c: robustness.attack(c.img, c.x, c.y, method="cw"),
         E.UnknownMethodError, "unknown attack 'cw'"),
    Case("attack-negative-eps", "robustness.attack", lambda c: robustness.attack(c.img, c.x, c.y, eps=-0.1),
         E.InputValueError, "eps must be finite"),
    Case("attack-unknown-norm", "robustness.attack", lambda c: robustness.attack(c.img, c.x, c.y, norm="l1"),
         E.InputShapeError, "norm must be"),
    Case("attack-unknown-parameter", "robustness.attack",
         lambda c: robustness.attack(c.img, c.x, c.y, method="fgsm", steps=3), E.InputShapeError, "does not take"),
    Case("attack-hotflip-on-images", "robustness.attack",
         lambda c: robustness.attack(c.img, c.x, c.y, method="hotflip"), E.InputShapeError, "hotflip substitutes"),
    Case("attack-wrong-channels", "robustness.attack",
         lambda c: robustness.attack(c.img, torch.rand(4, 1, 8, 8), c.y), E.ModelCallError, "takes 3 input channels"),
    Case("make-attack-unknown", "robustness.make_attack", lambda c: robustness.make_attack("deepfool"),
         E.UnknownMethodError, "available"),
    Case("pgd-run-labels-outside-classes", "robustness.PGD", lambda c: robustness.PGD(steps=2).run(c.img, c.x, c.y_bad),
         E.InputValueError, "outside the model's classes"),
    Case("fgsm-run-bare-module", "robustness.FGSM", lambda c: robustness.FGSM().run(c.net, c.x, c.y),
         E.InputShapeError, "explain.ModelWrapper"),
    Case("apgd-run-negative-eps", "robustness.APGD", lambda c: robustness.APGD(eps=-1.0).run(c.img, c.x, c.y),
         E.InputValueError, "eps must be finite"),
    Case("hotflip-run-labels-outside-classes", "robustness.HotFlip",
         lambda c: robustness.HotFlip().run(c.tok, c.xt, torch.tensor([0, 1, 2, 3])), E.InputValueError,
         "in [0, 1] (2 classes)"),
    Case("robust-accuracy-labels-outside-classes", "robustness.robust_accuracy",
         lambda c: robustness.robust_accuracy(c.img, (c.x, c.y_bad), eps=[0, 0.01]), E.InputValueError,
         "outside the model's classes"),
    Case("robust-accuracy-no-labels", "robustness.robust_accuracy",
         lambda c: robustness.robust_accuracy(c.img, c.x), E.InputShapeError, "needs labels"),
    Case("robust-accuracy-no-budgets", "robustness.robust_accuracy",
         lambda c: robustness.robust_accuracy(c.img, (c.x, c.y), eps=[]), E.InputShapeError, "at least one budget"),
    Case("corruption-accuracy-labels-outside-classes", "robustness.corruption_accuracy",
         lambda c: robustness.corruption_accuracy(c.ser, (c.xs, c.ys + 3)), E.InputValueError, "3, 4, 5"),
    Case("corruption-accuracy-unknown-corruption", "robustness.corruption_accuracy",
         lambda c: robustness.corruption_accuracy(c.img, (c.x, c.y), corruptions=["fog"]), E.UnknownMethodError,
         "unknown image corruption"),
    Case("corruption-accuracy-no-labels", "robustness.corruption_accuracy",
         lambda c: robustness.corruption_accuracy(c.img, c.x), E.InputShapeError, "needs labels"),
    # ---------------------------------------------------------------- OOD
    Case("ood-detector-unknown", "robustness.ood_detector", lambda c: robustness.ood_detector("isolation_forest"),
         E.UnknownMethodError, "unknown OOD detector"),
    Case("ood-detector-bad-parameter", "robustness.ood_detector",
         lambda c: robustness.ood_detector("energy", temp=2), E.InputShapeError, "detector 'energy'"),
    Case("detector-score-before-fit", "robustness.ood_detector",
         lambda c: robustness.ood_detector("msp").score(c.x), E.NotFittedError, "call fit(model, in_data) first"),
    Case("detector-is-ood-before-calibrate", "robustness.ood_detector",
         lambda c: robustness.ood_detector("msp").fit(c.img, (c.x, c.y)).is_ood(c.x), E.NotFittedError,
         "call calibrate"),
    Case("detector-fit-labels-outside-classes", "robustness.ood_detector",
         lambda c: robustness.ood_detector("energy").fit(c.img, (c.x, c.y_bad)), E.InputValueError,
         "in_data labels: 2 labels are outside the model's classes"),
    Case("mahalanobis-fit-labels-outside-classes", "robustness.ood_detector",
         lambda c: robustness.ood_detector("mahalanobis").fit(c.img, (c.x, c.y + 5)), E.InputValueError,
         "5, 6, 7"),
    Case("detector-score-other-shape", "robustness.ood_detector",
         lambda c: robustness.ood_detector("msp").fit(c.img, (c.x, c.y)).score(torch.rand(2, 3, 6, 6)),
         E.InputShapeError, "fitted on"),
    Case("detector-calibrate-tpr", "robustness.ood_detector",
         lambda c: robustness.ood_detector("msp").fit(c.img, (c.x, c.y)).calibrate((c.x, c.y), tpr=1.5),
         E.InputShapeError, "tpr must be in (0, 1]"),
    Case("evaluate-ood-labels-outside-classes", "robustness.evaluate_ood",
         lambda c: robustness.evaluate_ood(c.img, (c.x, c.y_bad), c.x), E.InputValueError,
         "outside the model's classes"),
    Case("evaluate-ood-wrong-channels", "robustness.evaluate_ood",
         lambda c: robustness.evaluate_ood(c.img, (torch.rand(4, 1, 8, 8), c.y), torch.rand(4, 1, 8, 8),
                                           methods=["msp"]), E.ModelCallError, "takes 3 input channels"),
    Case("evaluate-ood-shape-mismatch", "robustness.evaluate_ood",
         lambda c: robustness.evaluate_ood(c.img, (c.x, c.y), torch.rand(4, 3, 6, 6)), E.InputShapeError,
         "ood_data samples have shape"),
    Case("evaluate-ood-too-few", "robustness.evaluate_ood",
         lambda c: robustness.evaluate_ood(c.img, (c.x[:2], c.y[:2]), c.x), E.InputShapeError, "at least 4 samples"),
    Case("evaluate-ood-unknown-method", "robustness.evaluate_ood",
         lambda c: robustness.evaluate_ood(c.img, (c.x, c.y), c.x, methods=["lof"]), E.UnknownMethodError, "lof"),
    # ---------------------------------------------------------------- reports
    Case("build-report-bare-module", "reports.build_report", lambda c: reports.build_report(c.net, (c.x, c.y)),
         E.InputShapeError, "explain.ModelWrapper"),
    Case("build-report-labels-outside-classes", "reports.build_report",
         lambda c: reports.build_report(c.img, (c.x, c.y_bad)), E.InputValueError,
         "labels: 2 labels are outside the model's classes: -1, 7; labels must be class indices in [0, 2]"),
    Case("build-report-class-names-too-few", "reports.build_report",
         lambda c: reports.build_report(explain.ModelWrapper(make_cnn(), class_names=["a", "b"], device="cpu"),
                                        (c.x, c.y)), E.UnsupportedModelError, "2 classes were declared"),
    Case("build-report-wrong-channels", "reports.build_report",
         lambda c: reports.build_report(c.img, (torch.rand(4, 1, 8, 8), c.y)), E.ModelCallError,
         "takes 3 input channels"),
    Case("build-report-mean-mismatch", "reports.build_report",
         lambda c: reports.build_report(c.img_norm, (torch.rand(4, 2, 8, 8), c.y)), E.InputShapeError,
         "2 channels but mean has 3 values"),
    Case("build-report-series-ood-channels", "reports.build_report",
         lambda c: reports.build_report(c.ser, (c.xs, c.ys), ood_data=torch.randn(4, 16, 2)), E.InputShapeError,
         "ood_data series have 2 channels but data series have 1"),
    Case("build-report-unknown-section", "reports.build_report",
         lambda c: reports.build_report(c.img, (c.x, c.y), sections=["verdicts"]), E.InputShapeError,
         "unknown report sections"),
    Case("build-report-ood-shape", "reports.build_report",
         lambda c: reports.build_report(c.img, (c.x, c.y), ood_data=torch.rand(4, 3, 6, 6)), E.InputShapeError,
         "ood_data samples have shape"),
    Case("build-report-out-is-a-file", "reports.build_report",
         lambda c: reports.build_report(c.img, (c.x, c.y), out=c.tmp / "a_file.txt"), E.OutputExistsError,
         "is an existing file"),
    Case("build-report-out-is-a-project", "reports.build_report",
         lambda c: reports.build_report(c.img, (c.x, c.y), out=c.tmp / "project"), E.OutputExistsError,
         "force=True"),
    Case("report-save-to-a-file", "reports.Report", lambda c: c.report.save(c.tmp / "a_file.txt"),
         E.OutputExistsError, "pass a folder path"),
    Case("report-save-to-a-project", "reports.Report", lambda c: c.report.save(c.tmp / "project"),
         E.OutputExistsError, "'train.py'"),
    # ---------------------------------------------------------------- the command line
    Case("cli-no-model", "reports.cli.main", lambda c: main(["report", "--kind", "image", "--data", "x.pt"]),
         EXIT2, "missing --model"),
    Case("cli-unknown-kind", "reports.cli.main", lambda c: cli(c, "--kind", "video"), EXIT2, "invalid choice"),
    Case("cli-unknown-flag", "reports.cli.main", lambda c: cli(c, "--colour", "red"), EXIT2, "unrecognized arguments"),
    Case("cli-missing-data", "reports.cli.main", lambda c: cli(c, "--data", "{tmp}/nothing.pt"), EXIT2,
         "does not exist"),
    Case("cli-corrupt-weights", "reports.cli.main", lambda c: cli(c, "--weights", "{tmp}/corrupt.pt"), EXIT2,
         "cannot load"),
    Case("cli-mean-not-numbers", "reports.cli.main", lambda c: cli(c, "--mean", "a,b,c"), EXIT2,
         "expects comma-separated numbers"),
    Case("cli-unknown-explainer", "reports.cli.main", lambda c: cli(c, "--methods", "gradcam,magic"), EXIT2,
         "unknown method(s) magic"),
    Case("cli-missing-config", "reports.cli.main", lambda c: cli(c, "--config", "{tmp}/none.toml"), EXIT2,
         "cannot be read"),
    Case("cli-invalid-config", "reports.cli.main", lambda c: cli(c, "--config", "{tmp}/bad.toml"), EXIT2,
         "not valid TOML"),
    Case("cli-out-is-a-file", "reports.cli.main", lambda c: cli(c, "--out", "{tmp}/a_file.txt"), EXIT2,
         "is an existing file"),
    Case("cli-out-is-a-project", "reports.cli.main", lambda c: cli(c, "--out", "{tmp}/project"), EXIT2, "--force"),
    Case("cli-class-names-too-few", "reports.cli.main", lambda c: cli(c, "--class-names", "a,b"), EXIT2,
         "2 classes were declared"),
    Case("cli-labels-outside-classes", "reports.cli.main", lambda c: cli(c, "--data", "{tmp}/data_bad_labels.pt"),
         EXIT2, "outside the model's classes: -1, 7"),
    Case("cli-wrong-channels", "reports.cli.main", lambda c: cli(c, "--data", "{tmp}/data_grey.pt"), EXIT2,
         "takes 3 input channels"),
    Case("cli-mean-channel-mismatch", "reports.cli.main", lambda c: cli(c, "--mean", "0.5,0.5"), EXIT2,
         "3 channels but mean has 2 values"),
    Case("cli-explain-unknown-method", "reports.cli.main",
         lambda c: main(["explain", "--model", "tests.contract.test_bad_input:make_cnn", "--weights",
                         str(c.tmp / "w.pt"), "--kind", "image", "--data", str(c.tmp / "data.pt"), "--method", "x"]),
         EXIT2, "unknown method(s) x"),
    # ---------------------------------------------------------------- attention, feature visualisation
    Case("attention-bare-module", "explain.attention", lambda c: explain.attention(c.net, c.x),
         E.InputShapeError, "explain.ModelWrapper"),
    Case("attention-model-without-attention", "explain.attention", lambda c: explain.attention(c.img, c.x),
         E.UnsupportedModelError, "attention"),
    Case("feature-vis-bare-module", "explain.feature_visualization",
         lambda c: explain.feature_visualization(c.net, classes=[0]), E.InputShapeError, "explain.ModelWrapper"),
    Case("feature-vis-class-out-of-range", "explain.feature_visualization",
         lambda c: explain.feature_visualization(c.img, classes=[7], steps=1, shape=(3, 8, 8)), E.InputShapeError, "got [7]"),
    Case("deep-dream-bare-module", "explain.deep_dream", lambda c: explain.deep_dream(c.net, c.x),
         E.InputShapeError, "explain.ModelWrapper"),
    Case("deep-dream-nan-input", "explain.deep_dream", lambda c: explain.deep_dream(c.img, c.x * float("nan")),
         E.InputValueError, "NaN"),
    Case("dataset-examples-bare-module", "explain.dataset_examples",
         lambda c: explain.dataset_examples(c.net, (c.x, c.y)), E.InputShapeError, "explain.ModelWrapper"),
    # ---------------------------------------------------------------- bounds and verification
    Case("output-bounds-bare-module", "robustness.output_bounds", lambda c: robustness.output_bounds(c.net, c.x, 0.01),
         E.InputShapeError, "explain.ModelWrapper"),
    Case("output-bounds-unknown-method", "robustness.output_bounds",
         lambda c: robustness.output_bounds(c.img, c.x, 0.01, method="zonotope"), E.InputValueError, "zonotope"),
    Case("output-bounds-negative-eps", "robustness.output_bounds",
         lambda c: robustness.output_bounds(c.img, c.x, -0.1), E.InputValueError, "-0.1"),
    Case("verify-bare-module", "robustness.verify", lambda c: robustness.verify(c.net, c.x, c.y, eps=0.01),
         E.InputShapeError, "explain.ModelWrapper"),
    Case("verify-labels-outside-classes", "robustness.verify",
         lambda c: robustness.verify(c.img, c.x, c.y_bad, eps=0.01), E.InputValueError, "outside the model's classes"),
    Case("certified-accuracy-bare-module", "robustness.certified_accuracy",
         lambda c: robustness.certified_accuracy(c.net, (c.x, c.y), eps=[0.01]), E.InputShapeError, "explain.ModelWrapper"),
    Case("certified-accuracy-without-labels", "robustness.certified_accuracy",
         lambda c: robustness.certified_accuracy(c.img, c.x, eps=[0.01]), E.InputShapeError, "needs labels"),
    Case("embedding-scale-bare-module", "robustness.embedding_scale", lambda c: robustness.embedding_scale(c.net),
         E.InputShapeError, "explain.ModelWrapper"),
    Case("embedding-scale-image-model", "robustness.embedding_scale", lambda c: robustness.embedding_scale(c.img),
         E.LayerNotFoundError, "nn.Embedding"),
    # ---------------------------------------------------------------- training monitor
    Case("monitor-bare-module", "reports.Monitor", lambda c: reports.Monitor(c.net, probe=(c.x, c.y), out=c.tmp / "mon1"),
         E.InputShapeError, "explain.ModelWrapper"),
    Case("monitor-probe-labels-outside-classes", "reports.Monitor",
         lambda c: reports.Monitor(c.img, probe=(c.x, c.y_bad), out=c.tmp / "mon2"), E.InputValueError,
         "outside the model's classes"),
    Case("read-history-missing-folder", "reports.read_history", lambda c: reports.read_history(c.tmp / "no-run"),
         E.EmptyDataError, "no training history"),
    Case("hf-callback-not-a-monitor", "reports.hf_callback", lambda c: reports.hf_callback(object()),
         E.InputShapeError, "reports.Monitor"),
    Case("lightning-callback-not-a-monitor", "reports.lightning_callback", lambda c: reports.lightning_callback(object()),
         E.InputShapeError, "reports.Monitor"),
]

# Public callables that take no user input worth a row, each with the reason.
EXEMPT = {
    "explain.Attribution": "a result type the explainers construct",
    "explain.available_explainers": "takes no arguments",
    "explain.deterministic_mode": "takes no arguments",
    "robustness.AttackResult": "a result type the attacks construct",
    "robustness.RobustAccuracyResult": "a result type robust_accuracy constructs",
    "robustness.CorruptionResult": "a result type corruption_accuracy constructs",
    "robustness.OODEvaluation": "a result type evaluate_ood constructs",
    "robustness.OODMethodResult": "a result type evaluate_ood constructs",
    "robustness.OutputBounds": "a result type output_bounds constructs",
    "robustness.VerificationResult": "a result type verify constructs",
    "robustness.CertifiedAccuracyResult": "a result type certified_accuracy constructs",
    "robustness.UnsupportedOperationError": "an exception class",
    "explain.AttentionMaps": "a result type attention constructs",
    "explain.FeatureVisualization": "a result type feature_visualization constructs",
    "explain.DatasetExamples": "a result type dataset_examples constructs",
    "reports.TrainingHistory": "a result type read_history constructs",
}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_raises_the_toolkits_own_error(case, c, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing a row does may write into the checkout
    if case.error == EXIT2:
        code = case.call(c)
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert code == 2, err
        assert len(err) == 1 and case.phrase in err[0], err
        assert "Traceback" not in err[0]
        return
    assert issubclass(case.error, E.ToolkitError)
    with pytest.raises(E.ToolkitError) as info:
        case.call(c)
    assert type(info.value) is case.error, f"{type(info.value).__name__}: {info.value}"
    assert case.phrase in str(info.value), str(info.value)


def test_every_public_entry_point_has_rows():
    covered = {case.entry for case in CASES}
    public = set()
    for pkg in (explain, robustness, reports):
        for name in pkg.__all__:
            obj = getattr(pkg, name)
            if callable(obj) and not isinstance(obj, types.ModuleType):
                public.add(f"{pkg.__name__}.{name}")
    assert set(EXEMPT) <= public, f"exemptions that are no longer public: {set(EXEMPT) - public}"
    missing = sorted(public - covered - set(EXEMPT))
    assert not missing, f"public entry points without bad-input rows: {missing}"
    assert "reports.cli.main" in covered
    assert len(CASES) >= 60


def test_model_errors_keep_the_original_error_as_their_cause(c):
    with pytest.raises(E.ModelCallError) as info:
        c.img.logits(torch.rand(2, 1, 8, 8))
    assert isinstance(info.value.__cause__, RuntimeError)
    assert isinstance(info.value, RuntimeError)  # existing `except RuntimeError` handlers still catch it
    assert "\n" not in str(info.value)


def test_out_of_memory_in_the_model_still_reaches_the_batching_layer():
    class OOMOnBig(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            if len(x) > 2:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return self.fc(x.mean(dim=(2, 3)))

    m = explain.ModelWrapper(OOMOnBig(), device="cpu", batch_size=8)
    out = m.logits(torch.rand(8, 3, 4, 4))
    assert out.shape == (8, 2) and m.batch_size == 2  # halved twice, not turned into a ModelCallError


def test_keyboard_interrupt_and_toolkit_errors_from_the_model_pass_through_unchanged():
    class Raises(nn.Module):
        def __init__(self, error):
            super().__init__()
            self.error = error
            self.fc = nn.Linear(1, 1)

        def forward(self, x):
            raise self.error

    for error in (KeyboardInterrupt(), E.InputValueError("inner check")):
        with pytest.raises(type(error)) as info:
            explain.ModelWrapper(Raises(error), device="cpu").logits(torch.rand(1, 3, 2, 2))
        assert info.value is error


def test_the_first_layer_hint_reads_embeddings_and_recurrent_layers(c):
    from explain._modelcall import first_layer_hint
    assert "token ids in [0, 19] (20 embeddings)" in first_layer_hint(c.tok.model)
    assert "takes 5 features per step" in first_layer_hint(nn.Sequential(nn.LSTM(5, 4, batch_first=True)))
    assert first_layer_hint(nn.Sequential(nn.ReLU())) is None


def test_numpy_labels_are_checked_like_tensors(c):
    with pytest.raises(E.InputValueError, match="outside the model's classes: 9"):
        c.img.check_labels(np.array([0, 9, 1, 2]), c.x)
    assert c.img.check_labels(np.array([0.0, 1.0, 2.0, 0.0]), c.x).tolist() == [0, 1, 2, 0]
