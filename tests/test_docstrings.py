"""Every docstring example of the public modules runs (doctest), so none rots.

Examples that need data the tests do not have (a run directory, a DICOM
folder) are marked ``# doctest: +SKIP`` in the source; every other example runs
here, with the test's temporary secret key and cache (``tests/conftest.py``).
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

#: Packages whose modules are searched for examples (``training`` and ``dashboard``
#: import torch / streamlit; their examples, if any, are covered by their own tests).
PACKAGES = ("audit", "ingest", "reports", "medaudit")


def _modules() -> list[str]:
    names = []
    for pkg_name in PACKAGES:
        try:
            pkg = importlib.import_module(pkg_name)
        except ImportError:  # pragma: no cover - a package not created yet
            continue
        names.append(pkg_name)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg_name}."):
            if info.name.endswith("__main__"):
                continue
            names.append(info.name)
    return names


def _with_examples() -> list[str]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    out = []
    for name in _modules():
        module = importlib.import_module(name)
        if any(t.examples for t in finder.find(module, name)):
            out.append(name)
    return out


def test_the_new_public_api_has_examples() -> None:
    with_examples = set(_with_examples())
    assert {"medaudit.api", "audit.engine", "audit.context", "audit.result_summary"} <= with_examples


@pytest.mark.parametrize("name", _with_examples())
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             verbose=False, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
