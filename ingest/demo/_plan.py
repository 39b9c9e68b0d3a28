"""The planting plan: which patients and images exist and which problem each carries.

Every seeded random decision about the cohort is taken here, before any pixel
is rendered: patients (site, follow-ups, sex, age, dates, true label at the
site's prevalence), their images (view, dates), the broken files, the render
parameters and nodule positions, the duplicates and their sources, the
non-image documents and the label flips.

Each kind of decision draws from its own stream of one
:class:`numpy.random.SeedSequence`, so that, for example, the anatomy does not
depend on the labels. Within a stream the order of the draws is part of the
output: changing it changes the dataset.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass
from typing import Any

import numpy as np

from ingest.demo._appearance import NearSpec, draw_near_spec
from ingest.demo._config import DemoConfig
from ingest.demo._dicom_files import garbage_bytes
from ingest.demo._phantom import draw_acquisition, draw_anatomy, lesion_record
from ingest.demo._records import Patient, PlannedImage, age_on, years_before
from ingest.demo._sites import SITES, site_prevalences

__all__ = ["DUPLICATE_KINDS", "DemoPlan", "RandomStreams", "RenderBatch", "make_plan"]

# Share of patients with follow-up images, and how many images they have.
_FOLLOW_UP_FRACTION = 0.21
_FOLLOW_UP_IMAGES = (2, 4)  # inclusive range
_FOLLOW_UP_DAYS = (30, 400)  # days between visits, upper end excluded
_AP_FRACTION = 0.15
_AGE_YEARS = (25, 86)  # upper end excluded
_BASE_DATE = _dt.date(2016, 1, 1)
_FIRST_DAY_SPAN = 3 * 365  # first images fall in the three years from _BASE_DATE
# Without shortcuts: share of images, drawn at random, that carry the marker (about the
# share of the marker site's images with shortcuts).
_RANDOM_MARKER_FRACTION = 0.2

DUPLICATE_KINDS = ("exact_duplicate", "near_duplicate", "cross_patient_duplicate")
"""The planted duplicate kinds, in the order their sources are drawn."""

_MSG_TOO_FEW = (
    "DemoConfig asks for {wanted} duplicated source images but only {have} images are "
    "generated from n_patients={n}; raise n_patients or lower the n_*_duplicates counts."
)


@dataclass(frozen=True)
class RandomStreams:
    """The independent random streams of one seed.

    Attributes
    ----------
    patients : numpy.random.Generator
        Cohort, labels, visit dates and views.
    anatomy : numpy.random.Generator
        Anatomy, pose, exposure and shading.
    noise : numpy.random.SeedSequence
        Spawns one noise stream per render chunk.
    extra : numpy.random.Generator
        Broken files, duplicates, non-image files and their new patients.
    flips : numpy.random.Generator
        Label noise.
    headers : numpy.random.Generator
        Folder order and study times (:mod:`ingest.demo._identifiers`).
    markers : numpy.random.Generator
        Which images carry the marker when ``DemoConfig.shortcuts`` is False
        (unused otherwise, so the planted dataset does not depend on it).
    """

    patients: np.random.Generator
    anatomy: np.random.Generator
    noise: np.random.SeedSequence
    extra: np.random.Generator
    flips: np.random.Generator
    headers: np.random.Generator
    markers: np.random.Generator

    @classmethod
    def from_seed(cls, seed: int) -> RandomStreams:
        """Spawn the seven streams of ``seed``, in a fixed order (the first six as before)."""
        s = np.random.SeedSequence(seed).spawn(7)
        rng = np.random.default_rng
        return cls(
            patients=rng(s[0]),
            anatomy=rng(s[1]),
            noise=s[2],
            extra=rng(s[3]),
            flips=rng(s[4]),
            headers=rng(s[5]),
            markers=rng(s[6]),
        )


@dataclass(frozen=True)
class RenderBatch:
    """Every image with pixels of its own, with what rendering needs.

    Attributes
    ----------
    rows : list of PlannedImage, length B
        In render order; ``rows[i].render_row == i``.
    params : dict of str to ndarray, each (B,)
        Per-image parameters (:func:`ingest.demo._phantom.draw_acquisition`).
    nodule : ndarray of bool, (B,)
        Whether each image contains a nodule.
    site_of : ndarray of int, (B,)
        Index into :data:`ingest.demo._sites.SITES` of each image.
    marker : ndarray of bool, (B,)
        Whether the 'R' marker is burned into each image: the images of the
        marker site with ``DemoConfig.shortcuts``, else a random 20 %.
    """

    rows: list[PlannedImage]
    params: dict[str, np.ndarray]
    nodule: np.ndarray
    site_of: np.ndarray
    marker: np.ndarray


@dataclass(frozen=True)
class DemoPlan:
    """Everything decided before rendering.

    Attributes
    ----------
    patients : list of Patient
        Indexed by ``Patient.index``; cross-patient duplicates add patients.
    images : list of PlannedImage
        Every file, indexed by ``PlannedImage.index``.
    batch : RenderBatch
        The images rendered from parameters (originals, follow-ups, truncated).
    pairs : dict of str to list of (int, int)
        ``(source index, copy index)`` per duplicate kind.
    near : dict of int to NearSpec
        The change of each near duplicate, by its image index.
    garbage : dict of int to bytes
        The content of each random-bytes file, by its image index.
    """

    patients: list[Patient]
    images: list[PlannedImage]
    batch: RenderBatch
    pairs: dict[str, list[tuple[int, int]]]
    near: dict[int, NearSpec]
    garbage: dict[int, bytes]

    @property
    def n_readable(self) -> int:
        """Number of files with decodable pixel data."""
        return sum(1 for im in self.images if im.has_pixels)


def make_plan(cfg: DemoConfig, streams: RandomStreams) -> DemoPlan:
    """Take every random decision of the dataset, in a fixed order.

    Parameters
    ----------
    cfg : DemoConfig
        A validated configuration.
    streams : RandomStreams
        Fresh streams of ``cfg.seed``; the ``noise`` and ``headers`` streams
        are left untouched.

    Returns
    -------
    DemoPlan
        Patients and images with true and recorded labels, render parameters,
        duplicate pairs and broken-file contents; no identifiers or paths yet.

    Raises
    ------
    ValueError
        If more duplicate sources are asked for than images are generated.
    """
    patients = _make_patients(cfg, streams.patients)
    images: list[PlannedImage] = []
    _add_visits(images, patients, streams.patients)
    n_base = len(images)
    n_dup = cfg.n_exact_duplicates + cfg.n_near_duplicates + cfg.n_cross_patient_duplicates
    if n_dup > n_base:
        raise ValueError(_MSG_TOO_FEW.format(wanted=n_dup, have=n_base, n=cfg.n_patients))
    _add_broken(images, patients, cfg.n_corrupted, streams.extra)
    batch = _plan_rendering(images, patients, cfg.image_size, streams.anatomy)
    if not cfg.shortcuts:
        marker = streams.markers.random(len(batch.rows)) < _RANDOM_MARKER_FRACTION
        batch = dataclasses.replace(batch, marker=marker)
    pairs, near = _add_duplicates(images, patients, cfg, n_base, streams.extra)
    _add_non_image(images, patients, cfg.n_non_image, streams.extra)
    garbage = {
        im.index: garbage_bytes(streams.extra, cfg.image_size)
        for im in images
        if im.kind == "corrupted_not_dicom"
    }
    _flip_labels(images, cfg, streams.flips)
    return DemoPlan(patients, images, batch, pairs, near, garbage)


# ------------------------------------------------------------------ patients


def _make_patients(cfg: DemoConfig, rng: np.random.Generator) -> list[Patient]:
    """Draw the cohort: site, number of images, sex, age, dates, then labels."""
    n = cfg.n_patients
    shares = np.array([s.share for s in SITES])
    site = rng.choice(len(SITES), size=n, p=shares / shares.sum())
    multi = rng.random(n) < _FOLLOW_UP_FRACTION
    n_images = np.where(multi, rng.integers(_FOLLOW_UP_IMAGES[0], _FOLLOW_UP_IMAGES[1] + 1, n), 1)
    sex = np.where(rng.random(n) < 0.5, "F", "M")
    age = rng.integers(*_AGE_YEARS, n)
    first_day = rng.integers(0, _FIRST_DAY_SPAN, n)
    birth_offset = rng.integers(0, 365, n)
    patients: list[Patient] = []
    for i in range(n):
        first = _BASE_DATE + _dt.timedelta(days=int(first_day[i]))
        birth = years_before(first, int(age[i])) - _dt.timedelta(days=int(birth_offset[i]))
        patients.append(
            Patient(
                index=i,
                site=int(site[i]),
                n_images=int(n_images[i]),
                label=0,
                sex=str(sex[i]),
                age=age_on(birth, first),
                birth_date=birth,
                first_date=first,
            )
        )
    site_prev = (site_prevalences(cfg.prevalence) if cfg.shortcuts
                 else np.full(len(SITES), cfg.prevalence))
    _assign_labels(patients, site_prev, cfg.prevalence, rng)
    return patients


def _assign_labels(
    patients: list[Patient], site_prev: np.ndarray, prevalence: float, rng: np.random.Generator
) -> None:
    """Per-patient labels so that image-level site prevalences hit their targets."""
    n_img = np.array([p.n_images for p in patients])
    site = np.array([p.site for p in patients])
    per_site = np.array([n_img[site == s].sum() for s in range(len(SITES))], dtype=float)
    raw = site_prev * per_site
    total_target = prevalence * per_site.sum()
    targets = np.minimum(raw * (total_target / max(raw.sum(), 1e-12)), per_site)
    for s in range(len(SITES)):
        members = np.flatnonzero(site == s)
        count = 0
        for i in rng.permutation(members):
            if count + n_img[i] <= round(targets[s]):
                patients[i].label = 1
                count += n_img[i]


def _new_patient_like(
    index: int, site: int, label: int, date: _dt.date, rng: np.random.Generator
) -> Patient:
    """A new single-image patient at ``site`` (the owner of a cross-patient copy)."""
    age = int(rng.integers(*_AGE_YEARS))
    birth = years_before(date, age) - _dt.timedelta(days=int(rng.integers(0, 365)))
    return Patient(
        index=index,
        site=site,
        n_images=1,
        label=label,
        sex="F" if rng.random() < 0.5 else "M",
        age=age_on(birth, date),
        birth_date=birth,
        first_date=date,
    )


# ------------------------------------------------------------------ images


def _add_image(images: list[PlannedImage], **fields: Any) -> PlannedImage:
    """Append a :class:`PlannedImage` whose index is its position."""
    img = PlannedImage(index=len(images), **fields)
    images.append(img)
    return img


def _add_visits(
    images: list[PlannedImage], patients: list[Patient], rng: np.random.Generator
) -> None:
    """Original and follow-up images: one study per visit, dated and given a view."""
    for pat in patients:
        day = pat.first_date
        for visit in range(pat.n_images):
            if visit:
                day = day + _dt.timedelta(days=int(rng.integers(*_FOLLOW_UP_DAYS)))
            key = f"{pat.index}.{visit}"
            _add_image(
                images,
                patient=pat.index,
                true_patient=pat.index,
                kind="original" if visit == 0 else "follow_up",
                visit=visit,
                true_label=pat.label,
                date=day,
                view="AP" if rng.random() < _AP_FRACTION else "PA",
                study_key=key,
                series_key=key,
            )


def _add_broken(
    images: list[PlannedImage],
    patients: list[Patient],
    n_corrupted: int,
    rng: np.random.Generator,
) -> None:
    """Corrupted files: extra acquisitions of existing patients.

    The truncated ones are rendered like any image, then cut inside the pixel
    data; when ``n_corrupted >= 2`` the last one is random bytes instead.
    """
    n_garbage = 1 if n_corrupted >= 2 else 0
    n_truncated = n_corrupted - n_garbage
    owners = rng.choice(len(patients), size=n_corrupted, replace=n_corrupted > len(patients))
    for j, owner in enumerate(owners):
        pat = patients[int(owner)]
        key = f"{pat.index}.x{j}"
        _add_image(
            images,
            patient=pat.index,
            true_patient=pat.index,
            kind="corrupted_truncated" if j < n_truncated else "corrupted_not_dicom",
            visit=pat.n_images + j,
            true_label=pat.label,
            date=pat.first_date + _dt.timedelta(days=int(rng.integers(1, 30))),
            view="PA",
            study_key=key,
            series_key=key,
        )


def _plan_rendering(
    images: list[PlannedImage], patients: list[Patient], size: int, rng: np.random.Generator
) -> RenderBatch:
    """Per-image parameters of every image that has pixels of its own, and its lesion."""
    rows = [im for im in images if im.kind != "corrupted_not_dicom"]
    pidx = np.array([im.true_patient for im in rows], dtype=np.int64)
    anatomy = draw_anatomy(rng, len(patients))
    site_of = np.array([patients[i].site for i in pidx])
    params = draw_acquisition(
        rng,
        anatomy,
        pidx,
        np.array([im.visit > 0 for im in rows]),
        np.array([im.view == "AP" for im in rows]),
        np.array([SITES[s].noise for s in site_of]),
    )
    nodule = np.array([im.true_label == 1 for im in rows])
    for row, img in enumerate(rows):
        img.render_row = row
        if img.true_label == 1:
            img.lesion = lesion_record(params, row, size)
    marker = np.array([SITES[s].marker for s in site_of], dtype=bool)
    return RenderBatch(rows=rows, params=params, nodule=nodule, site_of=site_of, marker=marker)


def _add_duplicates(
    images: list[PlannedImage],
    patients: list[Patient],
    cfg: DemoConfig,
    n_base: int,
    rng: np.random.Generator,
) -> tuple[dict[str, list[tuple[int, int]]], dict[int, NearSpec]]:
    """Copies of distinct original / follow-up images; pixels are made after rendering.

    Returns
    -------
    pairs : dict of str to list of (int, int)
        ``(source index, copy index)`` per kind of :data:`DUPLICATE_KINDS`.
    near : dict of int to NearSpec
        The change of each near duplicate, by its image index.
    """
    counts = (cfg.n_exact_duplicates, cfg.n_near_duplicates, cfg.n_cross_patient_duplicates)
    sources = rng.choice(n_base, size=sum(counts), replace=False)
    pairs: dict[str, list[tuple[int, int]]] = {kind: [] for kind in DUPLICATE_KINDS}
    near: dict[int, NearSpec] = {}
    kinds = [kind for kind, count in zip(DUPLICATE_KINDS, counts) for _ in range(count)]
    for kind, src_index in zip(kinds, sources):
        src = images[int(src_index)]
        filing, spec = _file_duplicate(kind, src, patients, rng)
        dup = _add_image(
            images,
            true_patient=src.true_patient,
            kind=kind,
            visit=src.visit,
            true_label=src.true_label,
            date=src.date,
            view=src.view,
            source=src.index,
            **filing,
        )
        if spec is not None:
            near[dup.index] = spec
        pairs[kind].append((src.index, dup.index))
    return pairs, near


def _file_duplicate(
    kind: str, src: PlannedImage, patients: list[Patient], rng: np.random.Generator
) -> tuple[dict[str, Any], NearSpec | None]:
    """Where a copy of ``src`` is filed, its lesion, and (near duplicates) its change.

    An exact copy is a second instance in the source's series; a near copy a
    new series of the source's study; a cross-patient copy the only study of a
    new patient (appended to ``patients``) at the source's site.
    """
    lesion = None if src.lesion is None else dict(src.lesion)
    spec = None
    if kind == "exact_duplicate":
        patient, study, series = src.patient, src.study_key, src.series_key
        instance = 2
    elif kind == "near_duplicate":
        spec = draw_near_spec(rng)
        if lesion is not None:
            lesion["row"] = round(lesion["row"] + spec.shift[0], 3)
            lesion["col"] = round(lesion["col"] + spec.shift[1], 3)
        patient, study = src.patient, src.study_key
        series, instance = f"{src.series_key}.near", 1
    else:
        new = _new_patient_like(
            len(patients), patients[src.patient].site, src.true_label, src.date, rng
        )
        patients.append(new)
        patient = new.index
        study = series = f"{new.index}.0"
        instance = 1
    filing = {
        "patient": patient,
        "study_key": study,
        "series_key": series,
        "lesion": lesion,
        "instance_number": instance,
    }
    return filing, spec


def _add_non_image(
    images: list[PlannedImage], patients: list[Patient], n_non_image: int, rng: np.random.Generator
) -> None:
    """Non-image SR documents filed with the first study of a (possibly new) patient."""
    owners = rng.choice(len(patients), size=n_non_image, replace=n_non_image > len(patients))
    for j, owner in enumerate(owners):
        pat = patients[int(owner)]
        _add_image(
            images,
            patient=pat.index,
            true_patient=pat.index,
            kind="non_image",
            visit=0,
            true_label=pat.label,
            date=pat.first_date,
            view="",
            study_key=f"{pat.index}.0",
            series_key=f"{pat.index}.sr{j}",
            instance_number=1,
        )


def _flip_labels(images: list[PlannedImage], cfg: DemoConfig, rng: np.random.Generator) -> None:
    """Set every ``recorded_label``: flips per image, over the readable images.

    Exactly ``round(fn_rate * positives)`` positives and
    ``round(fp_rate * negatives)`` negatives are flipped; duplicates count as
    images, so a duplicate pair may disagree.
    """
    valid = np.array([im.index for im in images if im.has_pixels])
    true_valid = np.array([images[i].true_label for i in valid])
    pos, neg = valid[true_valid == 1], valid[true_valid == 0]
    n_fn = round(cfg.label_noise_fn_rate * pos.size)
    n_fp = round(cfg.label_noise_fp_rate * neg.size)
    flips = set(rng.choice(pos, size=n_fn, replace=False).tolist())
    flips |= set(rng.choice(neg, size=n_fp, replace=False).tolist())
    for img in images:
        img.recorded_label = 1 - img.true_label if img.index in flips else img.true_label
