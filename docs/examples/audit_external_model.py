# %% [markdown]
# # Auditing an external model's predictions in a notebook
#
# A reviewer peer-checking a breast-ultrasound classifier usually receives its
# predictions, not the model. This notebook (a script in Jupyter's "percent"
# format: open it in JupyterLab with jupytext, or in VS Code, or run it with
# `python`) audits such predictions end to end with one call,
# `medaudit.audit_predictions`, the in-memory twin of
# `medaudit audit-predictions`.
#
# The data are **synthetic and BreastMNIST-like** (28 x 28 grey ultrasound
# crops, benign vs malignant, about 27 % malignant), generated below with
# problems planted on purpose so that we can see the audit find them:
#
# * 6 % of the labels are flipped;
# * four images were filed twice, under a second patient ID;
# * two images are blank (failed exports).
#
# The "external model" is a logistic regression on 14 x 14 thumbnails whose out-of-fold
# probabilities come from patient-grouped cross-validation, as a model
# trained elsewhere would supply held-out predictions.

# %%
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import medaudit

rng = np.random.default_rng(7)
N_PATIENTS, SIZE, PREVALENCE = 600, 28, 0.27
CLASSES = ["benign", "malignant"]

# %% [markdown]
# ## 1. BreastMNIST-like images
#
# Speckled background (Rayleigh-distributed echoes); a dark (hypoechoic)
# lesion: benign lesions are smooth, wider-than-tall ovals with a bright rim
# behind them; malignant ones are irregular, taller-than-wide and cast an
# acoustic shadow. Some patients have two images.


