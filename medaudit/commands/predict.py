"""``medaudit predict``: score new images with a trained run's fold ensemble.

The new images are ingested like any others (validation, quarantine of bad files,
pseudonymisation, image properties) with the trained run's class list, image size,
channels and frame policy, but labels are optional: a manifest without a ``label``
column, a DICOM folder without ``--labels`` or an npz without ``*_labels`` gives an
unlabeled run (``run.json['has_labels']`` false). The fold models then score every
image (:func:`training.deploy.predict_run`); the new run names the trained run as
its reference, so ``medaudit drift`` and ``medaudit audit`` compare the two.

``--executor ray`` scores blocks of rows as Ray tasks (each loads the fold
checkpoints) and joins them in row order: the same arrays as ``--executor local``
(docs/scale-out.md).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from medaudit.commands.executor_options import add_executor_arguments, executor_from_args

if TYPE_CHECKING:  # pragma: no cover
    from training.executors import Executor

__all__ = ["add_parser", "predict_into", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``medaudit predict``."""
    p = sub.add_parser("predict", help="score new images with a trained run's fold models",
                       description=__doc__)
    p.add_argument("trained_run", type=Path, metavar="TRAINED_RUN", help="a trained run directory")
    src = p.add_argument_group("input (exactly one; labels optional)")
    src.add_argument("--manifest", type=Path, help="CSV with path and optional label and metadata")
    src.add_argument("--dicom-dir", type=Path, help="folder of DICOM files (--labels optional)")
    src.add_argument("--labels", type=Path, help="labels CSV for --dicom-dir (optional)")
    src.add_argument("--npz", type=Path, help="MedMNIST-layout npz (labels optional)")
    p.add_argument("--out", type=Path, required=True, help="new run directory to write")
    p.add_argument("--secret-file", type=Path, help="pseudonymisation key file (default: "
                   "$MEDAUDIT_SECRET or ~/.config/medaudit/secret.key); use the trained run's")
    p.add_argument("--cache-dir", type=Path, help="ingest cache (default: ~/.cache/medaudit)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p.add_argument("--batch-size", type=int, default=128, help="images per forward pass")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (with --executor ray: per task, default "
                   "--cpus-per-fold)")
    add_executor_arguments(p, unit="a block of rows")
    p.set_defaults(func=run)


def predict_into(args: argparse.Namespace, trained: Path, out: Path, *,
                 executor: Executor | None = None) -> object:
    """Ingest ``args``' input with ``trained``'s options, unlabeled allowed, then score it.

    ``executor`` defaults to the one of ``--executor`` (checked before ingesting),
    or the local one when ``args`` has no such option.
    """
    from audit.rundir import RunDir
    from ingest.sources import IngestOptions
    from medaudit.commands.ingest import print_ingest_summary
    from medaudit.pipeline import IngestSource, run_ingest
    from training.deploy import predict_run

    given = [n for n in ("manifest", "dicom_dir", "npz") if getattr(args, n) is not None]
    if len(given) != 1:
        raise ValueError("give exactly one input: --manifest CSV, --dicom-dir DIR, or --npz FILE")
    ref = RunDir(trained)
    info = ref.read_run_json()
    if "train" not in info:
        raise ValueError(f"{trained} is not a trained run directory (no 'train' section in "
                         f"run.json); run medaudit train {trained} first")
    if executor is None and hasattr(args, "executor"):
        executor = executor_from_args(args)  # Ray installed and reachable, before ingesting
    opts = (info.get("ingest") or {}).get("options") or {}
    options = IngestOptions(
        image_size=int(opts.get("image_size", IngestOptions.image_size)),
        channels=opts.get("channels", "gray"),
        frame_policy=opts.get("frame_policy", "middle"),
        classes=tuple(ref.class_names()),
        secret_file=args.secret_file, cache_dir=args.cache_dir, use_cache=not args.no_cache,
        overwrite=args.overwrite, require_labels=False,
    )
    source = IngestSource(manifest=args.manifest, dicom_dir=args.dicom_dir, labels=args.labels,
                          npz=args.npz)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the summary lists the warnings once
        summary = run_ingest(source, out, options)
    print_ingest_summary(summary)
    result = predict_run(ref, summary.run, batch_size=args.batch_size, device=args.device,
                         threads=args.threads, executor=executor,
                         quiet=bool(getattr(args, "quiet", False)))
    print(result.text)
    return result


def run(args: argparse.Namespace) -> int:
    """``medaudit predict``."""
    predict_into(args, args.trained_run, args.out)
    print(f"next: medaudit drift {args.trained_run} {args.out}")
    return 0
