"""Delivery channels: one module per integration, each a ``Channel``."""
