"""The report of real tiny trained streams, opened in a real headless browser (Debian's chromium).

Checked: the page loads with no console messages, every section is in the rendered DOM, the
accuracy table is on the first screen, every embedded image is decoded by the browser, and
screenshots are not blank (with the other sections
hidden by a style added to a copy, the attention section's heatmaps fill the window).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_settings
from tclsta.attention_view import write_attention
from tclsta.data.manifest import read_manifest
from tclsta.report import write_report
from tiny_results import build_tiny_results

SECTIONS = {
    "summary": "Summary",
    "fusion": "Fusion weights",
    "confusion": "Confusion matrices (test split)",
    "per-class": "Per-class accuracy (test split)",
    "training": "Training curves",
    "attention": "Attention (test videos)",
    "settings": "Settings",
}
FIRST_SCREEN = 700  # px: the accuracy table must end above this, within a laptop's first screen
WINDOW = (1200, 1500)
# chromium --enable-logging=stderr prints every console message (console.error, uncaught exceptions) as
# "[pid:tid:time:INFO:CONSOLE:line] "message", source: ..." (older builds: "CONSOLE(line)").
CONSOLE = re.compile(r"CONSOLE[:(]|Uncaught")
# Appended to a copy of a page: after load, every image the browser could not decode becomes a console error.
IMAGE_PROBE = """<script>
window.addEventListener("load", () => {
  for (const image of document.images) {
    if (!(image.complete && image.naturalWidth > 0)) console.error("image not rendered: " + image.alt);
  }
  document.body.dataset.imagesChecked = document.images.length;
});
</script>"""
# Appended to a copy: where the summary's first table ends, and its header.
ACCURACY_PROBE = """<script>
window.addEventListener("load", () => {
  const table = document.querySelector("#summary table");
  document.body.dataset.accuracyBottom = Math.ceil(table.getBoundingClientRect().bottom);
  document.body.dataset.accuracyHeader = Array.from(table.rows[0].cells, cell => cell.textContent).join("|");
});
</script>"""


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium not found: run `make test`, which installs Debian's chromium (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def report(tiny_dataset, tmp_path_factory) -> Path:
    """report.html of the tiny dataset from real trained streams, with the attention section."""
    results = build_tiny_results(tiny_dataset, tmp_path_factory.mktemp("tiny_results"))
    write_attention(results, read_manifest(results / "manifest.csv"), tiny_dataset.shards, results / "attention.json",
                    results / "plots" / "attention.png", 4, device="cpu")
    out_path = results / "report.html"
    write_report(out_path, metrics_path=results / "metrics.json", manifest_path=results / "manifest.csv",
                 history_paths={stream: results / "models" / f"{stream}_history.csv" for stream in ("rgb", "flow")},
                 config=tiny_settings(tiny_dataset.root), attention_json=results / "attention.json",
                 attention_png=results / "plots" / "attention.png")
    return out_path


def open_page(chromium: str, url: str, tmp_path: Path) -> tuple[str, list[str], np.ndarray]:
    """Load ``url`` headless: the rendered DOM, the console lines and a screenshot (H, W, 3) of the window."""
    screenshot = tmp_path / "screenshot.png"
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               "--force-device-scale-factor=1", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
               "--v=0", f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={screenshot}", "--dump-dom", url]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    console = [line for line in run.stderr.splitlines() if CONSOLE.search(line)]
    image = np.asarray(Image.open(BytesIO(screenshot.read_bytes())).convert("RGB"), dtype=float)
    return run.stdout, console, image


def saturated_fraction(image: np.ndarray) -> float:
    """Share of clearly coloured pixels (not white, grey or black)."""
    return float(((image.max(axis=2) - image.min(axis=2)) > 80).mean())


def test_report_loads_without_console_errors_with_every_section(chromium, report, tmp_path) -> None:
    dom, console, screenshot = open_page(chromium, report.as_uri(), tmp_path)

    assert console == []
    for section_id, heading in SECTIONS.items():
        assert re.search(rf'<section id="{section_id}">\s*<h2>{re.escape(heading)}</h2>', dom), section_id
    assert dom.count('src="data:image/png;base64,') == report.read_text(encoding="utf-8").count("<img ") == 5
    assert "TCLSTA report: tiny" in dom and "fused top-5" in dom
    assert screenshot.shape == (WINDOW[1], WINDOW[0], 3)
    assert screenshot.std() > 20  # text and tables, not a blank page
    assert (screenshot < 128).mean() > 0.005  # dark text is drawn


def test_attention_section_renders_its_heatmaps(chromium, report, tmp_path) -> None:
    shown = {}
    for section_id in ("attention", "summary"):
        page = tmp_path / f"{section_id}.html"
        only = f"<style>section:not(#{section_id}) {{ display: none; }}</style>"
        page.write_text(report.read_text(encoding="utf-8").replace("</head>", only + "</head>"), encoding="utf-8")
        _, console, shown[section_id] = open_page(chromium, page.as_uri(), tmp_path / section_id)
        assert console == []
    # The attention figure: frames under coloured heatmaps, coloured bars; the summary: black-on-white tables.
    assert saturated_fraction(shown["attention"]) > 0.1
    assert saturated_fraction(shown["summary"]) < 0.02


def test_images_are_decoded_and_the_accuracy_table_is_on_the_first_screen(chromium, report, tmp_path) -> None:
    probe = tmp_path / "probe.html"
    probes = IMAGE_PROBE + ACCURACY_PROBE
    probe.write_text(report.read_text(encoding="utf-8").replace("</body>", probes + "</body>"), encoding="utf-8")
    dom, console, _ = open_page(chromium, probe.as_uri(), tmp_path)
    assert console == []
    assert 'data-images-checked="5"' in dom
    assert 'data-accuracy-header="model|top-1 (%)|top-5 (%)|mean class accuracy (%)"' in dom
    bottom = int(re.search(r'data-accuracy-bottom="(\d+)"', dom).group(1))
    assert 0 < bottom < FIRST_SCREEN

    # The image probe does see an image the browser cannot decode.
    broken = tmp_path / "broken.html"
    broken.write_text(f'<!DOCTYPE html><html><body><img src="data:image/png;base64,AAAA" alt="damaged">{IMAGE_PROBE}'
                      "</body></html>", encoding="utf-8")
    _, console, _ = open_page(chromium, broken.as_uri(), tmp_path / "broken")
    assert len(console) == 1 and "image not rendered: damaged" in console[0]
