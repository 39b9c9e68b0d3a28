"""``medaudit audit-predictions`` without labels: an external batch compared by ``medaudit drift``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import medaudit
from audit.rundir import FINDINGS, RunDir
from ingest.predictions import UNLABELED_ARRAY_ROWS
from medaudit.cli import main

SECRET = "u" * 40
CLASSES = "benign,cancer"


def _scores(rng: np.random.Generator, n: int, prevalence: float) -> tuple[np.ndarray, np.ndarray]:
    y = (rng.random(n) < prevalence).astype(int)
    s = rng.normal(0, 1, n) + 1.8 * y
    p = 1 / (1 + np.exp(-(1.8 * s - 1.62 + np.log(0.3 / 0.7))))  # calibrated at 0.3
    return y, np.column_stack([1 - p, p])


def _write(tmp: Path, prefix: str, probs: np.ndarray) -> tuple[Path, Path]:
    ids = [f"{prefix}{i}" for i in range(len(probs))]
    pp = tmp / f"{prefix}_probs.csv"
    pd.DataFrame({"sample_id": ids, "benign": probs[:, 0], "cancer": probs[:, 1]}).to_csv(
        pp, index=False
    )
    meta = tmp / f"{prefix}_meta.csv"
    pd.DataFrame(
        {
            "sample_id": ids,
            "patient_id": [f"MRN-{prefix}{i // 2}" for i in range(len(ids))],
            "site": "A",
        }
    ).to_csv(meta, index=False)
    return pp, meta


def test_an_unlabeled_external_batch_is_imported_and_compared_with_its_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEDAUDIT_SECRET", SECRET)
    rng = np.random.default_rng(0)
    cfg = tmp_path / "fast.toml"
    cfg.write_text(
        "[drift]\nn_perm = 100\nn_boot = 50\n[prevalence_shift]\nn_boot = 50\n"
        'calibrator = "temperature"\n'
    )
    fast = ["--config", str(cfg)]
    # the labeled reference: the same model's predictions on labeled data (unchanged behaviour)
    y_ref, p_ref = _scores(rng, 800, 0.3)
    ref_probs, ref_meta = _write(tmp_path, "r", p_ref)
    labels = tmp_path / "r_labels.csv"
    pd.read_csv(ref_meta).assign(label=np.array(["benign", "cancer"])[y_ref]).to_csv(
        labels, index=False
    )
    ref = tmp_path / "ref"
    assert (
        main(
            [
                "audit-predictions",
                "--labels",
                str(labels),
                "--pred-probs",
                str(ref_probs),
                "--out",
                str(ref),
                "--checks",
                "calibration",
                *fast,
            ]
        )
        == 0
    )
    assert RunDir(ref).read_run_json()["has_labels"] is True
    assert (RunDir(ref).read_manifest()["label"] >= 0).all()
    # the unlabeled batch, at a lower prevalence: no --labels
    y_new, p_new = _scores(rng, 400, 0.08)
    new_probs, new_meta = _write(tmp_path, "n", p_new)
    new = tmp_path / "new"
    capsys.readouterr()
    assert (
        main(
            [
                "audit-predictions",
                "--pred-probs",
                str(new_probs),
                "--metadata",
                str(new_meta),
                "--out",
                str(new),
                *fast,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "400 samples without labels" in out and "medaudit drift" in out
    run = RunDir(new)
    info = run.read_run_json()
    assert info["has_labels"] is False and info["source"] == "external"
    man = run.read_manifest()
    assert (man["label"] == -1).all() and (man["label_name"] == "(unlabeled)").all()
    assert man["patient_key"].nunique() == 200  # two images per patient, pseudonymized
    assert "calibration" in {s["check"] for s in info["audit"]["skipped"]}
    for p in new.rglob("*"):
        if p.is_file():
            assert b"MRN-" not in p.read_bytes(), p
    # ... usable as NEW_RUN of medaudit drift: the prevalence change is found
    assert main(["drift", str(ref), str(new), "--checks", "drift,prevalence_shift", *fast]) == 0
    findings = json.loads(run.file(FINDINGS).read_text())
    prev = next(f for f in findings if f["check"] == "drift" and "em" in f["evidence"])
    assert prev["severity"] == "warning" and prev["evidence"]["drifted"]
    assert prev["evidence"]["estimator_source"] == "held_out"  # same external model both sides
    shift = next(f for f in findings if f["check"] == "prevalence_shift")
    est = shift["evidence"]["estimated_prevalence"]
    assert est["ci_low"] <= y_new.mean() <= est["ci_high"] and est["estimate"] < 0.15


def test_what_an_unlabeled_batch_cannot_be_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEDAUDIT_SECRET", SECRET)
    _, p = _scores(np.random.default_rng(1), 50, 0.3)
    npy = tmp_path / "p.npy"
    np.save(npy, p)
    # an array names no rows: metadata must
    assert (
        main(
            [
                "audit-predictions",
                "--pred-probs",
                str(npy),
                "--classes",
                CLASSES,
                "--out",
                str(tmp_path / "a"),
            ]
        )
        == 2
    )
    assert UNLABELED_ARRAY_ROWS.split(";")[0] in capsys.readouterr().err
    # ... and with metadata it works, rows in the array's order
    meta = tmp_path / "m.csv"

    def from_array(out: str) -> int:
        return main(
            [
                "audit-predictions",
                "--pred-probs",
                str(npy),
                "--metadata",
                str(meta),
                "--classes",
                CLASSES,
                "--out",
                str(tmp_path / out),
            ]
        )

    pd.DataFrame({"sample_id": [f"s{i}" for i in range(50)]}).to_csv(meta, index=False)
    assert from_array("b") == 0
    assert RunDir(tmp_path / "b").read_run_json()["has_labels"] is False
    # a row table that has labels after all is refused rather than silently ignored
    pd.DataFrame({"sample_id": [f"s{i}" for i in range(50)], "label": 0}).to_csv(meta, index=False)
    assert from_array("c") == 2
    assert "has a 'label' column but no labels were given" in capsys.readouterr().err


def test_the_notebook_entry_point_takes_an_unlabeled_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDAUDIT_SECRET", SECRET)
    _, p = _scores(np.random.default_rng(2), 60, 0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = medaudit.audit_predictions(
            None, p, class_names=["benign", "cancer"], patient_ids=[f"P{i // 3}" for i in range(60)]
        )
    assert not result.errors
    assert any("no labels" in s["reason"] for s in result.skipped)
