"""Notebook use: rich display of results, the Explorer driven programmatically, the quickstart notebook."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

import explain
import robustness
from reports import notebook
from reports.widgets import Explorer

ROOT = Path(__file__).resolve().parents[2]


def test_results_render_as_html_with_inline_images(cnn, conv1d):
    a = explain.gradcam(cnn.wrapper, cnn.x[:3])
    page = notebook.attribution_html(a)
    assert "<b>gradcam</b>" in page and page.count("data:image/png;base64,") == 1
    seq = notebook.attribution_html(explain.occlusion(conv1d.wrapper, conv1d.x[:2]))
    assert "occlusion" in seq and "data:image/png" in seq
    r = robustness.attack(cnn.wrapper, cnn.x[:6], cnn.y[:6], "pgd", eps=16 / 255, steps=3)
    assert "robust_accuracy" in notebook.attack_html(r) and "data:image/png" in notebook.attack_html(r)
    o = robustness.evaluate_ood(cnn.wrapper, (cnn.x[:40], cnn.y[:40]), torch.rand(20, 3, 32, 32), methods=["msp"])
    assert "AUROC" in notebook.ood_html(o)


def test_register_installs_formatters_in_an_ipython_shell(cnn):
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    try:
        assert notebook.register(shell)
        data, _ = shell.display_formatter.format(explain.gradcam(cnn.wrapper, cnn.x[:2]))
        assert "text/html" in data and "gradcam" in data["text/html"]
    finally:
        InteractiveShell.clear_instance()


def test_explorer_views_follow_the_controls_and_reuse_the_cache(cnn):
    ex = Explorer(cnn.wrapper, (cnn.x[:10], cnn.y[:10]), ood_data=torch.rand(10, 3, 32, 32),
                  methods=["gradcam", "occlusion"])
    first = ex.explain_view.value
    assert "gradcam" in first and "sample 0" in ex.header.value
    ex.method.value = "occlusion"
    assert ex.explain_view.value != first and "occlusion" in ex.explain_view.value
    ex.sample.value = 3
    assert "sample 3" in ex.header.value
    ex.eps.value = ex.eps.max
    assert "PGD-10" in ex.attack_view.value and "ε = " in ex.attack_view.value
    assert "OOD inputs score" in ex.ood_view.value
    done = ex.computations
    ex.eps.value = 0.0
    ex.sample.value = 0
    ex.method.value = "gradcam"
    assert ex.computations == done and ex.explain_view.value == first  # everything came from the cache
    ex.target.value = 2
    assert "for class cross" in ex.explain_view.value


@pytest.mark.parametrize("fixture", ["lstm", "gru"])
def test_explorer_works_for_sequence_models(fixture, request):
    d = request.getfixturevalue(fixture)
    ex = Explorer(d.wrapper, (d.x[:6], d.y[:6]), methods=["gradcam", "integrated_gradients"])
    ex.method.value = "integrated_gradients"
    assert "data:image/png" in ex.explain_view.value
    ex.eps.value = ex.eps.max
    assert "PGD-10" in ex.attack_view.value


def test_exported_explorer_state_renders_in_chromium(cnn, tmp_path):
    from tests.reports.test_browser import FLAGS, chromium
    exe = chromium()
    ex = Explorer(cnn.wrapper, (cnn.x[:6], cnn.y[:6]), ood_data=torch.rand(6, 3, 32, 32), methods=["gradcam"])
    ex.eps.value = ex.eps.max
    (tmp_path / "explorer.html").write_text(ex.to_html())
    (tmp_path / "probe.html").write_text(
        '<iframe id="f" src="explorer.html"></iframe><script>document.getElementById("f").onload=function(){'
        'var i=this.contentDocument.images;var ok=0;for(var k=0;k<i.length;k++){if(i[k].naturalWidth>0)ok++;}'
        'var p=document.createElement("pre");p.textContent="DECODED="+ok+"/"+i.length;document.body.appendChild(p);};</script>')
    res = subprocess.run([exe, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files",
                          "--virtual-time-budget=5000", "--dump-dom", (tmp_path / "probe.html").as_uri()],
                         capture_output=True, text=True, timeout=120)
    decoded = res.stdout.rsplit("DECODED=", 1)[1].split("<")[0]  # the last one is the result, not the script
    ok, total = map(int, decoded.split("/"))
    assert total >= 3 and ok == total


def test_quickstart_notebook_runs_clean_and_shows_its_results():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "accuracy" in text and "torch.Size([16, 32, 32])" in text and "index.html" in text
    html_outputs = [o["data"]["text/html"] for o in outputs if o.output_type == "execute_result" and "text/html" in o.get("data", {})]
    assert any("<b>gradcam</b>" in h for h in html_outputs) and any("AUROC" in h for h in html_outputs)
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
