"""The lower layers stay light: importing explain and robustness loads no drawing or notebook library."""

from __future__ import annotations

import subprocess
import sys


def test_explain_and_robustness_do_not_import_drawing_or_notebook_libraries():
    code = ("import sys, explain, robustness; "
            "bad = [m for m in ('matplotlib', 'jinja2', 'ipywidgets', 'IPython') if m in sys.modules]; "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_api_names_exist():
    import explain
    for name in ("ModelWrapper", "Attribution", "gradcam", "occlusion", "load_model", "errors"):
        assert hasattr(explain, name), name
    assert issubclass(explain.errors.LayerNotFoundError, KeyError)
    assert issubclass(explain.errors.InputShapeError, ValueError)
