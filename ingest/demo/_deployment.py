"""An "after deployment" batch for the demo: another scanner, the screening prevalence.

:func:`generate_deployment_batch` renders a clean batch (no label noise, duplicates
or broken files) with the demo generator at the screening prevalence, then re-stores
every image as if a new scanner had acquired it: a brighter, flatter intensity
profile (a gamma and an offset in display space, applied through each file's own
rescale, window and photometric interpretation, so that ingestion sees the change),
and a new manufacturer and model in the header. ``ground_truth.json`` records what
was planted, so that tests and the demo can check that ``medaudit drift`` finds it.

Layout written under ``out_dir``::

    dicom/...             # the batch's DICOM files
    labels.csv            # path, label (true class names; predict does not need them)
    ground_truth.json     # kind 'deployment_batch': prevalence, scanner, intensity profile
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ingest.demo._config import CLASS_NAMES, GENERATOR_NAME, DemoConfig

__all__ = ["DEPLOYMENT_KIND", "DeploymentConfig", "generate_deployment_batch"]

#: ``ground_truth.json['kind']`` of a deployment batch.
DEPLOYMENT_KIND = "deployment_batch"


@dataclass(frozen=True)
class DeploymentConfig:
    """What the after-deployment batch looks like.

    Attributes
    ----------
    n_patients : int
        Patients of the batch (about 1.3 images each).
    image_size : int
        Stored DICOM side (as the training data's).
    prevalence : float
        True prevalence of 'nodule' (the screening prevalence, 0.05).
    gamma : float
        Display-space gamma of the new scanner (< 1: brighter mid-tones).
    offset : float
        Display-space offset of the new scanner (a brighter baseline).
    manufacturer, model : str
        Header of the new scanner.
    seed : int
        Seed of the batch (different from the training data's).
    """

    n_patients: int = 300
    image_size: int = 128
    prevalence: float = 0.05
    gamma: float = 0.7
    offset: float = 0.06
    manufacturer: str = "Deltaray Medical"
    model: str = "DR-9000 Vision"
    seed: int = 1001


def _restore(ds: Any, profile: DeploymentConfig) -> None:
    """Re-store ``ds``'s pixels through the new scanner's display-space profile."""
    stored = ds.pixel_array.astype(np.float64)
    slope = float(getattr(ds, "RescaleSlope", 1.0))
    intercept = float(getattr(ds, "RescaleIntercept", 0.0))
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    lo, hi = center - width / 2, center + width / 2
    t = np.clip((stored * slope + intercept - lo) / (hi - lo), 0.0, 1.0)
    inverted = ds.PhotometricInterpretation == "MONOCHROME1"
    display = 1.0 - t if inverted else t
    display = np.clip(display**profile.gamma + profile.offset, 0.0, 1.0)
    t = 1.0 - display if inverted else display
    new = (lo + t * (hi - lo) - intercept) / slope
    top = 2 ** int(ds.BitsStored) - 1
    ds.PixelData = np.clip(np.rint(new), 0, top).astype(ds.pixel_array.dtype).tobytes()
    ds.Manufacturer = profile.manufacturer
    ds.ManufacturerModelName = profile.model


def generate_deployment_batch(
    out_dir: str | os.PathLike[str], config: DeploymentConfig = DeploymentConfig()
) -> dict[str, Any]:
    """Write the after-deployment batch and its ground truth (see the module docstring).

    Parameters
    ----------
    out_dir : path-like
        New or empty folder.
    config : DeploymentConfig

    Returns
    -------
    dict
        The ground truth (also in ``out_dir/ground_truth.json``): ``kind``, ``config``,
        ``n_images``, ``prevalence`` (``target``, ``true``), ``planted`` (what a drift
        check should find).

    Raises
    ------
    FileExistsError
        When ``out_dir/dicom`` already holds files.
    """
    import pydicom

    from ingest.demo._generate import generate_demo

    root = Path(out_dir)
    if (root / "dicom").exists() and any((root / "dicom").iterdir()):
        raise FileExistsError(f"{root / 'dicom'} already holds files; choose a new folder")
    render = root / ".render"
    demo_cfg = DemoConfig(
        n_patients=config.n_patients, image_size=config.image_size, prevalence=config.prevalence,
        screening_prevalence=config.prevalence, label_noise_fn_rate=0.0, label_noise_fp_rate=0.0,
        n_exact_duplicates=0, n_near_duplicates=0, n_cross_patient_duplicates=0, n_corrupted=0,
        n_non_image=0, seed=config.seed)
    try:
        ds_paths = generate_demo(render, demo_cfg)
        labels = ds_paths.labels_csv.read_text(encoding="utf-8")
        rows = [line.split(",") for line in labels.strip().splitlines()[1:]]
        for rel, _ in rows:
            src, dst = ds_paths.dicom_dir / rel, root / "dicom" / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            ds = pydicom.dcmread(src)
            _restore(ds, config)
            ds.save_as(dst)
        (root / "labels.csv").write_text(labels, encoding="utf-8", newline="")
    finally:
        shutil.rmtree(render, ignore_errors=True)
    n_pos = sum(1 for _, lab in rows if lab == CLASS_NAMES[1])
    truth = {
        "generator": GENERATOR_NAME,
        "kind": DEPLOYMENT_KIND,
        "config": dataclasses.asdict(config),
        "n_images": len(rows),
        "prevalence": {"target": config.prevalence, "true": round(n_pos / max(len(rows), 1), 4),
                       "class": CLASS_NAMES[1]},
        "planted": {
            "scanner": {"manufacturer": config.manufacturer, "model": config.model},
            "intensity_profile": {"display_gamma": config.gamma, "display_offset": config.offset,
                                  "effect": "brighter, flatter images (higher mean intensity)"},
            "expected_drift": ["image properties: mean_intensity up",
                               "metadata: scanner / manufacturer changed",
                               f"prevalence of {CLASS_NAMES[1]!r} down to about "
                               f"{config.prevalence:.0%} (detectable with a model that "
                               "separates the classes)"],
        },
    }
    (root / "ground_truth.json").write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    return truth
