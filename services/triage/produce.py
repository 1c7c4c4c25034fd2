"""Which produce failures are permanent: the same record will never be accepted.

A record larger than the producer's ``max_request_size`` or the broker's message limit, a
topic name the broker rejects, a record it cannot parse, a topic we may not write: retrying
(rewinding and replaying) re-sends the very same record and wedges the stage for ever. Those
are dropped with a bounded reason (logged, counted); everything else keeps the runner's
retry-with-backoff. Kept here, next to the triage code paths that use it, until a shared
transient/permanent classification exists.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import errors as kafka_errors

_PERMANENT: tuple[tuple[type[BaseException], str], ...] = (
    (kafka_errors.MessageSizeTooLargeError, "too_large"),
    (kafka_errors.RecordListTooLargeError, "too_large"),
    (kafka_errors.RecordTooLargeError, "too_large"),
    (kafka_errors.InvalidTopicError, "invalid_topic"),
    (kafka_errors.CorruptRecordException, "invalid_record"),
    (kafka_errors.InvalidTimestampError, "invalid_record"),
    (kafka_errors.UnsupportedForMessageFormatError, "invalid_record"),
    (kafka_errors.TopicAuthorizationFailedError, "not_authorized"),
)


def permanent_reason(exc: BaseException) -> str | None:
    """A bounded reason if producing the record can never succeed, else None (retry)."""
    for cls, reason in _PERMANENT:
        if isinstance(exc, cls):
            return reason
    return None


async def settle(futures: Iterable[asyncio.Future[Any]],
                 on_permanent: Callable[[str, BaseException], None]) -> None:
    """Await produce acks; report permanent failures, raise the first other one."""
    futures = list(futures)
    if not futures:
        return
    first: BaseException | None = None
    for res in await asyncio.gather(*futures, return_exceptions=True):
        if isinstance(res, BaseException):
            reason = permanent_reason(res)
            if reason is None:
                first = first or res
            else:
                on_permanent(reason, res)
    if first is not None:
        raise first
