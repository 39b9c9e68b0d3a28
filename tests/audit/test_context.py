"""AuditContext.from_arrays: safe defaults, then one clear error for a bad manifest."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from audit.context import MSG_NO_PATIENT_KEY, MSG_NO_SAMPLE_ID, AuditContext


def _p(n: int) -> np.ndarray:
    return np.tile([0.7, 0.3], (n, 1))


def test_missing_core_columns_are_filled_with_a_warning() -> None:
    man = pd.DataFrame({"label": [0, 1, 1]})
    with pytest.warns(UserWarning) as caught:
        ctx = AuditContext.from_arrays(man, ["neg", "pos"], pred_probs=_p(3))
    texts = [str(w.message) for w in caught]
    assert MSG_NO_SAMPLE_ID in texts and MSG_NO_PATIENT_KEY in texts
    m = ctx.manifest
    assert list(m.columns[:4]) == ["sample_id", "label", "label_name", "patient_key"]
    assert m["sample_id"].tolist() == ["0", "1", "2"]
    assert m["label_name"].tolist() == ["neg", "pos", "pos"]
    assert m["patient_key"].nunique() == 3


def test_a_complete_manifest_needs_no_warning() -> None:
    import warnings

    man = pd.DataFrame({"sample_id": ["a", "b"], "label": [0, 1], "patient_key": ["p", "p"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ctx = AuditContext.from_arrays(man, ["neg", "pos"], pred_probs=_p(2))
    assert ctx.manifest["label"].dtype == np.int64


@pytest.mark.parametrize("manifest, match", [
    (pd.DataFrame({"sample_id": ["a"]}), r"no 'label' column \(columns: \['sample_id'\]\)"),
    (pd.DataFrame({"sample_id": ["a", "b"], "label": [0, 2], "patient_key": ["p", "q"]}),
     r"column 'label' must be class indices in \[0, 2\) .*got 2 at row 1 \(sample_id 'b'\)"),
    (pd.DataFrame({"sample_id": ["a", "b"], "label": [0, "x"], "patient_key": ["p", "q"]}),
     r"got 'x' at row 1"),
    (pd.DataFrame({"sample_id": ["a", "a"], "label": [0, 1], "patient_key": ["p", "q"]}),
     r"column 'sample_id' fails field_uniqueness"),
    (pd.DataFrame({"sample_id": ["a", "b"], "label": [0, 1], "patient_key": ["p", None]}),
     r"column 'patient_key' fails not_nullable"),
    (pd.DataFrame({"sample_id": ["a", "b"], "label": [0, 1], "patient_key": ["p", "q"],
                   "sex": ["F", "female"]}), r"column 'sex' fails isin"),
])
def test_a_bad_manifest_is_one_clear_error(manifest: pd.DataFrame, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        AuditContext.from_arrays(manifest, ["neg", "pos"])
    assert str(info.value).startswith("manifest given to AuditContext.from_arrays is not a valid")


def test_evidence_rows_must_match_the_manifest() -> None:
    man = pd.DataFrame({"sample_id": ["a", "b"], "label": [0, 1], "patient_key": ["p", "q"]})
    with pytest.raises(ValueError, match=re.escape("evidence 'pred_probs' has 3 rows but the "
                                                   "manifest has 2")):
        AuditContext.from_arrays(man, ["neg", "pos"], pred_probs=_p(3))
    with pytest.raises(ValueError, match="evidence 'masked' has 1 rows"):
        AuditContext.from_arrays(man, ["neg", "pos"], masked={"center": _p(1)})
    with pytest.raises(ValueError, match="unknown evidence names"):
        AuditContext.from_arrays(man, ["neg", "pos"], xray=_p(2))
    with pytest.raises(TypeError, match="manifest must be a pandas DataFrame"):
        AuditContext.from_arrays({"label": [0]}, ["neg"])  # type: ignore[arg-type]
