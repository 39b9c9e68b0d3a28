"""``ground_truth.json``: what was planted, built from the plan, written and read back.

Tests and benchmarks read it with :func:`load_ground_truth` to check that the
audit finds the planted problems. The keys are listed in
:func:`load_ground_truth`; every path is relative to ``dicom/``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ingest.demo._config import CLASS_NAMES, GENERATOR_NAME, GROUND_TRUTH_FILE, DemoConfig
from ingest.demo._plan import DUPLICATE_KINDS, DemoPlan
from ingest.demo._records import Patient, PlannedImage
from ingest.demo._sites import SITES, Site, border_px, marker_box

__all__ = ["GROUND_TRUTH_VERSION", "build_ground_truth", "load_ground_truth", "write_ground_truth"]

GROUND_TRUTH_VERSION = 1
"""Schema version of ``ground_truth.json``."""

_MSG_BAD_GT = (
    "{path} is not a medaudit demo ground truth: expected generator={gen!r} and "
    "version={ver}, got generator={got_gen!r} and version={got_ver!r}"
)
_MARKER = "burned-in bright blocky 'R' glyph, top-left corner"


def build_ground_truth(cfg: DemoConfig, plan: DemoPlan) -> dict[str, Any]:
    """The ground-truth document of a generated dataset.

    Parameters
    ----------
    cfg : DemoConfig
        The validated configuration.
    plan : DemoPlan
        The plan, with identifiers and paths assigned
        (:func:`ingest.demo._identifiers.assign_identifiers`).

    Returns
    -------
    dict
        JSON-ready; keys in :func:`load_ground_truth`. Lists and mappings of
        files follow the order of their paths.
    """
    patients, images, pairs = plan.patients, plan.images, plan.pairs
    ordered = sorted(images, key=lambda im: im.path)
    valid = [im for im in ordered if im.has_pixels]
    site_of = {im.index: patients[im.patient].site for im in images}
    path_of = {im.index: im.path for im in images}
    follow_up_groups = _follow_up_groups(images)
    rendered = {im.index: bool(plan.batch.marker[im.render_row]) for im in plan.batch.rows}
    marker_of = {im.index: rendered.get(im.index if im.source is None else im.source, False)
                 for im in images}
    corrupted = [im for im in ordered if im.kind.startswith("corrupted")]

    def pair_paths(kind: str) -> list[list[str]]:
        return [[path_of[a], path_of[b]] for a, b in pairs[kind]]

    return {
        "generator": GENERATOR_NAME,
        "version": GROUND_TRUTH_VERSION,
        "config": dataclasses.asdict(cfg),
        "class_names": list(CLASS_NAMES),
        "counts": {
            "files": len(images),
            "readable_images": len(valid),
            "patients": len(patients),
            "patients_with_readable_images": len({im.patient for im in valid}),
        },
        "prevalence": _prevalence(cfg, valid, site_of),
        "shortcuts": _shortcuts(cfg),
        "sites": {
            s.key: _site_record(s, [im for im in valid if site_of[im.index] == k], cfg.image_size,
                                cfg.shortcuts)
            for k, s in enumerate(SITES)
        },
        "label_noise": _label_noise(cfg, valid, ordered),
        "exact_duplicates": pair_paths("exact_duplicate"),
        "near_duplicates": pair_paths("near_duplicate"),
        "cross_patient_duplicates": pair_paths("cross_patient_duplicate"),
        "duplicate_label_conflicts": [
            [path_of[a], path_of[b]]
            for kind in DUPLICATE_KINDS
            for a, b in pairs[kind]
            if images[a].recorded_label != images[b].recorded_label
        ],
        "multi_image_patients": len(follow_up_groups),
        "follow_up_groups": follow_up_groups,
        "corrupted": [im.path for im in corrupted],
        "corrupted_kinds": {
            im.path: ("truncated_pixel_data" if im.kind == "corrupted_truncated" else "not_dicom")
            for im in corrupted
        },
        "non_image": [im.path for im in ordered if im.kind == "non_image"],
        "true_labels": {im.path: CLASS_NAMES[im.true_label] for im in ordered},
        "images": {
            im.path: {**_image_record(im, patients, site_of, path_of), "marker": marker_of[im.index]}
            for im in valid
        },
    }


def _rate(values: list[int]) -> float | None:
    """Mean of 0/1 values rounded to 6 decimals; ``None`` when there are none."""
    return round(float(np.mean(values)), 6) if values else None


def _prevalence(
    cfg: DemoConfig, valid: list[PlannedImage], site_of: dict[int, int]
) -> dict[str, Any]:
    """True and recorded prevalence, overall and per site, over the readable images."""

    def by_site(attr: str) -> dict[str, float | None]:
        return {
            s.key: _rate([getattr(im, attr) for im in valid if site_of[im.index] == k])
            for k, s in enumerate(SITES)
        }

    return {
        "overall_true": _rate([im.true_label for im in valid]),
        "overall_recorded": _rate([im.recorded_label for im in valid]),
        "screening": cfg.screening_prevalence,
        "by_site_true": by_site("true_label"),
        "by_site_recorded": by_site("recorded_label"),
        "computed_over": "readable images (files with pixel data), duplicates included",
    }


def _shortcuts(cfg: DemoConfig) -> dict[str, Any]:
    """What the shortcut plan was (``DemoConfig.shortcuts``)."""
    if cfg.shortcuts:
        return {"planted": True, "site_prevalence": "site_b 2.2x the overall rate, site_a about "
                "half of it", "marker": "on every site_b image and no other"}
    return {"planted": False, "site_prevalence": "equal at every site (the overall rate)",
            "marker": "on a random 20% of the images, independent of site and label; the "
            "BurnedInAnnotation header stays per site"}


def _site_record(
    site: Site, members: list[PlannedImage], size: int, shortcuts: bool = True
) -> dict[str, Any]:
    """Header values and planted look of one site, and its readable images."""
    return {
        "institution_name": site.institution,
        "manufacturer": site.manufacturer,
        "model": site.model,
        "modality": site.modality,
        "sop_class_uid": site.sop_class,
        "photometric_interpretation": site.photometric,
        "rescale_slope": site.rescale_slope,
        "rescale_intercept": site.rescale_intercept,
        "window_center": site.window_center,
        "window_width": site.window_width,
        "gamma": site.gamma,
        "brightness": site.brightness,
        "contrast": site.contrast,
        "noise_factor": site.noise,
        "marker": _MARKER if site.marker and shortcuts else None,
        "marker_box": list(marker_box(size)) if site.marker and shortcuts else None,
        "collimation_border_px": border_px(site, size),
        "description": site.description,
        "n_images": len(members),
        "n_patients": len({im.patient for im in members}),
    }


def _label_noise(
    cfg: DemoConfig, valid: list[PlannedImage], ordered: list[PlannedImage]
) -> dict[str, Any]:
    """Noise rates, counts and every flipped file."""
    n_pos = sum(im.true_label for im in valid)
    return {
        "fn_rate": cfg.label_noise_fn_rate,
        "fp_rate": cfg.label_noise_fp_rate,
        "n_true_positive": n_pos,
        "n_true_negative": len(valid) - n_pos,
        "n_flipped_positive_to_negative": sum(
            1 for im in valid if im.true_label == 1 and im.recorded_label == 0
        ),
        "n_flipped_negative_to_positive": sum(
            1 for im in valid if im.true_label == 0 and im.recorded_label == 1
        ),
        "scope": "per image, over readable images (duplicates included)",
        "flipped": [
            {
                "path": im.path,
                "true_label": CLASS_NAMES[im.true_label],
                "recorded_label": CLASS_NAMES[im.recorded_label],
            }
            for im in ordered
            if im.true_label != im.recorded_label
        ],
    }


def _follow_up_groups(images: list[PlannedImage]) -> list[list[str]]:
    """Sorted paths of the original and follow-up images of each multi-image patient."""
    groups: dict[int, list[str]] = {}
    for im in images:
        if im.kind in ("original", "follow_up"):
            groups.setdefault(im.patient, []).append(im.path)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def _image_record(
    im: PlannedImage, patients: list[Patient], site_of: dict[int, int], path_of: dict[int, str]
) -> dict[str, Any]:
    """What one readable image is: site, opaque patient folders, kind, labels, lesion."""
    return {
        "site": SITES[site_of[im.index]].key,
        "patient": int(patients[im.patient].folder),
        "true_patient": int(patients[im.true_patient].folder),
        "kind": im.kind,
        "source": None if im.source is None else path_of[im.source],
        "view": im.view,
        "true_label": CLASS_NAMES[im.true_label],
        "recorded_label": CLASS_NAMES[im.recorded_label],
        "lesion": im.lesion,
    }


def write_ground_truth(path: Path, truth: dict[str, Any]) -> Path:
    """Write ``truth`` as indented JSON (UTF-8, ``\\n`` line ends) and return ``path``."""
    path.write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8", newline="")
    return path


def load_ground_truth(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``ground_truth.json`` written by :func:`generate_demo`.

    Parameters
    ----------
    path : str or os.PathLike
        The JSON file, or the dataset root that contains it.

    Returns
    -------
    dict
        The parsed ground truth (keys below).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is not a medaudit demo ground truth of a known version.

    Notes
    -----
    Keys: ``generator``, ``version``, ``config``, ``class_names``, ``counts``,
    ``prevalence`` (``overall_true``, ``overall_recorded``, ``screening``,
    ``by_site_true``, ``by_site_recorded``, ``computed_over``), ``sites``
    (per-site header values and planted look), ``label_noise`` (``fn_rate``,
    ``fp_rate``, counts and ``flipped`` records with ``path``, ``true_label``,
    ``recorded_label``), ``exact_duplicates``, ``near_duplicates``,
    ``cross_patient_duplicates`` (``[source, copy]`` pairs),
    ``duplicate_label_conflicts``, ``multi_image_patients``,
    ``follow_up_groups``, ``corrupted``, ``corrupted_kinds``, ``non_image``,
    ``true_labels`` (every labels.csv path) and ``images`` (per readable image:
    ``site``, ``patient`` and ``true_patient`` as opaque folder indices,
    ``kind``, ``source``, ``view``, ``true_label``, ``recorded_label`` and
    ``lesion`` with ``row``, ``col``, ``diameter_px``, ``sigma_px``,
    ``peak_contrast`` or null, and ``marker``: whether the 'R' is burned in).
    ``shortcuts`` says whether the site shortcut was planted
    (``DemoConfig.shortcuts``). Every path is relative to ``dicom/``.
    """
    p = Path(path)
    if p.is_dir():
        p = p / GROUND_TRUTH_FILE
    if not p.is_file():
        raise FileNotFoundError(f"demo ground truth not found: {p}")
    data = json.loads(p.read_text(encoding="utf-8"))
    if (
        not isinstance(data, dict)
        or data.get("generator") != GENERATOR_NAME
        or data.get("version") != GROUND_TRUTH_VERSION
    ):
        got = data if isinstance(data, dict) else {}
        raise ValueError(
            _MSG_BAD_GT.format(
                path=p,
                gen=GENERATOR_NAME,
                ver=GROUND_TRUTH_VERSION,
                got_gen=got.get("generator"),
                got_ver=got.get("version"),
            )
        )
    return data
