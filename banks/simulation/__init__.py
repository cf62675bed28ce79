"""A toolkit for bank simulators: faults, payers, resends, clock, statement, control, pages.

Each bank's simulator (``banks.<bank>.simulator``) keeps only its protocol and builds on:

- ``faults``: the knobs of ``PUT /_sim/faults`` (table in ``banks.simulation.faults``);
- ``bank.SimulatedBank``: dice, waits, background work, API faults and the delivery of
  confirmations (lost, duplicated, concurrent, reordered, tampered, forged, resent on the
  bank's own schedule);
- ``clock.ManualClock``: an injectable clock whose ``advance`` also runs the bank's waits;
- ``statement``: the day's CSV from the payments that really happened;
- ``control``: ``/_sim/pay``, ``/_sim/faults``, ``/_sim/statement``, ``/_sim/confirmations``;
- ``pages``: the pay page's HTML pieces.
"""

from banks.simulation import pages
from banks.simulation.bank import (
    ABANDON,
    LATE,
    OrderRejected,
    Outgoing,
    PendingConfirmation,
    SimulatedBank,
    StatementFile,
    UnknownReference,
)
from banks.simulation.clock import ManualClock
from banks.simulation.control import BANK, simulator_app
from banks.simulation.faults import Faults
from banks.simulation.statement import Settlement, business_day, daily_csv

__all__ = [
    "ABANDON",
    "BANK",
    "LATE",
    "Faults",
    "ManualClock",
    "OrderRejected",
    "Outgoing",
    "PendingConfirmation",
    "Settlement",
    "SimulatedBank",
    "StatementFile",
    "UnknownReference",
    "business_day",
    "daily_csv",
    "pages",
    "simulator_app",
]
