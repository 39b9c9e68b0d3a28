"""Prevalence recalibration, drift detection and predict throughput on BreastMNIST.

Data: ``breastmnist.npz`` (never copied into the repo), labels flipped so that class 1
is *malignant* (the clinically positive class; 27 % of images). The reference run is
the official ``train`` split minus a random 40 % of it (patient-grouped 5-fold CV,
``resnet10t``, ``--epochs`` epochs: small on purpose, the figures are about the
audit, not the model); the held-out pool is the rest: official ``val`` + ``test`` +
the 40 % of ``train`` (about 450 images), scored by the fold ensemble exactly as
``medaudit predict`` scores new data (``holdout_split``), with fold 0's embeddings.

1. **Prevalence recalibration**: the pool is resampled (with replacement, ``n`` rows)
   to a malignant prevalence of 0.5 / 0.25 / 0.10 / 0.05, ``--repeats`` times; each
   repeat first splits the pool at random into two halves, the batch is drawn from
   one. On each resample, the absolute error of EM and BBSE (:mod:`audit.prevalence`)
   from three sources, on the same batch:

   * *old*: the reference's OOF rows (single fold models) against the batch's
     ensemble probabilities (``oof_vs_ensemble``: the biased comparison);
   * *per fold*: the OOF rows against the batch scored by every fold model, stacked
     (``oof/pred_probs_by_fold.npy`` of ``medaudit predict`` on the pool; what the
     checks now do);
   * *held out*: the other half of the pool (labeled, ensemble scores) against the
     batch's ensemble probabilities (the ``held_out`` source of a run trained with
     ``--holdout-split``).

   Also: class-wise ECE of the raw probabilities, after temperature scaling alone,
   after temperature + Bayes adjustment to the old EM estimate, to the per-fold BBSE
   estimate and to the true prevalence (oracle); PPV at the Youden threshold as
   ``prevalence_shift`` reports it (sensitivity and specificity from the OOF rows,
   Bayes' rule at the estimated prevalence) against the PPV observed on the resample,
   and the naive PPV at the training prevalence; the coverage of the per-fold 95 %
   intervals (patient bootstrap of the stacked copies) on 20 resamples per prevalence.
2. **Drift detection**: new batches of ``n`` = 100 / 300 images drawn from the pool
   *without replacement*, unchanged (false alarms, ``--drift-repeats``: at the pool's
   own class mix, and at the reference's, since the official val/test splits shift the
   pool's prevalence a little) or through
   another scanner's intensity profile (display gamma 0.7, offset +0.06, as the
   demo's after-deployment batch; ``--shift-repeats``), each with its per-fold
   probabilities. n = 1000 exceeds the pool (452 images) and is reported as not
   drawable. Rate of batches on which the ``drift`` check raises any warning, with a
   Wilson 95 % interval.
3. **predict throughput**: :func:`training.deploy.predict_run` on the pool (x4) against
   a bare loop over the same checkpoints (timm model, ``load_state_dict``, batches,
   softmax, mean over folds) in the same process, same precision and batch size.

Usage::

    nice -n 5 env OMP_NUM_THREADS=1 .venv/bin/python bench/bench_calibration.py \
        --repeats 100 --drift-repeats 200 --shift-repeats 50 [--workdir DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
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
from audit.stats import wilson_ci

NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "breastmnist.npz"
RESULTS = Path(__file__).resolve().parent / "results"
PREVALENCES = (0.5, 0.25, 0.10, 0.05)
SIZES = (100, 300, 1000)  # 1000 exceeds the pool: reported as not drawable
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
    np.savez(
        npz, train_images=x[~held], train_labels=y[~held], test_images=x[held], test_labels=y[held]
    )
    shifted = tmp / "shifted.npz"
    np.savez(shifted, test_images=_scanner(x[held]))
    classes = ("normal_benign", "malignant")
    config = TrainConfig(
        model="resnet10t",
        epochs=epochs,
        holdout_split="test",
        seed=seed,
        quiet=True,
        masked_variants=(),
    )  # masked re-scoring is not needed here
    done = RunDir(tmp / "ref")
    recorded = (done.read_run_json().get("train") or {}) if done.has("run.json") else {}
    wanted = json.loads(json.dumps(config.to_dict()))
    auto = set(recorded.get("auto_fields") or [])  # resolved by training from the epochs
    if (
        recorded
        and (tmp / "train_seconds.txt").is_file()
        and all(recorded["config"].get(k) == v for k, v in wanted.items() if k not in auto)
    ):
        # --workdir: a finished training of the same configuration is reused (its time is
        # the one measured when it ran)
        run, train_s = done, float((tmp / "train_seconds.txt").read_text())
    else:
        run = ingest_npz(
            npz, tmp / "ref", IngestOptions(image_size=28, use_cache=False, classes=classes)
        ).run
        t0 = time.perf_counter()
        train_run(run, config)
        train_s = time.perf_counter() - t0
        (tmp / "train_seconds.txt").write_text(f"{train_s:.1f}")
    if train_only:
        return {"run": run, "train_seconds": train_s}
    pool_npz = tmp / "pool.npz"
    np.savez(pool_npz, test_images=x[held])  # the held-out rows again, scored like a new batch
    scored = {}
    for name, path in (("shifted", shifted), ("pool", pool_npz)):
        scored[name] = ingest_npz(
            path,
            tmp / name,
            IngestOptions(
                image_size=28,
                use_cache=False,
                classes=classes,
                overwrite=True,
                require_labels=False,
            ),
        ).run
        predict_run(run, scored[name])
    return {
        "run": run,
        "shifted": scored["shifted"],
        "pool": scored["pool"],
        "train_seconds": train_s,
        "config": config.to_dict(),
        "x_pool": x[held],
    }


def _stack(by_fold: np.ndarray) -> np.ndarray:
    """``(M, F, K)`` -> ``(F * M, K)``: every fold model's scores of the batch, stacked."""
    return by_fold.transpose(1, 0, 2).reshape(-1, by_fold.shape[2])


