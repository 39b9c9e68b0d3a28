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
4. **Scoring new data** (``--predict``, alone): a run trained on BreastMNIST scores
   the BreastMNIST images tiled ``--predict-copies`` times with
   :func:`training.deploy.predict_run`, in alternated rounds: ``local threads=1``,
   ``ray cpus_per_fold=1`` (blocks of rows, two tasks at once, 1 thread each: the
   same numbers as the local 1-thread path, checked bitwise) and ``local threads=2``
   (the same cores in one process). Each Ray time includes starting and stopping Ray.

Usage::

    .venv/bin/python bench/bench_scale_out.py                   # parts 1-3
    .venv/bin/python bench/bench_scale_out.py --rounds 2 --skip-breastmnist
    .venv/bin/python bench/bench_scale_out.py --predict         # part 4 only
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


def _train(
    run: RunDir, base: TrainConfig, name: str, factory: Any, threads: int
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
            "ratio_median": float(np.median(ratios)),
            "ratios": ratios,
            **_compare(arrays[local], arrays[ray]),
        }
    if "local jobs=1" in arrays and "local jobs=2" in arrays:
        out["local 2 threads vs 1 thread"] = _compare(
            arrays["local jobs=1"], arrays["local jobs=2"]
        )
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
        folds.append(
            {
                "fold": k,
                "node_id": info["node_id"],
                "pid": info["pid"],
                "seconds": summary.folds[k].seconds,
            }
        )
    used = sorted({f["node_id"] for f in folds})
    return {
        "nodes": nodes,
        "folds": folds,
        "nodes_used": len(used),
        "seconds": seconds,
        "oof_auc": summary.oof_auc.to_dict(),
    }


