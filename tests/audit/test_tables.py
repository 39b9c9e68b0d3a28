"""Per-sample tables of the checks (CheckSpec.table): N rows, and they agree with the findings."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from audit.checks.duplicates_and_leakage import check_duplicates_and_leakage
from audit.checks.label_issues import check_label_issues
from audit.checks.outliers import check_outliers
from audit.registry import build_config, get_check, list_checks, registry
from tests.audit.test_contract import full_context

WITH_TABLE = [n for n in list_checks() if registry()[n].table is not None]


def test_the_image_and_label_checks_have_tables() -> None:
    assert {"label_issues", "duplicates_and_leakage", "outliers"} <= set(WITH_TABLE)


@pytest.mark.parametrize("name", WITH_TABLE)
def test_table_contract(name: str) -> None:
    ctx = full_context()
    spec = get_check(name)
    fields = {f.name for f in dataclasses.fields(spec.config_cls)}
    config = build_config(spec, {"n_boot": 50} if "n_boot" in fields else None)
    table = spec.table(ctx, config)  # type: ignore[misc]
    assert isinstance(table, pd.DataFrame)
    assert len(table) == ctx.n and table.columns[0] == "sample_id"
    assert table["sample_id"].tolist() == list(ctx.sample_ids)
    assert table.columns.is_unique


def _flagged(findings: list, titles: tuple[str, ...] | None = None) -> set[str]:  # type: ignore[type-arg]
    return {s for f in findings if titles is None or f.title in titles for s in f.sample_ids}


def test_label_issue_table_agrees_with_the_finding() -> None:
    ctx = full_context()
    spec = get_check("label_issues")
    cfg = build_config(spec, {"n_boot": 50, "max_listed": 3})
    table = spec.table(ctx, cfg)  # type: ignore[misc]
    finding = check_label_issues(ctx, cfg)[0]
    top = table[table["is_label_issue"]].sort_values("issue_rank")["sample_id"].head(3).tolist()
    assert finding.sample_ids == top
    assert finding.evidence["n_label_issues"] == int(table["is_label_issue"].sum())


def test_outlier_table_agrees_with_the_findings() -> None:
    rng = np.random.default_rng(0)
    n = 120
    images = rng.normal(110, 25, (n, 1, 24, 24))
    images[3] = 0  # blank
    images[7, :, :20] = 255  # mostly saturated
    images[11] = rng.normal(110, 80, (1, 24, 24))  # unusual texture
    images = np.clip(images, 0, 255).astype(np.uint8)
    man = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "label": np.arange(n) % 2,
                        "patient_key": [f"p{i}" for i in range(n)]})
    from audit.context import AuditContext

    ctx = AuditContext.from_arrays(man, ["a", "b"], images=images)
    spec = get_check("outliers")
    cfg = build_config(spec, None)
    table = spec.table(ctx, cfg).set_index("sample_id")  # type: ignore[misc]
    findings = check_outliers(ctx, cfg)
    assert set(table.index[table["is_outlier"]]) == _flagged(findings)
    assert table.loc["s3", "is_blank"] and table.loc["s7", "is_saturated"]
    assert table.loc["s11", "is_outlier"]
    listed = [e["sample_id"] for f in findings if "top" in f.evidence for e in f.evidence["top"]]
    assert listed == table.sort_values("outlier_rank").index[: len(listed)].tolist()


def test_duplicate_table_agrees_with_the_findings(tiny_run) -> None:  # type: ignore[no-untyped-def]
    from audit.context import AuditContext

    images = tiny_run.read_array("images").copy()
    images[10] = images[20]  # another patient: cross-patient
    images[30] = images[31]  # same patient (2 images per patient): within
    man = tiny_run.read_manifest()
    ctx = AuditContext.from_arrays(man, ["a", "b"], images=images)
    spec = get_check("duplicates_and_leakage")
    cfg = build_config(spec, {"max_sample_ids": 1, "max_pairs_listed": 1})
    table = spec.table(ctx, cfg).set_index("sample_id")  # type: ignore[misc]
    sid = man["sample_id"].tolist()
    assert table.loc[sid[10], "nearest_duplicate"] == sid[20]
    assert table.loc[sid[10], "is_cross_patient_duplicate"]
    assert table.loc[sid[10], "nearest_duplicate_distance"] == 0
    assert table.loc[sid[30], "is_exact_duplicate"]
    assert not table.loc[sid[30], "is_cross_patient_duplicate"]
    assert table.loc[sid[30], "duplicate_group"] == table.loc[sid[31], "duplicate_group"] >= 0
    assert (table["duplicate_group"] >= 0).sum() >= 4
    full = dataclasses.replace(cfg, max_sample_ids=10**6)
    findings = check_duplicates_and_leakage(ctx, full)
    in_findings = _flagged(findings)
    in_table = set(table.index[table["duplicate_group"] >= 0])
    assert in_table <= in_findings
