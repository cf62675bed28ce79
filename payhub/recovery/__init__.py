"""Recovery: finding out what became of payments whose confirmation is late or lost.

``schedule`` says when a payment is queried at its bank, ``worker`` runs the queries
(claimed rows, injectable clock) and ``lifecycle`` starts the worker inside ``serve``.
The decisions themselves are use cases in ``payhub.service.recovery``.
"""
