"""Paired summary of ``bench_budget.py`` runs over several seeds (issue 21).

Each result file of ``bench_budget.py --seed S`` holds the bare loop and the
variants trained on the same folds (the seed sets the folds and every model's
initialisation). Differences to the bare loop are therefore paired by seed:
this script prints, per variant and number of epochs, the mean OOF (and holdout)
AUC over the seeds and the mean paired difference to the bare loop (or to the
variant named by ``--reference``) with its 95 %
t interval (n - 1 degrees of freedom; with 3 seeds the interval is wide, and
says so).

Usage::

    .venv/bin/python bench/budget_seeds.py bench/results/budget_breastmnist_e40_seed*.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats


def paired(values: list[float]) -> dict[str, float]:
    """Mean of ``values`` with its 95 % t interval (``nan`` bounds for one value)."""
    a = np.asarray(values, dtype=np.float64)
    mean = float(a.mean())
    if a.size < 2:
        return {"mean": mean, "low": float("nan"), "high": float("nan"), "n": int(a.size)}
    half = float(stats.t.ppf(0.975, a.size - 1) * a.std(ddof=1) / np.sqrt(a.size))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": int(a.size)}


def collect(files: list[Path]) -> dict[tuple[int, str], dict[int, dict[str, float]]]:
    """``{(epochs, variant): {seed: {"oof": auc, "holdout": auc, "seconds": s, ...}}}``.

    ``oof_true``: OOF AUC against the true labels, when the run planted label noise.
    """
    out: dict[tuple[int, str], dict[int, dict[str, float]]] = defaultdict(dict)
    for f in files:
        d = json.loads(f.read_text())
        seed = int(d.get("seed", 0))
        for r in d["runs"]:
            rec = {"oof": r["oof_auc"]["estimate"], "seconds": r["seconds"]}
            if "holdout_auc" in r:
                rec["holdout"] = r["holdout_auc"]["estimate"]
            if "oof_auc_true" in r:  # planted label noise: against the true labels
                rec["oof_true"] = r["oof_auc_true"]["estimate"]
            out[(int(r["epochs"]), r["variant"])][seed] = rec
    return out


def summarize(
    runs: dict[tuple[int, str], dict[int, dict[str, float]]], reference: str = "bare"
) -> list[dict[str, Any]]:
    """One row per (epochs, variant): means and paired differences to ``reference``."""
    rows = []
    for (epochs, variant), by_seed in sorted(runs.items()):
        bare = runs.get((epochs, reference), {})
        row: dict[str, Any] = {"epochs": epochs, "variant": variant, "seeds": sorted(by_seed)}
        for key in ("oof", "oof_true", "holdout", "seconds"):
            vals = [v[key] for v in by_seed.values() if key in v]
            if vals:
                row[key] = paired(vals)
            if variant != reference and key != "seconds":
                diffs = [
                    v[key] - bare[s][key] for s, v in by_seed.items() if s in bare and key in v
                ]
                if diffs:
                    row[f"{key}_minus_reference"] = paired(diffs)
        rows.append(row)
    return rows


def _fmt(p: dict[str, float] | None) -> str:
    if p is None:
        return "-"
    if np.isnan(p["low"]):
        return f"{p['mean']:+.3f}"
    return f"{p['mean']:+.3f} [{p['low']:+.3f}, {p['high']:+.3f}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--json", type=Path, default=None, help="also write the summary here")
    ap.add_argument("--reference", default="bare", help="variant the differences are to")
    args = ap.parse_args(argv)
    rows = summarize(collect(args.files), args.reference)
    ref = args.reference
    metrics = [("oof", "OOF"), ("oof_true", "OOF vs true labels"), ("holdout", "test")]
    metrics = [(k, name) for k, name in metrics if any(k in r for r in rows)]
    for key, name in metrics:
        print(f"\n{name}: mean over seeds; paired difference to {ref} with its 95 % t CI")
        for r in rows:
            if key not in r:
                continue
            print(
                f"{r['epochs']:>6} {r['variant']:<40} {len(r['seeds']):>2} seed(s)  "
                f"{r[key]['mean']:.3f}  {_fmt(r.get(f'{key}_minus_reference'))}"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
