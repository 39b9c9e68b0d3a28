"""Seeded simulations for the shortcut and subgroup checks: a site shortcut planted or not."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from audit.context import AuditContext

CLASSES = ["normal", "nodule"]
SITES = np.array(["site-a", "site-b", "site-c"])


def _softmax2(logit: np.ndarray) -> np.ndarray:
    p = 1 / (1 + np.exp(-logit))
    return np.column_stack([1 - p, p]).astype(np.float32)


def shortcut_data(
    *,
    n: int = 900,
    planted: bool = True,
    seed: int = 0,
    site_column: bool = True,
    marker_on_site_b: bool = True,
    images_per_patient: int = 2,
) -> dict[str, Any]:
    """Manifest, labels and evidence of a simulated three-site study.

    With ``planted`` site B has prevalence 0.49 against 0.14 at site A (as in the
    demo), the model's embeddings encode the site, its predictions lean on the
    site (they stay informative with the centre masked) and, with
    ``marker_on_site_b``, site B's images carry a corner marker. Without
    ``planted`` every site has prevalence 0.25, the embeddings do not encode the
    site, masking the centre brings the model to chance and markers are on random
    images. ``sex``, ``age`` and ``view`` are random either way.
    """
    rng = np.random.default_rng(seed)
    n_pat = n // images_per_patient
    pat = np.repeat(np.arange(n_pat), images_per_patient)[:n]
    site_p = rng.choice(3, n_pat, p=[0.5, 0.2, 0.3])
    site = site_p[pat]
    prev = np.array([0.14, 0.49, 0.25]) if planted else np.full(3, 0.25)
    y_p = (rng.random(n_pat) < prev[site_p]).astype(np.int64)
    y = y_p[pat]
    disease = rng.normal(0, 1, n) + 1.5 * y  # what the anatomy shows
    site_b = (site == 1).astype(float)
    if planted:
        logit = 0.8 * disease + 1.6 * site_b - 1.5
        site_cue = np.array([-1.5, 0.3, -1.0])[site]  # the site cue survives masking
        masked_logit = site_cue + rng.normal(0, 0.3, n)
    else:
        logit = 1.0 * disease - 1.5
        masked_logit = rng.normal(0, 0.3, n) - 1.0  # nothing left without the anatomy
    emb = rng.normal(0, 1, (n, 24))
    emb[:, 0] += disease
    if planted:
        emb[:, 1] += 3.0 * site_b
    marker = site_b.astype(bool) if (planted and marker_on_site_b) else rng.random(n) < 0.2
    corner = np.where(marker, rng.uniform(0.04, 0.08, n), rng.uniform(0, 0.005, n))
    manifest = pd.DataFrame({
        "sample_id": [f"s{i:05d}" for i in range(n)],
        "label": y, "label_name": [CLASSES[v] for v in y],
        "patient_key": [f"p{v:05d}" for v in pat],
    })  # fmt: skip
    if site_column:
        manifest["site"] = SITES[site]
        manifest["scanner"] = np.array(["DX-1", "CR-55", "XR-7"])[site]
        manifest["dicom_manufacturer"] = np.array(["Acme", "Borealis", "Cobalt"])[site]
    manifest["sex"] = np.array(["F", "M"])[rng.integers(0, 2, n_pat)][pat]
    manifest["age"] = rng.integers(25, 86, n_pat)[pat].astype(float)
    manifest["view"] = np.where(rng.random(n) < 0.15, "AP", "PA")
    manifest["dicom_bits_stored"] = 12  # constant: never tested
    mean_int = rng.normal(0.45, 0.05, n) + (0.05 * site_b if planted else 0)
    props = pd.DataFrame({
        "sample_id": manifest["sample_id"], "mean_intensity": mean_int,
        "std_intensity": rng.normal(0.2, 0.02, n), "contrast": rng.normal(0.6, 0.05, n),
        "border_black_fraction": rng.uniform(0, 0.02, n), "corner_mark_score": corner,
        "corner_mark_corner": rng.integers(0, 4, n).astype(np.int8),
        "edge_mark_score": rng.uniform(0, 0.005, n), "has_corner_mark": corner >= 0.02,
        "orig_height": np.full(n, 128.0), "orig_width": np.full(n, 128.0),
        "aspect_ratio": np.ones(n), "bits_stored": np.full(n, 12.0),
    })  # fmt: skip
    folds = (pat % 5).astype(np.int16)
    probs = _softmax2(logit)
    masked = {
        "center_masked": _softmax2(masked_logit),
        "border_only": _softmax2(masked_logit + rng.normal(0, 0.2, n)),
        "corners_masked": _softmax2(logit + rng.normal(0, 0.05, n)),
    }
    return {"manifest": manifest, "y": y, "site": site, "pred_probs": probs,
            "embeddings": emb.astype(np.float32), "image_properties": props, "folds": folds,
            "masked": masked, "marker": marker, "rng": rng}  # fmt: skip


def context(data: dict[str, Any], **override: Any) -> AuditContext:
    """An :class:`AuditContext` of :func:`shortcut_data` (``override`` replaces evidence)."""
    ev = {k: data[k] for k in ("pred_probs", "embeddings", "image_properties", "folds", "masked")}
    ev.update(override)
    ev = {k: v for k, v in ev.items() if v is not None}
    return AuditContext.from_arrays(data["manifest"], CLASSES, **ev)
