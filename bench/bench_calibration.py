"""Prevalence recalibration, drift detection and predict throughput on BreastMNIST.

Data: ``breastmnist.npz`` (never copied into the repo), labels flipped so that class 1
is *malignant* (the clinically positive class; 27 % of images). The reference run is
the official ``train`` split minus a random 40 % of it (patient-grouped 5-fold CV,
``resnet10t``, ``--epochs`` epochs: small on purpose, the figures are about the
audit, not the model); the held-out pool is the rest: official ``val`` + ``test`` +
the 40 % of ``train`` (about 450 images), scored by the fold ensemble exactly as
``medaudit predict`` scores new data (``holdout_split``), with fold 0's embeddings.

1. **Prevalence recalibration**: the pool is resampled (with replacement, ``n`` rows)
   to a malignant prevalence of 0.5 / 0.25 / 0.10 / 0.05, ``--repeats`` times. On each
   resample: absolute error of the EM and BBSE estimates (:mod:`audit.prevalence`);
   class-wise ECE of the raw probabilities, after temperature scaling alone, after
   temperature + Bayes adjustment to the EM estimate (what ``prevalence_shift`` does),
   and to the true prevalence (oracle); PPV at the Youden threshold as
   ``prevalence_shift`` reports it (sensitivity and specificity from the OOF rows,
   Bayes' rule at the estimated prevalence) against the PPV observed on the resample,
   and the naive PPV at the training prevalence.
2. **Drift detection**: new batches of ``n`` = 100 / 300 / 1000 images from the pool,
   unchanged (false alarms) or through another scanner's intensity profile (display
   gamma 0.7, offset +0.06, as the demo's after-deployment batch). n = 100 and 300 are
   drawn without replacement; 1000 exceeds the pool and is drawn with replacement
   (duplicates make the tests anti-conservative: read that column with care). Rate of
   batches on which the ``drift`` check raises any warning.
3. **predict throughput**: :func:`training.deploy.predict_run` on the pool (x4) against
   a bare loop over the same checkpoints (timm model, ``load_state_dict``, batches,
   softmax, mean over folds) in the same process, same precision and batch size.

Usage::

    .venv/bin/python bench/bench_calibration.py --epochs 10 --repeats 40
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audit.calibration import classwise_ece
from audit.checks.drift import DriftConfig, check_drift
from audit.context import UNLABELED, AuditContext, ReferenceRun
from audit.operating_point import choose_operating_point, predictive_values
from audit.prevalence import adjust_to_prevalence, bbse_prior, em_prior
from audit.recalibration import apply_calibrator, fit_calibrator
from audit.rundir import RunDir

NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "breastmnist.npz"
RESULTS = Path(__file__).resolve().parent / "results"
PREVALENCES = (0.5, 0.25, 0.10, 0.05)
SIZES = (100, 300, 1000)
GAMMA, OFFSET = 0.7, 0.06


def _scanner(images: np.ndarray) -> np.ndarray:
    d = images.astype(np.float64) / 255.0
    return np.clip(np.rint(255 * np.clip(d**GAMMA + OFFSET, 0, 1)), 0, 255).astype(np.uint8)


def build(tmp: Path, epochs: int, seed: int, *, train_only: bool = False) -> dict[str, Any]:
    """Ingest, train (pool held out), and score the shifted pool with predict."""
    from ingest.sources import IngestOptions, ingest_npz
    from training import TrainConfig, train_run
    from training.deploy import predict_run

    d = np.load(NPZ)
    rng = np.random.default_rng(seed)
    x = np.concatenate([d["train_images"], d["val_images"], d["test_images"]])
    y = 1 - np.concatenate([d["train_labels"], d["val_labels"], d["test_labels"]]).reshape(-1)
    n_train = len(d["train_images"])
    held = np.zeros(len(x), bool)
    held[n_train:] = True
    held[rng.choice(n_train, int(0.4 * n_train), replace=False)] = True
    npz = tmp / "breast.npz"
    np.savez(npz, train_images=x[~held], train_labels=y[~held], test_images=x[held],
             test_labels=y[held])
    shifted = tmp / "shifted.npz"
    np.savez(shifted, test_images=_scanner(x[held]))
    classes = ("normal_benign", "malignant")
    config = TrainConfig(model="resnet10t", epochs=epochs, holdout_split="test", seed=seed,
                         quiet=True, masked_variants=())  # masked re-scoring is not needed here
    done = RunDir(tmp / "ref")
    if done.has("run.json") and (done.read_run_json().get("train") or {}).get("config") \
            == json.loads(json.dumps(config.to_dict())):  # --workdir: a finished training of the same config is reused
        run, train_s = done, float((tmp / "train_seconds.txt").read_text())
    else:
        run = ingest_npz(npz, tmp / "ref", IngestOptions(image_size=28, use_cache=False,
                                                          classes=classes)).run
        t0 = time.perf_counter()
        train_run(run, config)
        train_s = time.perf_counter() - t0
        (tmp / "train_seconds.txt").write_text(f"{train_s:.1f}")
    if train_only:
        return {"run": run, "train_seconds": train_s}
    new = ingest_npz(shifted, tmp / "shifted", IngestOptions(image_size=28, use_cache=False,
                                                             classes=classes, overwrite=True,
                                                             require_labels=False)).run
    predict_run(run, new)
    return {"run": run, "shifted": new, "train_seconds": train_s, "config": config.to_dict(),
            "x_pool": x[held]}


def prevalence_bench(run: RunDir, n: int, repeats: int, seed: int) -> dict[str, Any]:
    man = run.read_manifest()
    folds = run.read_array("oof/folds")
    probs = run.read_array("oof/pred_probs").astype(np.float64)
    y = man["label"].to_numpy()
    cv, pool = folds >= 0, folds < 0
    ys, ps = y[cv], probs[cv]
    src = np.bincount(ys, minlength=2) / len(ys)
    cal = fit_calibrator("temperature", ys, ps)
    ps_cal = apply_calibrator(cal, ps)
    op = choose_operating_point(ys, ps_cal)  # Youden: the same cut at every prevalence
    se, sp = op.sensitivity.estimate, op.specificity.estimate
    yp, pp = y[pool], probs[pool]
    pos, neg = np.flatnonzero(yp == 1), np.flatnonzero(yp == 0)
    rng = np.random.default_rng(seed)
    out = {}
    for prev in PREVALENCES:
        rec: dict[str, list[float]] = {k: [] for k in (
            "em_err", "bbse_err", "ece_none", "ece_temperature", "ece_adjusted_em",
            "ece_adjusted_true", "ppv_est_err", "ppv_naive_err", "ppv_true")}
        for _ in range(repeats):
            k = round(prev * n)
            idx = np.r_[rng.choice(pos, k), rng.choice(neg, n - k)]
            yt, pt = yp[idx], pp[idx]
            true = yt.mean()
            pt_cal = apply_calibrator(cal, pt)
            em = em_prior(pt_cal, src)[1]
            bb = bbse_prior(ys, ps, pt)[1]
            rec["em_err"].append(abs(em - true))
            rec["bbse_err"].append(abs(bb - true))
            rec["ece_none"].append(classwise_ece(yt, pt))
            rec["ece_temperature"].append(classwise_ece(yt, pt_cal))
            rec["ece_adjusted_em"].append(classwise_ece(yt, adjust_to_prevalence(pt_cal, src, em)))
            rec["ece_adjusted_true"].append(classwise_ece(yt, adjust_to_prevalence(pt_cal, src, true)))
            call = pt_cal[:, 1] >= op.threshold  # the cut of Youden's point (prevalence-free)
            ppv_true = yt[call].mean() if call.any() else np.nan
            ppv_est = predictive_values(se, sp, float(np.clip(em, 1e-3, 1 - 1e-3)))[0]
            ppv_naive = predictive_values(se, sp, float(src[1]))[0]
            rec["ppv_true"].append(ppv_true)
            rec["ppv_est_err"].append(abs(ppv_est - ppv_true))
            rec["ppv_naive_err"].append(abs(ppv_naive - ppv_true))
        out[str(prev)] = {k: round(float(np.nanmean(v)), 4) for k, v in rec.items()}
        out[str(prev)]["em_err_p90"] = round(float(np.quantile(rec["em_err"], 0.9)), 4)
        out[str(prev)]["bbse_err_p90"] = round(float(np.quantile(rec["bbse_err"], 0.9)), 4)
    return {"n": n, "repeats": repeats, "training_prevalence": round(float(src[1]), 4),
            "oof_sensitivity": round(se, 4), "oof_specificity": round(sp, 4), "by_prevalence": out}


def drift_bench(run: RunDir, shifted: RunDir, repeats: int, seed: int,
                config: DriftConfig,
                conditions: tuple[str, ...] = ("same_distribution", "intensity_shift"),
                ) -> dict[str, Any]:
    man = run.read_manifest()
    folds = run.read_array("oof/folds")
    cv, pool = np.flatnonzero(folds >= 0), np.flatnonzero(folds < 0)
    props = run.read_image_properties()
    ref = ReferenceRun(man.iloc[cv].reset_index(drop=True), run.class_names(),
                       run.read_array("oof/pred_probs")[cv], folds[cv],
                       run.read_array("oof/embeddings")[cv],
                       props.iloc[cv].reset_index(drop=True), "reference")
    same = {"probs": run.read_array("oof/pred_probs")[pool],
            "emb": run.read_array("oof/embeddings")[pool],
            "props": props.iloc[pool].reset_index(drop=True)}
    moved = {"probs": shifted.read_array("oof/pred_probs"),
             "emb": shifted.read_array("oof/embeddings"),
             "props": shifted.read_image_properties()}
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for name, src in (("same_distribution", same), ("intensity_shift", moved)):
        if name not in conditions:
            continue
        for n in SIZES:
            flags, aspects, secs = [], {"features": 0, "metadata": 0, "properties": 0,
                                        "prevalence": 0}, []
            m = len(src["probs"])
            for _ in range(repeats):
                idx = rng.choice(m, n, replace=n > m)
                ids = [f"n{i}" for i in range(n)]
                manifest = pd.DataFrame({"sample_id": ids, "label": UNLABELED,
                                         "patient_key": [f"q{i}" for i in range(n)]})
                p = src["props"].iloc[idx].reset_index(drop=True).assign(sample_id=ids)
                ctx = AuditContext.from_arrays(manifest, run.class_names(),
                                               pred_probs=src["probs"][idx],
                                               embeddings=src["emb"][idx], image_properties=p,
                                               reference=ref)
                t0 = time.perf_counter()
                found = check_drift(ctx, config)
                secs.append(time.perf_counter() - t0)
                warn = [f for f in found if f.severity == "warning"]
                flags.append(bool(warn))
                for f in warn:
                    key = ("features" if "c2st" in f.evidence else "properties"
                           if "properties" in f.evidence else "metadata"
                           if "columns" in f.evidence else "prevalence")
                    aspects[key] += 1
            out[f"{name}_n{n}"] = {"rate": round(float(np.mean(flags)), 4), "repeats": repeats,
                                   "with_replacement": n > m, "by_aspect": aspects,
                                   "seconds_per_batch": round(float(np.median(secs)), 2)}
            print(f"  drift {name:18s} n={n:5d}: any warning in {np.mean(flags):.0%} of "
                  f"{repeats} batches {aspects}", flush=True)
    return out


def throughput_bench(run: RunDir, tmp: Path, x_pool: np.ndarray) -> dict[str, Any]:
    import torch

    from ingest.sources import IngestOptions, ingest_npz
    from training.dataset import ImageCache, prepare_batch
    from training.deploy import _setup, _train_config, load_fold_models, predict_run
    from training.models import embed_and_logits

    big = tmp / "big.npz"
    np.savez(big, test_images=np.concatenate([x_pool] * 4))
    new = ingest_npz(big, tmp / "big", IngestOptions(image_size=28, use_cache=False,
                                                     classes=tuple(run.class_names()),
                                                     require_labels=False)).run
    n = new.n_samples()
    t0 = time.perf_counter()
    summary = predict_run(run, new, batch_size=128)
    ours_total = time.perf_counter() - t0
    ours_score = summary.record["score_seconds"]
    # bare loop: same checkpoints, same models, same precision, batch, normalisation
    config = _train_config(run)
    cache = ImageCache(new)
    setup = _setup(run, "cpu", None)
    folds = load_fold_models(run, cache, setup=setup)
    images = torch.from_numpy(np.load(new.file("images.npy")))
    t1 = time.perf_counter()
    with torch.no_grad():
        per_fold = []
        for fm in folds:
            probs = []
            for net, lp in fm.nets:
                outs = []
                for i in range(0, n, 128):
                    xb = prepare_batch(images[i : i + 128], setup=setup, norm=fm.norm,
                                       image_size=config.image_size, is_uint8=True)
                    with setup.autocast():
                        _, lg = embed_and_logits(net, xb)
                    outs.append(torch.softmax(lg.float() + torch.from_numpy(lp), 1))
                probs.append(torch.cat(outs))
            per_fold.append(torch.stack(probs).mean(0))
        bare = torch.stack(per_fold).mean(0).numpy()
    bare_s = time.perf_counter() - t1
    agree = float(np.abs(bare - new.read_array("oof/pred_probs")).max())
    return {"n_images": n, "models": summary.models,
            "predict_images_per_s_scoring": round(n / ours_score, 1),
            "predict_images_per_s_total": round(n / ours_total, 1),
            "bare_loop_images_per_s": round(n / bare_s, 1),
            "ratio_scoring": round(bare_s / ours_score, 3),
            "max_abs_prob_difference": agree,
            "note": "total includes model loading, image-property-free writes and the transaction"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--drift-repeats", type=int, default=40)
    ap.add_argument("--n", type=int, default=200, help="rows per prevalence resample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "calibration.json")
    ap.add_argument("--drift-only", type=Path, metavar="DIR",
                    help="rerun only the drift part on DIR/ref and DIR/shifted (runs kept from an "
                    "earlier run of this script)")
    ap.add_argument("--conditions", default="same_distribution,intensity_shift")
    ap.add_argument("--workdir", type=Path,
                    help="keep the runs in DIR (default: a temporary folder) and reuse a finished "
                    "training of the same configuration found there")
    ap.add_argument("--train-only", action="store_true",
                    help="stop after training (with --workdir: to run the analysis later)")
    args = ap.parse_args(argv)
    if args.drift_only is not None:
        warnings.simplefilter("ignore")
        cfg = DriftConfig(n_perm=100, n_boot=100)
        drift = drift_bench(RunDir(args.drift_only / "ref"), RunDir(args.drift_only / "shifted"),
                            args.drift_repeats, args.seed, cfg,
                            conditions=tuple(args.conditions.split(",")))
        args.out.write_text(json.dumps({"benchmark": "bench_calibration --drift-only",
                                        "date": time.strftime("%Y-%m-%d"),
                                        "drift": {"config": str(cfg), "results": drift}},
                                       indent=2) + "\n")
        print(f"wrote {args.out}")
        return 0
    if not NPZ.is_file():
        print(f"BreastMNIST not found at {NPZ}", file=sys.stderr)
        return 2
    warnings.simplefilter("ignore")
    os.environ.setdefault("MEDAUDIT_SECRET", "benchmark-secret-" + "x" * 32)
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td) if args.workdir is None else args.workdir
        tmp.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        built = build(tmp, args.epochs, args.seed, train_only=args.train_only)
        if args.train_only:
            print(f"trained in {built['train_seconds']:.0f} s; runs kept in {tmp}")
            return 0
        train = built["run"].read_run_json()["train"]
        print(f"trained {train['config']['model']} {args.epochs} epochs in "
              f"{built['train_seconds']:.0f} s: OOF AUC {train['oof_auc']['estimate']:.3f}, "
              f"held-out pool AUC {train['holdout']['auc']['estimate']:.3f}", flush=True)
        prev = prevalence_bench(built["run"], args.n, args.repeats, args.seed)
        print(f"prevalence (n={args.n}, {args.repeats} resamples each; training prevalence "
              f"{prev['training_prevalence']}):")
        print("  prev   EM |err|  BBSE |err|  ECE none  temp  temp+adj(EM)  temp+adj(true)  "
              "PPV err est / naive  (true PPV)")
        for p, r in prev["by_prevalence"].items():
            print(f"  {float(p):4.2f}   {r['em_err']:.3f}     {r['bbse_err']:.3f}      "
                  f"{r['ece_none']:.3f}   {r['ece_temperature']:.3f}   {r['ece_adjusted_em']:.3f}"
                  f"         {r['ece_adjusted_true']:.3f}          {r['ppv_est_err']:.3f} / "
                  f"{r['ppv_naive_err']:.3f}  ({r['ppv_true']:.3f})", flush=True)
        drift_cfg = DriftConfig(n_perm=100, n_boot=100)
        drift = drift_bench(built["run"], built["shifted"], args.drift_repeats, args.seed,
                            drift_cfg)
        thr = throughput_bench(built["run"], tmp, built["x_pool"])
        print(f"predict: {thr['predict_images_per_s_scoring']} img/s scoring "
              f"({thr['predict_images_per_s_total']} incl. loading and writing) vs bare loop "
              f"{thr['bare_loop_images_per_s']} img/s (ratio {thr['ratio_scoring']}); max "
              f"|prob difference| {thr['max_abs_prob_difference']:.1e}")
        result = {
            "benchmark": "bench_calibration", "date": time.strftime("%Y-%m-%d"),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                        "python": platform.python_version()},
            "training": {"config": built["config"], "seconds": round(built["train_seconds"], 1),
                         "oof_auc": train["oof_auc"], "pool_auc": train["holdout"]["auc"],
                         "n_reference": train["n_cv_rows"], "n_pool": train["n_holdout_rows"]},
            "prevalence": prev, "drift": {"config": vars(drift_cfg) if hasattr(drift_cfg, "__dict__")
                                          else str(drift_cfg), "results": drift},
            "throughput": thr, "seconds": round(time.perf_counter() - t0, 1),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
