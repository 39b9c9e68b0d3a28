"""Benchmark: ingest throughput on the demo DICOMs, first run vs cached second run.

Generates the demo dataset (default ~2,000 DICOM files, 128 px), ingests it twice
into fresh run directories with a fresh cache, and prints images/s of both plus
their ratio (goal: the cached run at least 20x faster). Figures go to
``bench/results/ingest.json``.

Usage: ``python bench/bench_ingest.py [--n-patients 1400] [--image-size 64]``
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from ingest.demo import CLASS_NAMES, DemoConfig, generate_demo
from ingest.sources import IngestOptions, ingest_dicom_dir

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-patients", type=int, default=DemoConfig.n_patients)
    ap.add_argument("--image-size", type=int, default=IngestOptions.image_size)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        os.environ["MEDAUDIT_SECRET_FILE"] = str(tmp_path / "secret.key")
        t0 = time.perf_counter()
        ds = generate_demo(tmp_path / "data", DemoConfig(n_patients=args.n_patients))
        t_gen = time.perf_counter() - t0
        n_files = sum(1 for p in ds.dicom_dir.rglob("*") if p.is_file())
        opts = IngestOptions(image_size=args.image_size, classes=CLASS_NAMES,
                             cache_dir=tmp_path / "cache")
        runs = []
        for name in ("first", "cached"):
            t0 = time.perf_counter()
            s = ingest_dicom_dir(ds.dicom_dir, ds.labels_csv, tmp_path / f"run-{name}", opts)
            dt = time.perf_counter() - t0
            runs.append({"run": name, "seconds": dt, "images_per_s": n_files / dt,
                         "cache_hit": s.cache_hit, "accepted": s.n_accepted, "refused": s.n_refused})
    ratio = runs[0]["seconds"] / runs[1]["seconds"]
    print(f"demo generation: {n_files} files in {t_gen:.2f} s ({n_files / t_gen:.0f} files/s)")
    print(f"{'run':<8} {'seconds':>8} {'images/s':>10} {'cache':>6} {'accepted':>9} {'refused':>8}")
    for r in runs:
        print(f"{r['run']:<8} {r['seconds']:>8.2f} {r['images_per_s']:>10.0f} "
              f"{'hit' if r['cache_hit'] else 'miss':>6} {r['accepted']:>9} {r['refused']:>8}")
    print(f"speed-up of the cached run: {ratio:.1f}x (goal >= 20x)")
    RESULTS.mkdir(exist_ok=True)
    out = {"files": n_files, "generate_seconds": t_gen, "runs": runs, "cached_speedup": ratio,
           "image_size": args.image_size, "cpu_count": os.cpu_count()}
    (RESULTS / "ingest.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
