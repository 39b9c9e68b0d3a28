"""PLACEHOLDER for check 'annotator_agreement' (being written; must be replaced before commit)."""

from dataclasses import dataclass

from audit.registry import CheckSpec


@dataclass(frozen=True)
class _Config:
    pass


def _run(ctx, config):  # type: ignore[no-untyped-def]
    raise NotImplementedError("annotator_agreement is being written")


SPEC = CheckSpec(name="annotator_agreement", func=_run, config_cls=_Config)
