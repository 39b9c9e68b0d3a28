"""PLACEHOLDER for check 'class_balance_and_size' (being written; must be replaced before commit)."""

from dataclasses import dataclass

from audit.registry import CheckSpec


@dataclass(frozen=True)
class _Config:
    pass


def _run(ctx, config):  # type: ignore[no-untyped-def]
    raise NotImplementedError("class_balance_and_size is being written")


SPEC = CheckSpec(name="class_balance_and_size", func=_run, config_cls=_Config)
