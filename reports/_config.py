"""The values a report configuration may hold: one rule per key, checked when the configuration is read.

Section modules declare their keys (``CONFIG_KEYS``, ``CHECK_KEYS``); this module says what each
value must be (a whole number ≥ 1, a share in [0, 1], a list of names, ...). A value of the wrong
type or out of range is an :class:`~explain.errors.InputValueError` naming the table, the key, what
was expected and what arrived — before any work starts, never a failed section later.
NaN and infinities are refused wherever a number is expected.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Dict, Optional

from explain.errors import InputValueError

Rule = Callable[[Any], Optional[str]]  # None when the value is fine, else what was expected


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def integer(lo: int = 0, hi: Optional[int] = None) -> Rule:
    def rule(v: Any) -> Optional[str]:
        if _is_number(v) and math.isfinite(float(v)) and float(v) == int(v) and int(v) >= lo \
                and (hi is None or int(v) <= hi):
            return None
        return f"a whole number {'≥ ' + str(lo) if hi is None else f'from {lo} to {hi}'}"
    return rule


def number(lo: float = -math.inf, hi: float = math.inf, *, open_lo: bool = False, open_hi: bool = False) -> Rule:
    def rule(v: Any) -> Optional[str]:
        if _is_number(v) and math.isfinite(float(v)):
            x = float(v)
            if (x > lo if open_lo else x >= lo) and (x < hi if open_hi else x <= hi):
                return None
        if lo == -math.inf and hi == math.inf:
            return "a finite number"
        if hi == math.inf:
            return f"a finite number {'>' if open_lo else '≥'} {lo:g}"
        return f"a number in {'(' if open_lo else '['}{lo:g}, {hi:g}{')' if open_hi else ']'}"
    return rule


def boolean(v: Any) -> Optional[str]:
    return None if isinstance(v, bool) else "true or false"


def text(*choices: str) -> Rule:
    def rule(v: Any) -> Optional[str]:
        if isinstance(v, str) and (not choices or v in choices):
            return None
        return "one of " + ", ".join(repr(c) for c in choices) if choices else "a string"
    return rule


def names(v: Any) -> Optional[str]:
    ok = isinstance(v, (list, tuple)) and all(isinstance(s, str) and s for s in v)
    return None if ok else "a list of names, e.g. [\"a\", \"b\"]"


def names_or_csv(v: Any) -> Optional[str]:
    return None if isinstance(v, str) or names(v) is None else "a list of names or one comma-separated string"


def list_of(item: Rule, what: str) -> Rule:
    def rule(v: Any) -> Optional[str]:
        ok = isinstance(v, (list, tuple)) and all(item(e) is None for e in v)
        return None if ok else f"a list of {what}"
    return rule


def numbers_or_csv(v: Any) -> Optional[str]:
    """``[0.1, 0.2]`` or ``"0.1,0.2"`` (finite numbers)."""
    if isinstance(v, str):
        try:
            values = [float(s) for s in v.split(",")]
        except ValueError:
            return "finite numbers (a list or a comma-separated string)"
    elif isinstance(v, (list, tuple)) and all(_is_number(e) for e in v):
        values = [float(e) for e in v]
    else:
        return "finite numbers (a list or a comma-separated string)"
    return None if all(math.isfinite(e) for e in values) else "finite numbers (no NaN or infinity)"


def budgets_or_csv(v: Any) -> Optional[str]:
    why = numbers_or_csv(v)
    if why is not None:
        return why.replace("finite numbers", "finite budgets ≥ 0")
    values = [float(s) for s in v.split(",")] if isinstance(v, str) else [float(e) for e in v]
    return None if all(e >= 0 for e in values) else "finite budgets ≥ 0 (no negative budget)"


def table_of(item: Rule, what: str) -> Rule:
    def rule(v: Any) -> Optional[str]:
        ok = isinstance(v, dict) and all(isinstance(k, str) and item(e) is None for k, e in v.items())
        return None if ok else f"a table of {what}"
    return rule


def any_table(v: Any) -> Optional[str]:
    return None if isinstance(v, dict) else "a table"


SHARE = number(0.0, 1.0)
BUDGETS = list_of(number(0.0), "finite budgets ≥ 0")
PARAMS = table_of(any_table, "parameter tables, {name: {parameter: value}}")

#: ``{table: {key: rule}}`` for every key a section declares, and ``checks`` thresholds.
TABLE_RULES: Dict[str, Dict[str, Rule]] = {
    "model_card": {},
    "performance": {},
    "explanations": {"methods": names, "params": PARAMS, "samples": integer(1)},
    "trust": {"methods": names, "samples": integer(1), "quick": boolean, "steps": integer(1),
              "n_random": integer(1), "randomization_steps": integer(1), "sensitivity_perturbations": integer(0),
              "sensitivity_radius": number(0.0, open_lo=True), "params": PARAMS},
    "robustness": {"methods": names, "eps": BUDGETS, "budgets": table_of(BUDGETS, "budget lists, {attack: [budgets]}"),
                   "max_tokens": integer(0), "steps": integer(1), "params": PARAMS, "bisect_steps": integer(0),
                   "max_samples": integer(1), "corruptions": list_of(text(), "names"),
                   "severities": list_of(integer(0, 5), "severities from 0 to 5"), "min_robust_accuracy": SHARE},
    "ood": {"methods": names, "params": PARAMS, "max_samples": integer(1),
            "fit_fraction": number(0.0, 1.0, open_lo=True, open_hi=True), "min_auroc": SHARE, "max_fpr95": SHARE},
    "verify": {"eps": BUDGETS, "method": text("ibp", "crown", "alpha-crown"), "samples": integer(1),
               "attack_steps": integer(0), "intermediate": text("crown", "ibp"), "min_certified_accuracy": SHARE},
    "features": {"classes": list_of(integer(0), "class indices ≥ 0"), "steps": integer(1), "examples": integer(1),
                 "window": integer(1)},
    "training": {"strip_epochs": integer(1)},
    "checks": {"min_accuracy": SHARE, "min_macro_f1": SHARE, "max_ece": SHARE, "require_sanity": boolean,
               "min_deletion_gain": number(-1.0, 1.0), "min_robust_accuracy": SHARE, "min_auroc": SHARE,
               "max_fpr95": SHARE, "min_certified_accuracy": SHARE, "min_explanation_stability": number(-1.0, 1.0)},
}

def output_part(v: Any) -> Optional[str]:
    """The model output holding the logits: an index ≥ 0 or a key name."""
    if isinstance(v, str) and v.strip():
        return None
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return None
    return "an index ≥ 0 or a key name"


#: The top-level keys of a CLI configuration file (the same names as the command-line options).
SETTING_RULES: Dict[str, Rule] = {
    "model": text(), "weights": text(), "trust_model": boolean, "kind": text("image", "tokens", "series"),
    "data": text(), "vocab": text(), "class_names": names_or_csv, "mean": numbers_or_csv, "std": numbers_or_csv,
    "channels": integer(1, 3), "image_size": integer(1), "device": text(), "amp": text("bf16", "fp16"),
    "seed": integer(0), "max_samples": integer(1), "out": text(), "methods": names_or_csv, "samples": integer(1),
    "ood_data": text(), "method": text(), "pad_id": integer(0), "mask": text(), "max_length": integer(1),
    "history": text(), "eps": budgets_or_csv, "output": output_part, "quiet": boolean,
}


def _fail(where: str, value: Any, expected: str) -> None:
    raise InputValueError(f"{where} must be {expected}, got {value!r} ({type(value).__name__})")


def check_table_values(name: str, table: dict) -> None:
    """Check every value of one config table (keys are checked by ``reports.build.validate_config``).

    Raises:
        InputValueError: a value of the wrong type or out of range (NaN and infinities included).
    """
    rules = TABLE_RULES.get(name, {})
    for key, value in table.items():
        rule = rules.get(key)
        why = None if rule is None else rule(value)
        if why is not None:
            _fail(f"[{name}] {key}", value, why)


def check_settings(settings: dict) -> None:
    """Check the top-level values of a CLI configuration file; tables go to :func:`check_table_values`.

    Raises:
        InputValueError: an unknown top-level key (with the accepted ones), or a value of the wrong
            type or out of range.
    """
    for key, value in settings.items():
        if isinstance(value, dict):
            continue
        rule = SETTING_RULES.get(key)
        if rule is None:
            raise InputValueError(f"unknown setting {key!r} in the config file; accepted: "
                                  f"{', '.join(SETTING_RULES)}, and tables such as [checks]")
        why = rule(value)
        if why is not None:
            _fail(f"config setting {key!r}", value, why)
