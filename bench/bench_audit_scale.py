"""Benchmark 2 (scale): audit checks on synthetic run arrays of 10^5 and 10^6 rows.

Every configuration runs in a fresh subprocess, so its peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``; tracemalloc does not see numpy's
or BLAS's buffers) is its own. A configuration is (N, K, checks): each check
alone, and the label, duplicate and outlier checks together in one
:func:`audit.engine.audit_context` call (the goal: 1,000,000 rows in under
5 minutes and 8 GiB).

Synthetic data (seeded, generated in chunks):

* ``embeddings`` ``(N, 512)`` float32: a mixture of 40 clusters in a 32-d latent
  space mapped to 512-d through a ReLU layer, plus isotropic noise; 100 planted
  near-copies and 50 far-away rows.
* ``pred_probs`` ``(N, K)`` float32: softmax of normal logits with +2 on the true
  class; 10 % of the given labels flipped.
* ``images`` ``(N, 1, 8, 8)`` uint8: a deliberately tiny cache (a real
  224 x 224 cache would be 50 GB at N = 10^6) derived from the same latent,
  with the 100 near-copies planted as pixel copies plus noise.
* manifest: 2 images per patient, ``split`` 80/20 and 5 folds by patient.

Peak memory includes the synthetic arrays themselves (reported separately as
``rss_after_data_gib``).

A ``neighbours`` configuration per N times :func:`audit._neighbors.knn` alone on
the two feature spaces the checks search (the duplicate check's centred 8 x 8
pixel thumbnails, all rows together; the 512-d embeddings per fold, as the
outlier check searches them) and reports its recall@10 against exact search
for 2,000 sampled rows.

Usage::

    python bench/bench_audit_scale.py                      # N = 1e5, 1e6; K = 2, 14
    python bench/bench_audit_scale.py --sizes 100000 --classes 2

Prints a table and writes ``bench/results/audit_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "audit_scale.json"
GOAL_SECONDS, GOAL_GIB = 300.0, 8.0
TOGETHER = ("label_issues", "duplicates_and_leakage", "outliers")
N_PLANTED_COPIES, N_FAR = 100, 50


def _rss_gib() -> float:
    """Peak resident set size of this process in GiB (Linux reports KiB)."""
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30


def _cpu_s() -> float:
    """CPU seconds (user + system, all threads) this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_data(n: int, k: int, *, dim: int = 512, seed: int = 0) -> dict[str, Any]:
    """Synthetic evidence (see the module docstring); arrays built chunk by chunk."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    lat, n_clusters, chunk = 32, 40, 50_000
    centers = rng.normal(0, 2.0, (n_clusters, lat)).astype(np.float32)
    w_emb = (rng.normal(0, 1, (lat, dim)) / np.sqrt(lat)).astype(np.float32)
    w_img = (rng.normal(0, 1, (lat, 64)) / np.sqrt(lat)).astype(np.float32)
    truth = rng.integers(0, k, n)
    emb = np.empty((n, dim), np.float32)
    images = np.empty((n, 1, 8, 8), np.uint8)
    probs = np.empty((n, k), np.float32)
    for a in range(0, n, chunk):
        m = min(chunk, n - a)
        z = centers[rng.integers(0, n_clusters, m)] + rng.standard_normal((m, lat), np.float32)
        z[:, 0] += truth[a : a + m]  # the class is visible in the features
        emb[a : a + m] = np.maximum(z @ w_emb, 0) + 0.2 * rng.standard_normal((m, dim), np.float32)
        img = 1 / (1 + np.exp(-(z @ w_img)))
        images[a : a + m] = np.clip(img * 255, 0, 255).astype(np.uint8).reshape(m, 1, 8, 8)
        logits = rng.standard_normal((m, k), np.float32)
        logits[np.arange(m), truth[a : a + m]] += 2.0
        e = np.exp(logits - logits.max(1, keepdims=True))
        probs[a : a + m] = e / e.sum(1, keepdims=True)
    # planted near-copies (different patients) and far-away rows
    rows = rng.choice(n, size=2 * N_PLANTED_COPIES + N_FAR, replace=False)
    src, dst = rows[:N_PLANTED_COPIES], rows[N_PLANTED_COPIES : 2 * N_PLANTED_COPIES]
    far = rows[2 * N_PLANTED_COPIES :]
    emb[dst] = emb[src] + 0.01 * rng.standard_normal((N_PLANTED_COPIES, dim), np.float32)
    noisy = images[src].astype(np.int16) + rng.integers(-1, 2, images[src].shape)
    images[dst] = np.clip(noisy, 0, 255).astype(np.uint8)
    emb[far] = 4.0 * rng.standard_normal((N_FAR, dim), np.float32)
    given = truth.copy()
    flip = rng.random(n) < 0.10
    given[flip] = (truth[flip] + rng.integers(1, k, flip.sum())) % k
    patient = np.arange(n) // 2
    n_pat = patient[-1] + 1
    folds = rng.integers(0, 5, n_pat)[patient].astype(np.int16)
    split = np.where(rng.random(n_pat) < 0.8, "train", "test")[patient]
    class_names = [f"class_{c}" for c in range(k)]
    manifest = pd.DataFrame({
        "sample_id": np.char.add("s", np.arange(n).astype(str)).astype(object),
        "label": given.astype(np.int64),
        "label_name": np.asarray(class_names, dtype=object)[given],
        "patient_key": np.char.add("p", patient.astype(str)).astype(object),
        "split": split.astype(object),
    })  # fmt: skip
    return {
        "manifest": manifest, "class_names": class_names, "pred_probs": probs,
        "embeddings": emb, "images": images, "folds": folds,
        "planted": {"src": src, "dst": dst, "far": far},
    }  # fmt: skip


def _recall(findings: list[Any], data: dict[str, Any]) -> dict[str, Any]:
    """Planted problems recovered (from the finding lists, which are capped)."""
    sid = data["manifest"]["sample_id"].to_numpy()
    out: dict[str, Any] = {}
    dup = [f for f in findings if f.check == "duplicates_and_leakage"]
    if dup:
        listed = {s for f in dup for s in f.sample_ids}
        p = data["planted"]
        out["planted_copies_listed"] = int(sum(sid[a] in listed and sid[b] in listed
                                               for a, b in zip(p["src"], p["dst"])))
        out["duplicate_findings"] = {f.title: f.severity for f in dup}
        det = dup[0].evidence.get("detection", {})
        out["duplicate_pairs_found"] = {
            "exact": det.get("n_exact_duplicate_pairs"), "near": det.get("n_near_duplicate_pairs"),
            "thresholds": {c["space"]: c["threshold"] for c in det.get("near", [])},
        }  # fmt: skip
    ood = [f for f in findings if f.check == "outliers"]
    if ood:
        listed = {s for f in ood for s in f.sample_ids}
        out["planted_far_listed"] = int(sum(sid[i] in listed for i in data["planted"]["far"]))
        out["outlier_findings"] = {f.title: f.severity for f in ood}
        out["n_outliers_listed"] = sum(len(f.sample_ids) for f in ood)
    return out


def _exact_neighbours(feats: np.ndarray, rows: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The 10 nearest other rows (cosine) of ``queries`` among ``rows``, exactly."""
    from sklearn.neighbors import NearestNeighbors

    unit = feats[rows] / np.maximum(np.linalg.norm(feats[rows], axis=1, keepdims=True), 1e-30)
    nn = NearestNeighbors(n_neighbors=11, algorithm="brute").fit(unit)
    pos = np.searchsorted(rows, queries)
    got = rows[nn.kneighbors(unit[pos], return_distance=False)]
    return np.stack([g[g != q][:10] for g, q in zip(got, queries)])


