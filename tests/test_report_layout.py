"""The report leads with the answer: in a 1,400 × 900 Chromium window the verdict and the main figure are on the
first screen, and every cell table shows its verdict column without scrolling sideways."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from report_fixtures import simulate_results

from tlsweep.report import build_report

WIDTH, HEIGHT = 1400, 900
CHROMIUM = next(
    (shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None
)

MEASURE = """<script>
window.addEventListener('load', () => {
  const top = (el) => el ? el.getBoundingClientRect().top + window.scrollY : null;
  const verdict = [...document.querySelectorAll('h2')].find((h) => h.textContent.trim() === 'Verdict');
  const firstImage = document.querySelector('img');
  const verdictHeaders = [...document.querySelectorAll('th')].filter((th) => th.textContent.trim() === 'verdict');
  document.body.setAttribute('data-layout', JSON.stringify({
    verdict: top(verdict),
    overall: top(document.querySelector('p strong')),
    image: top(firstImage),
    imageAlt: firstImage ? firstImage.alt : null,
    verdictColumnsRight: verdictHeaders.map((th) => th.getBoundingClientRect().right),
    viewport: window.innerWidth,
  }));
});
</script>"""


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={WIDTH},{HEIGHT}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (.ci/run installs it: apt-get install chromium)")
def test_the_first_screen_shows_the_verdict_and_the_main_figure(tmp_path: Path) -> None:
    root = simulate_results(tmp_path / "r", seeds=6, trials_per_cell=2, train_fractions=(0.1, 0.3, 1.0), epochs=(2, 6))
    html = build_report(root, n_resamples=0).html_path
    assert html is not None
    probe = tmp_path / "probe.html"
    probe.write_text(html.read_text().replace("</body>", MEASURE + "</body>"))
    dom = _chromium("--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    start = dom.stdout.index("data-layout=") + len("data-layout=")
    quote = dom.stdout[start]
    raw = dom.stdout[start + 1 : dom.stdout.index(quote, start + 1)]
    layout = json.loads(raw.replace("&quot;", '"').replace("&amp;", "&"))
    assert layout["verdict"] < HEIGHT and layout["overall"] < HEIGHT
    assert layout["imageAlt"] == "accuracy_vs_fraction" and layout["image"] < HEIGHT - 150, layout
    assert layout["verdictColumnsRight"] and max(layout["verdictColumnsRight"]) <= WIDTH, layout
    shot = tmp_path / "first-screen.png"
    assert _chromium(f"--screenshot={shot}", html.as_uri()).returncode == 0 and shot.stat().st_size > 10_000
