"""Check ``drift``: a planted intensity shift and prevalence change are found; a resample is not."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from audit.checks.drift import DriftConfig, check_drift
from audit.context import UNLABELED, AuditContext, ReferenceRun
from audit.drift import holm
from tests.audit.fold_models_sim import batch_context, reference_and_batch

FAST = DriftConfig(n_perm=100, n_boot=50)
SHIFT = 1.8
D = 24


def _batch(
    rng: np.random.Generator, n: int, prevalence: float, *, intensity: float = 0.0, site: str = "a"
) -> dict:
    y = (rng.random(n) < prevalence).astype(int)
    s = rng.normal(0, 1, n) + SHIFT * y
    z = SHIFT * s - SHIFT**2 / 2 + np.log(0.3 / 0.7)  # calibrated at the reference prior 0.3
    p = 1 / (1 + np.exp(-z))
    emb = rng.normal(0, 1, (n, D))
    emb[:, 0] += s
    emb[:, 1:4] += intensity * 2.0  # the model's features react to the scanner's intensity
    props = pd.DataFrame(
        {
            "mean_intensity": rng.normal(0.4 + intensity * 0.1, 0.05, n),
            "contrast": rng.normal(0.3, 0.05, n),
        }
    )
    return {
        "y": y,
        "probs": np.column_stack([1 - p, p]).astype(np.float32),
        "emb": emb,
        "props": props,
        "site": np.full(n, site),
    }


def _manifest(b: dict, prefix: str, labels: np.ndarray) -> pd.DataFrame:
    n = len(labels)
    return pd.DataFrame(
        {
            "sample_id": [f"{prefix}{i}" for i in range(n)],
            "label": labels,
            "patient_key": [f"{prefix}p{i}" for i in range(n)],
            "site": b["site"],
            "age": np.linspace(30, 70, n),
        }
    )


def _reference(rng: np.random.Generator, n: int = 900) -> tuple[ReferenceRun, dict]:
    b = _batch(rng, n, 0.3)
    b["site"] = np.where(np.arange(n) % 2 == 0, "a", "b")
    folds = np.where(np.arange(n) < 600, np.arange(n) % 3, -1)
    props = b["props"].assign(sample_id=[f"r{i}" for i in range(n)])
    return ReferenceRun(
        _manifest(b, "r", b["y"]),
        ["benign", "malignant"],
        b["probs"],
        folds,
        b["emb"],
        props,
        "trained",
    ), b


def _ctx(b: dict, ref: ReferenceRun) -> AuditContext:
    n = len(b["y"])
    man = _manifest(b, "n", np.full(n, UNLABELED))
    props = b["props"].assign(sample_id=man["sample_id"])
    return AuditContext.from_arrays(
        man,
        ["benign", "malignant"],
        pred_probs=b["probs"],
        embeddings=b["emb"],
        image_properties=props,
        reference=ref,
    )


def test_planted_intensity_shift_and_prevalence_change_are_found() -> None:
    rng = np.random.default_rng(0)
    ref, _ = _reference(rng)
    new = _batch(rng, 300, 0.05, intensity=1.0, site="c")
    findings = check_drift(_ctx(new, ref), FAST)
    json.dumps([f.to_dict() for f in findings])
    assert all(f.severity == "warning" for f in findings), [(f.severity, f.title) for f in findings]
    assert len(findings) == 4
    props = next(f for f in findings if "properties" in f.evidence)
    assert props.evidence["properties"][0]["column"] == "mean_intensity"
    assert "mean_intensity" in props.title and "contrast" not in props.title
    meta = next(f for f in findings if "columns" in f.evidence)
    assert "site" in meta.title and "age" not in meta.title
    prev = next(f for f in findings if "em" in f.evidence)
    assert prev.evidence["drifted"] and prev.evidence["estimator"] == "bbse"
    assert prev.evidence["bbse"]["estimate"] < 0.15 and prev.evidence["em"]["estimate"] < 0.15
    # the images drifted too: the estimate is marked as resting on a broken assumption
    assert prev.evidence["label_shift_assumption_violated"] and "unreliable" in prev.message
    feats = next(f for f in findings if "c2st" in f.evidence)
    assert feats.evidence["c2st"]["auc"] > 0.7 and feats.evidence["mmd"]["p_value"] < 0.05


@pytest.mark.parametrize("kind", ["resample", "independent"])
def test_no_drift_on_a_batch_from_the_reference_distribution(kind: str) -> None:
    rng = np.random.default_rng(1)
    ref, b = _reference(rng)
    if kind == "resample":
        idx = rng.choice(len(b["y"]), 300, replace=True)
        new = {
            k: (v.iloc[idx].reset_index(drop=True) if isinstance(v, pd.DataFrame) else v[idx])
            for k, v in b.items()
        }
    else:
        new = _batch(rng, 300, 0.3)
        new["site"] = np.where(np.arange(300) % 2 == 0, "a", "b")
    findings = check_drift(_ctx(new, ref), FAST)
    assert findings and all(f.severity == "pass" for f in findings), [
        (f.title, f.evidence.get("c2st")) for f in findings if f.severity != "pass"
    ]
    prev = [f for f in findings if "em" in f.evidence]
    assert all(not f.evidence["label_shift_assumption_violated"] for f in prev)


def test_too_few_permutations_are_refused() -> None:
    with pytest.raises(ValueError, match="n_perm must exceed"):
        DriftConfig(n_perm=50)


def test_holm_adjustment() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([]) == []


@pytest.mark.parametrize("prevalence", [0.3, 0.08])
def test_predicted_prevalence_compares_fold_models_with_fold_models(prevalence: float) -> None:
    d = reference_and_batch(np.random.default_rng(6), 1500, 400, prevalence)
    n_ref = len(d["y_ref"])
    ref_man = pd.DataFrame(
        {
            "sample_id": [f"r{i}" for i in range(n_ref)],
            "label": d["y_ref"],
            "patient_key": [f"rp{i}" for i in range(n_ref)],
        }
    )
    ref = ReferenceRun(
        ref_man,
        ["benign", "malignant"],
        d["probs_ref"].astype(np.float32),
        d["folds"],
        name="trained",
    )
    man = pd.DataFrame(
        {
            "sample_id": [f"n{i}" for i in range(400)],
            "label": UNLABELED,
            "patient_key": [f"np{i // 2}" for i in range(400)],
        }
    )  # 2 images each
    ctx = batch_context(man, d, ref)
    [prev] = [f for f in check_drift(ctx, FAST) if "em" in f.evidence]
    assert prev.evidence["estimator_source"] == "per_fold"
    assert prev.evidence["drifted"] == (prevalence < 0.3)
    assert prev.severity == ("warning" if prevalence < 0.3 else "pass")
    assert "biased" not in prev.message
    if prevalence == 0.3:  # the same batch without each fold's scores: biased, and said so
        ens = batch_context(man, d, ref, per_fold=False)
        [old] = [f for f in check_drift(ens, FAST) if "em" in f.evidence]
        assert old.evidence["estimator_source"] == "oof_vs_ensemble" and "biased" in old.message
