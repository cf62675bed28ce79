"""Prometheus metrics, on a registry of the app's own (two apps in one test never collide)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    payments_created: Counter
    confirmations: Counter
    ledger_batch_size: Histogram
    webhook_attempts: Counter
    webhook_seconds: Histogram

    def webhook_attempt(self, portal: str, outcome: str, seconds: float) -> None:
        """One delivery attempt to ``portal``: ``delivered``, ``retry``, ``dead`` or ``gone``."""
        self.webhook_attempts.labels(portal, outcome).inc()
        self.webhook_seconds.labels(portal).observe(seconds)


def create_metrics() -> Metrics:
    registry = CollectorRegistry()
    return Metrics(
        registry=registry,
        requests=Counter(
            "payhub_http_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=registry,
        ),
        latency=Histogram(
            "payhub_http_request_seconds",
            "HTTP request latency by route",
            ["route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        ),
        payments_created=Counter(
            "payhub_payments_created", "Payments created, by bank", ["bank"], registry=registry
        ),
        confirmations=Counter(
            "payhub_confirmations",
            "Bank confirmations, by bank and outcome",
            ["bank", "outcome"],
            registry=registry,
        ),
        ledger_batch_size=Histogram(
            "payhub_ledger_batch_units",
            "Units of work per group commit",
            registry=registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        ),
        webhook_attempts=Counter(
            "payhub_webhook_attempts",
            "Webhook delivery attempts, by portal and outcome (delivered, retry, dead, gone)",
            ["portal", "outcome"],
            registry=registry,
        ),
        webhook_seconds=Histogram(
            "payhub_webhook_attempt_seconds",
            "Time a portal took to answer a webhook (or to fail), by portal",
            ["portal"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15),
        ),
    )
