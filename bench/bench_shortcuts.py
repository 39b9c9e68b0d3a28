"""Benchmark of the shortcut and subgroup checks (issue 15).

Part ``power``: detection power and false alarms on real images
------------------------------------------------------------------
BreastMNIST (all 780 images, 28 x 28, labels as given: 1 = benign/normal, 73 %)
with a bright 2 x 3 pixel marker stamped into the top-left corner of some images:
``marker_i = label_i`` with probability ``r`` and an independent draw at the label
rate otherwise, so the marker's correlation with the label is ``r`` (0.9, 0.7, 0.5).
Variants per seed:

* ``site r=...``: the marker plus a ``site`` column that follows it (site-b = marker);
* ``marker-only r=0.9``: the marker, no metadata column (only the pixels carry it);
* ``control``: the unmodified images with a random three-level ``site`` column
  (``--control-seeds``, default 20, so that a false-alarm rate comes with a usable
  Wilson interval; the images are the same in every control seed, only the site
  column, the fold split and the PCA seed change). For the image-only checks the
  control is one data set whatever the seed (a genuine property of BreastMNIST is
  found or not depending on the fold split), so its rate is not a false-alarm rate
  over data sets;
* ``permuted``: the control with the labels shuffled across images (a fresh
  permutation per seed, random ``site``): no image, property or column carries the
  label, a true null for every check, also ``--control-seeds`` seeds.

The model is deliberately cheap so that 5 seeds x 5 variants run on 2 loaded cores:
pixels -> StandardScaler -> PCA(32), fitted once on all images of the variant
(label-free; these 32-d features are the "embeddings", one model for every row),
then one L2 logistic regression (C = 0.1) per fold of a 5-fold stratified split
(each image its own patient), which gives the out-of-fold probabilities and also
scores the masked variants of :mod:`audit.masking`. Image properties come from
``ingest.properties.compute_image_properties``. The six checks run with their
defaults except ``embeddings_from_one_model = True`` (true for this model) and
``n_boot = 200``.

A variant counts as *detected* by a check when the check has a finding of
severity ``warning`` or ``critical`` (``image_property_shortcut``: also an ``info``
finding that names corner-marker properties as mediated by the site). A false
alarm is any ``warning`` or ``critical`` finding on the control. Every rate is
printed with its 95 % Wilson interval. The BreastMNIST npz carries no
``dicom_modality``, so ``masking_test`` resolves ``anatomy_layout = "auto"`` to
``unknown``: its anatomy-hidden rule does not grade (an ``info`` finding at most,
counted apart) and the corner-drop rule does.

Part ``scale``: wall time and peak memory at N = 100,000
--------------------------------------------------------
Synthetic rows of ``bench_audit_scale.make_data`` (512-d embeddings, K = 2, two
images per patient, 5 folds) plus ``site`` / ``scanner`` / ``sex`` / ``age`` /
``view`` columns, an image-property table and three masked variants. Each of the
six checks runs alone in a fresh subprocess (peak RSS from ``getrusage``); the
baseline, measured in the same run, is the five earlier checks together
(label_issues, annotator_agreement is skipped without annotators,
duplicates_and_leakage, outliers, class_balance_and_size).

Usage::

    python bench/bench_shortcuts.py power --seeds 5 --control-seeds 20
    python bench/bench_shortcuts.py scale --n 100000

Prints a table and writes ``bench/results/shortcuts_power.json`` /
``bench/results/shortcuts_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
DATA = HERE.parent.parent / "shared" / "data" / "breastmnist.npz"
NEW_CHECKS = [
    "metadata_shortcut",
    "embedding_encodes_metadata",
    "image_property_shortcut",
    "masking_test",
    "subgroup_performance",
    "hidden_stratification",
]
SHORTCUT_CHECKS = NEW_CHECKS[:4]
BASELINE = [
    "label_issues",
    "annotator_agreement",
    "duplicates_and_leakage",
    "outliers",
    "class_balance_and_size",
]
# Marker: 2 x 3 bright pixels at (1, 1). ingest.properties' corner detector needs the mark to
# cover less than half of its corner patch (4 x 4 px at 28 px): it compares pixels with the
# patch median; a 4 x 4 mark fills the patch and is invisible to it.
MARKER = (2, 3)


def _load_breastmnist(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = np.load(path)
    x = np.concatenate([d[f"{s}_images"] for s in ("train", "val", "test")])
    y = np.concatenate([d[f"{s}_labels"] for s in ("train", "val", "test")]).ravel()
    return x.astype(np.uint8), y.astype(np.int64)


def _variant(
    x: np.ndarray, y: np.ndarray, kind: str, r: float, seed: int
) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = len(y)
    man = pd.DataFrame(
        {
            "sample_id": [f"b{i:04d}" for i in range(n)],
            "label": y,
            "label_name": np.where(y == 1, "benign", "malignant"),
            "patient_key": [f"p{i:04d}" for i in range(n)],
        }
    )
    x = x.copy()
    if kind == "permuted":
        y = rng.permutation(y)
        man["label"] = y
        man["label_name"] = np.where(y == 1, "benign", "malignant")
    if kind in ("control", "permuted"):
        man["site"] = np.array(["site-a", "site-b", "site-c"])[rng.integers(0, 3, n)]
        return x, man, np.zeros(n, bool)
    marker = np.where(rng.random(n) < r, y == 1, rng.random(n) < y.mean())
    x[marker, 1 : 1 + MARKER[0], 1 : 1 + MARKER[1]] = 255
    if kind == "site":
        man["site"] = np.where(marker, "site-b", "site-a")
    return x, man, marker


def _cheap_model(x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    from audit import masking

    imgs = x[:, None].astype(np.float32) / 255
    flat = imgs.reshape(len(y), -1)
    scaler = StandardScaler().fit(flat)
    pca = PCA(32, random_state=seed).fit(scaler.transform(flat))

    def embed(a: np.ndarray) -> np.ndarray:
        return pca.transform(scaler.transform(a.reshape(len(a), -1)))

    z = embed(imgs)
    zv = {v: embed(getattr(masking, v)(imgs)) for v in masking.MASKED_VARIANTS}
    folds = np.zeros(len(y), np.int64)
    for f, (_, te) in enumerate(StratifiedKFold(5, shuffle=True, random_state=seed).split(z, y)):
        folds[te] = f
    probs = np.zeros((len(y), 2))
    masked = {v: np.zeros((len(y), 2)) for v in zv}
    for f in range(5):
        tr, te = folds != f, folds == f
        clf = LogisticRegression(C=0.1, max_iter=2000).fit(z[tr], y[tr])
        probs[te] = clf.predict_proba(z[te])
        for v in zv:
            masked[v][te] = clf.predict_proba(zv[v][te])
    return {
        "pred_probs": probs,
        "embeddings": z.astype(np.float32),
        "folds": folds,
        "masked": masked,
    }


def _detected(findings: list[Any]) -> dict[str, bool]:
    out = {}
    for c in NEW_CHECKS:
        fs = [f for f in findings if f.check == c]
        hit = any(f.severity in ("warning", "critical") for f in fs)
        if c == "image_property_shortcut":
            props = fs[0].evidence.get("properties", []) if fs else []
            hit = hit or any(p["mediated_by"] for p in props if "corner_mark" in p["property"])
        out[c] = hit
    return out


def run_power(seeds: int, out: Path, control_seeds: int = 20) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    from audit.context import AuditContext
    from audit.engine import audit_context
    from ingest.properties import compute_image_properties

    x0, y0 = _load_breastmnist(DATA)
    planted = [("site", 0.9), ("site", 0.7), ("site", 0.5), ("marker-only", 0.9)]
    config = {c: {"n_boot": 200} for c in NEW_CHECKS}
    config["embedding_encodes_metadata"]["embeddings_from_one_model"] = True
    config["hidden_stratification"] = {"embeddings_from_one_model": True}
    rows = []
    jobs = [(seed, kind, r) for seed in range(seeds) for kind, r in planted]
    jobs += [(seed, k, 0.0) for seed in range(control_seeds) for k in ("control", "permuted")]
    for seed, kind, r in jobs:
        t0 = time.perf_counter()
        x, man, marker = _variant(x0, y0, kind, r, seed)
        y = man["label"].to_numpy()
        ev = _cheap_model(x, y, seed)
        props = compute_image_properties(x[:, None], man["sample_id"].tolist())
        ctx = AuditContext.from_arrays(man, ["malignant", "benign"], image_properties=props, **ev)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = audit_context(ctx, checks=NEW_CHECKS, config=config)
        det = _detected(res.findings)
        row = {
            "seed": seed,
            "variant": kind,
            "r": r,
            "marker_label_corr": (
                round(float(np.corrcoef(marker, y)[0, 1]), 3) if marker.any() else None
            ),
            "model_oof_auc": round(float(roc_auc_score(y, ev["pred_probs"][:, 1])), 4),
            "detected": det,
            "any_shortcut_check": any(det[c] for c in SHORTCUT_CHECKS),
            "severities": {
                c: sorted({f.severity for f in res.findings if f.check == c}) for c in NEW_CHECKS
            },
            "titles": [  # findings above pass (the summary reads the masking parts from them)
                f"{f.check}: {f.severity}: {f.title}" for f in res.findings if f.severity != "pass"
            ],
            "subgroup_levels": _subgroup_levels(res.findings),
            "errors": res.errors,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        rows.append(row)
        print(
            f"seed {seed} {kind:<12} r={r:.1f} AUC={row['model_oof_auc']:.3f} "
            f"any={row['any_shortcut_check']} "
            + " ".join(f"{c}={int(v)}" for c, v in det.items())
            + f" ({row['seconds']} s)",
            flush=True,
        )
    summary = _summary(rows)
    result = {
        "benchmark": "shortcuts_power",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, 2 cores shared with other jobs",
        "seeds": {"planted": seeds, "control": control_seeds},
        "model": "pixels -> StandardScaler -> PCA(32) (label-free, all rows) -> L2 "
        "LogisticRegression(C=0.1) per fold (5-fold stratified); masked variants "
        "scored by the same fold models",
        "summary": summary,
        "runs": rows,
    }
    _write_power(out, result)
    print(_power_table(summary))
    return result


def _write_power(out: Path, result: dict[str, Any]) -> None:
    """The result as JSON: the summary indented, each run on one line (the file stays small)."""
    head = json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1)
    runs = ",\n  ".join(json.dumps(r, separators=(",", ":")) for r in result["runs"])
    out.write_text(head[:-2] + f',\n "runs": [\n  {runs}\n ]\n}}\n')


def _subgroup_levels(findings: list[Any]) -> list[dict[str, Any]]:
    """Per tested level of subgroup_performance: gap, p and q (to check the test's calibration)."""
    f = next((f for f in findings if f.check == "subgroup_performance"), None)
    if f is None:
        return []
    return [
        {
            "column": g["column"],
            "level": g["level"],
            "n": g["n"],
            "auc_gap": (g["auc_gap"] or {}).get("estimate"),
            "p_value": g["p_value"],
            "q_value": g["q_value"],
            "flagged": g["flagged"],
        }
        for g in f.evidence.get("groups", [])
    ]


def _masking_by_part(titles: list[str]) -> dict[str, bool]:
    hits = [
        t
        for t in titles
        if t.startswith("masking_test: ") and (": warning: " in t or ": critical: " in t)
    ]
    return {
        "masking_test (anatomy hidden)": any("anatomy hidden" in t for t in hits),
        "masking_test (corners drop)": any("corners" in t for t in hits),
        "masking_test (anatomy hidden, info: inconclusive)": any(
            t.startswith("masking_test: info: ") and "inconclusive" in t for t in titles
        ),
    }


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Detection (or false-alarm) rate per variant and check, with Wilson intervals."""
    from audit.stats import wilson_ci

    out: dict[str, Any] = {}
    keys = sorted(
        {(x["variant"], x["r"]) for x in rows},
        key=lambda k: (k[0] in ("control", "permuted"), k[0], -k[1]),
    )
    for kind, r in keys:
        sub = [x for x in rows if x["variant"] == kind and x["r"] == r]
        name = f"{kind} r={r}" if kind not in ("control", "permuted") else kind
        det = {c: [x["detected"][c] for x in sub] for c in NEW_CHECKS}
        det["any_shortcut_check"] = [x["any_shortcut_check"] for x in sub]
        parts = [_masking_by_part(x["titles"]) for x in sub]
        for part in parts[0]:
            det[part] = [p[part] for p in parts]
        out[name] = {
            "n_seeds": len(sub),
            "model_oof_auc_mean": round(float(np.mean([x["model_oof_auc"] for x in sub])), 4),
        }
        for c, v in det.items():
            e = wilson_ci(int(np.sum(v)), len(v))
            out[name][c] = {
                "rate": round(e.estimate, 3),
                "ci_low": round(e.low, 3),
                "ci_high": round(e.high, 3),
            }
    return out


def _power_table(summary: dict[str, Any]) -> str:
    """One block per variant: per check the count, the rate and its 95 % Wilson interval."""
    cols = [
        "any_shortcut_check",
        *NEW_CHECKS,
        "masking_test (anatomy hidden)",
        "masking_test (corners drop)",
        "masking_test (anatomy hidden, info: inconclusive)",
    ]
    lines = []
    for k, v in summary.items():
        n = v["n_seeds"]
        what = "false alarms" if k in ("control", "permuted") else "detected"
        lines.append(f"{k} ({n} seeds, model OOF AUC {v['model_oof_auc_mean']:.3f}): {what}")
        for c in cols:
            if c not in v:
                continue
            e = v[c]
            lines.append(
                f"  {c:<50} {round(e['rate'] * n):>3}/{n:<3} rate {e['rate']:.3f} "
                f"(95% Wilson CI {e['ci_low']:.3f}-{e['ci_high']:.3f})"
            )
    return "\n".join(lines)


# ------------------------------------------------------------------------------- scale
def _rss_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def scale_worker(spec: dict[str, Any]) -> dict[str, Any]:
    from bench_audit_scale import make_data

    from audit.context import AuditContext
    from audit.engine import audit_context

    t0 = time.perf_counter()
    data = make_data(spec["n"], 2, dim=512)
    n = spec["n"]
    rng = np.random.default_rng(1)
    man = data["manifest"]
    pat = np.arange(n) // 2
    site = rng.integers(0, 3, pat[-1] + 1)[pat]
    man["site"] = np.array(["site-a", "site-b", "site-c"])[site]
    man["scanner"] = np.array(["DX", "CR", "XR"])[site]
    man["sex"] = np.array(["F", "M"])[rng.integers(0, 2, pat[-1] + 1)][pat]
    man["age"] = rng.integers(20, 90, pat[-1] + 1)[pat].astype(float)
    man["view"] = np.where(rng.random(n) < 0.15, "AP", "PA")
    props = pd.DataFrame({"sample_id": man["sample_id"]})
    for c in (
        "mean_intensity",
        "std_intensity",
        "p01",
        "p05",
        "p50",
        "p95",
        "p99",
        "contrast",
        "black_fraction",
        "saturated_fraction",
        "border_black_fraction",
        "corner_mark_score",
        "edge_mark_score",
    ):
        props[c] = rng.random(n)
    props["has_corner_mark"] = props["corner_mark_score"] > 0.8
    props["corner_mark_corner"] = rng.integers(0, 4, n).astype(np.int8)
    for c in ("orig_height", "orig_width"):
        props[c] = rng.choice([256.0, 512.0], n)
    props["aspect_ratio"] = props["orig_height"] / props["orig_width"]
    p = data["pred_probs"]
    masked = {
        v: np.clip(p + rng.normal(0, 0.2, p.shape), 0, 1).astype(np.float32)
        for v in ("center_masked", "border_only", "corners_masked")
    }
    for v in masked.values():
        v /= v.sum(1, keepdims=True)
    ctx = AuditContext.from_arrays(
        man,
        data["class_names"],
        pred_probs=p,
        embeddings=data["embeddings"],
        folds=data["folds"],
        images=data["images"],
        image_properties=props,
        masked=masked,
    )
    rss_data = _rss_gib()
    gen = time.perf_counter() - t0
    t1 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = audit_context(ctx, checks=spec["checks"])
    return {
        **spec,
        "data_gen_s": round(gen, 1),
        "wall_s": round(time.perf_counter() - t1, 1),
        "peak_rss_gib": round(_rss_gib(), 2),
        "rss_after_data_gib": round(rss_data, 2),
        "timings_s": res.timings,
        "errors": res.errors,
        "skipped": [s["check"] for s in res.skipped],
        "severities": sorted({f"{f.check}:{f.severity}" for f in res.findings}),
    }


def run_scale(n: int, out: Path) -> dict[str, Any]:
    specs = [{"n": n, "label": "baseline: the five earlier checks together", "checks": BASELINE}]
    specs += [{"n": n, "label": c, "checks": [c]} for c in NEW_CHECKS]
    specs += [{"n": n, "label": "all six new checks together", "checks": NEW_CHECKS}]
    rows = []
    for spec in specs:
        print(f"running N={n:,} {spec['label']} ...", flush=True)
        proc = subprocess.run(
            [sys.executable, __file__, "scale-worker", json.dumps(spec)],
            capture_output=True,
            text=True,
            check=False,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        row = (
            json.loads(lines[-1])
            if proc.returncode == 0 and lines
            else {**spec, "failed": True, "stderr": proc.stderr[-2000:]}
        )
        rows.append(row)
        print(
            f"  wall {row.get('wall_s')} s, peak RSS {row.get('peak_rss_gib')} GiB "
            f"(data alone {row.get('rss_after_data_gib')} GiB) {row.get('errors') or ''}",
            flush=True,
        )
    result = {
        "benchmark": "shortcuts_scale",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, 2 cores shared with other jobs",
        "rows": rows,
    }
    out.write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("power")
    p.add_argument("--seeds", type=int, default=5, help="seeds per planted variant")
    p.add_argument("--control-seeds", type=int, default=20, help="seeds of the control")
    p.add_argument("--out", type=Path, default=HERE / "results" / "shortcuts_power.json")
    s = sub.add_parser("scale")
    s.add_argument("--n", type=int, default=100_000)
    s.add_argument("--out", type=Path, default=HERE / "results" / "shortcuts_scale.json")
    m = sub.add_parser("summary", help="re-summarise an existing power result file")
    m.add_argument("--out", type=Path, default=HERE / "results" / "shortcuts_power.json")
    w = sub.add_parser("scale-worker")
    w.add_argument("spec")
    args = ap.parse_args(argv)
    if args.cmd == "power":
        run_power(args.seeds, args.out, args.control_seeds)
    elif args.cmd == "summary":
        result = json.loads(args.out.read_text())
        result["summary"] = _summary(result["runs"])
        _write_power(args.out, result)
        print(_power_table(result["summary"]))
    elif args.cmd == "scale":
        run_scale(args.n, args.out)
    else:
        print(json.dumps(scale_worker(json.loads(args.spec))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
