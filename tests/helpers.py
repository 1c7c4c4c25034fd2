"""Test helpers: wait on conditions with deadlines, read topics, publish reports."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.settings import Settings

T = TypeVar("T")


async def eventually(
    probe: Callable[[], T | Awaitable[T]], *, timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while True:
        last = probe()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last  # type: ignore[return-value]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {what} (last={last!r})")
        await asyncio.sleep(interval)  # poll interval of a condition wait with a deadline


def report(
    stream_id: str = "s1",
    category: str = "violence",
    *,
    at: datetime | None = None,
    report_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "report_id": report_id or uuid.uuid4().hex,
        "stream_id": stream_id,
        "reported_at": (at or datetime.now(UTC)).isoformat(),
        "category": category,
        "source": "user",
        "reporter_id": f"u-{uuid.uuid4().hex[:6]}",
        "region": "DE",
        "viewer_count": 1200,
    }
    body.update(extra)
    return body


async def publish(settings: Settings, topic: str, items: list[tuple[bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        futs = [await producer.send(topic, value, key=key) for key, value in items]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


def encode_reports(reports: list[dict[str, Any]]) -> list[tuple[bytes | None, bytes]]:
    return [(r["stream_id"].encode(), orjson.dumps(r)) for r in reports]


async def read_topic(
    settings: Settings, topic: str, *, expect: int, timeout: float = 20.0, settle_ms: int = 300
) -> list[Any]:
    """Read a topic from the beginning until ``expect`` records arrived, then a little more
    (``settle_ms``) so that extra records, if any, show up in the result too."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        async def partitions() -> set[int] | None:
            await consumer.topics()  # refreshes cluster metadata
            return consumer.partitions_for_topic(topic)

        parts = await eventually(partitions, what=f"metadata of {topic}")
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(out) < expect:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"read {len(out)} of {expect} records from {topic}")
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                out.extend(recs)
        batch = await consumer.getmany(timeout_ms=settle_ms)
        for recs in batch.values():
            out.extend(recs)
        return out
    finally:
        await consumer.stop()


def minutes_ago(n: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=n)


def settings_from_env(env: dict[str, str], monkeypatch: Any) -> Settings:
    """``Settings()`` as a process with exactly ``env`` (of livetriage's variables) builds it."""
    import os

    for key in list(os.environ):
        if key.startswith("LIVETRIAGE_") or key in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()
