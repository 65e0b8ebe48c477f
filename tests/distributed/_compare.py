"""Walk two ``summary.json`` documents and list every place where they differ beyond float tolerance."""

from __future__ import annotations

import math
from typing import Any, List

#: keys whose values legitimately differ between runs: wall times, dates, the world size itself, the run id
VOLATILE = {"seconds", "created", "world_size", "figures", "run"}


def differences(a: Any, b: Any, path: str = "", rel: float = 1e-4, abs_tol: float = 1e-5) -> List[str]:
    """Paths where ``a`` and ``b`` differ: numbers beyond the tolerance, other values when unequal."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}/{k}: only in one" for k in sorted(set(a) ^ set(b)) if k not in VOLATILE]
        for k in sorted(set(a) & set(b)):
            if k not in VOLATILE and not k.endswith("_seconds"):
                out += differences(a[k], b[k], f"{path}/{k}", rel, abs_tol)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: lengths {len(a)} and {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]", rel, abs_tol)]
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        if math.isnan(a) and math.isnan(b):
            return []
        return [] if math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol) else [f"{path}: {a} != {b}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]
