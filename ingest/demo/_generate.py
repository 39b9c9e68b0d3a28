""":func:`generate_demo`: plan, name, render and write, then the labels and the ground truth."""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ingest.demo._appearance import near_duplicate, render_chunk
from ingest.demo._config import (
    CLASS_NAMES,
    DICOM_DIR,
    GROUND_TRUTH_FILE,
    LABELS_FILE,
    DemoConfig,
    DemoDataset,
    config_digest,
    validate_config,
)
from ingest.demo._dicom_files import dicom_bytes
from ingest.demo._ground_truth import build_ground_truth, write_ground_truth
from ingest.demo._identifiers import StudyHeader, assign_identifiers
from ingest.demo._plan import DemoPlan, RandomStreams, make_plan
from ingest.demo._records import PlannedImage
from ingest.demo._sites import SITES

__all__ = ["generate_demo"]

_LOG = logging.getLogger(__name__)

_MSG_NOT_EMPTY = (
    "output directory {path} already holds DICOM files; generate_demo writes into an "
    "empty or new directory so that labels.csv and ground_truth.json match the files "
    "exactly. Choose a new directory or delete the old one."
)
# Pixels per render chunk: small chunks stay in cache.
_CHUNK_PIXELS = 1 << 15
_DEFAULT_CONFIG = DemoConfig()


def generate_demo(
    out_dir: str | os.PathLike[str], config: DemoConfig = _DEFAULT_CONFIG
) -> DemoDataset:
    """Write a seeded synthetic chest-X-ray DICOM dataset with planted problems.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Output directory; created if missing. It must not already hold a
        ``dicom/`` folder with files.
    config : DemoConfig, optional
        What to generate; see :class:`DemoConfig`.

    Returns
    -------
    DemoDataset
        Paths of the DICOM folder, ``labels.csv`` and ``ground_truth.json``
        (its keys are listed in :func:`load_ground_truth`).

    Raises
    ------
    TypeError
        If `config` is not a :class:`DemoConfig` or a field has the wrong type.
    ValueError
        If a field is out of range, or there are fewer images than duplicated
        sources requested.
    FileExistsError
        If ``out_dir/dicom`` already contains files.

    Notes
    -----
    Images are 12-bit (BitsStored 12 in 16-bit words) chest-radiograph phantoms:
    a soft torso, two darker lung fields with rib bands, a brighter mediastinum,
    spine and heart shadow, clavicles, low-frequency shading and signal-dependent
    noise, with per-patient anatomy and per-image pose/exposure variation. A
    positive ('nodule') image carries a Gaussian blob (FWHM 3-8 % of the width,
    peak contrast 0.14-0.26 of the display range) inside a lung field; all images
    of a patient share its true label and nodule position.

    Three sites differ in scanner, photometric interpretation, rescale, contrast
    and prevalence (site_b about 2.2 times the overall rate and a burned-in
    marker; site_a about half of it). Label flips are per image and drawn over
    the readable images (duplicates included, so a duplicate pair may disagree;
    such pairs are listed in ``duplicate_label_conflicts``). Corrupted and
    non-image files keep their patient's true label in ``labels.csv``.

    Follow-up images of one patient look alike (same anatomy and nodule, pose
    changes of a few pixels and degrees, new exposure and noise) but are not
    planted duplicates; score a duplicate detector on the listed pairs and treat
    same-patient pairs from ``follow_up_groups`` separately. Near duplicates are
    shifted together with any burned-in marker and collimation border.
    """
    cfg = validate_config(config)
    start = time.perf_counter()
    root = Path(out_dir)
    dicom_dir = root / DICOM_DIR
    if dicom_dir.exists() and any(dicom_dir.iterdir()):
        raise FileExistsError(_MSG_NOT_EMPTY.format(path=dicom_dir))
    streams = RandomStreams.from_seed(cfg.seed)
    plan = make_plan(cfg, streams)
    headers = assign_identifiers(plan.patients, plan.images, config_digest(cfg), streams.headers)
    planned = time.perf_counter()
    _write_files(plan, headers, cfg.image_size, streams.noise, dicom_dir)
    written = time.perf_counter()
    labels_csv = _write_labels(root / LABELS_FILE, plan.images)
    gt_path = write_ground_truth(root / GROUND_TRUTH_FILE, build_ground_truth(cfg, plan))
    done = time.perf_counter()
    _LOG.info(
        "generated %d demo files (%d readable images) in %.2f s under %s "
        "(planning %.2f s, rendering + writing %.2f s, labels and ground truth %.2f s)",
        len(plan.images),
        plan.n_readable,
        done - start,
        root,
        planned - start,
        written - planned,
        done - written,
    )
    return DemoDataset(root=root, dicom_dir=dicom_dir, labels_csv=labels_csv, ground_truth=gt_path)


