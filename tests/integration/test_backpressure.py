"""Backpressure: a slow database stops the notifier's consumption (nothing committed, nothing
buffered beyond the batch in hand); a slow page endpoint keeps pages in the Postgres outbox,
with at most one delivery batch in flight, and every page arrives once when it recovers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from bench.faults import committed
from livetriage.runtime import start_services
from shared.events import Category, Severity, Signal
from shared.kafka import ensure_topics
from tests.conftest import make_settings
from tests.helpers import eventually, publish
from tests.receiver import running_receiver

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def signals(n: int, prefix: str) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n):
        stream = f"{prefix}-{i}"
        sig = Signal(signal_id=f"{stream}:1", kind="spike", dedup_key=f"spike:{stream}:hate", stream_id=stream,
                     category=Category.hate, severity=Severity.SEV3, score=0.5, observed_at=T0,
                     report_count=9, reason="test")
        out.append((stream.encode(), sig.model_dump_json().encode()))
    return out


def pg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def test_a_locked_database_stops_consumption_without_losing_signals(broker: str, database_url: str) -> None:
    s = make_settings(broker, database_url, batch_max_records=50)
    await ensure_topics(s)
    blocker = await asyncpg.connect(pg_dsn(database_url))
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE incidents IN SHARE ROW EXCLUSIVE MODE")  # writes wait
        stop = asyncio.Event()
        async with start_services(s, ["notifier"], stop, api=False) as running:
            await publish(s, s.signals_topic, signals(300, "locked"))

            async def waiting_on_the_lock() -> bool:
                return bool(await blocker.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"))

            await eventually(waiting_on_the_lock, timeout=30, what="the notifier blocked on the database")
            # blocked mid-batch: nothing applied, nothing committed — the rest stays in Kafka
            assert running.notifier.signals._metrics == {} or all(
                m._value.get() == 0 for m in running.notifier.signals._metrics.values())
            assert sum((await committed(broker, s.notifier_group, s.signals_topic, s.topic_partitions)).values()) == 0
            await tx.rollback()

            async def all_applied() -> bool:
                return await blocker.fetchval("SELECT count(*) FROM incidents WHERE stream_id LIKE 'locked-%'") == 300

            await eventually(all_applied, timeout=60, what="every signal applied once the lock is gone")
            async def some_committed() -> int:
                return sum((await committed(broker, s.notifier_group, s.signals_topic, s.topic_partitions)).values())

            await eventually(some_committed, timeout=30, what="offsets committed")
            stop.set()
    finally:
        await blocker.close()


async def test_a_slow_page_endpoint_holds_pages_in_the_outbox_not_in_memory(
    broker: str, database_url: str, tmp_path: Path
) -> None:
    async with running_receiver() as rec:
        routing = tmp_path / "routing.yaml"
        routing.write_text(f"""
channels:
  hook: {{type: webhook, url: "{rec.base}/hook", secret: "hunter2hunter2"}}
default: {{team: tns, channels: [hook]}}
""")
        s = make_settings(broker, database_url, routing_file=routing)
        await ensure_topics(s)
        rec.hold = asyncio.Event()  # the endpoint accepts connections and answers nothing
        db = await asyncpg.connect(pg_dsn(database_url))
        try:
            stop = asyncio.Event()
            async with start_services(s, ["notifier"], stop, api=False) as running:
                await publish(s, s.signals_topic, signals(60, "slow"))

                async def incidents_and_outbox() -> bool:
                    n = await db.fetchval("SELECT count(*) FROM incidents WHERE stream_id LIKE 'slow-%'")
                    pending = await db.fetchval("SELECT count(*) FROM notifications WHERE status = 'pending'")
                    return n == 60 and pending == 60

                # consumption went on: every incident is open and every page waits in Postgres
                await eventually(incidents_and_outbox, timeout=60, what="60 incidents with 60 pending pages")
                await eventually(lambda: rec.in_flight > 0, timeout=20, what="requests held")
                assert 0 < rec.most_in_flight <= running.deliverer.batch  # one claimed batch in flight, no more
                rec.hold.set()

                async def delivered() -> bool:
                    return await db.fetchval("SELECT count(*) FROM notifications WHERE status = 'sent'") == 60

                await eventually(delivered, timeout=90, what="every page sent once the endpoint answers")
                # a held request that timed out was retried under the same key: receivers dedup on it
                keys = {r.headers.get("idempotency-key") for r in rec.requests}
                assert keys == {r[0] for r in await db.fetch("SELECT key FROM notifications")}
                stop.set()
        finally:
            await db.close()
