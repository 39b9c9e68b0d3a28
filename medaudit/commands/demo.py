"""``medaudit demo`` and ``medaudit demo-data``: the built-in synthetic dataset.

``demo-data`` writes the dataset (DICOM files, ``labels.csv`` and the
``ground_truth.json`` of planted problems). ``demo`` generates it when needed,
then runs every stage (ingest, train, audit, report) on it and prints where the
reports are.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import asdict
from pathlib import Path

from ingest.demo import (
    CLASS_NAMES,
    GENERATOR_NAME,
    DemoConfig,
    generate_demo,
    load_ground_truth,
)
from medaudit.commands.ingest import add_ingest_arguments
from medaudit.commands.run import add_stage_arguments, run_stages

__all__ = ["DEMO_EPOCHS", "DEMO_MIXUP", "DEMO_MODEL", "add_parser", "ensure_demo_data", "run_demo", "run_demo_data"]

#: Epochs per fold in ``medaudit demo`` (``--epochs`` overrides).
DEMO_EPOCHS = 10

#: Architecture of ``medaudit demo`` (``--model`` overrides): timm's ``resnet10t``,
#: which is also the training default since 2026-11-30. (With ResNet-18, the default
#: before, 5 folds x 10 epochs plus the refit on the ~2,000 demo images at 64 px took
#: 10m45s on 2 CPU cores; ``resnet10t`` trains 1.55x faster.)
DEMO_MODEL = "resnet10t"

#: Mixup of ``medaudit demo`` (``--mixup`` overrides): ``None``, the training default,
#: which derives it from the epochs (:func:`training.budget.budget_defaults`: off at the
#: demo's 10 epochs, where the fixed 0.2 of before cost about 0.05 of fold AUC).
DEMO_MIXUP = None


def _add_demo_data_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("demo data")
    g.add_argument("--n-patients", type=int, default=DemoConfig.n_patients,
                   help="patients to simulate (default: %(default)s, about 2,000 images)")
    g.add_argument("--dicom-size", type=int, default=DemoConfig.image_size,
                   help="rows and columns of the written DICOM images (default: %(default)s)")
    g.add_argument("--demo-seed", type=int, default=DemoConfig.seed, help="generator seed")
    g.add_argument("--no-shortcuts", dest="shortcuts", action="store_false",
                   help="the same data without the planted site shortcut: equal prevalence at "
                   "every site and the corner marker on random images (a control for the "
                   "shortcut checks)")


def _demo_config(args: argparse.Namespace) -> DemoConfig:
    return DemoConfig(n_patients=args.n_patients, image_size=args.dicom_size, seed=args.demo_seed,
                      shortcuts=args.shortcuts)


def ensure_demo_data(data_dir: Path, config: DemoConfig) -> Path:
    """Generate the demo data into ``data_dir`` unless the same config is already there.

    A folder holding demo data of another config is replaced; a non-empty folder
    that is not demo data is never touched (``ValueError``).
    """
    gt = data_dir / "ground_truth.json"
    if gt.exists():
        try:
            truth = load_ground_truth(gt)
        except ValueError:
            truth = {}
        if truth.get("config") == json.loads(json.dumps(asdict(config), default=str)):
            return data_dir
        if truth.get("generator") == GENERATOR_NAME:
            shutil.rmtree(data_dir)
    elif data_dir.exists() and any(data_dir.iterdir()):
        raise ValueError(
            f"--data-dir {data_dir} is not empty and holds no demo data; choose an empty folder"
        )
    generate_demo(data_dir, config)
    return data_dir


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``medaudit demo`` and ``medaudit demo-data``."""
    d = sub.add_parser("demo-data", help="write the synthetic demo dataset",
                       description="Write the synthetic demo dataset (DICOM + labels.csv + "
                       "ground_truth.json of the planted problems).")
    d.add_argument("--out", type=Path, required=True, help="folder to write")
    _add_demo_data_arguments(d)
    d.set_defaults(func=run_demo_data)

    p = sub.add_parser("demo", help="generate the demo data and run every stage on it",
                       description=__doc__)
    p.add_argument("--out", type=Path, default=Path("runs/demo"),
                   help="run directory (default: %(default)s)")
    p.add_argument("--data-dir", type=Path, default=Path("runs/demo-data"),
                   help="where the demo dataset is written (default: %(default)s)")
    _add_demo_data_arguments(p)
    add_ingest_arguments(p)
    add_stage_arguments(p)
    p.set_defaults(func=run_demo, epochs=DEMO_EPOCHS, model=DEMO_MODEL, mixup=DEMO_MIXUP)


def run_demo_data(args: argparse.Namespace) -> int:
    """``medaudit demo-data``."""
    ds = generate_demo(args.out, _demo_config(args))
    print(f"demo DICOM files: {ds.dicom_dir}\nlabels: {ds.labels_csv}\n"
          f"planted problems: {ds.ground_truth}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """``medaudit demo``: demo data, then ingest -> train -> audit -> report into ``--out``."""
    data = ensure_demo_data(args.data_dir, _demo_config(args))
    print(f"demo data: {data} (planted problems: {data / 'ground_truth.json'})")
    args.dicom_dir, args.labels, args.manifest, args.npz = data / "dicom", data / "labels.csv", None, None
    if args.classes is None:
        args.classes = ",".join(CLASS_NAMES)
    args.overwrite = True
    return run_stages(args, args.out)
