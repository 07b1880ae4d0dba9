"""The examples in the docstrings run and print what they say (``metrics.flip_stats``, ``stats.mcnemar``,
the corruptions' and models' examples): without this they documented and protected nothing."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _modules_with_examples() -> list[str]:
    names = []
    for package in ("corruptions", "robustbench_gcp"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name != "__main__.py" and ">>> " in path.read_text(encoding="utf-8"):
                names.append(".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"))
    return names


MODULES = _modules_with_examples()


def test_the_examples_are_found():
    assert {"robustbench_gcp.metrics", "robustbench_gcp.stats", "corruptions"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             report=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (run " \
        f"python -m doctest -v on its file to see them)"
