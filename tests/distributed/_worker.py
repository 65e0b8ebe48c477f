"""One process of a sharded report, started by the tests with torchrun's environment variables.

``python -m tests.distributed._worker FOLDER [fail-rank] [form]``: reads ``FOLDER/w.pt`` and
``FOLDER/data.pt``, joins the process group the environment describes and builds the report with
``FOLDER/out`` as output (only rank 0 writes). With a fail rank (≥ 0), that rank's model raises
inside the performance section, after the model card has run. ``form`` is how the data arrives
(:data:`FORMS`): streamed forms use small batches and keep only the first samples whole.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

import explain
from explain.zoo import SmallCNN
from robustness import distributed as dist

SECTIONS = ["model_card", "performance", "explanations", "robustness", "ood", "verification", "trust"]
CONFIG = {
    "explanations": {"methods": ["gradcam", "integrated_gradients"], "samples": 3,
                     "params": {"integrated_gradients": {"steps": 8}}},
    "robustness": {"methods": ["pgd"], "eps": [0, 0.03, 0.1], "steps": 2, "bisect_steps": 1,
                   "corruptions": ["gaussian_noise", "contrast"], "severities": [2, 5]},
    "ood": {"methods": ["msp", "energy", "mahalanobis", "knn", "vim"], "params": {"knn": {"k": 3}}},
    "verify": {"samples": 8, "eps": [0, 0.01, 0.1], "method": "ibp", "attack_steps": 5},
    "trust": {"methods": ["gradcam", "integrated_gradients", "lime"], "samples": 6, "steps": 6,
              "sensitivity_perturbations": 2, "params": {"lime": {"n_samples": 64}}},
}
CLASSES = ["square", "plus", "cross", "blank"]


class FailsOnRank(torch.nn.Module):
    """A model that raises on one rank once ``armed`` (the model card has run by then)."""

    def __init__(self, net: torch.nn.Module, rank: int) -> None:
        super().__init__()
        self.net, self.rank, self.armed = net, rank, False

    def forward(self, x):
        if self.armed and dist.rank_and_world()[0] == self.rank:
            raise RuntimeError(f"planted failure on rank {self.rank}")
        return self.net(x)


def failing_cnn() -> torch.nn.Module:
    """A CLI model factory: the digits-sized CNN, raising on rank 1 from its first forward pass."""
    model = FailsOnRank(SmallCNN(num_classes=len(CLASSES)), 1)
    model.armed = True
    return model


def _loader(x, y):
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*([x] if y is None else [x, y])), batch_size=5)


def _generator(x, y):
    return ((x[i:i + 6], y[i:i + 6]) for i in range(0, len(x), 6))


#: how the data reaches build_report: in-memory tensors, an unshuffled DataLoader (read only where a
#: rank's batches lie), a one-shot generator of batches (read whole by every rank)
FORMS = {
    "tensors": lambda x, y: (x, y),
    "loader": _loader,
    "generator": _generator,
}


def api(folder: Path, form: str) -> dict:
    """The public functions on streamed data in batches of 8: robust and corruption accuracy, OOD evaluation."""
    import robustness

    net = SmallCNN(num_classes=len(CLASSES))
    net.load_state_dict(torch.load(folder / "w.pt", weights_only=True))
    data = torch.load(folder / "data.pt", weights_only=True)
    m = explain.ModelWrapper(net, input_kind="image", class_names=CLASSES)
    x, y = data["x"], data["y"]
    ood = torch.rand(x.shape, generator=torch.Generator().manual_seed(5))
    curve = robustness.robust_accuracy(m, API_FORMS[form](x, y), eps=[0, 0.1, 0.4], method="pgd", steps=3,
                                       bisect_steps=2, batch_size=8)
    k = robustness.corruption_accuracy(m, API_FORMS[form](x, y), corruptions=["gaussian_noise", "contrast"],
                                       severities=[2, 5], batch_size=8)
    ev = robustness.evaluate_ood(m, API_FORMS[form](x, y), API_FORMS[form](ood, None),
                                 methods=["msp", "mahalanobis", "knn", "vim"],
                                 params={"knn": {"k": 3}, "vim": {"dim": 4}}, batch_size=8)
    return {"robust": {**curve.to_dict(), "minimal_eps": curve.minimal_eps.tolist()}, "corruptions": k.to_dict(),
            "ood": {**ev.to_dict(), "scores": {n: r.to_dict(include_scores=True) for n, r in ev.methods.items()}}}


#: re-iterable forms for the public functions (evaluate_ood reads its data several times): an
#: unshuffled DataLoader (indexable) and a list of batches (read whole by every rank)
API_FORMS = {
    "loader": _loader,
    "batches": lambda x, y: [(x[i:i + 6], None if y is None else y[i:i + 6]) for i in range(0, len(x), 6)],
}


def build(folder: Path, fail_rank: int = -1, form: str = "tensors"):
    from reports import build_report
    from reports.sections import SECTION_BUILDERS  # noqa: F401 - the registry the sections come from

    net = SmallCNN(num_classes=len(CLASSES))
    net.load_state_dict(torch.load(folder / "w.pt", weights_only=True))
    data = torch.load(folder / "data.pt", weights_only=True)
    model = FailsOnRank(net, fail_rank)
    wrapper = explain.ModelWrapper(model, input_kind="image", class_names=CLASSES)
    if fail_rank >= 0:
        import reports.sections.performance as perf
        original = perf.build

        def arm_then_build(ctx):
            model.armed = True
            return original(ctx)
        perf.build = arm_then_build
    streamed = {} if form == "tensors" else {"batch_size": 8, "keep_samples": 20, "max_samples": None}
    return build_report(wrapper, FORMS[form](data["x"], data["y"]), out=folder / "out", sections=SECTIONS,
                        config=CONFIG, seed=3, force=True, **streamed)


def main() -> int:
    folder = Path(sys.argv[1])
    fail_rank = int(sys.argv[2]) if len(sys.argv) > 2 else -1
    form = sys.argv[3] if len(sys.argv) > 3 else "tensors"
    dist.init_from_env()
    from explain.errors import ToolkitError
    try:
        if form.startswith("api-"):
            result = api(folder, form[4:])
            if dist.is_main():
                (folder / "api.json").write_text(json.dumps(result))
        else:
            build(folder, fail_rank, form)
    except ToolkitError as error:
        if not getattr(error, "secondary", False):
            dist.announce_failure()
            print(f"worker error: {error}", file=sys.stderr)
        return 2
    finally:
        import torch.distributed as td
        if td.is_initialized():
            td.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
