"""Alembic migrations of the hub's schema; ``payhub db upgrade`` runs them."""
