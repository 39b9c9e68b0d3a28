"""medaudit training against a bare timm loop at short and long budgets (issue 21).

For each dataset and number of epochs, in the same process and on the same
folds: the bare loop of :mod:`bench.bare_loop` (the baseline, always run
first), then ``train_run`` with each requested variant of the training config.
Reported per variant: OOF AUC with its 95 % CI against the recorded labels,
against the true labels (demo data: ``ground_truth.json``), holdout AUC when a
holdout split exists, and wall time.

Datasets:

* ``demo``: the demo generator's dataset at its default size, ingested at the
  default cache size (64 px); its ``ground_truth.json`` gives the true labels.
* ``speed``: ``bench_train_speed``'s synthetic blob data (1,200 images, 64 px).
* ``breastmnist``: ``/work/shared/data/breastmnist.npz``, official test split
  held out (``holdout_split='test'``).

Variants (``--variants``, comma-separated):

* ``default``: ``TrainConfig(epochs=E)`` with every other field at its default
  (after issue 21 the budget-dependent fields follow :func:`training.budget.budget_defaults`);
* ``old``: the pre-issue-21 fixed defaults (EMA 3 epochs, 2 warm-up epochs,
  mixup 0.2, full augmentation, refit + keep-selected), whatever ``E``;
* ablations of ``old``: ``old-noema``, ``old-nowarmup``, ``old-noaug``,
  ``old-nomixup``, ``old-norefit``, ``old-nokeep`` (one cause removed each);
* ``default-noselect``: ``default`` with the short path at any length (each fold
  trained once on all its training rows, no inner selection, refit or averaging);
* ``budget=2m`` etc.: ``--time-budget`` (the planner chooses, ``E`` ignored);
* ``VARIANT+fullrefit`` (experiment): the refit runs a whole warm-up + cosine
  schedule of the selected length instead of the first ``best_epoch`` epochs of
  the ``E``-epoch schedule;
* ``VARIANT:field=value:...``: a variant with ``TrainConfig`` fields overridden
  (values in JSON: ``default:mixup=0:warmup_epochs=0.5``).

``--seed S`` changes the fold assignment and every model's initialisation alike for
the bare loop and the variants (paired comparisons over seeds).

Usage::

    .venv/bin/python bench/bench_budget.py --data demo --epochs 3 10 --variants default,old
    .venv/bin/python bench/bench_budget.py --data speed --epochs 3 --variants old,old-noema,...
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from audit.metrics import auc_with_ci
from audit.rundir import RunDir
from bench.bare_loop import bare_loop
from training import TrainConfig, train_run
from training.splits import HOLDOUT_FOLD

RESULTS = Path(__file__).resolve().parent / "results"
NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "breastmnist.npz"

#: The fixed defaults before issue 21 (tuned for 40 epochs on BreastMNIST).
OLD = {
    "ema_epochs": 3.0,
    "warmup_epochs": 2,
    "mixup": 0.2,
    "augment_probability": 0.9,
    "refit": True,
    "keep_selected": True,
    "patience": 10,
}

ABLATIONS = {
    "old-noema": {"ema_epochs": 0.0},
    "old-nowarmup": {"warmup_epochs": 0},
    "old-noaug": {"augment_probability": 0.0},
    "old-nomixup": {"mixup": 0.0},
    "old-norefit": {"refit": False},
    "old-nokeep": {"keep_selected": False},
}


def _noisy_breastmnist(tmp: Path, fraction: float, seed: int) -> tuple[Path, set[str]]:
    """BreastMNIST with ``fraction`` of its train + val labels flipped (test labels kept).

    Returns the npz written under ``tmp`` and the ``sample_id`` s flipped
    (``<split>-<index>``, as :func:`ingest.sources.ingest_npz` names them).
    """
    data = dict(np.load(NPZ))
    rng = np.random.default_rng(seed)
    flipped: set[str] = set()
    for split in ("train", "val"):
        y = data[f"{split}_labels"].copy()
        idx = rng.choice(len(y), size=round(fraction * len(y)), replace=False)
        y[idx] = 1 - y[idx]
        data[f"{split}_labels"] = y
        flipped |= {f"{split}-{i:05d}" for i in idx}
    out = tmp / "breastmnist-noisy.npz"
    np.savez(out, **data)
    return out, flipped


def _prepare(
    data: str,
    tmp: Path,
    breastmnist_size: int = 28,
    label_noise: float = 0.0,
    noise_seed: int = 0,
) -> tuple[RunDir, np.ndarray | None, str | None, int]:
    """(run, true labels or None, holdout split, folds) of a benchmark dataset.

    ``label_noise`` (BreastMNIST only): that fraction of the train + val labels is
    flipped (seeded by ``noise_seed``); the true labels are returned, and the test
    split keeps its labels, so its AUC is against clean labels.
    """
    if data == "demo":
        from ingest.demo import CLASS_NAMES, DemoConfig, generate_demo, load_ground_truth
        from ingest.sources import IngestOptions, ingest_dicom_dir

        ds = generate_demo(tmp / "demo-data", DemoConfig())
        summary = ingest_dicom_dir(
            ds.dicom_dir,
            ds.labels_csv,
            tmp / "run",
            IngestOptions(classes=tuple(CLASS_NAMES), use_cache=False, overwrite=True),
        )
        run = summary.run
        truth = load_ground_truth(ds.ground_truth)
        classes = truth["class_names"]
        ids = run.read_manifest()["sample_id"].tolist()
        true = np.array([classes.index(truth["images"][s]["true_label"]) for s in ids])
        return run, true, None, 5
    if data == "speed":
        from bench.bench_train_speed import make_run

        return make_run(tmp / "run", n=1200, size=64), None, None, 3
    if data == "breastmnist":
        from bench.bench_breastmnist import build_run

        if not label_noise:
            return build_run(NPZ, tmp / "run", breastmnist_size), None, "test", 5
        npz, flipped = _noisy_breastmnist(tmp, label_noise, noise_seed)
        run = build_run(npz, tmp / "run", breastmnist_size)
        recorded = run.read_manifest()["label"].astype(int).to_numpy()
        ids = run.read_manifest()["sample_id"].tolist()
        true = np.array([r ^ int(s in flipped) for r, s in zip(recorded, ids, strict=True)])
        return run, true, "test", 5
    raise ValueError(f"unknown --data {data!r}; use demo, speed or breastmnist")


def _scores(
    probs: np.ndarray,
    folds: np.ndarray,
    labels: np.ndarray,
    true: np.ndarray | None,
    groups: np.ndarray,
) -> dict[str, Any]:
    cv = folds != HOLDOUT_FOLD
    out = {"oof_auc": auc_with_ci(labels[cv], probs[cv], groups=groups[cv]).to_dict()}
    if true is not None:
        out["oof_auc_true"] = auc_with_ci(true[cv], probs[cv], groups=groups[cv]).to_dict()
    if (~cv).any():
        out["holdout_auc"] = auc_with_ci(labels[~cv], probs[~cv]).to_dict()
    return out


def _config(
    variant: str, epochs: int, folds: int, holdout: str | None, seed: int = 0
) -> tuple[TrainConfig, str | None]:
    base = TrainConfig(
        epochs=epochs,
        folds=folds,
        holdout_split=holdout,
        quiet=True,
        threads=torch.get_num_threads(),
        seed=seed,
    )
    if ":" in variant:  # e.g. default:mixup=0:warmup_epochs=0 (overrides on a variant)
        name, *pairs = variant.split(":")
        config, budget = _config(name, epochs, folds, holdout, seed)
        overrides = {k: json.loads(v) for k, v in (pair.split("=", 1) for pair in pairs)}
        return config.replace(**overrides), budget
    if variant == "default":
        return base, None
    if variant == "default-noselect":  # the short path (no inner selection) at any length
        return base.replace(select_epochs=False, refit=False, keep_selected=False), None
    if variant.startswith("budget="):
        return base, variant.split("=", 1)[1]
    if variant == "old":
        return base.replace(**OLD), None
    if variant in ABLATIONS:
        return base.replace(**{**OLD, **ABLATIONS[variant]}), None
    raise ValueError(f"unknown variant {variant!r}")


_ORIGINAL_FIT = None


def _full_schedule_refit(on: bool) -> None:
    """Experiment (bench only): a refit runs a whole schedule of the selected length.

    ``training.fold_training`` refits for the selected ``best_epoch`` epochs of the
    ``epochs``-long schedule (the validated trajectory, cut where the inner split
    chose, its learning rate not annealed). With this on, the refit instead runs a
    complete warm-up + cosine schedule of ``best_epoch`` epochs.
    """
    import training.fold_training as ft

    global _ORIGINAL_FIT
    if _ORIGINAL_FIT is None:
        _ORIGINAL_FIT = ft.fit_model
    original = _ORIGINAL_FIT

    def fit(fc: Any, rows: Any, *, stop_after: int | None = None, **kw: Any) -> Any:
        if stop_after is not None and kw.get("inner_val") is None:
            cfg = fc.config.replace(epochs=stop_after)
            fc = dataclasses.replace(fc, config=cfg)
            stop_after = None
        return original(fc, rows, stop_after=stop_after, **kw)

    ft.fit_model = fit if on else original


def _fmt(e: dict[str, Any]) -> str:
    return f"{e['estimate']:.3f} [{e['ci_low']:.3f}, {e['ci_high']:.3f}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default="demo", choices=["demo", "speed", "breastmnist"])
    ap.add_argument("--epochs", type=int, nargs="+", default=[3, 10])
    ap.add_argument("--folds", type=int, default=None, help="default: 5 (speed data: 3)")
    ap.add_argument("--variants", default="default,old")
    ap.add_argument("--no-bare", action="store_true", help="skip the bare loop (budget runs)")
    ap.add_argument("--name", default=None)
    ap.add_argument(
        "--breastmnist-size",
        type=int,
        default=28,
        help="cache size of the BreastMNIST images (28: native; bench_breastmnist uses 64)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads for every variant (default 1: on a shared, loaded "
        "machine 2 threads per process oversubscribe the cores and run many times "
        "slower)",
    )
    ap.add_argument("--seed", type=int, default=0, help="folds and initialisation (all runs)")
    ap.add_argument(
        "--label-noise",
        type=float,
        default=0.0,
        help="BreastMNIST: flip this fraction of the train + val labels (seeded by --seed); "
        "OOF AUC is then also reported against the true labels",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    variants = [v for v in args.variants.split(",") if v and v != "none"]  # none: bare only
    results: dict[str, Any] = {
        "benchmark": "budget",
        "data": args.data,
        "threads": args.threads,
        "seed": args.seed,
        "label_noise": args.label_noise,
        "loadavg_before": os.getloadavg(),
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        run, true, holdout, folds = _prepare(
            args.data, Path(tmp), args.breastmnist_size, args.label_noise, args.seed
        )
        folds = args.folds or folds
        groups = run.read_manifest()["patient_key"].astype(str).to_numpy()
        for epochs in args.epochs:
            if not args.no_bare:
                print(f"{args.data}, {epochs} epochs: bare loop ...", file=sys.stderr, flush=True)
                b = bare_loop(
                    run, folds=folds, epochs=epochs, seed=args.seed, holdout_split=holdout
                )
                rec = {
                    "variant": "bare",
                    "epochs": epochs,
                    "seconds": b.seconds,
                    **_scores(b.probs, b.folds, b.labels, true, groups),
                }
                results["runs"].append(rec)
                _write(results, args.name or f"budget_{args.data}")
                print(
                    f"  bare        {_fmt(rec['oof_auc'])}"
                    + (f" true {_fmt(rec['oof_auc_true'])}" if true is not None else "")
                    + (f" holdout {_fmt(rec['holdout_auc'])}" if "holdout_auc" in rec else "")
                    + f"  {b.seconds:.0f}s",
                    flush=True,
                )
            for v in variants:
                # the +fullrefit experiment patches the refit for this variant only
                _full_schedule_refit(v.endswith("+fullrefit"))
                config, budget = _config(
                    v.removesuffix("+fullrefit"), epochs, folds, holdout, args.seed
                )
                print(f"{args.data}, {epochs} epochs: {v} ...", file=sys.stderr, flush=True)
                shutil.rmtree(run.path / "train", ignore_errors=True)
                shutil.rmtree(run.path / ".work", ignore_errors=True)
                t0 = time.perf_counter()
                if budget is not None:
                    from training.planner import train_within_budget

                    summary = train_within_budget(run, config, budget)
                else:
                    summary = train_run(run, config)
                wall = time.perf_counter() - t0
                probs = run.read_array("oof/pred_probs")
                folds_arr = run.read_array("oof/folds")
                labels = run.read_manifest()["label"].to_numpy()
                rec = {
                    "variant": v,
                    "epochs": epochs,
                    "seconds": wall,
                    "config": summary.record["config"],
                    "plan": summary.record.get("budget"),
                    **_scores(probs, folds_arr, labels, true, groups),
                }
                results["runs"].append(rec)
                print(
                    f"  {v:11s} {_fmt(rec['oof_auc'])}"
                    + (f" true {_fmt(rec['oof_auc_true'])}" if true is not None else "")
                    + (f" holdout {_fmt(rec['holdout_auc'])}" if "holdout_auc" in rec else "")
                    + f"  {wall:.0f}s",
                    flush=True,
                )
                _write(results, args.name or f"budget_{args.data}")
    _write(results, args.name or f"budget_{args.data}")
    return 0


def _write(results: dict[str, Any], name: str) -> None:
    """Write the results so far (after every run: a long benchmark stopped midway keeps them)."""
    results["loadavg_after"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"written {RESULTS / (name + '.json')}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
