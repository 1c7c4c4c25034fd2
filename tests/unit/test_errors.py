"""``shared.errors.classify`` for the errors that need no server: Kafka's, the OS's, ours.
(Database errors are classified as the real PostgreSQL raises them: tests/integration/test_poison.py.)"""

from __future__ import annotations

import pytest
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotEnoughReplicasError,
    RecordListTooLargeError,
    RecordTooLargeError,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
    UnsupportedForMessageFormatError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from shared.errors import (
    Kind,
    PoisonError,
    RetryableError,
    classify,
    failure_detail,
    failure_reason,
    failure_types,
)


@pytest.mark.parametrize(("exc", "kind", "reason"), [
    (PoisonError("unreadable_signal", "not JSON"), Kind.PERMANENT, "unreadable_signal"),
    (MessageSizeTooLargeError(), Kind.PERMANENT, "record_too_large"),
    (RecordListTooLargeError(), Kind.PERMANENT, "record_too_large"),
    (InvalidTimestampError(), Kind.PERMANENT, "record_rejected"),
    (RecordTooLargeError(), Kind.PERMANENT, "record_too_large"),
    (UnsupportedForMessageFormatError(), Kind.PERMANENT, "record_rejected"),
    (KafkaConnectionError(), Kind.TRANSIENT, "broker_unavailable"),
    (NotEnoughReplicasError(), Kind.TRANSIENT, "broker_unavailable"),
    (RequestTimedOutError(), Kind.TRANSIENT, "broker_unavailable"),
    (UnknownTopicOrPartitionError(), Kind.TRANSIENT, "broker_unavailable"),
    (KafkaTimeoutError(), Kind.TRANSIENT, "broker_unavailable"),
    # CRC mismatch on the wire: Kafka itself retries it
    (CorruptRecordException(), Kind.TRANSIENT, "broker_rejected"),
    # not the record's fault: an operator fixes the ACL, then every record goes through
    (TopicAuthorizationFailedError(), Kind.TRANSIENT, "broker_rejected"),
    (RetryableError("db down"), Kind.TRANSIENT, "unavailable"),
    (ConnectionRefusedError(111, "refused"), Kind.TRANSIENT, "unavailable"),
    (TimeoutError(), Kind.TRANSIENT, "unavailable"),
    (PoolTimeout("QueuePool limit reached"), Kind.TRANSIENT, "unavailable"),
])
def test_classify(exc: BaseException, kind: Kind, reason: str) -> None:
    assert classify(exc) is kind
    assert classify(exc) == kind.value  # a plain string compares too
    assert failure_reason(exc) == reason
    assert isinstance(exc, failure_types())


def test_poison_detail_is_its_own_and_one_line() -> None:
    assert failure_detail(PoisonError("bad", "line one\nline two")) == "line one line two"
    assert len(failure_detail(OSError("x" * 2000))) == 500