def per_image_cost(
    model: str, size: int = 224, batch: int = 16, steps: int = 3, device: str = "cpu"
) -> dict[str, Any]:
    """Seconds per image of one training step and of scoring at ``size`` px on ``device``."""
    import torch

    from training.device import resolve_device_setup
    from training.models import create_model

    setup = resolve_device_setup(device=device, precision="auto")
    dev = torch.device(setup.device)
    net = create_model(model, num_classes=2, in_chans=1).to(dev).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.rand(batch, 1, size, size, device=dev)
    y = torch.randint(0, 2, (batch,), device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
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
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    train_s = (time.perf_counter() - t0) / (steps * batch)
    net.eval()
    with torch.inference_mode(), setup.autocast():
        net(x)
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            net(x)
        sync()
    score_s = (time.perf_counter() - t0) / (steps * batch)
    return {
        "model": model,
        "size": size,
        "batch": batch,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "precision": setup.precision,
        "train_seconds_per_image": train_s,
        "score_seconds_per_image": score_s,
    }


def _boot_task(y: np.ndarray, p: np.ndarray, n_boot: int, seed: int) -> float:
    from audit.metrics import auc_score
    from audit.stats import bootstrap_ci

    return bootstrap_ci(auc_score, y, p, n_boot=n_boot, seed=seed).low


def _knn_task(x: np.ndarray, rows: np.ndarray, k: int) -> int:
    from audit._neighbors import knn

    return int(knn(x[rows], k, backend="ivf", n_threads=1).indices.shape[0])


def audit_heavy(sizes: list[int], knn_sizes: list[int], n_boot: int) -> dict[str, Any]:
    """Whether Ray pays for the audit's heavy loops on this machine (2 tasks of 1 CPU).

    Bootstrap: ``bootstrap_ci(auc_score)`` with ``n_boot`` replicates in this process
    against two Ray tasks of ``n_boot / 2`` replicates each (the same work, split).
    Neighbours: ``knn`` (faiss inverted file, 64-d, k=10) over two groups (e.g. two
    fold models' embeddings) in this process with 2 threads against one Ray task of
    1 thread per group. Ray's start-up is timed apart (on a cluster it is running).
    """
    import ray

    from audit._neighbors import knn
    from audit.metrics import auc_score
    from audit.stats import bootstrap_ci

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    out: dict[str, Any] = {"ray_init_seconds": time.perf_counter() - t0, "bootstrap": [], "knn": []}
    boot, near = ray.remote(_boot_task), ray.remote(_knn_task)
    warm = (np.array([0, 1, 0, 1]), np.tile([0.5, 0.5], (4, 1)))
    ray.get([boot.remote(*warm, 1, 0) for _ in range(2)])  # start both workers
    try:
        for n in sizes:
            y = rng.integers(0, 2, n)
            p1 = np.clip(y * 0.3 + rng.normal(0.35, 0.2, n), 0, 1)
            p = np.column_stack([1 - p1, p1])  # (N, 2) as auc_score takes it
            b = max(2, n_boot if n <= 100_000 else n_boot // 5)
            t0 = time.perf_counter()
            bootstrap_ci(auc_score, y, p, n_boot=b, seed=0)
            serial = time.perf_counter() - t0
            t0 = time.perf_counter()
            yr, pr = ray.put(y), ray.put(p)
            ray.get([boot.remote(yr, pr, b // 2, s) for s in (1, 2)])
            par = time.perf_counter() - t0
            out["bootstrap"].append(
                {
                    "n": n,
                    "n_boot": b,
                    "serial_seconds": serial,
                    "ray_seconds": par,
                    "speedup": serial / par,
                }
            )
            print(
                f"  bootstrap N={n:>9,} B={b}: serial {serial:7.1f} s, ray 2 tasks "
                f"{par:7.1f} s (x{serial / par:.2f})",
                flush=True,
            )
        for n in knn_sizes:
            x = rng.normal(size=(n, 64)).astype(np.float32)
            g = (np.arange(n) % 2).astype(np.int64)
            t0 = time.perf_counter()
            knn(x, 10, groups=g, backend="ivf", n_threads=2)
            serial = time.perf_counter() - t0
            t0 = time.perf_counter()
            xr = ray.put(x)
            ray.get([near.remote(xr, np.flatnonzero(g == i), 10) for i in (0, 1)])
            par = time.perf_counter() - t0
            out["knn"].append(
                {"n": n, "serial_seconds": serial, "ray_seconds": par, "speedup": serial / par}
            )
            print(
                f"  knn N={n:>9,}: one process 2 threads {serial:7.1f} s, ray 2 tasks "
                f"{par:7.1f} s (x{serial / par:.2f})",
                flush=True,
            )
    finally:
        ray.shutdown()
    return out


#: (name, executor factory, torch threads) of the scoring benchmark.
PREDICT_VARIANTS: list[tuple[str, Any, int]] = [
    ("local threads=1", lambda: LocalExecutor(), 1),
    ("ray cpus_per_fold=1", lambda: RayExecutor(cpus_per_fold=1), 1),
    ("local threads=2", lambda: LocalExecutor(), 2),
]


def predict_case(tmp: Path, base: TrainConfig, copies: int, rounds: int) -> dict[str, Any]:
    """``predict_run`` with each executor on the same trained run and new images."""
    from ingest.sources import IngestOptions, ingest_npz
    from training.deploy import predict_run

    trained = _breastmnist_run(tmp)
    t0 = time.perf_counter()
    train_run(trained, base.replace(threads=2))
    train_s = time.perf_counter() - t0
    src = np.load(NPZ)
    images = np.concatenate([src[f"{s}_images"] for s in ("train", "val", "test")])
    labels = np.concatenate([src[f"{s}_labels"] for s in ("train", "val", "test")])
    npz = tmp / "new.npz"
    np.savez(npz, test_images=np.tile(images, (copies, 1, 1)), test_labels=np.tile(labels, copies))
    opts = IngestOptions(image_size=28, use_cache=False, overwrite=True, require_labels=False)
    new = ingest_npz(npz, tmp / "new", opts).run
    n = new.n_samples()
    print(f"scoring {n} images ({copies} x BreastMNIST) with {base.folds} folds of {base.model}")
    times: dict[str, list[float]] = {v[0]: [] for v in PREDICT_VARIANTS}
    score_s: dict[str, list[float]] = {v[0]: [] for v in PREDICT_VARIANTS}
    arrays: dict[str, dict[str, np.ndarray]] = {}
    blocks = 0
    for r in range(rounds):
        order = PREDICT_VARIANTS if r % 2 == 0 else PREDICT_VARIANTS[::-1]
        for name, factory, threads in order:
            t0 = time.perf_counter()
            summary = predict_run(trained, new, threads=threads, executor=factory())
            seconds = time.perf_counter() - t0
            times[name].append(seconds)
            score_s[name].append(summary.record["score_seconds"])
            blocks = max(blocks, summary.record["executor"]["blocks"])
            arrays.setdefault(name, {a: new.read_array(a) for a in ARRAYS})
            print(f"  round {r + 1}: {name:<20} {seconds:7.1f} s", flush=True)
    ray_name = PREDICT_VARIANTS[1][0]
    out: dict[str, Any] = {
        "n_images": n,
        "copies": copies,
        "train_seconds": train_s,
        "ray_blocks": blocks,
        "seconds": times,
        "score_seconds": score_s,
        "pairs": {},
    }
    for local in ("local threads=1", "local threads=2"):
        ratios = [b / a for a, b in zip(times[local], times[ray_name], strict=True)]
        out["pairs"][f"{ray_name} / {local}"] = {
            "ratio_median": float(np.median(ratios)),
            "ratios": ratios,
            **_compare(arrays[local], arrays[ray_name]),
        }
    return out


def _header(base: TrainConfig, rounds: int) -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "config": base.to_dict(),
        "rounds": rounds,
        "load_average_start": os.getloadavg(),
    }


def _print_pairs(key: str, pairs: dict[str, Any]) -> None:
    for pair, v in pairs.items():
        print(
            f"{key}: {pair}: x{v['ratio_median']:.3f} (rounds {[round(r, 3) for r in v['ratios']]}), "
            f"bitwise {v['bitwise_equal']}, max |diff| {v['max_abs_diff']:.3g}"
        )


def _demo_run(tmp: Path, n_patients: int) -> RunDir:
    out = tmp / "demo"
    cmd = [
        sys.executable,
        "-m",
        "medaudit",
        "-q",
        "demo",
        "--out",
        str(out),
        "--data-dir",
        str(tmp / "demo-data"),
        "--n-patients",
        str(n_patients),
        "--no-train",
        "--no-audit",
        "--no-report",
        "--no-cache",
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return RunDir(out)


def _breastmnist_run(tmp: Path) -> RunDir:
    from ingest.sources import IngestOptions, ingest_npz

    return ingest_npz(
        NPZ, tmp / "breastmnist", IngestOptions(image_size=28, use_cache=False, overwrite=True)
    ).run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--n-patients", type=int, default=300, help="demo patients (default 300)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--model", default="resnet10t")
    p.add_argument("--skip-breastmnist", action="store_true")
    p.add_argument("--skip-overhead", action="store_true")
    p.add_argument("--skip-demo", action="store_true", help="no demo overhead rounds")
    p.add_argument("--skip-two-nodes", action="store_true")
    p.add_argument(
        "--one-thread-only",
        action="store_true",
        help="only the 1-thread pair (local jobs=2 vs ray cpus_per_fold=1)",
    )
    p.add_argument("--out", type=Path, default=RESULTS / "scale_out.json")
    p.add_argument(
        "--audit-heavy",
        action="store_true",
        help="only measure Ray on the audit's bootstrap and neighbour search "
        "(writes results/scale_out_audit.json)",
    )
    p.add_argument("--n-boot", type=int, default=200)
    p.add_argument(
        "--per-image-only",
        action="store_true",
        help="only the per-image cost at 224 px (e.g. on a GPU node: --device cuda)",
    )
    p.add_argument("--device", default="cpu", help="device of the per-image cost")
    p.add_argument(
        "--predict",
        action="store_true",
        help="only the scoring benchmark (writes results/scale_out_predict.json)",
    )
    p.add_argument("--predict-copies", type=int, default=8, help="BreastMNIST copies to score")
    args = p.parse_args(argv)
    if args.one_thread_only:
        VARIANTS[:] = [v for v in VARIANTS if v[2] == 1]
        PAIRS[:] = [q for q in PAIRS if q[0] == "local jobs=2"]
    if args.per_image_only:
        print(json.dumps(per_image_cost(args.model, device=args.device), indent=1))
        return 0
    if args.audit_heavy:
        res = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            **audit_heavy([10_000, 100_000, 1_000_000], [100_000, 1_000_000], args.n_boot),
        }
        out = args.out.with_name("scale_out_audit.json")
        out.write_text(json.dumps(res, indent=1), encoding="utf-8")
        print(f"wrote {out}")
        return 0
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("MEDAUDIT_SECRET", "bench-scale-out-secret-0123456789abcdef")
    base = TrainConfig(
        model=args.model, folds=args.folds, epochs=args.epochs, quiet=True, patience=0, mixup=0.0
    )
    if args.predict:
        res = _header(base, args.rounds)
        with tempfile.TemporaryDirectory(prefix="bench_scale_out_") as tmp_s:
            res.update(predict_case(Path(tmp_s), base, args.predict_copies, args.rounds))
        res["load_average_end"] = os.getloadavg()
        _print_pairs("predict", res["pairs"])
        out = args.out.with_name("scale_out_predict.json")
        out.write_text(json.dumps(res, indent=1), encoding="utf-8")
        print(f"wrote {out}")
        return 0
    result = _header(base, args.rounds)
    with tempfile.TemporaryDirectory(prefix="bench_scale_out_") as tmp_s:
        tmp = Path(tmp_s)
        need_demo = not (args.skip_demo or args.skip_overhead) or not args.skip_two_nodes
        demo = _demo_run(tmp, args.n_patients) if need_demo else None
        if demo is not None:
            result["demo_rows"] = len(demo.read_manifest())
        if not args.skip_overhead:
            if demo is not None and not args.skip_demo:
                print(
                    f"demo ({result['demo_rows']} images), {args.folds} folds x "
                    f"{args.epochs} epochs"
                )
                result["demo"] = overhead(demo, base, args.rounds)
            if not args.skip_breastmnist and NPZ.is_file():
                bm = _breastmnist_run(tmp)
                print(f"BreastMNIST ({len(bm.read_manifest())} images)")
                result["breastmnist"] = overhead(
                    bm, base.replace(holdout_split="test"), args.rounds
                )
        if demo is not None and not args.skip_two_nodes:
            print("two simulated nodes of 1 CPU, 4 folds")
            result["two_nodes"] = two_nodes(demo, base)
            for f in result["two_nodes"]["folds"]:
                print(
                    f"  fold {f['fold']}: node {f['node_id'][:8]} pid {f['pid']} "
                    f"{f['seconds']:.1f} s"
                )
    print("per-image cost at 224 px")
    result["per_image_224"] = per_image_cost(args.model, device=args.device)
    print(json.dumps(result["per_image_224"], indent=1))
    for key in ("demo", "breastmnist"):
        _print_pairs(key, result.get(key, {}).get("pairs", {}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
