"""Overfitting and learning curves on real data: BreastMNIST (MedMNIST v2).

For each seed: train medaudit's default fine-tuning recipe with a short schedule
(``--epochs``, default 12: a *short fine-tune*, not the 40-epoch default, to fit the
shared machine) on all 780 BreastMNIST images (5 patient-grouped folds; every image
is its own patient) with ``learning_curve=(0.25, 0.5, 0.75, 1.0)``, then

* the ``overfitting`` check's in-sample vs out-of-fold AUC gap (per fold and
  overall, patient-bootstrap CI), calibration slope and learning-curve verdict;
* how good the extrapolation is: the inverse power law fitted on the fractions
  0.25-0.75 only (:func:`audit.learning_curve.fit_inverse_power_law`) predicts the
  mean fold AUC at the full training size, compared with the measured one.

Writes ``bench/results/overfitting.json``. Usage::

    .venv/bin/python bench/bench_overfitting.py --seeds 0 1 2 --epochs 12
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from audit.checks.overfitting import OverfittingConfig, check_overfitting
from audit.context import AuditContext
from audit.learning_curve import fit_inverse_power_law
from audit.rundir import RunDir
from training import TrainConfig, train_run

NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "breastmnist.npz"
RESULTS = Path(__file__).resolve().parent / "results"
FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def build_run(npz: Path, out: Path, size: int) -> RunDir:
    """A run directory of all BreastMNIST images (ingest_npz; one patient per image)."""
    from ingest.sources import IngestOptions, ingest_npz

    return ingest_npz(npz, out, IngestOptions(image_size=size, use_cache=False, overwrite=True)).run


def extrapolation(curve: dict) -> dict:  # type: ignore[type-arg]
    """Fit on fractions < 1, predict the full size, compare with the measured AUC."""
    pts = curve["points"]
    part = [p for p in pts if p["fraction"] < 1 and p["auc"] is not None]
    full = [p for p in pts if p["fraction"] == 1 and p["auc"] is not None]
    fit = fit_inverse_power_law(
        np.array([p["n_train"] for p in part], float),
        np.array([p["auc"] for p in part], float),
        se=np.array([p["auc_se"] for p in part], float),
    )
    n_full = float(np.mean([p["n_train"] for p in full]))
    pred = fit.predict(n_full)
    measured = float(np.mean([p["auc"] for p in full]))
    return {
        "n_full": n_full,
        "predicted": pred.to_dict(),
        "measured_mean_fold_auc": measured,
        "error": round(pred.estimate - measured, 4),
        "measured_inside_ci": bool(pred.low <= measured <= pred.high),
        "params": {"a": fit.a, "b": fit.b, "c": fit.c},
    }


def one_seed(work: Path, seed: int, epochs: int, threads: int | None) -> dict:  # type: ignore[type-arg]
    run = build_run(NPZ, work / f"seed{seed}", 28)
    cfg = TrainConfig(epochs=epochs, seed=seed, quiet=True, masked_variants=(), threads=threads)
    t0 = time.perf_counter()
    summary = train_run(run, cfg, learning_curve=FRACTIONS)
    seconds = time.perf_counter() - t0
    ctx = AuditContext.from_run_dir(run)
    found = check_overfitting(ctx, OverfittingConfig())
    gap = next(f for f in found if f.title.startswith("In-sample AUC"))
    slope = next((f for f in found if f.title.startswith("Calibration slope")), None)
    lc = next((f for f in found if f.title.startswith("Learning curve")), None)
    curve = run.read_json("train/learning_curve.json")
    means = {
        str(fr): float(np.mean([p["auc"] for p in curve["points"] if p["fraction"] == fr]))
        for fr in curve["fractions"]
    }
    return {
        "seed": seed,
        "seconds": round(seconds, 1),
        "learning_curve_seconds": curve["seconds"],
        "oof_auc": summary.oof_auc.to_dict(),
        "gap": {
            "severity": gap.severity,
            "title": gap.title,
            "in_sample_auc_mean": gap.evidence["in_sample_auc_mean"],
            "oof_auc_mean": gap.evidence["oof_auc_mean"],
            "gap": gap.evidence["gap"],
            "folds": [
                {
                    "fold": f["fold"],
                    "in": f["in_sample_auc"]["estimate"],
                    "oof": f["oof_auc"]["estimate"],
                    "gap": f["gap"],
                }
                for f in gap.evidence["folds"]
            ],
        },
        "calibration_slope": None if slope is None else slope.evidence["calibration_slope"],
        "learning_curve_finding": None
        if lc is None
        else {
            "title": lc.title,
            "auc_at_2x": lc.evidence["auc_at_2x"],
            "gain_at_2x": lc.evidence["gain_at_2x"],
        },
        "mean_fold_auc_by_fraction": means,
        "extrapolation_from_0.25_0.75": extrapolation(curve),
        "findings": [f"{f.severity}: {f.title}" for f in found],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=RESULTS / "overfitting.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not NPZ.is_file():
        print(f"missing {NPZ}", file=sys.stderr)
        return 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            r = one_seed(Path(tmp), seed, args.epochs, args.threads)
            rows.append(r)
            ex = r["extrapolation_from_0.25_0.75"]
            print(
                f"seed {seed}: OOF AUC {r['oof_auc']['estimate']:.3f}; in-sample "
                f"{r['gap']['in_sample_auc_mean']:.3f} vs OOF {r['gap']['oof_auc_mean']:.3f} "
                f"(gap {r['gap']['gap']['estimate']:+.3f} [{r['gap']['gap']['ci_low']:+.3f}, "
                f"{r['gap']['gap']['ci_high']:+.3f}], {r['gap']['severity']}); curve "
                f"{r['mean_fold_auc_by_fraction']}; extrapolated full-size AUC "
                f"{ex['predicted']['estimate']:.3f} [{ex['predicted']['ci_low']:.3f}, "
                f"{ex['predicted']['ci_high']:.3f}] vs measured "
                f"{ex['measured_mean_fold_auc']:.3f} (error {ex['error']:+.3f}); "
                f"{r['seconds']:.0f} s",
                flush=True,
            )
            out = {
                "date": time.strftime("%Y-%m-%d"),
                "machine": platform.platform(),
                "processor": platform.processor() or platform.machine(),
                "mode": f"short fine-tune: TrainConfig defaults, epochs={args.epochs}",
                "data": "BreastMNIST, all 780 images, 5 patient-grouped folds, 28 px",
                "fractions": list(FRACTIONS),
                "seeds": rows,
            }
            errs = [s["extrapolation_from_0.25_0.75"]["error"] for s in rows]
            out["extrapolation_error_mean"] = float(np.mean(errs))
            out["extrapolation_error_abs_mean"] = float(np.mean(np.abs(errs)))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