# %%
def ultrasound_image(malignant: bool, rng: np.random.Generator) -> np.ndarray:
    """One 28 x 28 uint8 image."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    depth = 0.35 + 0.4 * np.exp(-yy / 30)                       # attenuation with depth
    img = depth * rng.rayleigh(0.55, (SIZE, SIZE))
    cy, cx = rng.uniform(10, 16), rng.uniform(9, 19)
    ry, rx = (rng.uniform(3.5, 6.5), rng.uniform(3, 5.5)) if malignant else \
        (rng.uniform(2.5, 5), rng.uniform(3.5, 7))
    angle = np.arctan2(yy - cy, xx - cx)
    wobble = 1 + (0.2 * np.sin(7 * angle + rng.uniform(0, 6)) if malignant else 0.05 *
                  np.sin(3 * angle))
    r = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) / wobble
    img = np.where(r < 1, img * rng.uniform(0.2, 0.6), img)     # hypoechoic lesion
    below = (yy > cy + ry) & (np.abs(xx - cx) < rx)
    img = np.where(below, img * (0.8 if malignant else 1.15), img)  # shadow / enhancement
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


images_per_patient = rng.choice([1, 2], N_PATIENTS, p=[0.7, 0.3])
patient_label = rng.random(N_PATIENTS) < PREVALENCE
rows = [(p, bool(patient_label[p])) for p in range(N_PATIENTS) for _ in range(images_per_patient[p])]
images = np.stack([ultrasound_image(m, rng) for _, m in rows])
truth = np.array([m for _, m in rows], dtype=np.int64)
patient_ids = np.array([f"MRN-{p:05d}" for p, _ in rows], dtype=object)
sample_ids = np.array([f"us_{i:04d}" for i in range(len(rows))], dtype=object)
site = rng.choice(["hospital_a", "hospital_b"], len(rows))
n = len(rows)
print(f"{n} images of {N_PATIENTS} patients; {truth.mean():.0%} malignant")

# %% [markdown]
# ## 2. Planted problems

# %%
labels = truth.copy()
flipped = rng.choice(n, size=round(0.06 * n), replace=False)
labels[flipped] = 1 - labels[flipped]

copies = rng.choice(np.setdiff1d(np.arange(n), flipped), size=8, replace=False)
for src, dst in zip(copies[:4], copies[4:], strict=True):
    images[dst] = images[src]                                   # the same image, another patient
    labels[dst] = labels[src]
duplicate_pairs = {frozenset((sample_ids[s], sample_ids[d])) for s, d in
                   zip(copies[:4], copies[4:], strict=True)}

blank = rng.choice(np.setdiff1d(np.arange(n), np.r_[flipped, copies]), size=2, replace=False)
images[blank] = 3                                               # failed exports

# %% [markdown]
# ## 3. The external model: out-of-fold probabilities
#
# Cross-validation grouped by patient, so no image is scored by a model that
# saw its patient. The standardized thumbnails serve as the model's embeddings.

# %%
X = images.reshape(n, SIZE // 2, 2, SIZE // 2, 2).mean(axis=(2, 4)).reshape(n, -1) / 255
model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000))
pred_probs = cross_val_predict(model, X, labels, groups=patient_ids, cv=GroupKFold(5),
                               method="predict_proba")
embeddings = StandardScaler().fit_transform(X).astype(np.float32)
accuracy = (pred_probs.argmax(1) == truth).mean()
print(f"external model: accuracy against the truth {accuracy:.3f}")

# %% [markdown]
# ## 4. The audit: one call
#
# Patient IDs are pseudonymized with a keyed hash before anything is kept;
# `metadata` columns go through the same identifier filter as a manifest.
# `deployment_prevalence` is the share of malignant lesions where the model
# will be used (a screening programme); the prevalence check reads it.

# %%
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    result = medaudit.audit_predictions(
        labels, pred_probs,
        sample_ids=sample_ids, patient_ids=patient_ids, class_names=CLASSES,
        metadata=pd.DataFrame({"site": site}), images=images, embeddings=embeddings,
        deployment_prevalence=0.05,
        config={"label_issues": {"n_boot": 300}},
    )
for w in caught:
    print("warning:", w.message)
result  # noqa: B018 - in Jupyter: a traffic-light table of every check

# %%
print(result.summary())

# %% [markdown]
# ## 5. Findings and the full per-sample tables
#
# `findings_frame()` has one row per finding; `table(check)` has one row per
# sample, with every score, not only the top of the list that the finding
# shows.

# %%
findings = result.findings_frame()
findings[["check", "severity", "title", "n_samples"]]

# %%
issues = result.table("label_issues").sort_values("issue_rank")
issues.head(10)

# %%
flagged = set(issues.loc[issues["is_label_issue"], "sample_id"])
planted = set(sample_ids[flipped])
precision = len(flagged & planted) / max(len(flagged), 1)
recall = len(flagged & planted) / len(planted)
print(f"label issues: {len(flagged)} flagged, precision {precision:.2f}, recall {recall:.2f} "
      f"for the {len(planted)} planted flips")

# %%
dups = result.table("duplicates_and_leakage")
found_pairs = {frozenset((r.sample_id, r.nearest_duplicate))
               for r in dups[dups["is_exact_duplicate"]].itertuples()}
print(f"duplicates: {len(duplicate_pairs & found_pairs)} of {len(duplicate_pairs)} planted pairs "
      f"found; {int(dups['is_cross_patient_duplicate'].sum())} images filed under another patient")

# %%
odd = result.table("outliers").sort_values("outlier_rank")
print("blank images found:", sorted(odd.loc[odd["is_blank"], "sample_id"]))

# %% [markdown]
# ## 6. A run directory for the command line, the reports and the dashboard
#
# `out=` writes the same validated run (manifest, predictions, images,
# findings) as `medaudit audit-predictions` would; `medaudit audit RUN_DIR`
# re-audits it with other settings without the notebook.

# %%
out = Path(os.environ.get("MEDAUDIT_EXAMPLE_OUT") or tempfile.mkdtemp(prefix="medaudit-")) / "run"
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the same warnings as above
    on_disk = medaudit.audit_predictions(
        labels, pred_probs, sample_ids=sample_ids, patient_ids=patient_ids, class_names=CLASSES,
        metadata=pd.DataFrame({"site": site}), images=images, embeddings=embeddings,
        deployment_prevalence=0.05, config={"label_issues": {"n_boot": 300}},
        out=out, overwrite=True,
    )
print(f"run directory: {out}")
print(sorted(p.name for p in out.iterdir()))
print(f"re-audit from a shell: medaudit audit {out}")

# %% [markdown]
# ## 7. What this notebook asserts (so that it never rots)

# %%
assert result.complete, result.errors
assert recall >= 0.5 and precision >= 0.5, (precision, recall)
assert duplicate_pairs <= found_pairs
assert set(odd.loc[odd["is_blank"], "sample_id"]) == set(sample_ids[blank])
assert [f.title for f in on_disk.findings] == [f.title for f in result.findings]
assert (out / "findings.json").is_file() and (out / "manifest.parquet").is_file()
assert not any(b"MRN-" in p.read_bytes() for p in out.rglob("*") if p.is_file())
print("all assertions hold")
