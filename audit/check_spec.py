"""What a check declares to the engine: :class:`CheckSpec` (a leaf module).

Every check module under :mod:`audit.checks` builds one ``SPEC``; the registry
(:mod:`audit.registry`) lists those modules by hand. Keeping the spec type here,
apart from the registry, means a check never imports the registry that imports it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from audit.context import CORE_COLUMNS, EVIDENCE, AuditContext
from audit.findings import Finding

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from audit.model_quality import ModelQuality

__all__ = ["SKIP_UNLABELED", "CheckFunc", "CheckSpec", "TableFunc", "WeakModelWording"]

#: Why a check that needs labels is skipped on an unlabeled run.
SKIP_UNLABELED = "no labels (an unlabeled run, e.g. from medaudit predict without labels)"

CheckFunc = Callable[[AuditContext, Any], list[Finding]]
#: ``table(ctx, config) -> DataFrame``: the full per-sample table behind a check's findings.
TableFunc = Callable[[AuditContext, Any], "pd.DataFrame"]
#: ``wording(finding, quality) -> Finding``: a finding reworded for a weak model.
WeakModelWording = Callable[[Finding, "ModelQuality"], Finding]


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
    requires_any_column_prefix : str, optional
        The check is skipped unless some manifest column starts with this
        prefix; the core columns (:data:`audit.context.CORE_COLUMNS`, e.g.
        ``label_name``) do not count.
    table : callable, optional
        ``table(ctx, config) -> pandas.DataFrame``: one row per sample (N rows,
        manifest order, ``sample_id`` first) with every sample's scores and
        flags, of which the findings list only the top. Pure, like ``func``;
        computed on demand (:meth:`audit.engine.AuditResult.table`).
    model_based : bool
        The findings rest on the model's predictions (probabilities, embeddings
        or errors), so they are only as good as the model: the engine attaches
        the model's out-of-fold quality to them and applies the model-quality
        rule (:mod:`audit.model_quality`, ``docs/audit-checks.md``).
    needs_labels : bool
        The check needs every row labeled; on an unlabeled run (``medaudit
        predict`` without labels) it is skipped with :data:`SKIP_UNLABELED` as
        the reason. Checks that compare an unlabeled batch with a reference run
        set it to False.
    weak_model_wording : callable, optional
        ``wording(finding, quality) -> Finding`` (``model_based`` checks only):
        how a finding of this check reads when the model is too weak for its
        number to stand on its own (e.g. ``label_issues`` presents the noise
        rate as an upper bound). The engine calls it for every non-``pass``
        finding of the check when the rule says the model is weak, then caps
        the severity at ``warning`` itself; without it the engine appends the
        rule's reason to the message.
    """

    name: str
    func: CheckFunc
    config_cls: type
    requires: tuple[str, ...] = ()
    description: str = ""
    requires_columns: tuple[str, ...] = ()
    requires_any_column_prefix: str | None = None
    table: TableFunc | None = None
    model_based: bool = False
    needs_labels: bool = True
    weak_model_wording: WeakModelWording | None = None

    def __post_init__(self) -> None:
        if self.weak_model_wording is not None and not self.model_based:
            raise ValueError(
                f"check {self.name!r}: weak_model_wording needs model_based=True"
            )
        bad = [e for e in self.requires if e not in EVIDENCE]
        if bad:
            raise ValueError(
                f"check {self.name!r} requires unknown evidence {bad}; valid: {list(EVIDENCE)}"
            )
        if not dataclasses.is_dataclass(self.config_cls):
            raise TypeError(f"check {self.name!r}: config_cls must be a dataclass")

    def missing_evidence(self, ctx: AuditContext) -> list[str]:
        """Why the check cannot run on ``ctx`` (empty when it can)."""
        reasons = [SKIP_UNLABELED] if self.needs_labels and not ctx.has_labels else []
        reasons += [f"no {e}" for e in self.requires if not ctx.has(e)]
        reasons += [
            f"no manifest column {c!r}" for c in self.requires_columns if c not in ctx.manifest
        ]
        prefix = self.requires_any_column_prefix
        if prefix and not any(
            str(c).startswith(prefix) and str(c) not in CORE_COLUMNS and str(c) != prefix
            for c in ctx.manifest.columns
        ):
            reasons.append(f"no manifest column starting with {prefix!r}")
        return reasons
