"""livetriage's exception tree, and how a failure of a dependency or of input is judged.

LivetriageError
├── ConfigError        bad or missing configuration; the process exits with a message
├── RetryableError     broker or database unavailable; retry with backoff, never commit past it
└── PoisonError        input that can never succeed (bad bytes, schema violation); DLQ it

Errors from the libraries (SQLAlchemy/asyncpg, aiokafka, the OS) are judged by ``classify``:
``TRANSIENT`` (the same work may succeed later: retry, commit nothing) or ``PERMANENT`` (this
record will fail however often it is tried: dead-letter it, commit, go on). ``failure_reason``
names the failure with a bounded code, for a DLQ header and a metric label.

The rule: PERMANENT only when the record itself is proven at fault, i.e. the database or the
broker rejected its *values*. Anything that would fail for every record (the database down, a
missing table, a revoked grant, an unknown error) is TRANSIENT: retried and counted until an
operator fixes it, because dead-lettering it would empty the stream into the DLQ.

=================================================  =========  ==========================
failure                                            kind       reason
=================================================  =========  ==========================
PoisonError                                        permanent  its own ``reason``
SQLSTATE 22 data exception (22001 too long,        permanent  db_data_exception
  22P02 bad text, 22000 asyncpg argument encoding)
SQLSTATE 23 integrity violation (23502 not null,   permanent  db_integrity_violation
  23505 unique, 23503 foreign key, 23514 check)
SQLSTATE 21 cardinality violation (a batch that    permanent  db_cardinality_violation
  upserts one key twice: splitting the batch cures it)
SQLSTATE 54 program limit (a NUL in text, an       permanent  db_limit_exceeded
  index row too big: a property of the values)
Kafka MessageSizeTooLarge (10), RecordListTooLarge permanent  record_too_large
  (18), aiokafka's RecordTooLarge; InvalidTimestamp           / record_rejected
  (32), UnsupportedForMessageFormat (43)
SQLSTATE 08 connection, 57 operator intervention   transient  db_unavailable
  (admin shutdown, statement timeout), 58 system,
  25 transaction state (read-only after failover),
  OperationalError / InterfaceError without a code
SQLSTATE 40 serialization failure / deadlock,      transient  db_contention
  55 object state (55P03 lock not available)
SQLSTATE 53 insufficient resources (disk, memory,  transient  db_resources
  too many connections)
SQLSTATE 42 syntax or access rule (42P01 undefined transient  db_schema
  table during a migration, 42501 a revoked grant):
  parameters are bound, so a record's values cannot
  cause it; it is our SQL against this schema, an
  operator's problem, and every record would fail
any other SQLSTATE (0A, XX, ...), other DBAPIError transient  db_other
KafkaError retriable=True, KafkaTimeoutError       transient  broker_unavailable
other non-retriable KafkaError (authorization,     transient  broker_rejected
  unsupported version): not the record's fault
RetryableError, OSError, TimeoutError              transient  unavailable
anything else                                      transient  unknown
=================================================  =========  ==========================
"""

from __future__ import annotations

import enum


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


class Kind(enum.StrEnum):
    """What to do about a failure: retry it (``TRANSIENT``) or dead-letter the record."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"


def retryable_types() -> tuple[type[BaseException], ...]:
    """Exception types that may mean "a dependency is unavailable": catch these, then ask
    ``classify`` whether the work can succeed later (a DBAPIError can be either)."""
    from aiokafka.errors import KafkaError
    from sqlalchemy.exc import DBAPIError

    return (RetryableError, KafkaError, DBAPIError, OSError, TimeoutError)


def failure_types() -> tuple[type[BaseException], ...]:
    """Every type ``classify`` judges: the retryable ones, SQLAlchemy's pool timeout and
    ``PoisonError``. Others (a bug) propagate."""
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    return (*retryable_types(), PoolTimeout, PoisonError)


def judge(exc: BaseException) -> tuple[Kind, str]:
    """``classify`` and ``failure_reason`` at once."""
    return _judge(exc)


def classify(exc: BaseException) -> Kind:
    """``PERMANENT`` if ``exc`` proves the record at fault, else ``TRANSIENT`` (see the table)."""
    return _judge(exc)[0]


def failure_reason(exc: BaseException) -> str:
    """A bounded code naming ``exc`` (see the table): a DLQ reason and a metric label."""
    return _judge(exc)[1]


def sqlstate_of(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error: SQLAlchemy's ``exc.orig`` (the dialect's adapted
    error) has it as ``sqlstate``, so does the asyncpg exception that is its ``__cause__``."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 5:
        code = getattr(cur, "sqlstate", None)
        if isinstance(code, str) and len(code) == 5:
            return code
        cur = getattr(cur, "orig", None) or cur.__cause__
        seen += 1
    return None


def failure_detail(exc: BaseException, limit: int = 500) -> str:
    """A one-line description for a DLQ header: the driver's message, not SQLAlchemy's text
    with the statement and its parameters (those of other records, when a batch failed)."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, PoisonError):
        text = exc.detail
    elif isinstance(exc, DBAPIError) and exc.orig is not None:
        code = sqlstate_of(exc)
        driver = type(exc.orig.__cause__ or exc.orig).__name__
        text = f"{code + ' ' if code else ''}{driver}: {exc.orig}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:limit]


_PERMANENT_CLASSES = {
    "21": "db_cardinality_violation",
    "22": "db_data_exception",
    "23": "db_integrity_violation",
    "54": "db_limit_exceeded",
}
_TRANSIENT_CLASSES = {
    "08": "db_unavailable",
    "25": "db_unavailable",
    "57": "db_unavailable",
    "58": "db_unavailable",
    "40": "db_contention",
    "55": "db_contention",
    "53": "db_resources",
    "42": "db_schema",
}


def _judge(exc: BaseException) -> tuple[Kind, str]:
    from aiokafka.errors import (
        InvalidTimestampError,
        KafkaError,
        KafkaTimeoutError,
        MessageSizeTooLargeError,
        RecordListTooLargeError,
        RecordTooLargeError,
        UnsupportedForMessageFormatError,
    )
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, PoisonError):
        return Kind.PERMANENT, exc.reason
    if isinstance(exc, (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError)):
        return Kind.PERMANENT, "record_too_large"
    if isinstance(exc, (InvalidTimestampError, UnsupportedForMessageFormatError)):
        return Kind.PERMANENT, "record_rejected"
    if isinstance(exc, KafkaTimeoutError) or (isinstance(exc, KafkaError) and exc.retriable):
        return Kind.TRANSIENT, "broker_unavailable"
    if isinstance(exc, KafkaError):
        return Kind.TRANSIENT, "broker_rejected"
    code = sqlstate_of(exc)
    if code is not None:
        cls = code[:2]
        if cls in _PERMANENT_CLASSES:
            return Kind.PERMANENT, _PERMANENT_CLASSES[cls]
        return Kind.TRANSIENT, _TRANSIENT_CLASSES.get(cls, "db_other")
    if isinstance(exc, DBAPIError):
        # no code: the driver lost the connection or never had one ("connection is closed",
        # a refused connect, a timeout), or something we cannot place: retry either way
        lost = exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError))
        return Kind.TRANSIENT, "db_unavailable" if lost else "db_other"
    if isinstance(exc, (RetryableError, OSError, TimeoutError, PoolTimeout)):
        return Kind.TRANSIENT, "unavailable"
    return Kind.TRANSIENT, "unknown"
