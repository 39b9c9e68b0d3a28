"""Benchmark 1 of issue 4: label-noise detection on real images (BreastMNIST).

Plants 10 % asymmetric label noise (seeded) into BreastMNIST (all 780 images of
the train/val/test splits), then compares

* **medaudit**: out-of-fold probabilities from the training core
  (:func:`training.train_run`, patient-grouped K-fold, inner-split early
  stopping, augmentation, class weighting) scored by the ``label_issues``
  check's per-sample table (:func:`audit.checks.label_issues.label_issue_table`
  with the check's default settings);
* **baseline**: out-of-fold probabilities of a bare ResNet-18 loop (timm
  ``resnet18`` from scratch, StratifiedKFold, Adam, fixed epochs, no
  augmentation, no early stopping) scored by plain cleanlab defaults
  (``cleanlab.filter.find_label_issues(labels, pred_probs)`` and
  ``cleanlab.rank.get_label_quality_scores(labels, pred_probs)``).

Precision, recall and F1 of the flagged set and AUROC of the label-quality
score are measured against the planted flips. The two cross terms (medaudit's
filter on the baseline's probabilities and cleanlab defaults on medaudit's)
separate the contribution of the model from that of the filter. Goal: F1 at
least 0.10 above the baseline.

The noise: ``round(rate * N)`` labels are flipped; the flip probability of a
malignant image is ``asymmetry`` times that of a benign/normal one (missed
cancers are the costly error in breast ultrasound reading), so the noise matrix
is not symmetric.

Usage::

    .venv/bin/python bench/bench_label_noise.py            # full run (2 idle cores: ~12 min)
    .venv/bin/python bench/bench_label_noise.py --quick    # 2 folds, few epochs: smoke test

Writes ``bench/results/label_noise.json`` and prints a table. Recorded run
(``--image-size 64``, both models at 64 px, training core with its default
config: refit after inner-split epoch selection): F1 0.515 vs 0.321 (+0.194);
the earlier baseline at native 28 px scored F1 0.369, so the gain is at least
+0.146 against either baseline. ``label_noise_64px_medaudit_only.json`` is an
older training-core run (before the refit) kept for comparison. The data file is
read from ``--npz`` (default ``../shared/data/breastmnist.npz``) and never copied
into the repository; work files go to ``--work-dir`` (default ``runs/bench_label_noise``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audit.checks.label_issues import LabelIssuesConfig, label_issue_table  # noqa: E402
from audit.rundir import RunDir  # noqa: E402

DEFAULT_NPZ = ROOT.parent / "shared" / "data" / "breastmnist.npz"
DEFAULT_OUT = ROOT / "bench" / "results" / "label_noise.json"
#: BreastMNIST label indices (MedMNIST v2 info): 0 malignant, 1 normal/benign.
CLASSES = ["malignant", "normal_benign"]


# -- data ----------------------------------------------------------------------------------


def load_breastmnist(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All splits of the npz: images ``(N, 28, 28)`` uint8, labels ``(N,)``, split names."""
    data = np.load(path, allow_pickle=False)
    xs, ys, splits = [], [], []
    for s in ("train", "val", "test"):
        xs.append(data[f"{s}_images"])
        y = np.asarray(data[f"{s}_labels"]).reshape(-1)
        ys.append(y)
        splits += [s] * len(y)
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64), np.asarray(splits)


def plant_asymmetric_noise(
    labels: np.ndarray, *, rate: float, asymmetry: float, seed: int, n_classes: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Flip ``round(rate * N)`` labels; class 0 is flipped ``asymmetry`` times as often.

    Returns
    -------
    noisy : numpy.ndarray
        ``(N,)`` labels after flipping (class k -> k + 1 mod K).
    flipped : numpy.ndarray
        ``(N,)`` bool, the planted flips.
    """
    rng = np.random.default_rng(seed)
    n = len(labels)
    n_flip = round(rate * n)
    counts = np.bincount(labels, minlength=n_classes)
    # per-class flip counts proportional to weight x class size, summing to n_flip
    share = np.array([asymmetry if k == 0 else 1.0 for k in range(n_classes)]) * counts
    per_class = np.floor(share / share.sum() * n_flip).astype(int)
    per_class[np.argmax(share - per_class)] += n_flip - per_class.sum()
    flipped = np.zeros(n, dtype=bool)
    for k in range(n_classes):
        idx = np.flatnonzero(labels == k)
        flipped[rng.choice(idx, size=min(per_class[k], len(idx)), replace=False)] = True
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + 1) % n_classes
    return noisy, flipped


def build_run(work: Path, npz: Path, noisy: np.ndarray, image_size: int) -> RunDir:
    """Ingest the npz with the project's ingestion, then replace the labels by the noisy ones."""
    run_path = work / "run"
    from ingest.sources import IngestOptions, ingest_npz

    secret = work / "secret.key"
    summary = ingest_npz(npz, run_path, IngestOptions(image_size=image_size, secret_file=secret,
                                                       use_cache=False, overwrite=True))
    run = summary.run
    manifest = run.read_manifest()
    classes = run.class_names()
    # ingestion keeps npz order: train, val, test; sample_id '<split>-<index>'
    manifest["label"] = noisy
    manifest["label_name"] = [classes[k] for k in noisy]
    run.write_manifest(manifest)
    return run


# -- models ---------------------------------------------------------------------------------


def train_medaudit(
    run: RunDir, *, folds: int, epochs: int, seed: int, jobs: int = 1
) -> tuple[np.ndarray, dict]:
    """OOF probabilities from the training core (``training.train_run``, default config)."""
    from training import TrainConfig, train_run

    cfg = TrainConfig(folds=folds, epochs=epochs, seed=seed, quiet=True, masked_variants=(),
                      jobs=jobs)
    t0 = time.perf_counter()
    summary = train_run(run, cfg)
    probs = run.read_array("oof/pred_probs").astype(np.float64)
    return probs, {"seconds": round(time.perf_counter() - t0, 1),
                   "oof_auc_reported": summary.oof_auc.to_dict(),
                   "config": cfg.to_dict()}


def train_bare_resnet(
    images: np.ndarray, labels: np.ndarray, *, folds: int, epochs: int, seed: int,
    batch_size: int = 64, lr: float = 1e-3, size: int = 28,
) -> tuple[np.ndarray, dict]:
    """OOF probabilities of a plain timm resnet18 trained in a simple loop (the baseline).

    ``size`` other than the native 28 px resizes the images bilinearly once, so the
    baseline can see the same input resolution as the training core.
    """
    import timm
    import torch
    import torch.nn.functional as F
    from sklearn.model_selection import StratifiedKFold

    torch.manual_seed(seed)
    x_all = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    if size != x_all.shape[-1]:
        x_all = F.interpolate(x_all, size=(size, size), mode="bilinear", align_corners=False)
    y_all = torch.from_numpy(labels)
    probs = np.zeros((len(labels), 2))
    t0 = time.perf_counter()
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (tr, te) in enumerate(skf.split(np.zeros(len(labels)), labels)):
        torch.manual_seed(seed + fold)
        model = timm.create_model("resnet18", pretrained=False, num_classes=2, in_chans=1)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        loss_fn = torch.nn.CrossEntropyLoss()
        g = torch.Generator().manual_seed(seed + fold)
        for _ in range(epochs):
            model.train()
            perm = torch.from_numpy(tr)[torch.randperm(len(tr), generator=g)]
            for start in range(0, len(perm), batch_size):
                idx = perm[start:start + batch_size]
                opt.zero_grad()
                loss = loss_fn(model(x_all[idx]), y_all[idx])
                loss.backward()
                opt.step()
        model.eval()
        with torch.no_grad():
            probs[te] = torch.softmax(model(x_all[torch.from_numpy(te)]), dim=1).numpy()
    return probs, {"seconds": round(time.perf_counter() - t0, 1), "epochs": epochs,
                   "folds": folds, "lr": lr, "batch_size": batch_size, "optimizer": "Adam",
                   "input": f"{size}x{size}" + (" native" if size == images.shape[-1] else
                                                " (bilinear from 28x28)") + ", no augmentation"}


# -- scoring -----------------------------------------------------------------------------------


def score(flagged: np.ndarray, quality: np.ndarray, flipped: np.ndarray) -> dict[str, float]:
    """Precision, recall, F1 of the flagged set; AUROC of (1 - quality) for the flips."""
    from sklearn.metrics import roc_auc_score

    tp = int((flagged & flipped).sum())
    prec = tp / max(int(flagged.sum()), 1)
    rec = tp / max(int(flipped.sum()), 1)
    f1 = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
    return {"n_flagged": int(flagged.sum()), "true_positives": tp, "precision": round(prec, 4),
            "recall": round(rec, 4), "f1": round(f1, 4),
            "auroc": round(float(roc_auc_score(flipped, -quality)), 4)}


def medaudit_filter(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cfg = LabelIssuesConfig()
    t = label_issue_table(labels, probs, filter_by=cfg.filter_by, rank_by=cfg.rank_by,
                          adjust_pred_probs=cfg.adjust_pred_probs,
                          min_examples_per_class=cfg.min_examples_per_class, n_jobs=cfg.n_jobs)
    return t["is_label_issue"].to_numpy(), t["label_quality_score"].to_numpy()


def cleanlab_defaults(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    return find_label_issues(labels, probs, n_jobs=1), get_label_quality_scores(labels, probs)


def oof_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(labels, probs[:, 1])), 4)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--npz", type=Path, default=DEFAULT_NPZ)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--work-dir", type=Path, default=ROOT / "runs" / "bench_label_noise")
    ap.add_argument("--noise-rate", type=float, default=0.10)
    ap.add_argument("--asymmetry", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=40,
                    help="training core: max epochs per fold (default: the TrainConfig default)")
    ap.add_argument("--baseline-epochs", type=int, default=15)
    ap.add_argument("--image-size", type=int, default=64,
                    help="training core cache size (64 = ingestion default; 28 = native)")
    ap.add_argument("--baseline-size", type=int, default=None,
                    help="baseline input side (default: the same as --image-size)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                    help="training core: folds in parallel processes (speed only)")
    ap.add_argument("--quick", action="store_true", help="2 folds, 2 epochs (smoke test)")
    ap.add_argument("--skip-medaudit", action="store_true")
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.folds, args.epochs, args.baseline_epochs = 2, 2, 2
    if not args.npz.is_file():
        print(f"BreastMNIST npz not found at {args.npz}; pass --npz", file=sys.stderr)
        return 2
    os.environ.setdefault("MEDAUDIT_SECRET", "bench-label-noise-0123456789abcdef0123456789")
    images, truth, _ = load_breastmnist(args.npz)
    noisy, flipped = plant_asymmetric_noise(truth, rate=args.noise_rate,
                                            asymmetry=args.asymmetry, seed=args.seed)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "dataset": {"name": "BreastMNIST (MedMNIST v2), all splits", "n": len(truth),
                    "class_counts_true": np.bincount(truth).tolist(), "classes": CLASSES},
        "noise": {"rate": args.noise_rate, "asymmetry": args.asymmetry, "seed": args.seed,
                  "n_flipped": int(flipped.sum()),
                  "flipped_per_true_class": [int((flipped & (truth == k)).sum()) for k in (0, 1)]},
        "quick": args.quick,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "rows": {},
    }
    probs: dict[str, np.ndarray] = {}
    if not args.skip_medaudit:
        run = build_run(args.work_dir, args.npz, noisy, args.image_size)
        probs["medaudit"], info = train_medaudit(run, folds=args.folds, epochs=args.epochs,
                                                 seed=args.seed, jobs=args.jobs)
        result["medaudit_training"] = info
    if not args.skip_baseline:
        probs["baseline"], info = train_bare_resnet(images, noisy, folds=args.folds,
                                                    epochs=args.baseline_epochs, seed=args.seed,
                                                    size=args.baseline_size or args.image_size)
        result["baseline_training"] = info
    for model, p in probs.items():  # kept for re-scoring without retraining
        np.save(args.work_dir / f"{model}_pred_probs.npy", p)
    np.save(args.work_dir / "planted_flips.npy", flipped)
    rows = result["rows"]
    for model, p in probs.items():
        result.setdefault("oof_auc_vs_noisy_labels", {})[model] = oof_auc(noisy, p)
        result.setdefault("oof_auc_vs_true_labels", {})[model] = oof_auc(truth, p)
        rows[f"{model} probs + medaudit filter"] = score(*medaudit_filter(noisy, p), flipped)
        rows[f"{model} probs + cleanlab defaults"] = score(*cleanlab_defaults(noisy, p), flipped)
    if "medaudit" in probs and "baseline" in probs:
        ours = rows["medaudit probs + medaudit filter"]["f1"]
        base = rows["baseline probs + cleanlab defaults"]["f1"]
        result["f1_gain"] = round(ours - base, 4)
        result["goal_met"] = bool(ours >= base + 0.10)
    print(f"{'configuration':40s} {'flagged':>7s} {'prec':>6s} {'recall':>6s} {'F1':>6s} {'AUROC':>6s}")
    for name, r in rows.items():
        print(f"{name:40s} {r['n_flagged']:7d} {r['precision']:6.3f} {r['recall']:6.3f} "
              f"{r['f1']:6.3f} {r['auroc']:6.3f}")
    print(f"planted flips: {int(flipped.sum())} of {len(truth)}")
    if "f1_gain" in result:
        print(f"F1 gain (medaudit vs baseline): {result['f1_gain']:+.3f} "
              f"(goal +0.10: {'met' if result['goal_met'] else 'not met'})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
