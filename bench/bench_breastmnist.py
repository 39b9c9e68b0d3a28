"""Quality benchmark on real data: BreastMNIST (MedMNIST v2), official test split held out.

Builds a run directory from ``breastmnist.npz`` (never copied into the repo),
trains ``medaudit``'s default CPU configuration on train+val with
``holdout_split='test'`` (patient-grouped K folds; the test split is scored by
the fold ensemble), and trains a bare timm ResNet-18 baseline on the same folds
and rows in the same process (plain AdamW, cross-entropy, no augmentation, no
class weighting, no early stopping, last-epoch weights, same epochs and
precision, fold ensemble on the test split). Published MedMNIST v2 figures are
printed alongside.

``--tune`` prints only out-of-fold and inner-validation figures (the test split
metrics are hidden): settings were chosen in that mode, never on the test split.

Usage::

    .venv/bin/python bench/bench_breastmnist.py                # full benchmark
    .venv/bin/python bench/bench_breastmnist.py --tune --epochs 30 --model resnet18
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from audit.metrics import accuracy_with_ci, auc_with_ci
from audit.rundir import RunDir
from training import TrainConfig, train_run
from training.dataset import ImageCache, Normalization, prepare_batch
from training.device import resolve_device_setup
from training.models import create_model
from training.reproducibility import fold_seed, seed_everything
from training.splits import HOLDOUT_FOLD

NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "breastmnist.npz"
RESULTS = Path(__file__).resolve().parent / "results"

#: MedMNIST v2 (Yang et al., Scientific Data 2023), Table: BreastMNIST test AUC / ACC.
PUBLISHED = {
    "MedMNIST v2 ResNet-18 (28)": (0.901, 0.863),
    "MedMNIST v2 ResNet-18 (224)": (0.891, 0.833),
    "MedMNIST v2 ResNet-50 (28)": (0.857, 0.812),
    "MedMNIST v2 auto-sklearn": (0.836, 0.803),
    "MedMNIST v2 AutoKeras": (0.871, 0.831),
    "MedMNIST v2 Google AutoML Vision": (0.919, 0.861),
}


def build_run(npz: Path, out: Path, size: int) -> RunDir:
    """A run directory from the MedMNIST npz: (N, 1, size, size) uint8, split column."""
    try:
        from ingest.sources import IngestOptions, ingest_npz

        summary = ingest_npz(npz, out, IngestOptions(image_size=size, use_cache=False, overwrite=True))
        return summary.run
    except ImportError:
        pass
    data = np.load(npz, allow_pickle=False)
    imgs, rows = [], []
    for split in ("train", "val", "test"):
        x = torch.from_numpy(data[f"{split}_images"]).float()[:, None] / 255.0
        if size != x.shape[-1]:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        imgs.append((x.clamp(0, 1) * 255).round().to(torch.uint8).numpy())
        for i, y in enumerate(data[f"{split}_labels"].reshape(-1)):
            rows.append({"sample_id": f"{split}-{i:05d}", "label": int(y),
                         "label_name": ["malignant", "normal/benign"][int(y)],
                         "patient_key": f"{split}-{i:05d}", "split": split})
    run = RunDir(out)
    run.write_manifest(pd.DataFrame(rows))
    run.write_array("images", np.concatenate(imgs))
    run.update_run_json({"classes": ["malignant", "normal/benign"]})
    return run


def _baseline_fold(run_path: str, f: int, config: TrainConfig, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """One fold of the bare baseline: (out-of-fold probs, holdout-split probs)."""
    torch.set_num_threads(threads)
    run = RunDir(run_path)
    folds = run.read_array("oof/folds")
    labels = run.read_manifest()["label"].to_numpy(np.int64)
    k = len(run.class_names())
    cache = ImageCache(run)
    setup = resolve_device_setup(device=config.device, precision=config.precision)
    norm = Normalization((0.5,) * cache.channels, (0.25,) * cache.channels)
    seed = fold_seed(config.seed, f)
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    train = np.flatnonzero((folds != f) & (folds != HOLDOUT_FOLD))
    model = create_model("resnet18", k, cache.channels).to(memory_format=setup.memory_format)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(config.epochs):
        model.train()
        order = train[torch.randperm(len(train), generator=gen).numpy()]
        for i in range(0, len(order) - config.batch_size + 1, config.batch_size):
            rows = order[i : i + config.batch_size]
            x = prepare_batch(cache.read(rows), setup=setup, norm=norm, image_size=config.image_size)
            with setup.autocast():
                out = model(x)
            loss = F.cross_entropy(out.float(), torch.from_numpy(labels[rows]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()

    @torch.no_grad()
    def predict(rows: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(rows), 256):
            x = prepare_batch(cache.read(rows[i : i + 256]), setup=setup, norm=norm,
                              image_size=config.image_size)
            with setup.autocast():
                out.append(torch.softmax(model(x).float(), 1))
        return torch.cat(out).numpy()

    return predict(np.flatnonzero(folds == f)), predict(np.flatnonzero(folds == HOLDOUT_FOLD))


def bare_baseline(run: RunDir, config: TrainConfig) -> dict[str, object]:
    """A plain timm ResNet-18 loop on the same folds, rows, epochs, batch size and precision.

    Folds run in ``config.jobs`` spawned processes like ours (same threads per process).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    t0 = time.perf_counter()
    folds = run.read_array("oof/folds")
    labels = run.read_manifest()["label"].to_numpy(np.int64)
    n_folds = int(folds.max()) + 1
    jobs = max(1, config.jobs)
    threads = config.threads or max(1, (os.cpu_count() or 1) // jobs)
    if jobs == 1:
        parts = [_baseline_fold(str(run.path), f, config, threads) for f in range(n_folds)]
    else:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            parts = list(pool.map(_baseline_fold, [str(run.path)] * n_folds, range(n_folds),
                                  [config] * n_folds, [threads] * n_folds))
    probs = np.zeros((len(labels), int(parts[0][0].shape[1])), np.float32)
    for f, (oof, _) in enumerate(parts):
        probs[folds == f] = oof
    hold = np.flatnonzero(folds == HOLDOUT_FOLD)
    probs[hold] = np.mean([h for _, h in parts], axis=0)
    cv = np.flatnonzero(folds != HOLDOUT_FOLD)
    return {
        "oof_auc": auc_with_ci(labels[cv], probs[cv]).to_dict(),
        "oof_acc": accuracy_with_ci(labels[cv], probs[cv]).to_dict(),
        "test_auc": auc_with_ci(labels[hold], probs[hold]).to_dict(),
        "test_acc": accuracy_with_ci(labels[hold], probs[hold]).to_dict(),
        "seconds": time.perf_counter() - t0,
        "recipe": "timm resnet18 from scratch, AdamW lr 1e-3 wd 1e-4, plain cross-entropy, no "
                  "augmentation, no class weighting, no early stopping or EMA, last epoch, "
                  "same folds/rows/epochs/batch size/precision, fold-ensemble on test",
    }


def _ci(d: dict[str, object]) -> str:
    v, lo, hi = d["estimate"], d["ci_low"], d["ci_high"]
    if v is None:
        return "n/a"
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--npz", type=Path, default=NPZ)
    ap.add_argument("--workdir", type=Path, default=None, help="where the run directory goes (default: a temp dir)")
    ap.add_argument("--cache-size", type=int, default=64,
                    help="side of the ingested cache (default 64, the `medaudit ingest` default; 28 = native)")
    ap.add_argument("--tune", action="store_true", help="hide test-split metrics (for choosing settings)")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--name", default="breastmnist")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="TrainConfig override, e.g. --set epochs=30 --set model=resnet10t")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.npz.is_file():
        print(f"BreastMNIST npz not found at {args.npz}", file=sys.stderr)
        return 2
    overrides: dict[str, object] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value) if value[:1] in "0123456789-[{tfn" else value
    config = TrainConfig(holdout_split="test", quiet=True).replace(**overrides)
    default_config = not set(overrides) - {"jobs"}  # jobs changes how, not what, is computed
    with tempfile.TemporaryDirectory() as tmp:
        base = args.workdir or Path(tmp)
        run = build_run(args.npz, base / "breastmnist_run", args.cache_size)
        t0 = time.perf_counter()
        summary = train_run(run, config)
        ours_seconds = time.perf_counter() - t0
        rec = summary.record
        hist = run.read_json("train/history.json")
        inner = [f.get("inner_val_auc") for f in hist["folds"]]
        ours = {
            "oof_auc": rec["oof_auc"], "oof_acc": rec["oof_acc"],
            "test_auc": rec["holdout"]["auc"], "test_acc": rec["holdout"]["acc"],
            "seconds": ours_seconds, "fold_auc": rec["fold_auc"], "inner_val_auc": inner,
            "best_epochs": [f["best_epoch"] for f in hist["folds"]],
            "setup": rec["setup"],
        }
        baseline = None if args.no_baseline or args.tune else bare_baseline(run, config)
        n_cv, n_test = rec["n_cv_rows"], rec["n_holdout_rows"]

    cores = torch.get_num_threads()
    print(f"\nBreastMNIST: {n_cv} train+val images in {config.folds} folds, {n_test} test images; "
          f"cache {args.cache_size}px, model input {config.image_size or args.cache_size}px, "
          f"{cores} threads")
    print(f"config: {json.dumps(overrides) if overrides else 'defaults'}; "
          f"precision {ours['setup']['precision']}")
    if args.tune:
        print(f"{'method':36s} {'OOF AUC [95% CI]':26s} {'OOF ACC':8s} {'time':>7s}")
        print(f"{'medaudit (' + config.model + ')':36s} {_ci(ours['oof_auc']):26s} "
              f"{ours['oof_acc']['estimate']:.3f}    {ours['seconds']:6.0f}s")
        print("fold AUC", [round(a, 3) for a in ours["fold_auc"]], "inner-val AUC",
              [None if a is None else round(a, 3) for a in inner], "best epochs", ours["best_epochs"])
    else:
        print(f"{'method':36s} {'test AUC [95% CI]':26s} {'test ACC [95% CI]':26s} "
              f"{'OOF AUC [95% CI]':26s} {'train time':>10s}")
        label = "default" if default_config else "--set " + ",".join(
            f"{k}={v}" for k, v in overrides.items() if k != "jobs")
        rows = [(f"medaudit {label} ({config.model})", ours)]
        if baseline is not None:
            rows.append(("bare timm ResNet-18, same folds", baseline))
        for name, r in rows:
            print(f"{name:36s} {_ci(r['test_auc']):26s} {_ci(r['test_acc']):26s} "
                  f"{_ci(r['oof_auc']):26s} {r['seconds']:9.0f}s")
        for name, (auc, acc) in PUBLISHED.items():
            print(f"{name:36s} {auc:<26.3f} {acc:<26.3f} {'-':26s} {'-':>10s}")
    out = {
        "benchmark": "breastmnist", "tune_mode": args.tune, "config": config.to_dict(),
        "overrides": overrides, "cache_size": args.cache_size, "n_cv": n_cv, "n_test": n_test,
        "threads": cores, "ours": ours if not args.tune else {
            k: v for k, v in ours.items() if not k.startswith("test")},
        "bare_resnet18": baseline, "published": {k: {"test_auc": a, "test_acc": b}
                                                  for k, (a, b) in PUBLISHED.items()},
        "goal": "test AUC >= 0.92 with the default CPU config in < 15 min of training on 2 cores",
        "default_config": default_config,
        "met": None if args.tune else bool(
            (ours["test_auc"]["estimate"] or 0) >= 0.92 and ours["seconds"] < 900
            and default_config),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(
        json.dumps(out, indent=2, default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o)) + "\n")
    print(f"figures written to {RESULTS / (args.name + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
