"""The exception tree drawn in ``payhub/errors.py`` is the tree the code defines."""

from __future__ import annotations

import importlib
import pkgutil
import re

import payhub
from payhub import errors
from payhub.errors import PayhubError


def _all_subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_all_subclasses(sub)}
    return found


def _drawn() -> dict[str, str]:
    """Each class drawn in the docstring, with the class drawn as its parent."""
    drawing = (errors.__doc__ or "").split("::", 1)[1]
    parents: dict[int, str] = {}
    drawn: dict[str, str] = {}
    for line in drawing.splitlines():
        match = re.match(r"^(\s*)(?:[│ ]*)(?:├── |└── )?([A-Z]\w+)(?=\s|$)", line)
        if not match or not re.search(r"[A-Z]\w+", line):
            continue
        name = match.group(2)
        depth = line.find(name)
        if name == "PayhubError":
            parents = {depth: name}
            continue
        parent = max((d for d in parents if d < depth), default=None)
        if parent is None:
            continue
        drawn[name] = parents[parent]
        parents = {d: n for d, n in parents.items() if d < depth}
        parents[depth] = name
    return drawn


def test_every_payhub_error_is_drawn_under_its_parent() -> None:
    for module in pkgutil.walk_packages(payhub.__path__, "payhub."):
        if module.name.startswith("payhub.store.migrations"):
            continue
        importlib.import_module(module.name)
    drawn = _drawn()
    defined = {cls.__name__: cls.__bases__[0].__name__ for cls in _all_subclasses(PayhubError)}
    assert defined == drawn
