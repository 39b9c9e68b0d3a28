"""``medaudit ingest``: turn a manifest, a DICOM folder or an npz into a run directory."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from ingest.sources import IngestOptions, IngestSummary
from medaudit.pipeline import IngestSource, run_ingest

__all__ = ["add_ingest_arguments", "add_parser", "ingest_from_args", "print_ingest_summary", "run"]

#: Refused inputs printed in full before the summary points to quarantine.csv.
MAX_REFUSED_SHOWN = 20


def add_ingest_arguments(parser: argparse.ArgumentParser) -> None:
    """Source and image-cache options shared by ``ingest``, ``run`` and ``demo``."""
    src = parser.add_argument_group("input (exactly one)")
    src.add_argument("--manifest", type=Path, help="CSV with path, label and optional metadata columns")
    src.add_argument("--dicom-dir", type=Path, help="folder of DICOM files (with --labels)")
    src.add_argument("--labels", type=Path, help="labels CSV for --dicom-dir: label + one key column "
                     "(sop_instance_uid, study_instance_uid or path)")
    src.add_argument("--npz", type=Path, help="MedMNIST-layout npz (train_/val_/test_ images+labels)")
    cache = parser.add_argument_group("image cache")
    cache.add_argument("--image-size", type=int, default=IngestOptions.image_size,
                       help="side of the square cache images (default: %(default)s)")
    cache.add_argument("--channels", choices=["gray", "rgb"], default="gray",
                       help="store 1 grey channel or 3 RGB channels (default: %(default)s)")
    cache.add_argument("--frame-policy", choices=["middle", "first"], default="middle",
                       help="frame used from multi-frame DICOMs (default: %(default)s)")
    cache.add_argument("--classes", help="class names in index order, comma-separated "
                       "(default: inferred from the labels)")
    cache.add_argument("--secret-file", type=Path, help="pseudonymisation key file "
                       "(default: $MEDAUDIT_SECRET or ~/.config/medaudit/secret.key, created on first use)")
    cache.add_argument("--cache-dir", type=Path, help="ingest cache (default: ~/.cache/medaudit)")
    cache.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    cache.add_argument("--overwrite", action="store_true",
                       help="replace a run directory that holds results of other inputs")


def ingest_from_args(args: argparse.Namespace, out: Path) -> IngestSummary:
    """Run ingestion from parsed arguments (see :func:`add_ingest_arguments`)."""
    given = [n for n in ("manifest", "dicom_dir", "npz") if getattr(args, n) is not None]
    if len(given) != 1:
        raise ValueError(
            "give exactly one input: --manifest CSV, --dicom-dir DIR --labels CSV, or --npz FILE"
            + (f" (got {', '.join('--' + g.replace('_', '-') for g in given)})" if given else "")
        )
    if args.dicom_dir is not None and args.labels is None:
        raise ValueError("--dicom-dir needs --labels CSV (label + sop_instance_uid, "
                         "study_instance_uid or path column)")
    options = IngestOptions(
        image_size=args.image_size,
        channels=args.channels,
        frame_policy=args.frame_policy,
        classes=tuple(c.strip() for c in args.classes.split(",")) if args.classes else None,
        secret_file=args.secret_file,
        cache_dir=args.cache_dir,
        use_cache=not args.no_cache,
        overwrite=args.overwrite,
    )
    source = IngestSource(manifest=args.manifest, dicom_dir=args.dicom_dir, labels=args.labels,
                          npz=args.npz)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the summary lists the warnings once
        return run_ingest(source, out, options)


def print_ingest_summary(summary: IngestSummary) -> None:
    """Print refused inputs (first few) and the summary."""
    refused = summary.run.read_quarantine()
    for _, r in refused.head(MAX_REFUSED_SHOWN).iterrows():
        print(f"refused {r['source']}: {r['reason']}")
    if len(refused) > MAX_REFUSED_SHOWN:
        print(f"... and {len(refused) - MAX_REFUSED_SHOWN} more refused inputs")
    print(summary.text)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``medaudit ingest``."""
    p = sub.add_parser("ingest", help="build a run directory from images and labels",
                       description=__doc__)
    add_ingest_arguments(p)
    p.add_argument("--out", type=Path, required=True, help="run directory to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``medaudit ingest``."""
    print_ingest_summary(ingest_from_args(args, args.out))
    return 0
