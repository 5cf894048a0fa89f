"""The report as a person sees it: rendered by headless Chromium at a laptop's window size.

Chromium is a test dependency (scripts/setup.sh installs the Debian package): without
it this test fails rather than skips, so CI cannot pass without looking at the page.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
from matplotlib.image import imread
from test_report import ten_minute_run

from pgchaos.report import BANNER_COLOR, build_report

CHROMIUM = Path("/usr/bin/chromium")
WIDTH, HEIGHT = 1280, 800


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run scripts/setup.sh (Debian: chromium)"
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",  # the tests run as root
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={WIDTH},{HEIGHT}",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _rgb(color: str) -> tuple[int, int, int]:
    value = color.lstrip("#")
    red, green, blue = (int(value[i : i + 2], 16) for i in (0, 2, 4))
    return red, green, blue


def test_the_headline_is_on_the_first_screen(tmp_path: Path) -> None:
    run = ten_minute_run(tmp_path / "run")
    build_report(run)
    page = run / "report.html"

    shot = tmp_path / "shot.png"
    result = chromium(page, tmp_path / "profile", f"--screenshot={shot}")
    assert result.returncode == 0, result.stderr[-2000:]
    pixels = np.round(imread(shot)[:, :, :3] * 255).astype(int)
    assert pixels.shape[:2] == (HEIGHT, WIDTH)
    # The banner is the only area of its colour: it must start at the top of the
    # window and end well inside it, leaving room for the timeline below.
    banner = np.all(pixels == _rgb(BANNER_COLOR), axis=2)
    rows = np.flatnonzero(banner.sum(axis=1) > WIDTH * 0.5)
    assert len(rows), "no headline banner in the first screen"
    assert rows[0] < 60, rows[0]
    assert rows[-1] < HEIGHT / 2, rows[-1]
    # The timeline figure is drawn below it within the same screen: its red and
    # blue curves (tab:red, tab:blue) show.
    below = pixels[rows[-1] + 1 :]
    for color in ("#d62728", "#1f77b4"):
        # near, not equal: the PNGs have a reduced palette
        near = np.abs(below - np.array(_rgb(color))).max(axis=2) <= 16
        assert near.sum() > 200, color

    dom = chromium(page, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    headline = dom.stdout[dom.stdout.index('id="headline"') : dom.stdout.index("</header>")]
    assert "Writes were down 17.6 s" in headline
    assert "node pg1 was lost" in headline
