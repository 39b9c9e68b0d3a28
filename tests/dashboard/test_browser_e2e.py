"""Real-browser end-to-end test: ``medaudit dashboard`` driven by Debian's Chromium (Playwright).

Starts the CLI on a free localhost port, opens the label-issues page, enters a
reviewer name, clicks a review button, and checks the row in ``reviews.sqlite``; then
saves a screenshot of every page (into the test's temporary folder, or into
``$MEDAUDIT_SCREENSHOTS`` when set). Skipped, with the reason, only when Playwright
or a system Chromium is missing (``.ci/run`` installs Chromium); never a downloaded
browser.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dashboard.views import PAGES

CHROMIUM = next(
    (p for p in (shutil.which("chromium"), shutil.which("chromium-browser")) if p), None
)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no system Chromium (apt-get install chromium; "
        ".ci/run does it): the real-browser test needs it",
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"medaudit dashboard exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the dashboard did not answer at {url} within {timeout}s")


@pytest.fixture
def server(runs_folder: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    port = _free_port()
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.csv").write_text("path,label\n")
    log = open(tmp_path / "dashboard.log", "wb")  # closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "medaudit",
            "dashboard",
            str(runs_folder),
            "--port",
            str(port),
            "--data-root",
            str(data),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the CLI and the streamlit process it started
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _settle(page) -> None:  # type: ignore[no-untyped-def]
    """Wait until Streamlit has run the script and drawn every element (no placeholder left)."""
    page.wait_for_selector("[data-testid='stMain']", timeout=60_000)
    page.wait_for_timeout(800)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " && document.querySelectorAll('[data-testid=\"stSkeleton\"]').length === 0"
        " && document.querySelectorAll('[data-stale=\"true\"]').length === 0",
        timeout=90_000,
    )
    page.wait_for_timeout(1000)


def test_review_in_a_real_browser_and_screenshot_every_page(
    server: str, runs_folder: Path, tmp_path: Path
) -> None:
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="Playwright for Python is not installed (pip install -e '.[dev]')",
    )
    shots = Path(os.environ.get("MEDAUDIT_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    db = runs_folder / "demo" / "reviews.sqlite"
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(f"{server}/?page=label_issues&run=demo")
            _settle(page)
            page.get_by_role("heading", name="Label issues").wait_for(timeout=60_000)
            name = page.get_by_role("textbox", name="Your name (for review decisions)")
            name.fill("Dr Browser")
            name.press("Enter")
            _settle(page)
            assert (
                not db.exists()
                or sqlite3.connect(db).execute("SELECT COUNT(*) FROM reviews").fetchone()[0] == 0
            )
            page.get_by_role("button", name="Confirm error").first.click()
            page.get_by_text("Recorded “Confirm error”").wait_for(timeout=60_000)
            con = sqlite3.connect(db)
            rows = con.execute(
                "SELECT kind, decision, reviewer, previous_decision FROM reviews"
            ).fetchall()
            con.close()
            assert rows == [("label_issue", "confirm_error", "Dr Browser", None)]
            page.screenshot(path=str(shots / "02-label_issues-after-review.png"), full_page=True)
            page.set_viewport_size({"width": 1440, "height": 2200})  # whole pages
            for i, (key, _label, _) in enumerate(PAGES, start=1):
                page.goto(f"{server}/?page={key}&run=demo")
                _settle(page)
                assert page.get_by_text("Traceback").count() == 0, key
                assert page.locator("[data-testid='stException']").count() == 0, key
                page.screenshot(path=str(shots / f"{i:02d}-{key}.png"), full_page=True)
        finally:
            browser.close()
    assert len(list(shots.glob("*.png"))) == len(PAGES) + 1
