"""PLACEHOLDER for check 'duplicates_and_leakage' (being written; must be replaced before commit)."""

from dataclasses import dataclass

from audit.registry import CheckSpec


@dataclass(frozen=True)
class _Config:
    pass


def _run(ctx, config):  # type: ignore[no-untyped-def]
    raise NotImplementedError("duplicates_and_leakage is being written")


SPEC = CheckSpec(name="duplicates_and_leakage", func=_run, config_cls=_Config)
