"""Explicit maps from short names to attacks, corruptions and OOD detectors, with their capabilities.

Adding a method = one module + one entry here; the CLI, the report and the sweeps read what an
attack can do (input kinds, how its budget is given and in which unit, default parameters and the
default budget sweep) from its :class:`AttackSpec` and never test its name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Sequence, Tuple

from explain.errors import InputShapeError, UnknownMethodError

from .attacks.apgd import APGD
from .attacks.fgsm import FGSM
from .attacks.hotflip import HotFlip
from .attacks.pgd import PGD
from .corruptions import IMAGE_CORRUPTIONS, SERIES_CORRUPTIONS, TOKEN_CORRUPTIONS
from .ood import DETECTOR_SPECS, DETECTORS, DetectorSpec

EPS_UNITS = {"image": "pixels in [0, 1]", "series": "channel std",
             "tokens": "embedding std (the std of the embedding table's entries)"}


@dataclass(frozen=True)
class AttackSpec:
    """What an attack can do, declared once.

    Attributes:
        cls: the attack class (constructor stores parameters; ``run(model, x, y, ...)`` attacks).
        kinds: input kinds it attacks.
        budget: ``"eps"`` (a norm ball, continuous, per-sample tensors allowed: bisection works) or
            ``"count"`` (a whole number of edits, e.g. substituted tokens).
        budget_param: the constructor argument that takes the budget.
        units: the budget's unit per input kind.
        defaults: parameters the report and the sweeps use unless told otherwise.
        sweep: default budgets per input kind; ``None`` means chosen from the model
            (:func:`robustness.sweep.default_budgets`).
        label: ``label(params) -> str``, how the report names the attack with its settings.
        in_report: drawn in the report's robustness section by default (where the kind fits).
    """

    cls: type
    kinds: Tuple[str, ...]
    budget: str
    budget_param: str
    units: Dict[str, str]
    defaults: dict = field(default_factory=dict)
    sweep: Dict[str, Optional[Sequence[float]]] = field(default_factory=dict)
    label: Callable[[dict], str] = lambda p: ""
    in_report: bool = False

    def check_kind(self, name: str, kind: str) -> None:
        """Raise ``InputShapeError`` when this attack cannot run on ``kind`` inputs."""
        if kind not in self.kinds:
            fits = [k for k, s in ATTACK_SPECS.items() if kind in s.kinds]
            raise InputShapeError(f"attack {name!r} works on {', '.join(self.kinds)} inputs; this wrapper's input kind "
                                  f"is {kind!r} — use one of: {', '.join(fits)}")


_EPS_SWEEP = {"image": [0, 1 / 255, 2 / 255, 4 / 255, 8 / 255], "series": [0, 0.05, 0.1, 0.2, 0.4], "tokens": None}
_GRADIENT_KINDS = ("image", "series", "tokens")


def _steps(p: dict) -> str:
    return f"{p.get('steps')} steps"


ATTACK_SPECS: Dict[str, AttackSpec] = {
    "fgsm": AttackSpec(FGSM, _GRADIENT_KINDS, "eps", "eps", EPS_UNITS, {}, _EPS_SWEEP,
                       lambda p: "FGSM (one signed-gradient step of size ε)", True),
    "pgd": AttackSpec(PGD, _GRADIENT_KINDS, "eps", "eps", EPS_UNITS, {"steps": 20}, _EPS_SWEEP,
                      lambda p: f"PGD ({_steps(p)}, step size α = "
                                f"{'2.5·ε/steps' if p.get('alpha') is None else p['alpha']}, random start)"),
    "apgd": AttackSpec(APGD, _GRADIENT_KINDS, "eps", "eps", EPS_UNITS, {"steps": 50, "restarts": 1}, _EPS_SWEEP,
                       lambda p: f"APGD-CE ({_steps(p)}, {p.get('restarts', 1)} restart(s); step size adapted "
                                 "automatically)", True),
    "hotflip": AttackSpec(HotFlip, ("tokens",), "count", "max_tokens", {"tokens": "substituted tokens"},
                          {"candidates": 8}, {"tokens": [0, 1, 2, 3, 5]},
                          lambda p: "HotFlip (greedy gradient-guided token substitution; budget = tokens substituted)",
                          True),
}

ATTACKS = {name: spec.cls for name, spec in ATTACK_SPECS.items()}

CORRUPTIONS = {"image": IMAGE_CORRUPTIONS, "tokens": TOKEN_CORRUPTIONS, "series": SERIES_CORRUPTIONS}

DEFAULT_CORRUPTIONS = {
    "image": ["gaussian_noise", "shot_noise", "gaussian_blur", "brightness", "contrast", "jpeg", "pixelate"],
    "tokens": ["token_drop", "token_swap", "token_mask"],
    "series": ["noise", "scaling", "time_shift", "dropout"],
}


def attack_spec(name: str) -> AttackSpec:
    """The declared capabilities of the attack called ``name``.

    Raises:
        UnknownMethodError: ``name`` is not registered.
    """
    if name not in ATTACK_SPECS:
        raise UnknownMethodError(f"unknown attack {name!r}; available: {', '.join(ATTACK_SPECS)}")
    return ATTACK_SPECS[name]


def attacks_for(kind: str, *, report: bool = False) -> list:
    """Names of the attacks that run on ``kind`` inputs (with ``report``: those the report draws by default)."""
    return [k for k, s in ATTACK_SPECS.items() if kind in s.kinds and (s.in_report or not report)]


__all__ = ["ATTACKS", "ATTACK_SPECS", "AttackSpec", "attack_spec", "attacks_for", "CORRUPTIONS", "DEFAULT_CORRUPTIONS",
           "DETECTORS", "DETECTOR_SPECS", "DetectorSpec", "EPS_UNITS"]
