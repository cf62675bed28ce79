"""VietQR bank transfers: the connector (hub side) and the collecting bank's simulator."""

from banks.vietqr.connector import VietqrConnector

__all__ = ["VietqrConnector"]
