"""The explicit registry of audit checks.

Each check lives in its own module under :mod:`audit.checks` and exposes a
module-level ``SPEC`` (:class:`CheckSpec`). The modules are imported here by hand:
adding a check means adding one line to :func:`_specs`. Duplicate or unknown
names raise ``ValueError`` listing the valid names.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any, Literal

from audit.check_spec import CheckSpec

__all__ = ["CheckSpec", "build_config", "build_settings", "get_check", "list_checks", "registry"]


def _specs() -> list[CheckSpec]:
    from audit.checks import (
        annotator_agreement,
        calibration,
        class_balance_and_size,
        drift,
        duplicates_and_leakage,
        embedding_encodes_metadata,
        hidden_stratification,
        image_property_shortcut,
        label_issues,
        masking_test,
        metadata_shortcut,
        outliers,
        overfitting,
        prevalence_shift,
        subgroup_performance,
    )

    return [
        label_issues.SPEC,
        annotator_agreement.SPEC,
        duplicates_and_leakage.SPEC,
        outliers.SPEC,
        class_balance_and_size.SPEC,
        metadata_shortcut.SPEC,
        embedding_encodes_metadata.SPEC,
        image_property_shortcut.SPEC,
        masking_test.SPEC,
        subgroup_performance.SPEC,
        hidden_stratification.SPEC,
        calibration.SPEC,
        prevalence_shift.SPEC,
        drift.SPEC,
        overfitting.SPEC,
    ]


def _build(specs: Iterable[CheckSpec]) -> dict[str, CheckSpec]:
    out: dict[str, CheckSpec] = {}
    for spec in specs:
        if spec.name in out:
            raise ValueError(f"duplicate check name {spec.name!r} in the registry")
        out[spec.name] = spec
    return out


@cache
def registry() -> Mapping[str, CheckSpec]:
    """All registered checks by name, in report order."""
    return _build(_specs())


def list_checks() -> list[str]:
    """Names of all registered checks."""
    return list(registry())


def get_check(name: str) -> CheckSpec:
    """The spec of check ``name``.

    Raises
    ------
    ValueError
        For an unknown name, listing the valid names.
    """
    reg = registry()
    if name not in reg:
        raise ValueError(f"unknown check {name!r}; valid checks: {', '.join(reg)}")
    return reg[name]


def _coerce_setting(where: str, value: Any, hint: Any, default: Any) -> Any:
    """Check one setting against its type hint; lists become tuples for tuple fields."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        allowed = list(typing.get_args(hint))
        if value not in allowed:
            raise ValueError(f"{where} must be one of {allowed}; got {value!r}")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false; got {value!r}")
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer; got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where} must be a number; got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string; got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} must be a list; got {value!r}")
        return tuple(value)
    return value


def build_config(spec: CheckSpec, overrides: Mapping[str, Any] | None) -> Any:
    """The check's config dataclass with ``overrides`` applied.

    Values are checked against the field types (``Literal`` choices, bool,
    int, float, str, tuple; TOML lists become tuples) so that a typo in a TOML
    file fails before any check runs.

    Raises
    ------
    ValueError
        For a setting the check does not have (listing the valid ones), or a
        value of the wrong type or outside its choices.
    """
    return build_settings(f"check {spec.name!r}", spec.config_cls, overrides)


def build_settings(owner: str, config_cls: type, overrides: Mapping[str, Any] | None) -> Any:
    """``config_cls`` (a frozen dataclass of settings) with ``overrides`` checked and applied.

    Parameters
    ----------
    owner : str
        Who the settings belong to, for messages (``"check 'label_issues'"``,
        ``"section 'model_quality'"``).
    config_cls : type
        The dataclass.
    overrides : mapping, optional
        ``{setting: value}``.

    Raises
    ------
    ValueError
        As :func:`build_config`.
    """
    overrides = dict(overrides or {})
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(
            f"{owner} has no setting(s) {unknown}; valid settings: {sorted(fields)}"
        )
    try:
        hints = typing.get_type_hints(config_cls)
    except Exception:  # pragma: no cover - unresolvable annotations: skip type checks
        hints = {}
    coerced = {}
    for name, value in overrides.items():
        f = fields[name]
        default = f.default if f.default is not dataclasses.MISSING else None
        coerced[name] = _coerce_setting(f"{owner} setting {name!r}", value, hints.get(name),
                                        default)
    return config_cls(**coerced)
