"""Reconciliation: reading banks' statements and mapping them back to payments.

Statement formats that are standards (ISO 20022 camt) live here, in the hub, rather than
in one bank's package: any bank may deliver camt.053, and the vietqr connector (camt.054
credit notifications) and reconciliation (camt.053 statements) read them the same way.
"""
