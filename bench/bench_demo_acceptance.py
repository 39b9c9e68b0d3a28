"""The demo's acceptance figures (issue 17) from finished demo runs.

For each ``NAME=RUN_DIR:DATA_DIR`` (a ``medaudit demo --out RUN_DIR --data-dir
DATA_DIR`` that has trained), against the planted problems of
``DATA_DIR/ground_truth.json``:

* label-issue F1 against the planted flips (``label_issue_table`` with the
  ``label_issues`` check's default filter), precision and recall;
* the estimated noise rate with its 95 % CI (the check's own computation) next to
  the planted rate, and whether the whole CI lies within 3 points of it;
* OOF AUC against the recorded labels and against the *true* labels;
* what the audit now says: the ``label_issues`` headline under the model-quality
  rule, and the ``overfitting`` findings.

Acceptance: F1 >= 0.6 and the noise CI within 3 points of the planted rate.
Usage (``before`` from main's code, ``after`` from this branch, same session)::

    .venv/bin/python bench/bench_demo_acceptance.py before=runs/demo-main:runs/demo-data-main \\
        after=runs/demo:runs/demo-data
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from audit.checks.label_issues import estimate_noise, label_issue_table
from audit.context import AuditContext
from audit.engine import audit_context
from audit.metrics import auc_with_ci
from audit.rundir import RunDir

RESULTS = Path(__file__).resolve().parent / "results"


def acceptance(run_dir: Path, data_dir: Path) -> dict:  # type: ignore[type-arg]
    """The acceptance figures of one demo run (see the module docstring)."""
    run = RunDir(run_dir)
    truth = json.loads((data_dir / "ground_truth.json").read_text())
    man = run.read_manifest()
    classes = run.class_names()
    ids = man["sample_id"].astype(str).to_numpy()
    y = man["label"].to_numpy(np.int64)
    true = np.array([classes.index(truth["images"][s]["true_label"]) for s in ids])
    flipped_paths = {r["path"] for r in truth["label_noise"]["flipped"]}
    flipped = np.isin(ids, list(flipped_paths))
    assert np.array_equal(flipped, y != true), "flips disagree with recorded vs true labels"
    probs = run.read_array("oof/pred_probs")
    groups = man["patient_key"].astype(str).to_numpy()
    table = label_issue_table(y, probs)
    flagged = table["is_label_issue"].to_numpy()
    tp = int((flagged & flipped).sum())
    prec = tp / max(int(flagged.sum()), 1)
    rec = tp / max(int(flipped.sum()), 1)
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    noise = estimate_noise(y, probs, groups=groups)["noise_rate"]
    planted = float(flipped.mean())
    ctx = AuditContext.from_run_dir(run)
    res = audit_context(ctx, checks=["label_issues", "overfitting"])
    li = next(f for f in res.findings if f.check == "label_issues" and "noise_rate" in f.evidence)
    return {
        "n_images": len(y),
        "planted_noise_rate": round(planted, 4),
        "n_planted_flips": int(flipped.sum()),
        "n_flagged": int(flagged.sum()),
        "label_issue_f1": round(f1, 3),
        "precision": round(prec, 3),
        "recall": round(rec, 3),
        "noise_rate": noise.to_dict(),
        "noise_ci_within_3_points": bool(
            abs(noise.low - planted) <= 0.03 and abs(noise.high - planted) <= 0.03
        ),
        "oof_auc_recorded_labels": auc_with_ci(y, probs, groups=groups).to_dict(),
        "oof_auc_true_labels": auc_with_ci(true, probs, groups=groups).to_dict(),
        "label_issues_finding": {
            "severity": li.severity,
            "title": li.title,
            "model_quality": li.evidence["model_quality"]["verdict"],
        },
        "overfitting_findings": [
            f"{f.severity}: {f.title}" for f in res.findings if f.check == "overfitting"
        ],
        "train_seconds": run.read_run_json()["train"]["timings"]["seconds"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR:DATA_DIR")
    ap.add_argument("--out", type=Path, default=RESULTS / "demo_acceptance.json")
    args = ap.parse_args(argv)
    out: dict = {"date": time.strftime("%Y-%m-%d")}  # type: ignore[type-arg]
    for spec in args.runs:
        name, dirs = spec.split("=", 1)
        run_dir, data_dir = dirs.split(":", 1)
        r = acceptance(Path(run_dir), Path(data_dir))
        out[name] = r
        nr = r["noise_rate"]
        print(
            f"{name}: F1 {r['label_issue_f1']:.3f} (P {r['precision']:.3f}, R {r['recall']:.3f}); "
            f"noise {nr['estimate']:.3f} [{nr['ci_low']:.3f}, {nr['ci_high']:.3f}] vs planted "
            f"{r['planted_noise_rate']:.3f} (within 3 points: {r['noise_ci_within_3_points']}); "
            f"OOF AUC recorded {r['oof_auc_recorded_labels']['estimate']:.3f}, true "
            f"{r['oof_auc_true_labels']['estimate']:.3f}; label_issues "
            f"{r['label_issues_finding']['severity']}: {r['label_issues_finding']['title']}"
        )
        for f in r["overfitting_findings"]:
            print(f"    {f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
