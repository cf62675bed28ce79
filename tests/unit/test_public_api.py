"""What each package exports is what its __all__ lists, and every listed name exists."""

from __future__ import annotations

import importlib

import pytest

MODULES = [
    "payhub",
    "payhub.connectors",
    "payhub.api.auth",
    "payhub.portal",
    "payhub.portal.client",
    "payhub.domain.requests",
    "payhub.domain.reference",
    "banks.vnpay",
    "banks.vietqr",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported, f"{name} exports nothing"
    assert len(set(exported)) == len(exported)
    for symbol in exported:
        assert hasattr(module, symbol), f"{name}.__all__ lists missing {symbol}"


def test_connector_port_is_what_banks_implement() -> None:
    from banks.vnpay import VnpayConnector
    from payhub.connectors import BankConnector
    from payhub.connectors.registry import connector_class

    assert connector_class("vnpay") is VnpayConnector
    assert issubclass(VnpayConnector, BankConnector)
    assert not getattr(VnpayConnector, "__abstractmethods__", None)