def _write_files(
    plan: DemoPlan,
    headers: dict[int, StudyHeader],
    size: int,
    noise: np.random.SeedSequence,
    dicom_dir: Path,
) -> None:
    """Render in a worker thread while this thread encodes and writes, then the rest.

    numpy releases the GIL while rendering, so the two overlap. Each render
    chunk draws its noise from its own stream spawned from ``noise``, so the
    pixels do not depend on thread timing. Duplicates are made from their
    rendered sources, and every file that was not rendered is written last.
    """
    batch = plan.batch
    n_rows = len(batch.rows)
    step = max(1, _CHUNK_PIXELS // (size * size))
    chunks = [range(r, min(r + step, n_rows)) for r in range(0, n_rows, step)]
    noise_seeds = noise.spawn(len(chunks))
    for folder in sorted({pat.folder for pat in plan.patients}):
        (dicom_dir / folder).mkdir(parents=True, exist_ok=True)

    def write(img: PlannedImage) -> None:
        _write_file(dicom_dir, img, plan, headers, size)

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medaudit-demo-render")
    try:
        futures = [
            pool.submit(
                render_chunk,
                {k: v[chunk.start : chunk.stop] for k, v in batch.params.items()},
                batch.nodule[chunk.start : chunk.stop],
                batch.site_of[chunk.start : chunk.stop],
                size,
                np.random.default_rng(seed),
                batch.marker[chunk.start : chunk.stop],
            )
            for chunk, seed in zip(chunks, noise_seeds)
        ]
        for chunk, future in zip(chunks, futures):
            for row, pixels in zip(chunk, future.result()):
                batch.rows[row].pixels = pixels
                write(batch.rows[row])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    for img in plan.images:
        if img.source is not None:
            img.pixels = _duplicate_pixels(img, plan.images[img.source], plan, size)
        if img.render_row is None:
            write(img)


def _duplicate_pixels(
    img: PlannedImage, src: PlannedImage, plan: DemoPlan, size: int
) -> np.ndarray:
    """Stored values of duplicate ``img``: a copy of ``src``, moved and re-noised if near."""
    src_pixels = src.pixels if src.pixels is not None else np.zeros((size, size), np.uint16)
    if img.kind == "near_duplicate":
        site = SITES[plan.patients[src.patient].site]
        return near_duplicate(src_pixels, site, plan.near[img.index])
    return src_pixels.copy()


def _write_file(
    dicom_dir: Path,
    img: PlannedImage,
    plan: DemoPlan,
    headers: dict[int, StudyHeader],
    size: int,
) -> None:
    """Write one planned file under ``dicom_dir``."""
    target = dicom_dir / img.path
    if img.kind == "corrupted_not_dicom":
        target.write_bytes(plan.garbage[img.index])
        return
    pat = plan.patients[img.patient]
    target.write_bytes(dicom_bytes(img, pat, SITES[pat.site], headers[img.index], size))


def _write_labels(path: Path, images: list[PlannedImage]) -> Path:
    """``labels.csv``: ``path`` and recorded class name of every file, sorted by path."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "label"])
    for img in sorted(images, key=lambda im: im.path):
        writer.writerow([img.path, CLASS_NAMES[img.recorded_label]])
    path.write_text(buf.getvalue(), encoding="utf-8", newline="")
    return path
