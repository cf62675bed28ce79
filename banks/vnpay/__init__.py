"""VNPay payment gateway API 2.1.0: the hub's connector and a simulator of the gateway."""

from banks.vnpay.connector import VnpayConnector
from banks.vnpay.simulator import create_simulator

__all__ = ["VnpayConnector", "create_simulator"]