def knn_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Time the neighbour search alone and measure its recall@10 against exact search."""
    from audit._neighbors import knn
    from audit.checks.duplicates_and_leakage import _coarse_pixels

    data = make_data(spec["n"], spec["k"], dim=spec["dim"])
    folds = data["folds"].astype(np.int64)
    spaces = {
        "pixels (8 x 8, all rows)": (_coarse_pixels(data["images"], 16), np.zeros_like(folds)),
        "embeddings (512-d, per fold)": (data["embeddings"], folds),
    }
    queries = np.sort(np.random.default_rng(1).choice(spec["n"], 2000, replace=False))
    out: dict[str, Any] = {**spec, "spaces": {}}
    for name, (feats, groups) in spaces.items():
        t0, c0 = time.perf_counter(), _cpu_s()
        nb = knn(feats, 10, metric="cosine", groups=None if not groups.any() else groups)
        wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
        found = 0.0
        for g in np.unique(groups[queries]):
            q = queries[groups[queries] == g]
            exact = _exact_neighbours(feats, np.flatnonzero(groups == g), q)
            found += sum(np.isin(nb.indices[i], e).mean() for i, e in zip(q, exact))
        out["spaces"][name] = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "recall_at_10": round(found / queries.size, 4),
                               "method": nb.describe(), "params": nb.params}  # fmt: skip
    out["peak_rss_gib"] = round(_rss_gib(), 2)
    return out


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration in this (fresh) process and return its figures."""
    if spec.get("kind") == "knn":
        return knn_worker(spec)
    from audit.context import AuditContext
    from audit.engine import audit_context
    from audit.registry import list_checks

    t0 = time.perf_counter()
    data = make_data(spec["n"], spec["k"], dim=spec["dim"])
    gen_s = time.perf_counter() - t0
    rss_data = _rss_gib()
    checks = [c for c in spec["checks"] if c in list_checks()]
    ctx = AuditContext.from_arrays(
        data["manifest"], data["class_names"], pred_probs=data["pred_probs"],
        embeddings=data["embeddings"], folds=data["folds"], images=data["images"],
    )  # fmt: skip
    t1, c1 = time.perf_counter(), _cpu_s()
    result = audit_context(ctx, checks=checks, config=spec.get("config") or {})
    wall, cpu = time.perf_counter() - t1, _cpu_s() - c1
    return {
        **spec,
        "checks_run": checks,
        "missing_checks": [c for c in spec["checks"] if c not in checks],
        "data_gen_s": round(gen_s, 1),
        "rss_after_data_gib": round(rss_data, 2),
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "peak_rss_gib": round(_rss_gib(), 2),
        "timings_s": result.timings,
        "errors": result.errors,
        "skipped": result.skipped,
        "n_findings": len(result.findings),
        **_recall(result.findings, data),
    }


