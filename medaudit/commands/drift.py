"""``medaudit drift REFERENCE_RUN NEW_RUN``: what changed in a new batch, and by how much.

NEW_RUN is any run directory of new images scored by the same model: from
``medaudit predict`` (which already names its trained run as the reference), from
``medaudit ingest`` + ``medaudit train``, or from ``medaudit audit-predictions``.
The command records REFERENCE_RUN in NEW_RUN's ``run.json['reference']`` and audits
NEW_RUN: the ``drift`` check compares features, metadata, image properties and the
predicted prevalence; ``prevalence_shift`` estimates the deployment prevalence and
recomputes the operating point; checks that need labels skip an unlabeled batch.
The findings go to NEW_RUN's ``findings.json`` (open them with ``medaudit report``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["MSG_OTHER_MODEL", "add_parser", "record_reference", "run"]

#: NEW_RUN was scored by ``medaudit predict`` with the models of another training.
MSG_OTHER_MODEL = (
    "NEW_RUN {new} was scored by medaudit predict with the models of run {trained!r}, another "
    "training than REFERENCE_RUN {ref}; its embeddings and each fold's probabilities belong to "
    "those models: compare it with the run that scored it"
)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``medaudit drift``."""
    from medaudit.commands.audit import _add_audit_options

    p = sub.add_parser(
        "drift", help="compare a new batch with its reference run", description=__doc__
    )
    p.add_argument(
        "reference_run",
        type=Path,
        metavar="REFERENCE_RUN",
        help="the run the model was trained and validated on",
    )
    p.add_argument("new_run", type=Path, metavar="NEW_RUN", help="the new batch's run directory")
    _add_audit_options(p)
    p.set_defaults(func=run)


def record_reference(reference: Path, new: Path) -> None:
    """Write ``run.json['reference']`` of ``new`` (checked: both are runs of the same classes).

    Raises
    ------
    ValueError
        When either is not a run directory, or their classes differ.
    """
    from audit.rundir import MANIFEST, RunDir

    ref, run = RunDir(reference), RunDir(new)
    for r, what in ((ref, "REFERENCE_RUN"), (run, "NEW_RUN")):
        if not r.has(MANIFEST):
            raise ValueError(f"{what} {r.path} is not a run directory (no {MANIFEST})")
    if ref.path.resolve() == run.path.resolve():
        raise ValueError("REFERENCE_RUN and NEW_RUN are the same directory")
    if ref.class_names() != run.class_names():
        raise ValueError(
            f"REFERENCE_RUN's classes {ref.class_names()} differ from NEW_RUN's "
            f"{run.class_names()}; drift compares runs of one model"
        )
    scored = run.read_run_json().get("predict") or {}
    mark = scored.get("trained_fingerprint")
    if mark:
        train = ref.read_run_json().get("train") or {}
        if {k: train.get(k) for k in mark} != mark:
            raise ValueError(
                MSG_OTHER_MODEL.format(
                    new=run.path, trained=scored.get("trained_run"), ref=ref.path
                )
            )
    with run.transaction("medaudit drift") as staged:
        staged.update_run_json(
            {"reference": {"path": str(ref.path.resolve()), "set_by": "medaudit drift"}}
        )


def run(args: argparse.Namespace) -> int:
    """``medaudit drift``."""
    from medaudit.commands.audit import audit_and_print

    record_reference(args.reference_run, args.new_run)
    return audit_and_print(args.new_run, args)
