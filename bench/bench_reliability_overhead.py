"""Benchmark: what the transactional run directory costs (staging, locks, digests).

Runs the same commands with two source trees, alternating them round by round so
both see the same machine load: the current tree and an older checkout given by
``--old-tree`` (e.g. ``git worktree add /tmp/pre14 816fd48``, the commit before the
run directory became transactional). Each command runs as ``python -m medaudit`` in a
subprocess with that tree first on ``PYTHONPATH``; wall time and CPU time (user + system
of the child) are recorded. The commands:

* ``ingest``: the demo DICOM folder into a fresh run directory, cache off (decode,
  validate, pseudonymise, properties, publish);
* ``train``: BreastMNIST (``../shared/data/breastmnist.npz``) ingested once per tree,
  then ``medaudit train --epochs E --holdout-split test`` (5 folds). Short epochs make
  the per-stage overhead of publishing a larger share of the run, so the ratio is a
  stricter test than a full 40-epoch run would be.

Prints per command the median of the per-round ratios new / old (wall and CPU) and
writes ``bench/results/reliability_overhead.json``. Goal: <= 1.05.

Usage: ``python bench/bench_reliability_overhead.py --old-tree /tmp/pre14 [--new-tree DIR] [--rounds 3]
[--epochs 4] [--n-patients 300]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
NPZ = ROOT.parent / "shared" / "data" / "breastmnist.npz"


def _run(tree: Path, args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run ``python -m medaudit ARGS`` with ``tree`` first on the path: (wall s, CPU s)."""
    env = {**env, "PYTHONPATH": str(tree)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "medaudit", "-q", *args], env=env, cwd=tree,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{tree}: medaudit {' '.join(args)} exited {proc.returncode}:\n"
                           f"{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old-tree", type=Path, required=True, help="checkout of the baseline commit")
    ap.add_argument("--new-tree", type=Path, default=ROOT,
                    help="checkout of the code to measure (default: this tree); pin a commit "
                         "so that later changes (e.g. training defaults) do not enter the ratio")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--n-patients", type=int, default=300, help="demo size for the ingest command")
    ap.add_argument("--npz", type=Path, default=NPZ)
    ap.add_argument("--commands", default="ingest,train", help="which commands to time")
    args = ap.parse_args(argv)
    trees = {"new": args.new_tree.resolve(), "old": args.old_tree.resolve()}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        env = {**os.environ, "MEDAUDIT_SECRET": "b" * 40, "PYTHONHASHSEED": "0"}
        sys.path.insert(0, str(ROOT))
        from ingest.demo import DemoConfig, generate_demo

        demo = generate_demo(tmp / "demo", DemoConfig(n_patients=args.n_patients))
        commands = args.commands.split(",")
        base_runs = {}
        for name, tree in trees.items() if "train" in commands else ():  # BreastMNIST ingested once per tree
            base_runs[name] = tmp / f"bm-{name}"
            _run(tree, ["ingest", "--npz", str(args.npz), "--no-cache", "--out",
                        str(base_runs[name])], env)
        times: dict[str, dict[str, list[tuple[float, float]]]] = {
            cmd: {"new": [], "old": []} for cmd in commands}
        for r in range(args.rounds):
            order = ["new", "old"] if r % 2 == 0 else ["old", "new"]
            for name in order:
                tree = trees[name]
                if "ingest" in commands:
                    out = tmp / f"ingest-{name}-{r}"
                    times["ingest"][name].append(_run(tree, [
                        "ingest", "--dicom-dir", str(demo.dicom_dir), "--labels",
                        str(demo.labels_csv), "--no-cache", "--out", str(out)], env))
                    shutil.rmtree(out)
                if "train" in commands:
                    run = tmp / f"train-{name}-{r}"
                    shutil.copytree(base_runs[name], run)
                    times["train"][name].append(_run(tree, [
                        "train", str(run), "--epochs", str(args.epochs), "--holdout-split", "test",
                        "--seed", "0"], env))
                    shutil.rmtree(run)
                print(f"round {r + 1} {name}: " + ", ".join(
                    f"{c} {times[c][name][-1][0]:.1f} s" for c in commands), flush=True)
    summary = {}
    print(f"\n{'command':8s} {'old wall':>9s} {'new wall':>9s} {'ratio wall':>11s} "
          f"{'old cpu':>8s} {'new cpu':>8s} {'ratio cpu':>10s}")
    for cmd, t in times.items():
        wall_ratios = [n[0] / o[0] for n, o in zip(t["new"], t["old"], strict=True)]
        cpu_ratios = [n[1] / o[1] for n, o in zip(t["new"], t["old"], strict=True)]
        row = {
            "old_wall_s": [o[0] for o in t["old"]], "new_wall_s": [n[0] for n in t["new"]],
            "old_cpu_s": [o[1] for o in t["old"]], "new_cpu_s": [n[1] for n in t["new"]],
            "median_ratio_wall": statistics.median(wall_ratios),
            "median_ratio_cpu": statistics.median(cpu_ratios),
            "ratios_wall": wall_ratios, "ratios_cpu": cpu_ratios,
        }
        summary[cmd] = row
        print(f"{cmd:8s} {statistics.median(row['old_wall_s']):9.1f} "
              f"{statistics.median(row['new_wall_s']):9.1f} {row['median_ratio_wall']:11.3f} "
              f"{statistics.median(row['old_cpu_s']):8.1f} {statistics.median(row['new_cpu_s']):8.1f} "
              f"{row['median_ratio_cpu']:10.3f}")
    print("goal: ratio <= 1.05 (new / old, median of within-round ratios)")
    RESULTS.mkdir(exist_ok=True)
    record = {"rounds": args.rounds, "epochs": args.epochs, "n_patients": args.n_patients,
              "old_tree": str(args.old_tree), "new_tree": str(args.new_tree), "machine": platform.platform(),
              "cpu_count": os.cpu_count(), "load_avg_end": os.getloadavg(), "commands": summary}
    (RESULTS / "reliability_overhead.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
