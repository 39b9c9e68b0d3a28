"""Speed benchmark: ``train_run`` images/s against a bare fp32 PyTorch loop.

A synthetic 64 px run directory (planted, learnable signal) is trained three
ways in the same process, with the same model (by default the training default,
timm ``resnet10t``, random init), rows, batch size and number of epochs:

1. ``bare fp32``: a minimal loop over the training rows of each fold (whole
   cache pre-normalised in memory, AdamW, cross-entropy; no augmentation, no
   validation, no scoring);
2. ``medaudit --precision fp32``: :func:`training.train_run`;
3. ``medaudit auto``: :func:`training.train_run` with automatic precision
   (bf16 autocast + channels-last on a CPU with native bf16).

Two throughputs are reported for medaudit: *training-phase* images/s (time in
the training epochs only: batch reading, augmentation, forward, backward,
step) and *end-to-end* images/s (training images divided by the whole wall
time of ``train_run``, which also includes inner-validation passes every epoch,
in-sample scoring, OOF scoring on the original and 3 masked variants, writing
artifacts). Early stopping and the refit are off (``patience=0``,
``refit=False``) so every variant trains the same number of epochs once.

Usage::

    .venv/bin/python bench/bench_train_speed.py [--n 1200] [--epochs 3] [--folds 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import get_args

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from audit.metrics import auc_with_ci
from audit.rundir import RunDir
from training import TrainConfig, train_run
from training.config import StemPool
from training.models import drop_stem_pool, resolve_stem_pool
from training.reproducibility import fold_seed, seed_everything
from training.run_context import load_context
from training.splits import fold_split

RESULTS = Path(__file__).resolve().parent / "results"


def make_run(path: Path, *, n: int, size: int, seed: int = 0) -> RunDir:
    """A 2-class synthetic run: class-1 images carry a bright blob, on textured noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    yy, xx = np.mgrid[0:size, 0:size] / size
    imgs = np.empty((n, 1, size, size), np.float32)
    for i, y in enumerate(labels):
        base = 0.45 + 0.1 * np.sin(xx * rng.uniform(4, 9) + rng.uniform(0, 6)) * np.cos(
            yy * rng.uniform(4, 9))
        img = base + rng.normal(0, 0.08, (size, size))
        if y:
            cy, cx = rng.uniform(0.25, 0.75, 2)
            img += 0.3 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.01)
        imgs[i, 0] = img
    imgs = (np.clip(imgs, 0, 1) * 255).astype(np.uint8)
    manifest = pd.DataFrame({
        "sample_id": [f"s{i:05d}" for i in range(n)],
        "label": labels,
        "label_name": np.where(labels == 1, "lesion", "normal"),
        "patient_key": [f"p{i:05d}" for i in range(n)],
    })
    run = RunDir(path)
    run.write_manifest(manifest)
    run.write_array("images", imgs)
    run.update_run_json({"classes": ["normal", "lesion"]})
    return run


