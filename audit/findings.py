"""The :class:`Finding`: what every audit check returns.

A finding is one statement about the dataset or the model, written for three
audiences at once: ``message`` in plain language for a clinician, ``evidence``
with numbers, their uncertainty and the method for a reviewer, and
``references`` to the reporting items it speaks to for a regulatory file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

__all__ = ["REFERENCES", "SEVERITIES", "Finding", "Severity", "severity_rank", "sort_findings"]

Severity = Literal["critical", "warning", "info", "pass"]
#: Severities from most to least urgent.
SEVERITIES: tuple[str, ...] = get_args(Severity)

#: Reporting items a finding may cite, by short code. Keys are what goes into
#: ``Finding.references``; values say what the item asks for.
REFERENCES: dict[str, str] = {
    "CLAIM:data-sources": "CLAIM 2024: data sources, eligibility and selection of cases",
    "CLAIM:preprocessing": "CLAIM 2024: data preprocessing and handling of missing data",
    "CLAIM:de-identification": "CLAIM 2024: methods used to de-identify the data",
    "CLAIM:reference-standard": "CLAIM 2024: definition and rationale of the reference standard",
    "CLAIM:annotation": "CLAIM 2024: source of annotations, annotators' qualifications, method",
    "CLAIM:rater-variability": "CLAIM 2024: measurement of inter- and intra-rater variability",
    "CLAIM:partitions": "CLAIM 2024: how data were assigned to partitions, level of disjointness",
    "CLAIM:sample-size": "CLAIM 2024: intended sample size and how it was determined",
    "CLAIM:case-flow": "CLAIM 2024: flow of cases, inclusions and exclusions",
    "CLAIM:demographics": "CLAIM 2024: demographic and clinical characteristics of cases per partition",
    "CLAIM:model": "CLAIM 2024: detailed description of the model, its training and hyperparameters",
    "CLAIM:evaluation": "CLAIM 2024: performance metrics with measures of uncertainty (confidence intervals)",
    "CLAIM:failure-analysis": "CLAIM 2024: failure analysis of incorrectly classified cases",
    "TRIPOD+AI:data-preparation": "TRIPOD+AI: data preparation, quality checking, harmonisation",
    "TRIPOD+AI:outcome": "TRIPOD+AI: outcome definition and how it was assessed",
    "TRIPOD+AI:sample-size": "TRIPOD+AI: how the study size was arrived at",
    "TRIPOD+AI:analysis": "TRIPOD+AI: analytical methods, including data partitioning",
    "TRIPOD+AI:fairness": "TRIPOD+AI: methods to address fairness, performance in subgroups",
    "GMLP-3": "GMLP principle 3: data sets represent the intended patient population",
    "GMLP-4": "GMLP principle 4: training data sets are independent of test sets",
    "GMLP-5": "GMLP principle 5: reference datasets are based upon best available methods",
    "GMLP-8": "GMLP principle 8: testing demonstrates device performance during clinically relevant conditions",
    "EU-AI-Act-10(2)(f)": "EU AI Act Art. 10(2)(f): examination in view of possible biases",
    "EU-AI-Act-10(2)(g)": "EU AI Act Art. 10(2)(g): measures to detect, prevent and mitigate biases",
    "EU-AI-Act-10(2)(h)": "EU AI Act Art. 10(2)(h): identification of data gaps or shortcomings, and how to address them",
    "EU-AI-Act-10(3)": "EU AI Act Art. 10(3): data relevant, representative, free of errors, complete",
    "EU-AI-Act-10(4)": "EU AI Act Art. 10(4): data reflect the geographical, contextual, behavioural or functional setting of intended use",
}


def severity_rank(severity: str) -> int:
    """Sort key: 0 for ``critical`` ... 3 for ``pass``."""
    return SEVERITIES.index(severity)


def _check_finite(obj: Any, where: str) -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(
            f"finding evidence {where} is {obj!r}; evidence must be finite "
            "(use None for 'not estimable' and say why in the message)"
        )
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            _check_finite(v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_finite(v, f"{where}[{i}]")


@dataclass(frozen=True)
class Finding:
    """One audit finding (the schema of ``findings.json``).

    Parameters
    ----------
    check : str
        Registry name of the check that produced it.
    severity : {'critical', 'warning', 'info', 'pass'}
        How urgent it is.
    title : str
        One line.
    message : str
        Plain language a clinician can read.
    evidence : dict
        Numbers with their confidence intervals or p-values and the ``method``.
        JSON-serialisable, finite floats only.
    sample_ids : list of str
        Affected rows (manifest ``sample_id``), most affected first.
    recommendation : str
        What to do about it.
    references : list of str
        Keys of :data:`REFERENCES`.

    Raises
    ------
    ValueError
        On an unknown severity or reference, or non-finite evidence.
    """

    check: str
    severity: Severity
    title: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    sample_ids: list[str] = field(default_factory=list)
    recommendation: str = ""
    references: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(
                f"Finding.severity must be one of {list(SEVERITIES)}; got {self.severity!r} "
                f"(check {self.check!r})"
            )
        unknown = [r for r in self.references if r not in REFERENCES]
        if unknown:
            raise ValueError(
                f"Finding.references has unknown keys {unknown} (check {self.check!r}); "
                f"valid keys: {sorted(REFERENCES)}"
            )
        if not self.title or not self.message:
            raise ValueError(f"Finding from check {self.check!r} needs a title and a message")
        _check_finite(self.evidence, "evidence")
        object.__setattr__(self, "sample_ids", [str(s) for s in self.sample_ids])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        """Inverse of :meth:`to_dict`; unknown keys raise ``TypeError``."""
        return cls(**dict(data))


def sort_findings(findings: Sequence[Finding]) -> list[Finding]:
    """Most severe first, then by check name."""
    return sorted(findings, key=lambda f: (severity_rank(f.severity), f.check))
