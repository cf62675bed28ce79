"""Logs and metrics: what an operator watches."""
