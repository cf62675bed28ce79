"""Routing moved to ``payhub.routing``; this name stays for the callers that import it here."""

from payhub.routing import NoBankAvailable, Route, Router, RouteRequest

__all__ = ["NoBankAvailable", "Route", "RouteRequest", "Router"]
