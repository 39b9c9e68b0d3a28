"""Seeded generator of a synthetic chest-X-ray-like DICOM dataset with planted problems.

The generator writes real DICOM files (explicit VR little endian, with preamble
and file meta information) of 12-bit grayscale chest-radiograph phantoms, a
``labels.csv`` with the *recorded* (noisy) label of every file, and a
``ground_truth.json`` sidecar that lists exactly what was planted: label flips,
exact / near / cross-patient duplicates, corrupted files, a non-image DICOM, the
true per-site prevalence, the site-specific acquisition differences (one site
stores MONOCHROME1 with a non-trivial rescale and burns a bright text-like
marker into a corner) and the position of every nodule.

Tests and benchmarks use the ground truth to check that the audit finds the
planted problems. The output is a pure function of :class:`DemoConfig`: no
wall-clock time reaches any file (dates come from the seed, UIDs and file
names from a digest of the configuration), so the same configuration gives
byte-identical files on one machine. ``labels.csv``, ``ground_truth.json`` and
the DICOM headers depend only on the configuration; the pixel values also
depend on numpy's float32 ``exp`` and ``tanh``, whose SIMD code differs between
CPUs, so from one machine to another a few pixels can differ by one stored unit.

Layout written under ``out_dir``::

    dicom/<patient folder>/<opaque hex>.dcm   # folder = running index, no PHI
    labels.csv                                # path, label (recorded class name)
    ground_truth.json                         # see load_ground_truth

Every path in ``labels.csv`` and ``ground_truth.json`` is relative to
``dicom/`` and uses POSIX separators.

Modules
-------
``_config``
    :class:`DemoConfig`, its validation, the class names and the output layout.
``_sites``
    The three simulated sites (headers, look, prevalence, corner marker).
``_phantom``
    Anatomy, pose and exposure, the nodule, display-space rendering.
``_appearance``
    A site's look and stored values, near-duplicate pixels, one render chunk.
``_records``
    The planned patient and file records.
``_plan``
    Every seeded decision: cohort, labels, duplicates, broken files, flips.
``_identifiers``
    Fake patient IDs and names, opaque folders and file names, UIDs.
``_dicom_files``
    pydicom datasets of images and SR documents, truncated and random files.
``_ground_truth``
    Building, writing and reading ``ground_truth.json``.
``_generate``
    :func:`generate_demo`, which composes them.
``_deployment``
    :func:`generate_deployment_batch`: an "after deployment" batch (another
    scanner's intensity profile, the screening prevalence) for ``medaudit drift``.

Examples
--------
>>> from ingest.demo import DemoConfig, generate_demo, load_ground_truth  # doctest: +SKIP
>>> ds = generate_demo("demo_data", DemoConfig(n_patients=200))           # doctest: +SKIP
>>> truth = load_ground_truth(ds.ground_truth)                            # doctest: +SKIP
"""

from __future__ import annotations

from ingest.demo._config import CLASS_NAMES, GENERATOR_NAME, DemoConfig, DemoDataset
from ingest.demo._deployment import DeploymentConfig, generate_deployment_batch
from ingest.demo._generate import generate_demo
from ingest.demo._ground_truth import GROUND_TRUTH_VERSION, load_ground_truth

__all__ = [
    "CLASS_NAMES",
    "GENERATOR_NAME",
    "GROUND_TRUTH_VERSION",
    "DemoConfig",
    "DemoDataset",
    "DeploymentConfig",
    "generate_demo",
    "generate_deployment_batch",
    "load_ground_truth",
]
