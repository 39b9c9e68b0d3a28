"""Scale-out benchmark: ``--executor ray`` against ``--executor local`` on this machine,
a simulated two-node Ray cluster, and per-image costs at 224 px for the wall-time model.

1. **Overhead on one machine.** The same run directory (the demo dataset, and
   BreastMNIST if its npz is present) is trained end to end by
   :func:`training.train_run` with each executor, in alternated rounds:

   - ``local jobs=1`` (one process, 2 threads) vs ``ray cpus_per_fold=2`` (one fold
     at a time, 2 threads): the same parallelism;
   - ``local jobs=2`` (two processes, 1 thread each) vs ``ray cpus_per_fold=1`` (two
     folds at a time, 1 thread each): the same parallelism.

   Each Ray time includes starting and stopping a local Ray instance (what
   ``medaudit train --executor ray`` does). Arrays of paired variants are compared
   (bitwise, else the largest absolute difference).
2. **Two nodes.** ``ray.cluster_utils.Cluster`` with two nodes of 1 CPU each; four
   folds as Ray tasks; the node of every fold is read from its ``worker.json``.
3. **Per-image cost at 224 px** of the default model (training step and scoring,
   this CPU), the input of the wall-time estimate in ``docs/scale-out.md``.

Usage::

    .venv/bin/python bench/bench_scale_out.py                   # all parts
    .venv/bin/python bench/bench_scale_out.py --rounds 2 --skip-breastmnist
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from audit.rundir import RunDir
from training import TrainConfig, train_run
from training.executors import WORKER_FILE, LocalExecutor, RayExecutor
from training.fold_outputs import fold_dir

RESULTS = Path(__file__).resolve().parent / "results"
NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "breastmnist.npz"
ARRAYS = ("oof/pred_probs", "oof/logits", "oof/embeddings")

#: (name, executor factory, threads per fold); pairs share their parallelism.
VARIANTS: list[tuple[str, Any, int]] = [
    ("local jobs=1", lambda: LocalExecutor(), 2),
    ("ray cpus_per_fold=2", lambda: RayExecutor(cpus_per_fold=2), 2),
    ("local jobs=2", lambda: LocalExecutor(), 1),
    ("ray cpus_per_fold=1", lambda: RayExecutor(cpus_per_fold=1), 1),
]
PAIRS = [("local jobs=1", "ray cpus_per_fold=2"), ("local jobs=2", "ray cpus_per_fold=1")]


def _reset(run: RunDir) -> None:
    for name in (".work", "oof", "train", "findings.json"):
        p = run.path / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _train(run: RunDir, base: TrainConfig, name: str, factory: Any, threads: int
           ) -> tuple[float, dict[str, np.ndarray]]:
    _reset(run)
    jobs = 2 if name == "local jobs=2" else 1
    cfg = base.replace(jobs=jobs, threads=threads)
    t0 = time.perf_counter()
    train_run(run, cfg, executor=factory())
    seconds = time.perf_counter() - t0
    return seconds, {a: run.read_array(a) for a in ARRAYS}


def _compare(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, Any]:
    same = all(np.array_equal(a[k], b[k]) for k in ARRAYS)
    diff = max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in ARRAYS)
    return {"bitwise_equal": same, "max_abs_diff": diff}


def overhead(run: RunDir, base: TrainConfig, rounds: int) -> dict[str, Any]:
    """Alternated rounds of every variant on one run; ratios ray / local per pair."""
    times: dict[str, list[float]] = {n: [] for n, _, _ in VARIANTS}
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for r in range(rounds):
        order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
        for name, factory, threads in order:
            s, arr = _train(run, base, name, factory, threads)
            times[name].append(s)
            arrays.setdefault(name, arr)
            print(f"  round {r + 1}: {name:<22} {s:7.1f} s", flush=True)
    out: dict[str, Any] = {"seconds": times, "pairs": {}}
    for local, ray in PAIRS:
        ratios = [b / a for a, b in zip(times[local], times[ray], strict=True)]
        out["pairs"][f"{ray} / {local}"] = {
            "ratio_median": float(np.median(ratios)), "ratios": ratios,
            **_compare(arrays[local], arrays[ray]),
        }
    same_threads = _compare(arrays["local jobs=1"], arrays["local jobs=2"])
    out["local 2 threads vs 1 thread"] = same_threads
    return out


def two_nodes(run: RunDir, base: TrainConfig) -> dict[str, Any]:
    """Four folds on a simulated cluster of two 1-CPU nodes; the node of every fold."""
    import ray
    from ray.cluster_utils import Cluster

    _reset(run)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, include_dashboard=False, logging_level="WARNING")
    try:
        nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
        cfg = base.replace(folds=4, threads=1)
        t0 = time.perf_counter()
        summary = train_run(run, cfg, executor=RayExecutor(cpus_per_fold=1))
        seconds = time.perf_counter() - t0
    finally:
        ray.shutdown()
        cluster.shutdown()
    folds = []
    for k in range(cfg.folds):
        info = json.loads((fold_dir(run, k) / WORKER_FILE).read_text(encoding="utf-8"))
        folds.append({"fold": k, "node_id": info["node_id"], "pid": info["pid"],
                      "seconds": summary.folds[k].seconds})
    used = sorted({f["node_id"] for f in folds})
    return {"nodes": nodes, "folds": folds, "nodes_used": len(used), "seconds": seconds,
            "oof_auc": summary.oof_auc.to_dict()}


def per_image_cost(model: str, size: int = 224, batch: int = 16, steps: int = 3) -> dict[str, Any]:
    """Seconds per image of one training step and of scoring at ``size`` px (this CPU)."""
    import torch

    from training.device import resolve_device_setup
    from training.models import create_model

    setup = resolve_device_setup(device="cpu", precision="auto")
    net = create_model(model, num_classes=2, in_chans=1, pretrained=False).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.rand(batch, 1, size, size)
    y = torch.randint(0, 2, (batch,))
    if setup.channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)

    def step() -> None:
        with setup.autocast():
            loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    train_s = (time.perf_counter() - t0) / (steps * batch)
    net.eval()
    with torch.inference_mode(), setup.autocast():
        net(x)
        t0 = time.perf_counter()
        for _ in range(steps):
            net(x)
    score_s = (time.perf_counter() - t0) / (steps * batch)
    return {"model": model, "size": size, "batch": batch, "threads": torch.get_num_threads(),
            "precision": setup.precision, "train_seconds_per_image": train_s,
            "score_seconds_per_image": score_s}


def _demo_run(tmp: Path, n_patients: int) -> RunDir:
    out = tmp / "demo"
    cmd = [sys.executable, "-m", "medaudit", "-q", "demo", "--out", str(out), "--data-dir",
           str(tmp / "demo-data"), "--n-patients", str(n_patients), "--no-train", "--no-audit",
           "--no-report", "--no-cache"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return RunDir(out)


def _breastmnist_run(tmp: Path) -> RunDir:
    from ingest.sources import IngestOptions, ingest_npz

    return ingest_npz(NPZ, tmp / "breastmnist",
                      IngestOptions(image_size=28, use_cache=False, overwrite=True)).run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--n-patients", type=int, default=300, help="demo patients (default 300)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--model", default="resnet10t")
    p.add_argument("--skip-breastmnist", action="store_true")
    p.add_argument("--skip-overhead", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS / "scale_out.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("MEDAUDIT_SECRET", "bench-scale-out-secret-0123456789abcdef")
    base = TrainConfig(model=args.model, folds=args.folds, epochs=args.epochs, quiet=True,
                       patience=0, mixup=0.0)
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "machine": platform.platform(),
        "cpus": os.cpu_count(), "config": base.to_dict(), "rounds": args.rounds,
    }
    with tempfile.TemporaryDirectory(prefix="bench_scale_out_") as tmp_s:
        tmp = Path(tmp_s)
        demo = _demo_run(tmp, args.n_patients)
        result["demo_rows"] = len(demo.read_manifest())
        if not args.skip_overhead:
            print(f"demo ({result['demo_rows']} images), {args.folds} folds x {args.epochs} epochs")
            result["demo"] = overhead(demo, base, args.rounds)
            if not args.skip_breastmnist and NPZ.is_file():
                bm = _breastmnist_run(tmp)
                print(f"BreastMNIST ({len(bm.read_manifest())} images)")
                result["breastmnist"] = overhead(bm, base.replace(holdout_split="test"), args.rounds)
        print("two simulated nodes of 1 CPU, 4 folds")
        result["two_nodes"] = two_nodes(demo, base)
        for f in result["two_nodes"]["folds"]:
            print(f"  fold {f['fold']}: node {f['node_id'][:8]} pid {f['pid']} {f['seconds']:.1f} s")
    print("per-image cost at 224 px")
    result["per_image_224"] = per_image_cost(args.model)
    print(json.dumps(result["per_image_224"], indent=1))
    for key in ("demo", "breastmnist"):
        for pair, v in result.get(key, {}).get("pairs", {}).items():
            print(f"{key}: {pair}: x{v['ratio_median']:.3f} (rounds {[round(r, 3) for r in v['ratios']]}), "
                  f"bitwise {v['bitwise_equal']}, max |diff| {v['max_abs_diff']:.3g}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
