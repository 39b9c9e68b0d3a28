"""The explicit registry of audit checks.

Each check lives in its own module under :mod:`audit.checks` and exposes a
module-level ``SPEC`` (:class:`CheckSpec`). The modules are imported here by hand:
adding a check means adding one line to :func:`_specs`. Duplicate or unknown
names raise ``ValueError`` listing the valid names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from audit.context import EVIDENCE, AuditContext
from audit.findings import Finding

__all__ = ["CheckSpec", "build_config", "get_check", "list_checks", "registry"]

CheckFunc = Callable[[AuditContext, Any], list[Finding]]


@dataclass(frozen=True)
class CheckSpec:
    """How the engine runs one check.

    Parameters
    ----------
    name : str
        Registry name (also the TOML section of its settings).
    func : callable
        ``func(ctx, config) -> list[Finding]``; pure (no file I/O).
    config_cls : type
        Frozen dataclass of the check's settings, with documented defaults.
    requires : tuple of str
        Evidence names (see :data:`audit.context.EVIDENCE`) without which the
        check is skipped (with the reason listed).
    description : str
        One line for ``medaudit audit --list``.
    requires_columns : tuple of str
        Manifest columns without which the check is skipped.
    """

    name: str
    func: CheckFunc
    config_cls: type
    requires: tuple[str, ...] = ()
    description: str = ""
    requires_columns: tuple[str, ...] = ()
    requires_any_column_prefix: str | None = None

    def __post_init__(self) -> None:
        bad = [e for e in self.requires if e not in EVIDENCE]
        if bad:
            raise ValueError(
                f"check {self.name!r} requires unknown evidence {bad}; valid: {list(EVIDENCE)}"
            )
        if not dataclasses.is_dataclass(self.config_cls):
            raise TypeError(f"check {self.name!r}: config_cls must be a dataclass")

    def missing_evidence(self, ctx: AuditContext) -> list[str]:
        """Why the check cannot run on ``ctx`` (empty when it can)."""
        reasons = [f"no {e}" for e in self.requires if not ctx.has(e)]
        reasons += [
            f"no manifest column {c!r}" for c in self.requires_columns if c not in ctx.manifest
        ]
        prefix = self.requires_any_column_prefix
        if prefix and not any(str(c).startswith(prefix) for c in ctx.manifest.columns):
            reasons.append(f"no manifest column starting with {prefix!r}")
        return reasons


def _specs() -> list[CheckSpec]:
    from audit.checks import (
        annotator_agreement,
        class_balance_and_size,
        duplicates_and_leakage,
        label_issues,
        outliers,
    )

    return [
        label_issues.SPEC,
        annotator_agreement.SPEC,
        duplicates_and_leakage.SPEC,
        outliers.SPEC,
        class_balance_and_size.SPEC,
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


def build_config(spec: CheckSpec, overrides: Mapping[str, Any] | None) -> Any:
    """The check's config dataclass with ``overrides`` applied.

    Raises
    ------
    ValueError
        For a setting the check does not have, listing the valid ones.
    """
    overrides = dict(overrides or {})
    fields = {f.name for f in dataclasses.fields(spec.config_cls)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(
            f"check {spec.name!r} has no setting(s) {unknown}; valid settings: {sorted(fields)}"
        )
    return spec.config_cls(**overrides)
