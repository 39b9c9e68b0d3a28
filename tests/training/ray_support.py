"""Shared by the Ray tests: the skip marker, a local Ray, array comparison, a CLI subprocess."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from audit.rundir import RunDir
from training import TrainConfig
from training.executors import ray_available

#: Skips a test when ray is not importable (``pip install medaudit[ray]``).
needs_ray = pytest.mark.skipif(
    not ray_available(), reason="ray is not installed (pip install medaudit[ray])"
)

#: Two folds of 2 epochs of ``test_resnet`` (on 80 images), 1 torch thread per fold.
CFG = TrainConfig(
    model="test_resnet",
    folds=2,
    epochs=2,
    batch_size=32,
    lr=3e-3,
    quiet=True,
    threads=1,
    patience=0,
)

#: The arrays an executor must reproduce.
ARRAYS = ("oof/pred_probs", "oof/logits", "oof/embeddings", "oof/folds")


@contextmanager
def local_ray() -> Iterator[object]:
    """A new Ray on this machine with 2 CPUs (``ray.init(num_cpus=2)``), shut down at the end."""
    if not ray_available():
        pytest.skip("ray is not installed (pip install medaudit[ray])")
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield ray
    finally:
        ray.shutdown()


def arrays(run: RunDir) -> dict[str, np.ndarray]:
    """The :data:`ARRAYS` of ``run``."""
    return {a: run.read_array(a) for a in ARRAYS}


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    """Bitwise equality (values and dtypes) of two :func:`arrays` results."""
    for name in ARRAYS:
        assert a[name].dtype == b[name].dtype, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def cli(*args: str, cwd: Path, hide_ray: bool = False) -> subprocess.CompletedProcess[str]:
    """``medaudit ARGS`` in a subprocess; ``hide_ray`` makes ``import ray`` fail there."""
    code = "import sys\n"
    if hide_ray:  # a Python where `import ray` fails, as without the extra
        code += "sys.modules['ray'] = None\n"
    code += "from medaudit.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )
