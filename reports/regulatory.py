"""Section 5, the regulatory mapping: which checklist items this run holds evidence for.

Items of CLAIM 2024 (Tejani et al., Radiol AI 2024), TRIPOD+AI (Collins et al., BMJ
2024), the Good Machine Learning Practice guiding principles (FDA, Health Canada,
MHRA 2021) and Article 10 of the EU AI Act (Regulation (EU) 2024/1689). Each item is
marked **evidenced** (everything the item asks that a data audit can show is in this
report), **partially evidenced** (some of it is, or the item also asks for what only
the study protocol or the manufacturer can state) or **not evidenced by this run**.
The mapping states what evidence exists; it never claims compliance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from audit.findings import REFERENCES
from reports._rundata import RunData
from reports.model import ModelCard, RegulatoryItem, RegulatorySection

__all__ = ["DISCLAIMER", "ITEMS", "build_regulatory"]

DISCLAIMER = (
    "This table states which evidence this run holds for each item. It is not a statement "
    "of compliance with any regulation, standard or reporting guideline: that judgement "
    "belongs to the manufacturer, the notified body or the reviewers."
)


@dataclass(frozen=True)
class _Fact:
    """Something this run can show, where it is shown, and how to test for it."""

    text: str
    anchor: str
    present: Callable[[RunData, ModelCard | None], bool]


def _check_ran(name: str) -> _Fact:
    def present(d: RunData, _: ModelCard | None) -> bool:
        failed = {e.get("check") for e in d.audit.get("errors") or []}
        return name in set(d.audit.get("checks_run") or []) and name not in failed

    return _Fact(f"check {name} ran", f"#check-{name}", present)


def _has_columns(*cols: str) -> Callable[[RunData, ModelCard | None], bool]:
    return lambda d, _: any(c in d.manifest.columns and d.manifest[c].notna().any() for c in cols)


FACTS: dict[str, _Fact] = {
    "counts": _Fact("counts per class and patient (datasheet)", "#dataset",
                    lambda d, _: True),
    "quarantine": _Fact("refused inputs with their reasons (datasheet)", "#dataset-quarantine",
                        lambda d, _: bool(d.info.get("ingest") or d.info.get("external"))),
    "preprocessing": _Fact("preprocessing and pseudonymisation (datasheet)",
                           "#dataset-preprocessing", lambda d, _: bool(d.info.get("ingest"))),
    "demographics": _Fact("sex and age per class (datasheet)", "#dataset",
                          _has_columns("sex", "age")),
    "sites": _Fact("sites and scanners per class (datasheet)", "#dataset",
                   _has_columns("site", "scanner")),
    "partitions": _Fact("patient-grouped cross-validation folds or a stated split", "#model",
                        lambda d, _: bool(d.info.get("train")) or "split" in d.manifest.columns),
    "model": _Fact("architecture and training settings (model card)", "#model",
                   lambda d, _: bool(d.info.get("train"))),
    "metrics": _Fact("performance with 95% confidence intervals (model card)", "#model",
                     lambda d, m: m is not None and m.kind != "none"),
    "operating_point": _Fact("operating point with sensitivity and specificity intervals",
                             "#model", lambda d, m: bool(m and m.operating_points)),
    "deployment": _Fact("PPV and NPV at a stated deployment prevalence", "#model",
                        lambda d, m: bool(m and any(v.get("deployment") is not None
                                                    for v in m.prevalences.values()))),
    "reproducibility": _Fact("settings, seeds, versions and input digests", "#reproducibility",
                             lambda d, _: True),
}
for _name in ("label_issues", "annotator_agreement", "duplicates_and_leakage", "outliers",
              "class_balance_and_size", "subgroup_performance", "metadata_shortcut",
              "hidden_stratification", "prevalence_shift", "calibration", "masking_test"):
    FACTS[f"check:{_name}"] = _check_ran(_name)


@dataclass(frozen=True)
class _Item:
    key: str
    framework: str
    item: str
    needs: tuple[str, ...]
    outside: str = ""


#: The items, what of each a run can show (``needs``), and what it never can (``outside``).
ITEMS: tuple[_Item, ...] = (
    _Item("CLAIM:data-sources", "CLAIM 2024", "Data sources",
          ("counts", "quarantine", "check:outliers"),
          "eligibility criteria and how cases were selected (study protocol)"),
    _Item("CLAIM:reference-standard", "CLAIM 2024", "Reference standard",
          ("check:label_issues",), "the definition and rationale of the reference standard"),
    _Item("CLAIM:annotation", "CLAIM 2024", "Annotation",
          ("check:label_issues", "check:annotator_agreement"),
          "the annotators' qualifications and instructions"),
    _Item("CLAIM:de-identification", "CLAIM 2024", "De-identification", ("preprocessing",),
          "de-identification of the images themselves (burnt-in text) before ingestion"),
    _Item("CLAIM:partitions", "CLAIM 2024", "Data partitions",
          ("partitions", "check:duplicates_and_leakage")),
    _Item("CLAIM:sample-size", "CLAIM 2024", "Sample size", ("check:class_balance_and_size",)),
    _Item("CLAIM:demographics", "CLAIM 2024", "Demographics per partition",
          ("demographics", "check:class_balance_and_size")),
    _Item("CLAIM:model", "CLAIM 2024", "Model description", ("model",)),
    _Item("CLAIM:evaluation", "CLAIM 2024", "Evaluation with uncertainty",
          ("metrics", "operating_point")),
    _Item("CLAIM:failure-analysis", "CLAIM 2024", "Failure analysis",
          ("check:label_issues", "check:subgroup_performance", "check:hidden_stratification")),
    _Item("TRIPOD+AI:data-preparation", "TRIPOD+AI", "Data preparation",
          ("preprocessing", "quarantine", "check:outliers", "check:duplicates_and_leakage")),
    _Item("TRIPOD+AI:sample-size", "TRIPOD+AI", "Sample size", ("check:class_balance_and_size",)),
    _Item("TRIPOD+AI:fairness", "TRIPOD+AI", "Fairness",
          ("demographics", "check:subgroup_performance")),
    _Item("TRIPOD+AI:analysis", "TRIPOD+AI", "Analysis methods",
          ("model", "partitions", "metrics", "reproducibility")),
    _Item("GMLP-3", "GMLP", "3. Representative data",
          ("demographics", "sites", "check:class_balance_and_size", "check:outliers"),
          "a comparison with the intended patient population"),
    _Item("GMLP-4", "GMLP", "4. Training independent of test data",
          ("partitions", "check:duplicates_and_leakage")),
    _Item("GMLP-5", "GMLP", "5. Best available reference standard",
          ("check:label_issues", "check:annotator_agreement"),
          "how the reference standard was established"),
    _Item("GMLP-8", "GMLP", "8. Clinically relevant testing",
          ("metrics", "operating_point", "deployment", "check:subgroup_performance"),
          "testing on data from the intended clinical setting (external or prospective)"),
    _Item("EU-AI-Act-10(2)(f)", "EU AI Act", "Art. 10(2)(f) examination for biases",
          ("demographics", "check:class_balance_and_size", "check:subgroup_performance",
           "check:metadata_shortcut")),
    _Item("EU-AI-Act-10(2)(g)", "EU AI Act", "Art. 10(2)(g) detect, prevent, mitigate biases",
          ("check:subgroup_performance", "check:metadata_shortcut"),
          "the measures taken to prevent and mitigate the biases found"),
    _Item("EU-AI-Act-10(2)(h)", "EU AI Act", "Art. 10(2)(h) data gaps and shortcomings",
          ("check:class_balance_and_size", "quarantine", "check:outliers"),
          "how the gaps found will be addressed"),
    _Item("EU-AI-Act-10(3)", "EU AI Act", "Art. 10(3) relevant, representative, free of errors, "
          "complete", ("check:label_issues", "check:duplicates_and_leakage", "check:outliers",
                       "quarantine", "check:class_balance_and_size"),
          "relevance to the intended purpose"),
    _Item("EU-AI-Act-10(4)", "EU AI Act", "Art. 10(4) setting of intended use",
          ("sites", "deployment", "check:prevalence_shift"),
          "the characteristics of the setting where the system will be used"),
)


def build_regulatory(data: RunData, model: ModelCard | None) -> RegulatorySection:
    """Build section 5 from a loaded run and its model card (pure)."""
    items = []
    citing = list(zip(data.finding_ids, data.findings or []))
    for it in ITEMS:
        met = [FACTS[n] for n in it.needs if FACTS[n].present(data, model)]
        unmet = [FACTS[n] for n in it.needs if not FACTS[n].present(data, model)]
        evidence = [{"text": f.text, "anchor": f.anchor} for f in met]
        evidence += [{"text": f"{fid}: {f.title}", "anchor": f"#{fid}"}
                     for fid, f in citing if it.key in f.references]
        if met and not unmet and not it.outside:
            status = "evidenced"
        elif evidence:
            status = "partially evidenced"
        else:
            status = "not evidenced by this run"
        missing = [f"{f.text.replace(' ran', ' (not run)')}" for f in unmet]
        if it.outside:
            missing.append(f"outside a data audit: {it.outside}")
        items.append(RegulatoryItem(framework=it.framework, key=it.key, item=it.item,
                                    asks=REFERENCES[it.key], status=status,  # type: ignore[arg-type]
                                    evidence=evidence, missing="; ".join(missing)))
    counts = {s: sum(i.status == s for i in items) for s in
              ("evidenced", "partially evidenced", "not evidenced by this run")}
    return RegulatorySection(disclaimer=DISCLAIMER, items=items, counts=counts)
