"""DemoConfig: validation (every problem reported) and the digest that keys identifiers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ingest.demo import DemoConfig, generate_demo
from ingest.demo._config import config_digest, validate_config


def test_bad_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="DemoConfig"):
        generate_demo(tmp_path / "x", {"n_patients": 10})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prevalence") as err:
        generate_demo(tmp_path / "x", DemoConfig(prevalence=1.5, label_noise_fn_rate=-0.1))
    assert "label_noise_fn_rate" in str(err.value)  # every problem is reported
    assert not (tmp_path / "x" / "dicom").exists()


@pytest.mark.parametrize(
    ("field", "value", "error", "match"),
    [
        ("n_patients", 2.0, TypeError, r"DemoConfig\.n_patients must be an int; got float"),
        ("seed", True, TypeError, r"DemoConfig\.seed must be an int; got bool"),
        ("prevalence", "x", TypeError, r"DemoConfig\.prevalence must be a float; got str"),
        ("n_patients", 1, ValueError, r"DemoConfig\.n_patients must be >= 2; got 1"),
        ("image_size", 5000, ValueError, r"DemoConfig\.image_size must be <= 4096; got 5000"),
        ("prevalence", 0.0, ValueError, r"DemoConfig\.prevalence must be in \(0\.0, 1\.0\)"),
        ("label_noise_fp_rate", float("nan"), ValueError, r"label_noise_fp_rate must be in \[0\.0"),
    ],
)
def test_each_field_is_checked(field: str, value: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        validate_config(dataclasses.replace(DemoConfig(), **{field: value}))


def test_validated_config_holds_plain_python_numbers() -> None:
    cfg = validate_config(DemoConfig(n_patients=np.int64(40), prevalence=np.float32(0.25)))
    assert type(cfg.n_patients) is int and type(cfg.prevalence) is float
    assert cfg.n_patients == 40 and cfg.prevalence == 0.25


def test_config_digest_is_stable_and_tells_configs_apart() -> None:
    assert config_digest(DemoConfig()) == config_digest(DemoConfig())
    assert config_digest(DemoConfig()) != config_digest(DemoConfig(seed=1))
    assert len(config_digest(DemoConfig())) == 16


def test_shortcuts_changes_identifiers_only_when_turned_off() -> None:
    base = DemoConfig()
    assert config_digest(dataclasses.replace(base, shortcuts=True)) == config_digest(base)
    assert config_digest(dataclasses.replace(base, shortcuts=False)) != config_digest(base)
    with pytest.raises(TypeError, match="shortcuts"):
        validate_config(dataclasses.replace(base, shortcuts="no"))  # type: ignore[arg-type]
