"""Every module of the project imports: a moved or renamed module leaves no stale import behind,
even in code no other test runs (the bench, the tools)."""

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bench", "personify", "processors", "readmodels", "schemas", "streams")
MODULES = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def test_there_are_modules_to_import():
    assert len(MODULES) > 50


@pytest.mark.parametrize("module", MODULES)
def test_the_module_imports(module):
    importlib.import_module(module)
