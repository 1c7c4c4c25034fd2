"""livetriage's exception tree.

LivetriageError
├── ConfigError        bad or missing configuration; the process exits with a message
├── RetryableError     broker or database unavailable; retry with backoff, never commit past it
└── PoisonError        input that can never succeed (bad bytes, schema violation); DLQ it
"""

from __future__ import annotations


class LivetriageError(Exception):
    """Root of every error livetriage raises on purpose."""


class ConfigError(LivetriageError):
    """Configuration is missing or invalid; shown to the operator as one line."""


class RetryableError(LivetriageError):
    """A dependency is unavailable for now; the same work may succeed later."""


class PoisonError(LivetriageError):
    """Input that will never be processed; carries a bounded ``reason`` code for metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def retryable_types() -> tuple[type[BaseException], ...]:
    """Exception types that mean "a dependency is unavailable": retry, don't commit."""
    from aiokafka.errors import KafkaError
    from sqlalchemy.exc import DBAPIError

    return (RetryableError, KafkaError, DBAPIError, OSError, TimeoutError)
