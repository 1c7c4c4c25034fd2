"""Producing triage's records, where a record that can never be produced is dropped.

A record larger than the producer's ``max_request_size`` or the broker's message limit, or
one the broker cannot accept (``shared.errors.classify``: permanent): retrying (rewinding and
replaying) re-sends the very same record and wedges the stage for ever. Those are dropped with
a bounded reason (logged, counted); everything else keeps the runner's retry-with-backoff.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from shared.errors import Kind, judge


def permanent_reason(exc: BaseException) -> str | None:
    """A bounded reason if producing the record can never succeed, else None (retry)."""
    kind, reason = judge(exc)
    return reason if kind is Kind.PERMANENT else None


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
