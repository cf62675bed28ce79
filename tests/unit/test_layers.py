"""Use cases and routes reach storage only through the unit of work: no SQL above the store."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PAYHUB = Path(__file__).resolve().parents[2] / "payhub"
ABOVE_THE_STORE = sorted([*(PAYHUB / "service").glob("*.py"), *(PAYHUB / "api").glob("*.py")])


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", ABOVE_THE_STORE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_sqlalchemy_above_the_store(path: Path) -> None:
    sql = [m for m in imported_modules(path) if m.split(".")[0] == "sqlalchemy"]
    assert sql == []


@pytest.mark.parametrize("path", sorted((PAYHUB / "service").glob("*.py")), ids=lambda p: p.name)
def test_use_cases_do_not_import_the_store(path: Path) -> None:
    store = [m for m in imported_modules(path) if m.startswith("payhub.store")]
    assert store == []
