"""The explicit check registry: names, settings, evidence requirements."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from audit.context import AuditContext
from audit.findings import Finding
from audit.registry import CheckSpec, _build, build_config, get_check, list_checks


@dataclasses.dataclass(frozen=True)
class _Cfg:
    threshold: float = 0.5
    n: int = 3
    flag: bool = False
    columns: tuple[str, ...] = ("a",)


def _noop(ctx: AuditContext, config: _Cfg) -> list[Finding]:
    return []


def test_registry_lists_the_checks_in_report_order() -> None:
    assert list_checks()[:5] == ["label_issues", "annotator_agreement", "duplicates_and_leakage",
                                 "outliers", "class_balance_and_size"]
    shortcut_checks = ["metadata_shortcut", "embedding_encodes_metadata",
                       "image_property_shortcut", "masking_test", "subgroup_performance",
                       "hidden_stratification"]
    assert [c for c in list_checks() if c in shortcut_checks] == shortcut_checks
    assert {"calibration", "prevalence_shift", "drift"} <= set(list_checks())
    assert "overfitting" in list_checks()


def test_duplicate_names_raise() -> None:
    spec = CheckSpec(name="x", func=_noop, config_cls=_Cfg)
    with pytest.raises(ValueError, match="duplicate check name 'x'"):
        _build([spec, spec])


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown check 'nope'; valid checks: label_issues, "):
        get_check("nope")


def test_unknown_setting_lists_valid_settings() -> None:
    spec = CheckSpec(name="x", func=_noop, config_cls=_Cfg)
    with pytest.raises(ValueError, match=r"no setting\(s\) \['treshold'\]; valid settings: "
                       r"\['columns', 'flag', 'n', 'threshold'\]"):
        build_config(spec, {"treshold": 1})


def test_setting_types_are_checked_and_lists_become_tuples() -> None:
    spec = CheckSpec(name="x", func=_noop, config_cls=_Cfg)
    cfg = build_config(spec, {"threshold": 1, "columns": ["b", "c"], "flag": True})
    assert cfg.threshold == 1.0 and cfg.columns == ("b", "c") and cfg.flag is True
    for bad in ({"n": 1.5}, {"n": True}, {"flag": "yes"}, {"threshold": "high"},
                {"columns": "b"}):
        with pytest.raises(ValueError, match="setting"):
            build_config(spec, bad)


@pytest.mark.parametrize("name", list_checks())
def test_every_check_builds_its_default_config(name: str) -> None:
    spec = get_check(name)
    cfg = build_config(spec, None)
    assert dataclasses.is_dataclass(cfg)
    assert spec.name == name


def test_spec_rejects_unknown_evidence_and_non_dataclass_config() -> None:
    with pytest.raises(ValueError, match="unknown evidence"):
        CheckSpec(name="x", func=_noop, config_cls=_Cfg, requires=("xray",))
    with pytest.raises(TypeError, match="dataclass"):
        CheckSpec(name="x", func=_noop, config_cls=dict)


def test_column_prefix_requirement_ignores_core_columns() -> None:
    import pandas as pd

    spec = CheckSpec(name="x", func=_noop, config_cls=_Cfg, requires_any_column_prefix="label_")
    core = pd.DataFrame({"sample_id": ["a"], "label": [0], "label_name": ["c"],
                         "patient_key": ["p"]})
    ctx = AuditContext.from_arrays(core, ["c"])
    assert spec.missing_evidence(ctx) == ["no manifest column starting with 'label_'"]
    ctx = AuditContext.from_arrays(core.assign(label_reader1=[0]), ["c"])
    assert spec.missing_evidence(ctx) == []
    assert ctx.annotator_columns == ["label_reader1"]


def test_missing_evidence_reasons() -> None:
    import pandas as pd

    spec = CheckSpec(name="x", func=_noop, config_cls=_Cfg, requires=("pred_probs", "embeddings"),
                     requires_columns=("site",))
    m = pd.DataFrame({"sample_id": ["a"], "label": [0], "label_name": ["c"], "patient_key": ["p"]})
    ctx = AuditContext.from_arrays(m, ["c"], pred_probs=np.ones((1, 1)))
    assert spec.missing_evidence(ctx) == ["no embeddings", "no manifest column 'site'"]
