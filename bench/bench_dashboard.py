"""Benchmark: dashboard page load and interaction times on a 100,000-row run.

Two synthetic runs are built in the same process with :func:`medaudit.audit_predictions`
(external predictions, images, sites, 2 images per patient, 10 % flipped labels) and
audited with the label-issue, duplicate and class-balance checks: the baseline of 120
rows (the size of a small demo) and the large run (100,000 rows by default).

On each run the app is driven headlessly with :class:`streamlit.testing.v1.AppTest`
(script run time: data loading, computation, element building; no browser drawing):

* **cold load** of every page: the first visit, caches empty (report model, per-sample
  tables, thumbnails);
* **warm load**: a new session on the same server process, caches filled (median of 3);
* **interactions** on a warm session: next page of the label-issue gallery, switching
  the "flagged only" filter off, recording a review decision, moving the threshold and
  the prevalence on the calibration page (median of 3, each with a value not seen before).

With ``--browser`` (Debian's Chromium through Playwright), the time from navigation to a
fully drawn label-issue page in a real browser, cold and warm, is added.

Usage::

    python bench/bench_dashboard.py                 # N = 100,000 against 120
    python bench/bench_dashboard.py --n 20000 --browser

Prints a table and writes ``bench/results/dashboard.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "dashboard.json"
CHECKS = ["label_issues", "duplicates_and_leakage", "class_balance_and_size"]
PAGES = [
    "overview",
    "label_issues",
    "duplicates",
    "shortcuts",
    "subgroups",
    "calibration",
    "overfitting",
    "report",
    "new_audit",
]
APP = str(ROOT / "dashboard" / "app.py")


def build_run(path: Path, n: int, seed: int = 0) -> float:
    """A synthetic run of ``n`` rows (external predictions, audited); returns seconds."""
    import medaudit

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    given = y.copy()
    flip = rng.random(n) < 0.10
    given[flip] = 1 - given[flip]
    logit = 2.0 * (2 * y - 1) + rng.normal(0, 1.2, n)
    p1 = 1 / (1 + np.exp(-logit))
    images = rng.integers(60, 140, (n, 28, 28), dtype=np.uint8)
    images[np.arange(n), 10:18, 10:18] += (y * 60).astype(np.uint8)[:, None, None]
    images[1] = images[0]  # one planted cross-patient duplicate
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        medaudit.audit_predictions(
            given,
            np.c_[1 - p1, p1].astype(np.float32),
            images=images,
            patient_ids=[f"P{i // 2}" for i in range(n)],
            metadata={"site": np.where(rng.random(n) < 0.5, "north", "south")},
            class_names=["benign", "malignant"],
            checks=CHECKS,
            out=path,
        )
    return time.perf_counter() - t0


def _app(runs: Path, run: str, page: str) -> Any:
    from streamlit.testing.v1 import AppTest

    os.environ["MEDAUDIT_DASHBOARD_RUNS"] = str(runs)
    at = AppTest.from_file(APP, default_timeout=900)
    at.query_params["page"] = page
    at.query_params["run"] = run
    return at


def _timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _check(at: Any, what: str) -> Any:
    if at.exception:
        raise RuntimeError(f"{what}: {at.exception}")
    return at


def measure(runs: Path, run: str, repeats: int) -> dict[str, Any]:
    """Cold and warm page loads and interactions on one run (see the module docstring)."""
    out: dict[str, Any] = {"cold_s": {}, "warm_s": {}, "interactions_s": {}}
    for page in PAGES:
        t, at = _timed(lambda page=page: _app(runs, run, page).run())
        _check(at, f"{run}/{page} cold")
        out["cold_s"][page] = round(t, 3)
    for page in PAGES:
        ts = []
        for _ in range(repeats):
            t, at = _timed(lambda page=page: _app(runs, run, page).run())
            _check(at, f"{run}/{page} warm")
            ts.append(t)
        out["warm_s"][page] = round(statistics.median(ts), 3)

    inter: dict[str, list[float]] = {
        k: []
        for k in (
            "gallery_next_page",
            "filter_all_images",
            "record_review",
            "threshold_change",
            "prevalence_change",
        )
    }
    for r in range(repeats):
        at = _check(_app(runs, run, "label_issues").run(), "label issues")
        at.sidebar.text_input(key="reviewer").set_value("bench")
        at = at.run()
        page = 2 + r
        t, at = _timed(
            lambda at=at, page=page: (
                at.number_input(key="li-page")
                .set_value(min(page, at.number_input(key="li-page").max))
                .run()
            )
        )
        inter["gallery_next_page"].append(t)
        t, at = _timed(lambda at=at: at.toggle(key="li-flagged").set_value(False).run())
        inter["filter_all_images"].append(t)
        buttons = [b for b in at.button if b.label == "Keep label"]
        button = buttons[r % len(buttons)]
        t, at = _timed(lambda at=at, b=button: b.click().run())
        _check(at, "review click")
        inter["record_review"].append(t)
        at = _check(_app(runs, run, "calibration").run(), "calibration")
        t, at = _timed(
            lambda at=at, r=r: at.slider(key="cal-threshold").set_value(0.3 + 0.05 * r).run()
        )
        inter["threshold_change"].append(t)
        t, at = _timed(lambda at=at, r=r: at.slider(key="cal-prevalence").set_value(5.0 + r).run())
        _check(at, "calibration interaction")
        inter["prevalence_change"].append(t)
    out["interactions_s"] = {k: round(statistics.median(v), 3) for k, v in inter.items()}
    return out


def browser_load(runs: Path, names: list[str]) -> dict[str, Any]:
    """Navigation to a drawn label-issue page in Chromium, cold then warm, per run."""
    import signal
    import socket
    import subprocess
    import urllib.request

    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        return {"skipped": "no system chromium"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "medaudit", "dashboard", str(runs), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    url = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {}
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        settled = (
            "() => document.querySelector('[data-testid=\"stMain\"]')"
            " && !document.querySelector('[data-testid=\"stStatusWidget\"]')"
            " && document.querySelectorAll('[data-testid=\"stSkeleton\"]').length === 0"
            " && document.querySelectorAll('button').length > 10"
        )
        with sync_playwright() as pw:
            b = pw.chromium.launch(
                executable_path=chromium,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = b.new_page(viewport={"width": 1440, "height": 1000})
            for name in names:
                for which in ("cold", "warm"):
                    t0 = time.perf_counter()
                    page.goto(f"{url}/?page=label_issues&run={name}")
                    page.wait_for_timeout(300)
                    page.wait_for_function(settled, timeout=900_000, polling=100)
                    out[f"{name}_{which}_s"] = round(time.perf_counter() - t0, 3)
            b.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--baseline", type=int, default=120)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--browser", action="store_true")
    args = ap.parse_args()
    import logging

    logging.getLogger("streamlit").setLevel(logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    os.environ.setdefault("MEDAUDIT_SECRET", "bench-dashboard-secret-0123456789abcdef")
    os.environ.setdefault("MEDAUDIT_CACHE_DIR", str(tmp / "cache"))
    runs = tmp / "runs"
    names = {f"n{args.baseline}": args.baseline, f"n{args.n}": args.n}
    result: dict[str, Any] = {
        "benchmark": "dashboard",
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "checks": CHECKS,
        "repeats": args.repeats,
        "runs": {},
    }
    try:
        build_run(runs / "warmup", 60, seed=1)
        for name, n in names.items():
            secs = build_run(runs / name, n)
            print(f"built {name}: {secs:.1f} s (ingest of external predictions + audit)")
            result["runs"][name] = {"n": n, "build_s": round(secs, 1)}
        for page in PAGES:  # imports and first-use costs, paid by a run not measured
            _check(_app(runs, "warmup", page).run(), f"warm-up {page}")
        for name in names:
            result["runs"][name].update(measure(runs, name, args.repeats))
        if args.browser:
            result["browser_label_issues"] = browser_load(runs, ["warmup", *names])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base, big = (result["runs"][k] for k in names)
    result["browser_label_issues"] = {
        k: v
        for k, v in result.get("browser_label_issues", {}).items()
        if not k.startswith("warmup")
    } or None
    print(f"\n{'':28s} {'baseline':>10s} {'large':>10s}   (seconds; AppTest script runs)")
    for section in ("cold_s", "warm_s", "interactions_s"):
        for k in base[section]:
            print(f"{section[:-2] + ' ' + k:28s} {base[section][k]:10.3f} {big[section][k]:10.3f}")
    if result.get("browser_label_issues"):
        print("browser (label issues):", result["browser_label_issues"])
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