def bare_loop(run: RunDir, config: TrainConfig) -> dict[str, float]:
    """Minimal fp32 loop on each fold's training rows; returns images, seconds, OOF AUC."""
    import timm

    ctx = load_context(run, config)
    images = torch.from_numpy(run.read_array("images")).float().div_(255)
    images = (images - images.mean()) / images.std()
    labels = torch.from_numpy(ctx.labels.copy())
    n_images, seconds = 0, 0.0
    probs = np.zeros((len(ctx.labels), 2), np.float32)
    for f in range(config.folds):
        split = fold_split(ctx.folds, f, ctx.labels, ctx.groups,
                           inner_val_fraction=config.inner_val_fraction, seed=config.seed)
        seed_everything(fold_seed(config.seed, f))
        gen = torch.Generator().manual_seed(f)
        model = timm.create_model(config.model, pretrained=False, num_classes=2, in_chans=1)
        if resolve_stem_pool(model, config.stem_pool, images.shape[-1]) == "drop":
            drop_stem_pool(model)  # the same architecture as train_run builds
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        rows = torch.from_numpy(split.train)
        bs = config.batch_size
        t0 = time.perf_counter()
        for _ in range(config.epochs):
            model.train()
            order = rows[torch.randperm(len(rows), generator=gen)]
            for i in range(0, len(order) - bs + 1, bs):
                idx = order[i : i + bs]
                loss = F.cross_entropy(model(images[idx]), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                n_images += len(idx)
        seconds += time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            oof = torch.from_numpy(split.oof)
            probs[split.oof] = torch.softmax(model(images[oof]), 1).numpy()
    auc = auc_with_ci(ctx.labels, probs)
    return {"images": n_images, "seconds": seconds, "images_per_s": n_images / seconds,
            "oof_auc": auc.to_dict()}


def ours(run: RunDir, config: TrainConfig) -> dict[str, object]:
    """train_run in a fresh train/ folder; training-phase and end-to-end images/s."""
    import shutil

    shutil.rmtree(run.path / "train", ignore_errors=True)
    t0 = time.perf_counter()
    summary = train_run(run, config)
    wall = time.perf_counter() - t0
    images = sum(f.train_images for f in summary.folds)
    train_s = sum(f.train_seconds for f in summary.folds)
    return {
        "precision": summary.setup["precision"], "channels_last": summary.setup["channels_last"],
        "images": images, "train_seconds": train_s, "wall_seconds": wall,
        "train_images_per_s": images / train_s, "end_to_end_images_per_s": images / wall,
        "oof_auc": summary.oof_auc.to_dict(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1200, help="images in the synthetic run")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--model", default=TrainConfig.model)
    ap.add_argument("--stem-pool", choices=get_args(StemPool), default=TrainConfig.stem_pool,
                    help="stem max-pool policy, applied to both loops (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="rounds of the three variants (median ratio over rounds; default 1)")
    ap.add_argument("--name", default="train_speed")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    base = TrainConfig(model=args.model, folds=args.folds, epochs=args.epochs,
                       batch_size=args.batch_size, stem_pool=args.stem_pool, patience=0,
                       refit=False, quiet=True)
    load_before = os.getloadavg()
    rounds: list[dict[str, dict]] = []
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp) / "run", n=args.n, size=args.size)
        for r in range(args.repeats):
            # Variants alternate inside each round, so a slow spell of a shared host hits
            # one round's three variants alike rather than one variant only.
            tag = f"round {r + 1}/{args.repeats}: "
            print(tag + "bare fp32 loop ...", file=sys.stderr, flush=True)
            bare = bare_loop(run, base)
            print(tag + "medaudit --precision fp32 ...", file=sys.stderr, flush=True)
            fp32 = ours(run, base.replace(precision="fp32"))
            print(tag + "medaudit auto precision ...", file=sys.stderr, flush=True)
            auto = ours(run, base.replace(precision="auto"))
            rounds.append({"bare_fp32": bare, "medaudit_fp32": fp32, "medaudit_auto": auto})
    load_after = os.getloadavg()

    def round_ratios(rd: dict[str, dict]) -> dict[str, float]:
        b = rd["bare_fp32"]["images_per_s"]
        return {
            f"{v}_{phase}": rd[f"medaudit_{v}"][f"{key}_images_per_s"] / b
            for v in ("fp32", "auto") for phase, key in (("train_phase", "train"), ("end_to_end", "end_to_end"))
        }

    per_round = [round_ratios(rd) for rd in rounds]
    ratios = {k: float(np.median([pr[k] for pr in per_round])) for k in per_round[0]}
    ranges = {k: [min(pr[k] for pr in per_round), max(pr[k] for pr in per_round)] for k in per_round[0]}

    def med(variant: str, key: str) -> float:
        return float(np.median([rd[variant][key] for rd in rounds]))

    last = rounds[-1]
    fp32, auto = last["medaudit_fp32"], last["medaudit_auto"]
    rows = [
        ("bare fp32 PyTorch loop", med("bare_fp32", "images_per_s"), 1.0, None, None,
         last["bare_fp32"]["oof_auc"]),
        (f"medaudit --precision fp32 ({fp32['precision']})", med("medaudit_fp32", "train_images_per_s"),
         ratios["fp32_train_phase"], med("medaudit_fp32", "end_to_end_images_per_s"),
         ratios["fp32_end_to_end"], fp32["oof_auc"]),
        (f"medaudit auto ({auto['precision']}"
         + (" + channels-last)" if auto["channels_last"] else ")"),
         med("medaudit_auto", "train_images_per_s"), ratios["auto_train_phase"],
         med("medaudit_auto", "end_to_end_images_per_s"), ratios["auto_end_to_end"], auto["oof_auc"]),
    ]
    print(f"\n{args.model} (stem pool {args.stem_pool}), {args.n} images {args.size}px, "
          f"{args.folds} folds x {args.epochs} epochs, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, {args.repeats} round(s) (medians); "
          f"load average before/after {load_before[0]:.1f}/{load_after[0]:.1f}")
    print(f"{'variant':44s} {'train img/s':>11s} {'ratio':>6s} {'end-to-end img/s':>17s} "
          f"{'ratio':>6s}  OOF AUC [95% CI]")
    for name, train_ips, train_ratio, e2e, e2e_ratio, auc in rows:
        e2e_s = f"{e2e:17.1f} {e2e_ratio:6.2f}" if e2e else f"{'-':>17s} {'-':>6s}"
        lo, hi = auc["ci_low"], auc["ci_high"]
        print(f"{name:44s} {train_ips:11.1f} {train_ratio:6.2f} {e2e_s}  "
              f"{auc['estimate']:.3f} [{lo:.3f}, {hi:.3f}]")
    if args.repeats > 1:
        for k, (lo, hi) in ranges.items():
            print(f"  {k:22s} ratio per round: " + ", ".join(f"{pr[k]:.2f}" for pr in per_round)
                  + f"  (range {lo:.2f}-{hi:.2f})")
    out = {
        "benchmark": "train_speed", "model": args.model, "stem_pool": args.stem_pool, "n": args.n,
        "size": args.size, "epochs": args.epochs, "folds": args.folds, "batch_size": args.batch_size,
        "threads": torch.get_num_threads(), "repeats": args.repeats,
        "loadavg_before": load_before, "loadavg_after": load_after,
        **last, "rounds": rounds,
        "ratios": ratios, "ratio_range": ranges, "ratios_per_round": per_round,
        "ratio_method": "within-round ratio against the bare loop of the same round; median over rounds",
        "goals": {"fp32": ">= 0.95", "auto": ">= 1.7"},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"figures written to {RESULTS / (args.name + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