def prevalence_bench(
    run: RunDir, pool_run: RunDir, n: int, repeats: int, seed: int
) -> dict[str, Any]:
    """Prevalence estimators from three sources on the same resamples (module docstring)."""
    man = run.read_manifest()
    folds = run.read_array("oof/folds")
    probs = run.read_array("oof/pred_probs").astype(np.float64)
    y = man["label"].to_numpy()
    cv, pool = folds >= 0, folds < 0
    ys, ps, fs = y[cv], probs[cv], folds[cv]
    src = np.bincount(ys, minlength=2) / len(ys)
    cal = fit_calibrator("temperature", ys, ps)
    ps_cal = apply_calibrator(cal, ps)
    op = choose_operating_point(ys, ps_cal)  # Youden: the same cut at every prevalence
    se, sp = op.sensitivity.estimate, op.specificity.estimate
    yp, pp = y[pool], probs[pool]
    by_fold = pool_run.read_array("oof/pred_probs_by_fold").astype(np.float64)
    # predict's ensemble of the pool must be training's held-out scores of the same images
    predict_vs_training = float(np.abs(pool_run.read_array("oof/pred_probs") - pp).max())
    rng = np.random.default_rng(seed)
    out = {}
    for prev in PREVALENCES:
        rec: dict[str, list[float]] = {}

        def add(key: str, value: float, rec: dict[str, list[float]] = rec) -> None:
            rec.setdefault(key, []).append(float(value))

        for _ in range(repeats):
            # a random half of the pool is the labeled held-out source of the 'held_out'
            # estimator; the batch is resampled from the other half (for every source)
            half = rng.permutation(len(yp))
            h_src, h_tgt = half[: len(yp) // 2], half[len(yp) // 2 :]
            pos, neg = h_tgt[yp[h_tgt] == 1], h_tgt[yp[h_tgt] == 0]
            k = round(prev * n)
            idx = np.r_[rng.choice(pos, k), rng.choice(neg, n - k)]
            yt, pt = yp[idx], pp[idx]
            true = yt.mean()
            pt_cal = apply_calibrator(cal, pt)
            # old: OOF rows (single fold models) vs the batch's ensemble scores
            em, bb = em_prior(pt_cal, src)[1], bbse_prior(ys, ps, pt)[1]
            # per fold: OOF rows vs the batch scored by every fold model, stacked
            st = _stack(by_fold[idx])
            em_f = em_prior(apply_calibrator(cal, st), src)[1]
            bb_f = bbse_prior(ys, ps, st, source_folds=fs)[1]
            # held out: half of the pool (ensemble scores, labeled) vs the batch's ensemble
            yh, ph = yp[h_src], pp[h_src]
            cal_h = fit_calibrator("temperature", yh, ph)
            src_h = np.bincount(yh, minlength=2) / len(yh)
            em_h = em_prior(apply_calibrator(cal_h, pt), src_h)[1]
            bb_h = bbse_prior(yh, ph, pt)[1]
            for key, v in (
                ("em_err", em),
                ("bbse_err", bb),
                ("em_err_per_fold", em_f),
                ("bbse_err_per_fold", bb_f),
                ("em_err_held_out", em_h),
                ("bbse_err_held_out", bb_h),
            ):
                add(key, abs(v - true))
                add(key.replace("_err", "_signed_err"), v - true)
            add("ece_none", classwise_ece(yt, pt))
            add("ece_temperature", classwise_ece(yt, pt_cal))
            add("ece_adjusted_em", classwise_ece(yt, adjust_to_prevalence(pt_cal, src, em)))
            add(
                "ece_adjusted_bbse_per_fold",
                classwise_ece(yt, adjust_to_prevalence(pt_cal, src, np.clip(bb_f, 1e-3, 1 - 1e-3))),
            )
            add("ece_adjusted_true", classwise_ece(yt, adjust_to_prevalence(pt_cal, src, true)))
            call = pt_cal[:, 1] >= op.threshold  # the cut of Youden's point (prevalence-free)
            ppv_true = yt[call].mean() if call.any() else np.nan
            add("ppv_true", ppv_true)
            for key, v in (
                ("ppv_est_err", em),
                ("ppv_est_err_per_fold_bbse", bb_f),
                ("ppv_naive_err", src[1]),
            ):
                add(
                    key,
                    abs(predictive_values(se, sp, float(np.clip(v, 1e-3, 1 - 1e-3)))[0] - ppv_true),
                )
        out[str(prev)] = {k: round(float(np.nanmean(v)), 4) for k, v in rec.items()}
        for key in [k for k in rec if "_signed_err" in k]:
            out[str(prev)][key.replace("_signed_err", "_err_sd")] = round(
                float(np.std(rec[key])), 4
            )
        for key in (
            "em_err",
            "bbse_err",
            "em_err_per_fold",
            "bbse_err_per_fold",
            "em_err_held_out",
            "bbse_err_held_out",
        ):
            out[str(prev)][f"{key}_p90"] = round(float(np.nanquantile(rec[key], 0.9)), 4)
        # interval coverage of the per-fold estimates as the checks compute them (95 %,
        # patient bootstrap of the stacked copies, 100 replicates; first 20 resamples)
        out[str(prev)]["per_fold_ci_coverage"] = _coverage(
            rng, yp, by_fold, ys, ps, fs, src, cal, prev, n, min(repeats, 20)
        )
    # why the sources differ: each side's hard-call rates per class (BBSE's confusion matrix)
    stacked_pool = _stack(by_fold)
    calls = {
        name: {
            "tpr": round(float((p_.argmax(1)[y_ == 1] == 1).mean()), 4),
            "fpr": round(float((p_.argmax(1)[y_ == 0] == 1).mean()), 4),
            "n_pos": int((y_ == 1).sum()),
            "n_neg": int((y_ == 0).sum()),
        }
        for name, (y_, p_) in {
            "reference_oof": (ys, ps),
            "pool_each_fold": (np.tile(yp, by_fold.shape[1]), stacked_pool),
            "pool_ensemble": (yp, pp),
        }.items()
    }
    # how much of the error is the reference's own sampling error: the whole pool (fixed)
    # estimated with the reference's OOF rows resampled (BBSE per fold, 300 replicates)
    from audit.stats import bootstrap_ci

    whole = bootstrap_ci(
        lambda a, b, c: float(bbse_prior(a, b, stacked_pool, source_folds=c)[1]),
        ys,
        ps,
        fs,
        n_boot=300,
        seed=seed,
    )
    source_only = {
        "pool_prevalence": round(float(yp.mean()), 4),
        "bbse_per_fold_whole_pool": round(whole.estimate, 4),
        "ci95_reference_rows_resampled": [round(whole.low, 4), round(whole.high, 4)],
        "method": "percentile bootstrap of the reference's OOF rows only (the pool "
        "fixed): the uncertainty of the confusion matrix alone",
    }
    return {
        "n": n,
        "repeats": repeats,
        "training_prevalence": round(float(src[1]), 4),
        "hard_calls": calls,
        "source_uncertainty": source_only,
        "oof_sensitivity": round(se, 4),
        "oof_specificity": round(sp, 4),
        "folds": int(by_fold.shape[1]),
        "predict_vs_training_max_abs_diff": predict_vs_training,
        "sources": {
            "old": "OOF rows vs the batch's ensemble scores (em_err, bbse_err)",
            "per_fold": "OOF rows vs the batch scored by every fold model, stacked (*_per_fold)",
            "held_out": "a random half of the pool (ensemble scores, labeled) vs the "
            "batch's ensemble scores (*_held_out)",
        },
        "by_prevalence": out,
    }


def _coverage(
    rng: np.random.Generator,
    yp: np.ndarray,
    by_fold: np.ndarray,
    ys: np.ndarray,
    ps: np.ndarray,
    fs: np.ndarray,
    src: np.ndarray,
    cal: dict[str, Any],
    prev: float,
    n: int,
    repeats: int,
) -> dict[str, Any]:
    from audit.prevalence import estimate_prevalence

    pos, neg = np.flatnonzero(yp == 1), np.flatnonzero(yp == 0)
    hits = {"em": 0, "bbse": 0}
    widths: dict[str, list[float]] = {"em": [], "bbse": []}
    for _ in range(repeats):
        k = round(prev * n)
        idx = np.r_[
            rng.choice(pos, k, replace=k > len(pos)),
            rng.choice(neg, n - k, replace=n - k > len(neg)),
        ]
        true = yp[idx].mean()
        st = _stack(by_fold[idx])
        groups = np.tile(np.arange(n), by_fold.shape[1])  # one patient per image, F copies each
        em = estimate_prevalence(
            apply_calibrator(cal, st),
            method="em",
            source_prior=src,
            target_groups=groups,
            n_boot=100,
        )[1]
        bb = estimate_prevalence(
            st,
            method="bbse",
            source_labels=ys,
            source_probs=ps,
            source_folds=fs,
            target_groups=groups,
            n_boot=100,
        )[1]
        for m, e in (("em", em), ("bbse", bb)):
            hits[m] += int(e.low <= true <= e.high)
            widths[m].append(e.high - e.low)
    return {
        m: {
            "coverage": round(hits[m] / repeats, 3),
            "repeats": repeats,
            "mean_width": round(float(np.mean(widths[m])), 4),
        }
        for m in hits
    }


def drift_bench(
    run: RunDir,
    pool_run: RunDir,
    shifted: RunDir,
    repeats: dict[str, int],
    seed: int,
    config: DriftConfig,
) -> dict[str, Any]:
    """False-alarm and detection rates of the ``drift`` check (module docstring).

    Batches are drawn from the pool *without replacement*; ``repeats`` maps a condition
    to its number of batches per size.
    """
    man = run.read_manifest()
    folds = run.read_array("oof/folds")
    cv = np.flatnonzero(folds >= 0)
    props = run.read_image_properties()
    ref = ReferenceRun(
        man.iloc[cv].reset_index(drop=True),
        run.class_names(),
        run.read_array("oof/pred_probs")[cv],
        folds[cv],
        run.read_array("oof/embeddings")[cv],
        props.iloc[cv].reset_index(drop=True),
        "reference",
    )
    sources = {
        name: {
            "probs": r.read_array("oof/pred_probs"),
            "by_fold": r.read_array("oof/pred_probs_by_fold"),
            "emb": r.read_array("oof/embeddings"),
            "props": r.read_image_properties(),
        }
        for name, r in (("same_distribution", pool_run), ("intensity_shift", shifted))
    }
    # the pool's class mix differs from the reference's (official val/test splits): a
    # second false-alarm condition draws batches with the reference's prevalence
    ref_prev = float(np.mean(ref.labels == 1))
    pool_y = run.read_manifest()["label"].to_numpy()[folds < 0]
    sources = {
        "same_distribution": sources["same_distribution"],
        "same_distribution_reference_prevalence": {
            **sources["same_distribution"],
            "labels": pool_y,
        },
        "intensity_shift": sources["intensity_shift"],
    }
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for name, src in sources.items():
        m = len(src["probs"])
        for n in SIZES:
            if n > m:
                out[f"{name}_n{n}"] = {
                    "skipped": f"the pool has {m} images: a batch of {n} "
                    "cannot be drawn without replacement"
                }
                continue
            flags, secs = [], []
            aspects = {"features": 0, "metadata": 0, "properties": 0, "prevalence": 0}
            sources_used: dict[str, int] = {}
            for _ in range(repeats[name]):
                if "labels" in src:  # without replacement, with the reference's class mix
                    k = round(ref_prev * n)
                    idx = np.r_[
                        rng.choice(np.flatnonzero(src["labels"] == 1), k, replace=False),
                        rng.choice(np.flatnonzero(src["labels"] == 0), n - k, replace=False),
                    ]
                else:
                    idx = rng.choice(m, n, replace=False)
                ids = [f"n{i}" for i in range(n)]
                manifest = pd.DataFrame(
                    {
                        "sample_id": ids,
                        "label": UNLABELED,
                        "patient_key": [f"q{i}" for i in range(n)],
                    }
                )
                p = src["props"].iloc[idx].reset_index(drop=True).assign(sample_id=ids)
                ctx = AuditContext.from_arrays(
                    manifest,
                    run.class_names(),
                    pred_probs=src["probs"][idx],
                    pred_probs_by_fold=src["by_fold"][idx],
                    embeddings=src["emb"][idx],
                    image_properties=p,
                    reference=ref,
                )
                t0 = time.perf_counter()
                found = check_drift(ctx, config)
                secs.append(time.perf_counter() - t0)
                warn = [f for f in found if f.severity == "warning"]
                flags.append(bool(warn))
                for f in found:
                    if "estimator_source" in f.evidence:
                        key = f.evidence["estimator_source"]
                        sources_used[key] = sources_used.get(key, 0) + 1
                for f in warn:
                    key = (
                        "features"
                        if "c2st" in f.evidence
                        else "properties"
                        if "properties" in f.evidence
                        else "metadata"
                        if "columns" in f.evidence
                        else "prevalence"
                    )
                    aspects[key] += 1
            rate = wilson_ci(int(np.sum(flags)), len(flags))
            out[f"{name}_n{n}"] = {
                "rate": round(float(np.mean(flags)), 4),
                "reference_prevalence": round(ref_prev, 4),
                "batch_prevalence": round(float(np.mean(pool_y == 1)), 4)
                if name == "same_distribution"
                else round(ref_prev, 4)
                if "labels" in src
                else None,
                "wilson_95": [round(rate.low, 4), round(rate.high, 4)],
                "repeats": len(flags),
                "with_replacement": False,
                "by_aspect": aspects,
                "estimator_source": sources_used,
                "seconds_per_batch": round(float(np.median(secs)), 2),
            }
            print(
                f"  drift {name:18s} n={n:5d}: any warning in {np.mean(flags):.1%} of "
                f"{len(flags)} batches (Wilson 95% {rate.low:.3f}-{rate.high:.3f}) {aspects}",
                flush=True,
            )
    return out


def throughput_bench(run: RunDir, tmp: Path, x_pool: np.ndarray) -> dict[str, Any]:
    import torch

    from ingest.sources import IngestOptions, ingest_npz
    from training.dataset import ImageCache, prepare_batch
    from training.deploy import _setup, _train_config, load_fold_models, predict_run
    from training.models import embed_and_logits

    big = tmp / "big.npz"
    np.savez(big, test_images=np.concatenate([x_pool] * 4))
    new = ingest_npz(
        big,
        tmp / "big",
        IngestOptions(
            image_size=28, use_cache=False, classes=tuple(run.class_names()), require_labels=False
        ),
    ).run
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
                    xb = prepare_batch(
                        images[i : i + 128],
                        setup=setup,
                        norm=fm.norm,
                        image_size=config.image_size,
                        is_uint8=True,
                    )
                    with setup.autocast():
                        _, lg = embed_and_logits(net, xb)
                    outs.append(torch.softmax(lg.float() + torch.from_numpy(lp), 1))
                probs.append(torch.cat(outs))
            per_fold.append(torch.stack(probs).mean(0))
        bare = torch.stack(per_fold).mean(0).numpy()
    bare_s = time.perf_counter() - t1
    agree = float(np.abs(bare - new.read_array("oof/pred_probs")).max())
    return {
        "n_images": n,
        "models": summary.models,
        "predict_images_per_s_scoring": round(n / ours_score, 1),
        "predict_images_per_s_total": round(n / ours_total, 1),
        "bare_loop_images_per_s": round(n / bare_s, 1),
        "ratio_scoring": round(bare_s / ours_score, 3),
        "max_abs_prob_difference": agree,
        "note": "total includes model loading, image-property-free writes and the transaction",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument(
        "--drift-repeats",
        type=int,
        default=100,
        help="same-distribution batches per size (false alarms)",
    )
    ap.add_argument(
        "--shift-repeats",
        type=int,
        default=30,
        help="intensity-shifted batches per size (detection)",
    )
    ap.add_argument("--n", type=int, default=200, help="rows per prevalence resample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "calibration.json")
    ap.add_argument(
        "--workdir",
        type=Path,
        help="keep the runs in DIR (default: a temporary folder) and reuse a finished "
        "training of the same configuration found there",
    )
    ap.add_argument(
        "--train-only",
        action="store_true",
        help="stop after training (with --workdir: to run the analysis later)",
    )
    args = ap.parse_args(argv)
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
        print(
            f"trained {train['config']['model']} {args.epochs} epochs in "
            f"{built['train_seconds']:.0f} s: OOF AUC {train['oof_auc']['estimate']:.3f}, "
            f"held-out pool AUC {train['holdout']['auc']['estimate']:.3f}",
            flush=True,
        )
        prev = prevalence_bench(built["run"], built["pool"], args.n, args.repeats, args.seed)
        print(
            f"prevalence (n={args.n}, {args.repeats} resamples each; training prevalence "
            f"{prev['training_prevalence']}; predict vs training held-out max |diff| "
            f"{prev['predict_vs_training_max_abs_diff']:.1e}):"
        )
        print(
            "  prev  |err| EM / BBSE: OOF vs ensemble  per fold       held-out half   "
            "ECE none  temp  +adj(EM old)  +adj(BBSE per fold)  +adj(true)  "
            "PPV err EM old / BBSE per fold / naive  per-fold 95% CI coverage EM / BBSE"
        )
        for p, r in prev["by_prevalence"].items():
            cov = r["per_fold_ci_coverage"]
            print(
                f"  {float(p):4.2f}  {r['em_err']:.3f} / {r['bbse_err']:.3f}          "
                f"{r['em_err_per_fold']:.3f} / {r['bbse_err_per_fold']:.3f}  "
                f"{r['em_err_held_out']:.3f} / {r['bbse_err_held_out']:.3f}   "
                f"{r['ece_none']:.3f}   {r['ece_temperature']:.3f}  {r['ece_adjusted_em']:.3f}"
                f"         {r['ece_adjusted_bbse_per_fold']:.3f}                "
                f"{r['ece_adjusted_true']:.3f}       {r['ppv_est_err']:.3f} / "
                f"{r['ppv_est_err_per_fold_bbse']:.3f} / {r['ppv_naive_err']:.3f}   "
                f"{cov['em']['coverage']:.2f} / {cov['bbse']['coverage']:.2f}",
                flush=True,
            )
        drift_cfg = DriftConfig(n_perm=100, n_boot=100)
        drift = drift_bench(
            built["run"],
            built["pool"],
            built["shifted"],
            {
                "same_distribution": args.drift_repeats,
                "same_distribution_reference_prevalence": args.drift_repeats,
                "intensity_shift": args.shift_repeats,
            },
            args.seed,
            drift_cfg,
        )
        thr = throughput_bench(built["run"], tmp, built["x_pool"])
        print(
            f"predict: {thr['predict_images_per_s_scoring']} img/s scoring "
            f"({thr['predict_images_per_s_total']} incl. loading and writing) vs bare loop "
            f"{thr['bare_loop_images_per_s']} img/s (ratio {thr['ratio_scoring']}); max "
            f"|prob difference| {thr['max_abs_prob_difference']:.1e}"
        )
        result = {
            "benchmark": "bench_calibration",
            "date": time.strftime("%Y-%m-%d"),
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "note": "2 cores shared with other jobs (nice -n 5, OMP_NUM_THREADS=1)",
            },
            "training": {
                "config": built["config"],
                "seconds": round(built["train_seconds"], 1),
                "oof_auc": train["oof_auc"],
                "pool_auc": train["holdout"]["auc"],
                "n_reference": train["n_cv_rows"],
                "n_pool": train["n_holdout_rows"],
            },
            "prevalence": prev,
            "drift": {"config": dataclasses.asdict(drift_cfg), "results": drift},
            "throughput": thr,
            "seconds": round(time.perf_counter() - t0, 1),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
