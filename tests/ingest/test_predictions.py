"""ingest_predictions: a run directory from an external model's predictions."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audit.context import AuditContext
from audit.engine import audit_context
from audit.rundir import RunDir
from ingest.manifest import MSG_LABEL
from ingest.predictions import (
    DUPLICATE_IDS,
    EXISTING_RUN,
    EXTERNAL_FOLD,
    NO_OVERLAP,
    NPY_ROWS,
    ingest_predictions,
)

N = 40


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDAUDIT_SECRET", "test-secret-0123456789abcdef0123456789")


def _inputs(tmp_path: Path, *, n: int = N, seed: int = 0) -> dict[str, Path]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p1 = np.clip(0.15 + 0.7 * y + rng.normal(0, 0.1, n), 0.01, 0.99)
    ids = [f"img{i:03d}" for i in range(n)]
    labels = pd.DataFrame({"sample_id": ids, "label": np.where(y == 1, "malignant", "benign"),
                           "patient_id": [f"MRN-{i // 2:04d}" for i in range(n)],
                           "site": rng.choice(["A", "B"], n)})
    preds = pd.DataFrame({"sample_id": ids, "benign": 1 - p1, "malignant": p1}).iloc[::-1]
    meta = pd.DataFrame({"sample_id": ids, "age": rng.uniform(30, 80, n),
                         "study_id": [f"ACC{i // 4}" for i in range(n)]})
    paths = {"labels": tmp_path / "labels.csv", "preds": tmp_path / "preds.csv",
             "meta": tmp_path / "meta.csv", "emb": tmp_path / "emb.npy",
             "npy": tmp_path / "preds.npy"}
    labels.to_csv(paths["labels"], index=False)
    preds.to_csv(paths["preds"], index=False)
    meta.to_csv(paths["meta"], index=False)
    np.save(paths["emb"], rng.normal(0, 1, (n, 8)).astype(np.float32))
    np.save(paths["npy"], np.c_[1 - p1, p1])
    return paths


def test_happy_path_joins_on_sample_id_and_pseudonymizes(tmp_path: Path) -> None:
    f = _inputs(tmp_path)
    run = ingest_predictions(f["labels"], f["preds"], embeddings=f["emb"], metadata=f["meta"],
                             out=tmp_path / "run")
    m = run.read_manifest()
    assert run.class_names() == ["benign", "malignant"]
    assert list(m.columns[:4]) == ["sample_id", "label", "label_name", "patient_key"]
    assert (m["label_name"] == np.where(m["label"] == 1, "malignant", "benign")).all()
    probs = run.read_array("oof/pred_probs")
    labels = pd.read_csv(f["labels"])
    preds = pd.read_csv(f["preds"]).set_index("sample_id").loc[labels["sample_id"]]
    np.testing.assert_allclose(probs[:, 1], preds["malignant"], rtol=1e-6)
    assert (run.read_array("oof/folds") == EXTERNAL_FOLD).all()
    assert run.read_array("oof/embeddings").shape == (N, 8)
    assert m["patient_key"].nunique() == N // 2 and "study_key" in m and "age" in m
    # no clear-text identifier reaches the run directory
    for p in run.path.rglob("*"):
        if p.is_file():
            blob = p.read_bytes()
            assert b"MRN-" not in blob and b"ACC1" not in blob, p
    info = run.read_run_json()
    assert info["source"] == "external"
    assert "-1 = not out-of-fold" in info["external"]["folds_note"]
    assert len(info["external"]["inputs"]["labels"]["sha256"]) == 64


def test_missing_join_partners_are_quarantined(tmp_path: Path) -> None:
    f = _inputs(tmp_path)
    preds = pd.read_csv(f["preds"])
    extra = pd.DataFrame({"sample_id": ["ghost"], "benign": [0.5], "malignant": [0.5]})
    pd.concat([preds.iloc[3:], extra]).to_csv(f["preds"], index=False)
    run = ingest_predictions(f["labels"], f["preds"], out=tmp_path / "run")
    assert run.n_samples() == N - 3
    q = run.read_quarantine()
    assert len(q) == 4
    assert "pred_probs:ghost" in set(q["source"])
    assert any("no prediction" in r for r in q["reason"])


def test_npy_predictions_with_index_labels_and_class_names(tmp_path: Path) -> None:
    f = _inputs(tmp_path)
    lab = pd.read_csv(f["labels"])
    lab["label"] = (lab["label"] == "malignant").astype(int)
    lab.to_csv(f["labels"], index=False)
    run = ingest_predictions(f["labels"], f["npy"], out=tmp_path / "a")
    assert run.class_names() == ["0", "1"]
    run = ingest_predictions(f["labels"], f["npy"], out=tmp_path / "b",
                             class_names=["benign", "malignant"])
    assert run.class_names() == ["benign", "malignant"]
    ctx = AuditContext.from_run_dir(run)
    res = audit_context(ctx, checks=["label_issues"], config={"label_issues": {"n_boot": 20}})
    assert res.findings and not res.errors


# -- one clear error per bad input ---------------------------------------------------------


def _write(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path


def test_probabilities_not_summing_to_one(tmp_path: Path) -> None:
    f = _inputs(tmp_path)
    preds = pd.read_csv(f["preds"])
    preds.loc[preds["sample_id"] == "img005", "benign"] = 0.9
    preds.loc[preds["sample_id"] == "img005", "malignant"] = 0.9
    _write(preds, f["preds"])
    with pytest.raises(ValueError, match=r"row 5 \('img005'\) sums to 1.8, not 1"):
        ingest_predictions(f["labels"], f["preds"], out=tmp_path / "run")


def test_nan_probability(tmp_path: Path) -> None:
    f = _inputs(tmp_path)
    preds = pd.read_csv(f["preds"])
    preds.loc[preds["sample_id"] == "img002", "malignant"] = np.nan
    _write(preds, f["preds"])
    with pytest.raises(ValueError, match=r"non-finite value at row 2 \('img002'\)"):
        ingest_predictions(f["labels"], f["preds"], out=tmp_path / "run")


def test_logits_instead_of_probabilities(tmp_path: Path) -> None:
    f = _inputs(tmp_path)
    np.save(f["npy"], np.random.default_rng(0).normal(0, 3, (N, 2)))
    with pytest.raises(ValueError, match=r"outside \[0, 1\].*not logits"):
        ingest_predictions(f["labels"], f["npy"], out=tmp_path / "run",
                           class_names=["benign", "malignant"])


def test_bad_shapes(tmp_path: Path) -> None:
    f = _inputs(tmp_path)
    np.save(f["npy"], np.full((N - 1, 2), 0.5))
    with pytest.raises(ValueError, match=r"pred_probs has 39 rows but labels has 40"):
        ingest_predictions(f["labels"], f["npy"], out=tmp_path / "a", class_names=["b", "m"])
    np.save(f["npy"], np.full(N, 0.5))
    with pytest.raises(ValueError, match=r"shape \(N, K\)"):
        ingest_predictions(f["labels"], f["npy"], out=tmp_path / "b", class_names=["b", "m"])
    np.save(f["emb"], np.zeros((N + 2, 4), np.float32))
    with pytest.raises(ValueError, match=r"embeddings has 42 rows but labels has 40"):
        ingest_predictions(f["labels"], f["preds"], embeddings=f["emb"], out=tmp_path / "c")


def test_bad_labels_are_quarantined_with_one_line_each(tmp_path: Path) -> None:
    f = _inputs(tmp_path)
    lab = pd.read_csv(f["labels"])
    lab["label"] = lab["label"].astype(object)
    lab.loc[7, "label"] = "maybe"
    lab.loc[8, "label"] = "5"
    _write(lab, f["labels"])
    run = ingest_predictions(f["labels"], f["preds"], out=tmp_path / "a")
    assert run.n_samples() == N - 2
    q = run.read_quarantine().set_index("source")["reason"]
    assert "got 'maybe' at row 8 (sample_id='img007')" in q["labels:img007"]
    assert "index in [0, 2)" in q["labels:img008"]
    assert all("\n" not in r for r in q)
    assert "class name" in MSG_LABEL
    assert "one row per" in NPY_ROWS


def test_a_probability_that_is_not_a_number_is_named(tmp_path: Path) -> None:
    f = _inputs(tmp_path)
    preds = pd.read_csv(f["preds"])
    preds["malignant"] = preds["malignant"].astype(object)
    preds.loc[preds["sample_id"] == "img004", "malignant"] = "abc"
    _write(preds, f["preds"])
    with pytest.raises(ValueError, match=r"column 'malignant' has 'abc' .*'img004'.* not a number"):
        ingest_predictions(f["labels"], f["preds"], out=tmp_path / "run")


def test_duplicated_sample_ids(tmp_path: Path) -> None:
    f = _inputs(tmp_path)
    lab = pd.read_csv(f["labels"])
    lab.loc[9, "sample_id"] = "img003"
    _write(lab, f["labels"])
    with pytest.raises(ValueError, match=r"labels has duplicated sample_id values \['img003'\]"):
        ingest_predictions(f["labels"], f["preds"], out=tmp_path / "run")
    assert "must be unique" in DUPLICATE_IDS


def test_missing_columns_and_files(tmp_path: Path) -> None:
    f = _inputs(tmp_path)
    _write(pd.read_csv(f["labels"]).drop(columns="label"), f["labels"])
    with pytest.raises(ValueError, match=r"labels has no 'label' column"):
        ingest_predictions(f["labels"], f["preds"], out=tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="not found"):
        ingest_predictions(tmp_path / "nope.csv", f["preds"], out=tmp_path / "run")


def test_names_needed_for_npy_with_string_labels(tmp_path: Path) -> None:
    f = _inputs(tmp_path)
    with pytest.raises(ValueError, match=r"labels are class names .* pass class_names"):
        ingest_predictions(f["labels"], f["npy"], out=tmp_path / "run")


def test_no_overlap_and_existing_run(tmp_path: Path) -> None:
    f = _inputs(tmp_path)
    preds = pd.read_csv(f["preds"])
    preds["sample_id"] = "other-" + preds["sample_id"]
    _write(preds, tmp_path / "other.csv")
    with pytest.raises(ValueError, match=re.escape(NO_OVERLAP.split("{")[0])):
        ingest_predictions(f["labels"], tmp_path / "other.csv", out=tmp_path / "a")
    first = ingest_predictions(f["labels"], f["preds"], embeddings=f["emb"], out=tmp_path / "b")
    assert first.has("oof/embeddings")
    with pytest.raises(ValueError, match="already holds a run"):
        ingest_predictions(f["labels"], f["preds"], out=tmp_path / "b")
    assert "overwrite=True" in EXISTING_RUN
    run = ingest_predictions(f["labels"], f["preds"], out=tmp_path / "b", overwrite=True)
    assert isinstance(run, RunDir)
    assert not run.has("oof/embeddings")  # stale artifacts of the old run are gone


def test_class_columns_must_match_names(tmp_path: Path) -> None:
    f = _inputs(tmp_path)
    with pytest.raises(ValueError, match="do not match the class names"):
        ingest_predictions(f["labels"], f["preds"], out=tmp_path / "run",
                           class_names=["normal", "cancer"])


# -- the shared builder: images, and invalid rows raised for inputs aligned by position -----------


def test_images_are_validated_and_written_with_their_properties(tmp_path: Path) -> None:
    f = _inputs(tmp_path)
    rng = np.random.default_rng(3)
    np.save(tmp_path / "img.npy", rng.random((N, 12, 12, 3)).astype(np.float32))  # channels-last
    run = ingest_predictions(f["labels"], f["preds"], images=tmp_path / "img.npy",
                             out=tmp_path / "run")
    images = run.read_array("images")
    assert images.shape == (N, 3, 12, 12) and images.dtype == np.float32
    props = run.read_image_properties()
    assert props["sample_id"].tolist() == run.read_manifest()["sample_id"].tolist()
    assert run.read_run_json()["external"]["inputs"]["images"]["sha256"]
    res = audit_context(AuditContext.from_run_dir(run), checks=["outliers"])
    assert res.findings and not res.errors
    np.save(tmp_path / "bad.npy", np.zeros((N, 12, 10), np.uint8))
    with pytest.raises(ValueError, match=r"images must have shape .*got \(40, 12, 10\)"):
        ingest_predictions(f["labels"], f["preds"], images=tmp_path / "bad.npy",
                           out=tmp_path / "run2")


def test_prepare_with_invalid_rows_raise_lists_every_bad_row(tmp_path: Path) -> None:
    from ingest.predictions import prepare_predictions

    f = _inputs(tmp_path)
    lab = pd.read_csv(f["labels"])
    lab["label"] = lab["label"].astype(object)
    lab.loc[[7, 8], "label"] = "maybe"
    prepared = prepare_predictions(lab, f["preds"])  # the file behaviour: quarantined
    assert len(prepared.manifest) == N - 2 and len(prepared.quarantine) == 2
    with pytest.raises(ValueError, match=r"(?s)labels: 2 of 40 rows are not valid.*row 8.*row 9"):
        prepare_predictions(lab, f["preds"], invalid_rows="raise")


def test_negative_integer_labels_are_out_of_range_not_class_names(tmp_path: Path) -> None:
    f = _inputs(tmp_path)
    lab = pd.read_csv(f["labels"])
    lab["label"] = (lab["label"] == "malignant").astype(int)
    lab.loc[4, "label"] = -1
    lab.to_csv(f["labels"], index=False)
    run = ingest_predictions(f["labels"], f["npy"], out=tmp_path / "run")
    q = run.read_quarantine()
    assert len(q) == 1 and "got '-1' at row 5" in q["reason"].iloc[0]


def test_predictions_edited_after_ingestion_are_refused(tmp_path: Path) -> None:
    from audit.engine import run_audit
    from audit.rundir import RunDirMismatchError

    f = _inputs(tmp_path)
    run = ingest_predictions(f["labels"], f["preds"], out=tmp_path / "run")
    assert set(run.read_run_json()["external"]["artifacts"]) >= {"oof/pred_probs.npy"}
    probs = run.read_array("oof/pred_probs").copy()
    probs[:, [0, 1]] = probs[:, [1, 0]]
    np.save(run.file("oof/pred_probs"), probs)
    with pytest.raises(RunDirMismatchError, match="changed after medaudit audit-predictions"):
        run_audit(run, checks=["label_issues"])
