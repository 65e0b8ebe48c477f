"""The report in a real browser: headless Chromium loads it offline, without errors, images decoded."""

from __future__ import annotations

import shutil
import subprocess

import pytest

import explain
import reports

EVIL = "<img src=x onerror=alert(1)>"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium is not installed (Debian package 'chromium'; `make test` installs it)")


# A page script cannot run here (the report's CSP allows only its own inline script), so the check
# script is injected by a wrapper page that loads the report in a same-origin iframe.
PROBE = """<!DOCTYPE html><html><body><iframe id="f" src="index.html" style="width:1280px;height:900px"></iframe>
<script>
document.getElementById("f").addEventListener("load", function () {
  var d = this.contentDocument, imgs = Array.prototype.slice.call(d.images);
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length;
  var out = d.createElement("pre"); out.id = "probe";
  out.textContent = "IMAGES=" + imgs.length + " BROKEN=" + bad + " CHIPS=" + d.querySelectorAll(".chip").length;
  document.body.appendChild(out);
  document.title = "probe:" + out.textContent;
});
</script></body></html>"""


def test_chromium_renders_the_report_offline_with_every_image_decoded(cnn, tmp_path):
    exe = chromium()
    names = [EVIL, "plus", "cross", "blank"]
    m = explain.ModelWrapper(cnn.net, "image", class_names=names, device="cpu")
    reports.build_report(m, (cnn.x[:40], cnn.y[:40]), out=tmp_path / "r", samples=2)
    (tmp_path / "r" / "probe.html").write_text(PROBE)
    profile = tmp_path / "profile"
    res = subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", "--allow-file-access-from-files",
                          "--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0", "--dump-dom",
                          (tmp_path / "r" / "probe.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert "IMAGES=" in res.stdout, res.stderr[-2000:]
    probe = res.stdout.rsplit("IMAGES=", 1)[1].split("<")[0]  # the last one is the result, not the script
    n_images = int(probe.split()[0])
    assert n_images >= 4 and "BROKEN=0" in probe
    console_errors = [line for line in res.stderr.splitlines() if "CONSOLE" in line and "index.html" in line]
    assert console_errors == []
    dom = subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                          (tmp_path / "r" / "index.html").as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert "&lt;img src=x onerror=alert(1)&gt;" in dom and EVIL not in dom
    shot = tmp_path / "shot.png"
    subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", "--window-size=1280,1000", f"--screenshot={shot}",
                    (tmp_path / "r" / "index.html").as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20_000
