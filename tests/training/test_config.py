"""TrainConfig: validation with messages that name the field, round trip, result hash."""

from __future__ import annotations

import pytest

from training import TrainConfig


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"refit": "yes"}, TypeError, "TrainConfig.refit must be a bool"),
        ({"folds": 1}, ValueError, "TrainConfig.folds must be >= 2"),
        ({"epochs": 2.5}, TypeError, "TrainConfig.epochs must be an int"),
        ({"inner_val_fraction": 0.0}, ValueError, "TrainConfig.inner_val_fraction must be > 0"),
        ({"precision": "fp8"}, ValueError, "TrainConfig.precision must be one of"),
        ({"masked_variants": ("blur",)}, ValueError, "unknown masked variant"),
    ],
)
def test_bad_values_name_the_field(changes: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        TrainConfig(**changes)


def test_round_trip_and_hash_ignore_execution_only_fields() -> None:
    cfg = TrainConfig(epochs=7, refit=False)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.config_hash() == cfg.replace(jobs=2, quiet=True).config_hash()
    assert cfg.config_hash() != cfg.replace(refit=True).config_hash()