def _configs(sizes: list[int], classes: list[int], dim: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for n in sizes:
        out.append({"n": n, "k": classes[0], "dim": dim, "kind": "knn",
                    "label": "neighbours (recall@10 vs exact)", "checks": []})
        for k in classes:
            out.append({"n": n, "k": k, "dim": dim, "label": "label_issues", "checks": ["label_issues"]})
        # the duplicate and outlier checks do not use K: run them once per N
        k0 = classes[0]
        out.append({"n": n, "k": k0, "dim": dim, "label": "duplicates_and_leakage (pixels, default)",
                    "checks": ["duplicates_and_leakage"]})
        out.append({"n": n, "k": k0, "dim": dim, "label": "duplicates_and_leakage (pixels + 512-d embeddings)",
                    "checks": ["duplicates_and_leakage"],
                    "config": {"duplicates_and_leakage": {"near_duplicate_space": "both"}}})
        out.append({"n": n, "k": k0, "dim": dim, "label": "outliers (512-d embeddings, per fold)",
                    "checks": ["outliers"]})
        for k in classes:
            out.append({"n": n, "k": k, "dim": dim, "label": "together (label + duplicates + outliers)",
                        "checks": list(TOGETHER)})
    return out


def _run_sub(spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {**spec, "failed": True, "returncode": proc.returncode, "stderr": proc.stderr[-2000:]}
    return json.loads(lines[-1])


def _table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'N':>9} {'K':>3}  {'configuration':<52} {'wall s':>7} {'cpu s':>7} {'peak GiB':>8} "
            f"{'data GiB':>8}  per-check s")
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.get("failed"):
            lines.append(f"{r['n']:>9} {r['k']:>3}  {r['label']:<52} FAILED rc={r['returncode']}")
            continue
        if r.get("kind") == "knn":
            for name, v in r["spaces"].items():
                lines.append(f"{r['n']:>9} {r['k']:>3}  {'knn: ' + name:<52} {v['wall_s']:>7.1f} "
                             f"{v['cpu_s']:>7.1f} {r['peak_rss_gib']:>8.2f} {'':>8}  "
                             f"recall@10 = {v['recall_at_10']:.3f}")
            continue
        per = ", ".join(f"{c}={t:.1f}" for c, t in r["timings_s"].items())
        miss = f" (not available: {r['missing_checks']})" if r["missing_checks"] else ""
        lines.append(
            f"{r['n']:>9} {r['k']:>3}  {r['label']:<52} {r['wall_s']:>7.1f} {r['cpu_s']:>7.1f} "
            f"{r['peak_rss_gib']:>8.2f} {r['rss_after_data_gib']:>8.2f}  {per}{miss}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--classes", type=int, nargs="+", default=[2, 14])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--only", default=None, help="run only configurations whose label contains this")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    rows = []
    for spec in _configs(args.sizes, args.classes, args.dim):
        if args.only and args.only not in spec["label"]:
            continue
        print(f"running N={spec['n']:,} K={spec['k']} {spec['label']} ...", flush=True)
        rows.append(_run_sub(spec))
        print(_table(rows[-1:]).splitlines()[-1], flush=True)
    goal = [r for r in rows if r["label"].startswith("together") and r["n"] >= 1_000_000
            and not r.get("failed")]
    summary = {
        "goal": f"N=1,000,000: label + duplicate + outlier checks < {GOAL_SECONDS:.0f} s and < {GOAL_GIB:g} GiB",
        "met": bool(goal) and all(r["wall_s"] < GOAL_SECONDS and r["peak_rss_gib"] < GOAL_GIB
                                  and not r["missing_checks"] and not r["errors"] for r in goal),
    }  # fmt: skip
    out = {
        "benchmark": "audit_scale",
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": __import__("os").cpu_count()},
        "notes": "images are a tiny (N, 1, 8, 8) uint8 cache; peak RSS includes the synthetic arrays",
        "summary": summary,
        "results": rows,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print()
    print(_table(rows))
    print(f"\ngoal met: {summary['met']}  ({summary['goal']})\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
