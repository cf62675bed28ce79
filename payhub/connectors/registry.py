"""Connector discovery through the ``payhub.banks`` entry-point group.

A bank added by a third-party package registers its connector class under that group
and needs no change here.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from payhub.connectors.port import BankConnector
from payhub.errors import ConfigError

ENTRY_POINT_GROUP = "payhub.banks"


def available_protocols() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def connector_class(protocol: str) -> type[BankConnector]:
    """The connector class registered for ``protocol``."""
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == protocol]
    if not matches:
        known = ", ".join(available_protocols()) or "none"
        raise ConfigError(f"no bank connector {protocol!r} is installed (installed: {known})")
    loaded = matches[0].load()
    if not (isinstance(loaded, type) and issubclass(loaded, BankConnector)):
        raise ConfigError(f"entry point {protocol!r} is not a BankConnector subclass")
    return loaded
