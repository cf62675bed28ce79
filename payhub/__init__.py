"""PayHub: the payment hub between public-service portals and banks.

A request enters ``payhub.api``, becomes a use case in ``payhub.service``, changes
``payhub.domain`` objects, is stored through ``payhub.store`` and leaves through
``payhub.connectors`` (to a bank) or the event outbox (to the portal).
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
