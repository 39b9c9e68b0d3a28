"""hidden_stratification: a slice of one class that the model gets wrong is found."""

from __future__ import annotations

import numpy as np
import pytest

from audit.checks.hidden_stratification import (
    SPEC,
    HiddenStratificationConfig,
    check_hidden_stratification,
)
from tests.audit.checks.shortcut_sim import context, shortcut_data

CFG = HiddenStratificationConfig()


@pytest.mark.parametrize("one_model", [False, True])
def test_planted_hidden_subtype_is_found(one_model: bool) -> None:
    # per fold model (the default) a fifth of the rows is clustered at a time: more rows needed
    data = shortcut_data(planted=False, n=2000 if one_model else 5000, seed=10)
    y = data["y"]
    rng = np.random.default_rng(1)
    pos = np.flatnonzero(y == 1)
    subtype = rng.choice(pos, size=len(pos) // 4, replace=False)
    emb = data["embeddings"].copy()
    emb[subtype, 2:6] += 6.0  # a subtype the features see ...
    probs = data["pred_probs"].copy()
    weak = 1 / (1 + np.exp(-rng.normal(-1.0, 1.0, len(subtype))))  # ... and the model mostly misses
    probs[subtype, 1] = weak
    probs[subtype, 0] = 1 - probs[subtype, 1]
    cfg = HiddenStratificationConfig(embeddings_from_one_model=one_model)
    findings = check_hidden_stratification(context(data, embeddings=emb, pred_probs=probs), cfg)
    assert findings[0].severity in ("warning", "critical")
    sl = findings[0].evidence["slice"]
    assert sl["class"] == "nodule" and sl["flagged"]
    assert sl["error_rate"]["estimate"] - sl["rest_error_rate"]["estimate"] >= 0.15
    ids = set(data["manifest"]["sample_id"].to_numpy()[subtype])
    assert np.mean([s in ids for s in findings[0].sample_ids]) > 0.8


def test_clean_control_passes_and_table() -> None:
    data = shortcut_data(planted=False, n=1500, seed=11)
    findings = check_hidden_stratification(context(data), CFG)
    assert [f.severity for f in findings] == ["pass"]
    table = SPEC.table(context(data), CFG)  # type: ignore[misc]
    assert len(table) == 1500 and (table["slice"] >= 0).all()
