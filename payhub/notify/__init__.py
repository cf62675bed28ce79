"""Portal notifications: the outbox delivered as Standard Webhooks (CONTRACT §4)."""
