"""The shortcut checks on the demo generator's data, with and without the planted shortcut.

The data are the real demo pipeline's (``generate_demo`` -> ``ingest_dicom_dir``: DICOM
headers, hashed sites, image properties, 32 px cache) at 400 patients. The model is a
cheap fixed one, so that the test runs in about two minutes instead of a training run:
pixels -> StandardScaler -> PCA(32) (fitted once on all images, label-free; these are
the "embeddings", one model for every row) -> one L2 logistic regression per fold
(5 patient-grouped folds), which also scores the masked variants of ``audit.masking``.
``medaudit demo`` itself (resnet10t) is exercised in ``tests/medaudit/test_cli_demo.py``;
its full-size figures are in the issue-15 note.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.preprocessing import StandardScaler

from audit import masking
from audit.context import AuditContext
from audit.engine import audit_context
from audit.rundir import RunDir
from ingest.demo import CLASS_NAMES, DemoConfig, generate_demo
from ingest.sources import IngestOptions, ingest_dicom_dir

SHORTCUT_CHECKS = [
    "metadata_shortcut",
    "embedding_encodes_metadata",
    "image_property_shortcut",
    "masking_test",
]
CHECKS = [*SHORTCUT_CHECKS, "subgroup_performance", "hidden_stratification"]
SETTINGS = {
    "embedding_encodes_metadata": {"embeddings_from_one_model": True, "n_boot": 200},
    "hidden_stratification": {"embeddings_from_one_model": True},
    "metadata_shortcut": {"n_boot": 200}, "image_property_shortcut": {"n_boot": 200},
    "masking_test": {"n_boot": 200}, "subgroup_performance": {"n_boot": 200},
}  # fmt: skip


def _cheap_model(run: RunDir) -> dict[str, Any]:
    man = run.read_manifest()
    images = run.read_array("images").astype(np.float32) / 255
    y, patients = man["label"].to_numpy(), man["patient_key"].to_numpy()
    folds = np.zeros(len(y), np.int64)
    sgkf = StratifiedGroupKFold(5, shuffle=True, random_state=0)
    for f, (_, test) in enumerate(sgkf.split(y, y, patients)):
        folds[test] = f
    scaler = StandardScaler().fit(images.reshape(len(y), -1))
    pca = PCA(32, random_state=0).fit(scaler.transform(images.reshape(len(y), -1)))

    def embed(x: np.ndarray) -> np.ndarray:
        return pca.transform(scaler.transform(x.reshape(len(x), -1)))

    z = embed(images)
    zv = {v: embed(getattr(masking, v)(images)) for v in masking.MASKED_VARIANTS}
    probs = np.zeros((len(y), 2))
    masked = {v: np.zeros((len(y), 2)) for v in zv}
    for f in range(5):
        tr, te = folds != f, folds == f
        clf = LogisticRegression(C=0.1, max_iter=1000).fit(z[tr], y[tr])
        probs[te] = clf.predict_proba(z[te])
        for v in zv:
            masked[v][te] = clf.predict_proba(zv[v][te])
    return {
        "pred_probs": probs,
        "embeddings": z.astype(np.float32),
        "folds": folds,
        "masked": masked,
    }


@pytest.fixture(scope="module", params=[True, False], ids=["shortcuts", "no_shortcuts"])
def demo_audit(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp(f"demo_{request.param}")
    ds = generate_demo(
        root / "data", DemoConfig(n_patients=400, image_size=64, shortcuts=request.param)
    )
    ingest_dicom_dir(
        ds.dicom_dir, ds.labels_csv, root / "run", IngestOptions(image_size=32, classes=CLASS_NAMES)
    )
    run = RunDir(root / "run")
    ctx = AuditContext(run.read_manifest(), run.class_names(), run=run, evidence=_cheap_model(run))
    return request.param, audit_context(ctx, checks=CHECKS, config=SETTINGS)


def _by_check(result: Any, name: str) -> list[Any]:
    return [f for f in result.findings if f.check == name]


def test_planted_site_shortcut_is_reported_and_random_columns_are_not(demo_audit: Any) -> None:
    planted, result = demo_audit
    assert not result.errors
    [meta] = _by_check(result, "metadata_shortcut")
    groups = {tuple(c["columns"]): c for c in meta.evidence["columns"]}
    for random_col in ("sex", "age_band", "view"):
        assert not groups[(random_col,)]["flagged"], random_col
    for g in _by_check(result, "subgroup_performance")[0].evidence["groups"]:
        if g["column"] in ("sex", "age_band", "view"):
            assert not g["flagged"], g
    site = next(c for c in groups.values() if "site" in c["columns"])
    assert {"scanner", "dicom_manufacturer"} <= set(site["columns"])  # one partition, once
    masking_findings = _by_check(result, "masking_test")
    assert masking_findings and masking_findings[0].evidence["variants"]
    # the demo's DICOM headers say CR / DX: radiograph-like, the anatomy-hidden rule applies
    layout = masking_findings[0].evidence["anatomy_layout"]
    assert layout["layout"] == "centered", layout
    assert layout["resolved_from"] == "auto: dicom_modality CR, DX on every row"
    if planted:
        assert meta.severity in ("warning", "critical") and site["flagged"]
        assert "CR" in meta.message and "MONOCHROME1" in meta.message
        shortcut = [
            f for f in _by_check(result, "embedding_encodes_metadata") if f.evidence.get("shortcut")
        ]
        assert len(shortcut) == 1
        # critical, unless the model-quality rule capped it (issue 17: a weak model's
        # findings are at most warning, the evidence says from what)
        mq = shortcut[0].evidence["model_quality"]
        assert shortcut[0].severity == "critical" or (
            mq["verdict"] == "weak"
            and mq["severity_before_cap"] == "critical"
            and shortcut[0].severity == "warning"
        )
        assert "site" in shortcut[0].evidence["columns"]
    else:
        assert not site["flagged"]
        for name in SHORTCUT_CHECKS:
            for f in _by_check(result, name):
                assert f.severity in ("info", "pass"), (name, f.title)
