"""The report's Content-Security-Policy runs the toolkit's own script, named by its hash, and nothing else."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess

import explain
from reports import html as html_module
from reports.build import Report
from reports.report import Section, Table, Text

from .test_browser import FLAGS, chromium

EVIL = "<script>alert(1)</script>"


def table_report() -> Report:
    blocks = [Text(f"class {EVIL}"), Table(["name", "value"], [["b", "2"], ["a", "10"], [EVIL, "1"]], sortable=True)]
    return Report(f"title {EVIL}", [Section("performance", "Performance", blocks=blocks)],
                  {"xaiscope_version": explain.__version__, "input_kind": "image"})


def policy(page: str) -> dict:
    content = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page).group(1)
    return {d.split()[0]: d.split()[1:] for d in (part.strip() for part in content.split(";")) if d}


def inline_scripts(page: str) -> list:
    return re.findall(r"<script>(.*?)</script>", page, flags=re.S)


def test_script_src_names_the_one_inline_script_by_its_sha256_and_allows_no_other():
    page = table_report().html()
    csp = policy(page)
    assert csp["default-src"] == ["'none'"] and "'unsafe-inline'" not in csp["script-src"]
    assert len(csp["script-src"]) == 1 and csp["script-src"][0].startswith("'sha256-")
    scripts = inline_scripts(page)
    assert len(scripts) == 1 and page.count("<script") == 1  # the user's strings became text, not scripts
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode("utf-8")).digest()).decode()
    assert csp["script-src"] == [f"'sha256-{digest}'"]
    assert "addEventListener" in scripts[0]


def test_the_hash_is_computed_from_the_script_the_page_holds(monkeypatch):
    original = html_module._template_text

    def edited(name):
        text = original(name)
        return text + "\n// edited\n" if name == "report.js" else text

    before = policy(table_report().html())["script-src"]
    monkeypatch.setattr(html_module, "_template_text", edited)
    page = table_report().html()
    after = policy(page)["script-src"]
    digest = base64.b64encode(hashlib.sha256(inline_scripts(page)[0].encode("utf-8")).digest()).decode()
    assert after != before and after == [f"'sha256-{digest}'"]


def test_the_run_id_is_in_the_page_and_the_summary():
    files = table_report().files()
    run = json.loads(files["summary.json"])["run"]
    assert re.fullmatch(r"[0-9a-f]{32}", run)
    assert f'<meta name="xaiscope-run" content="{run}">'.encode() in files["index.html"]


PROBE = """<!DOCTYPE html><html><body><iframe id="f" src="index.html"></iframe>
<script>
document.getElementById("f").addEventListener("load", function () {
  var d = this.contentDocument;
  d.querySelector("table.sortable th").click();
  var col = Array.prototype.map.call(d.querySelectorAll("table.sortable tbody tr"), function (r) {
    return r.cells[1].textContent; });
  var out = document.createElement("pre"); out.textContent = "VALUES=" + col.join(",") + ";";
  document.body.appendChild(out);
});
</script></body></html>"""


def sorted_in_browser(exe, folder, profile) -> tuple:
    (folder / "probe.html").write_text(PROBE)
    res = subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", "--allow-file-access-from-files",
                          "--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0", "--dump-dom",
                          (folder / "probe.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert "VALUES=" in res.stdout, res.stderr[-2000:]
    values = res.stdout.rsplit("VALUES=", 1)[1].split(";")[0]
    return values, res.stderr


def test_chromium_runs_the_hashed_script_and_refuses_an_altered_one(tmp_path):
    exe = chromium()
    table_report().save(tmp_path / "r")
    values, log = sorted_in_browser(exe, tmp_path / "r", tmp_path / "profile")
    # a click on "name" sorted the rows by name: a, b, then the escaped <script> text ('<' sorts first)
    assert values == "1,10,2", log[-2000:]
    assert "Content Security Policy" not in log
    # the control: one character of the script changed, the policy kept — the browser must refuse it
    page = (tmp_path / "r" / "index.html").read_text()
    (tmp_path / "altered").mkdir()
    (tmp_path / "altered" / "index.html").write_text(page.replace('th.dataset.dir !== "asc"', 'th.dataset.dir != "asc"'))
    values, log = sorted_in_browser(exe, tmp_path / "altered", tmp_path / "profile2")
    assert values == "2,10,1" and "violates the following Content Security Policy directive" in log
