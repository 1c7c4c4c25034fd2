"""Poison records against the real PostgreSQL and the real broker.

First, ``classify`` on the errors PostgreSQL actually raises (through SQLAlchemy's asyncpg
dialect): a value the database rejects is permanent, the database being unavailable or busy
is transient. Then ``consume_batches``: a record the database rejects among good ones is
found by bisecting its batch and dead-lettered, the rest is handled and committed, and the
loop goes on; a transient failure is retried until it succeeds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import open_engine
from shared.errors import Kind, classify, failure_detail, failure_reason, sqlstate_of
from shared.kafka import (
    ConsumerLag,
    Record,
    consume_batches,
    dead_letter_to,
    dlq_topic,
    header,
    open_consumer,
    open_producer,
)
from shared.settings import Settings
from tests.helpers import eventually, publish, read_topic

pytestmark = pytest.mark.integration

TABLE = sa.Table(
    "poison_probe", sa.MetaData(),
    sa.Column("k", sa.Text, primary_key=True),
    sa.Column("v", sa.String(8), nullable=False),
)


@asynccontextmanager
async def engine_with_table(settings: Settings) -> AsyncIterator[AsyncEngine]:
    async with open_engine(settings) as engine:
        async with engine.begin() as conn:
            await conn.run_sync(TABLE.metadata.create_all)
        yield engine


async def raised(engine: AsyncEngine, *statements: sa.Executable | str,
                 params: dict[str, object] | None = None) -> BaseException:
    """The error the last of ``statements`` (given ``params``) raises, run in one transaction."""
    try:
        async with engine.begin() as conn:
            for i, st in enumerate(statements):
                last = i == len(statements) - 1
                await conn.execute(sa.text(st) if isinstance(st, str) else st, params if last else None)
    except DBAPIError as exc:
        return exc
    raise AssertionError("no error")


# ---- classify, on what PostgreSQL raises ------------------------------------------------

async def test_values_the_database_rejects_are_permanent(settings: Settings) -> None:
    async with engine_with_table(settings) as engine:
        cases = [
            (TABLE.insert().values(k="a", v="far too long for eight"), "22001", "db_data_exception"),
            (TABLE.insert().values(k="a", v=None), "23502", "db_integrity_violation"),
            (TABLE.insert().values(k="a\x00b", v="x"), "22021", "db_data_exception"),
            # encoded by asyncpg before it is sent: no server round trip, yet a code
            ("SELECT CAST(:x AS int)", "22000", "db_data_exception"),
            # the same key twice in one upsert: splitting the batch cures it
            (sa.text("INSERT INTO poison_probe VALUES ('d', '1'), ('d', '2') "
                     "ON CONFLICT (k) DO UPDATE SET v = excluded.v"), "21000", "db_cardinality_violation"),
        ]
        for stmt, code, reason in cases:
            exc = await raised(engine, stmt, params={"x": "abc"} if code == "22000" else None)
            assert sqlstate_of(exc) == code, exc
            assert classify(exc) is Kind.PERMANENT
            assert failure_reason(exc) == reason
        async with engine.begin() as conn:
            await conn.execute(TABLE.insert().values(k="dup", v="x"))
        exc = await raised(engine, TABLE.insert().values(k="dup", v="secret!"))
        assert (sqlstate_of(exc), classify(exc), failure_reason(exc)) == (
            "23505", Kind.PERMANENT, "db_integrity_violation")
        # the driver's words, not SQLAlchemy's text with the statement and its parameters
        detail = failure_detail(exc)
        assert detail.startswith("23505 UniqueViolationError: duplicate key") and "secret!" not in detail


async def test_the_database_unavailable_or_busy_is_transient(settings: Settings) -> None:
    async with engine_with_table(settings) as engine:
        # an undefined table is our SQL against this schema (a migration not yet run): retry
        exc = await raised(engine, "SELECT * FROM no_such_table")
        assert (sqlstate_of(exc), classify(exc), failure_reason(exc)) == ("42P01", Kind.TRANSIENT, "db_schema")

        exc = await raised(engine, "SET LOCAL statement_timeout = '20ms'", "SELECT pg_sleep(5)")
        assert (sqlstate_of(exc), classify(exc), failure_reason(exc)) == ("57014", Kind.TRANSIENT, "db_unavailable")

        async with engine.connect() as holder:
            await holder.execute(sa.text("LOCK TABLE poison_probe IN ACCESS EXCLUSIVE MODE"))
            exc = await raised(engine, "SET LOCAL lock_timeout = '20ms'", TABLE.insert().values(k="a", v="x"))
            assert (sqlstate_of(exc), classify(exc), failure_reason(exc)) == ("55P03", Kind.TRANSIENT, "db_contention")
            await holder.rollback()

        # a backend killed under us (an admin, a failover)
        async with engine.connect() as victim:
            pid = (await victim.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
            await victim.commit()
            async with engine.connect() as admin:
                assert (await admin.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})).scalar_one()
            with pytest.raises(DBAPIError) as killed:
                await victim.execute(sa.text("SELECT 1"))
            assert classify(killed.value) is Kind.TRANSIENT
            assert failure_reason(killed.value) == "db_unavailable"

    down = settings.model_copy(update={"database_url": "postgresql+asyncpg://postgres@127.0.0.1:1/postgres"})
    async with open_engine(down) as engine:
        with pytest.raises(OSError) as refused:
            async with engine.connect():
                pass
        assert classify(refused.value) is Kind.TRANSIENT


# ---- consume_batches ----------------------------------------------------------------------

def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def committed(consumer: AIOKafkaConsumer, topic: str) -> int:
    """The group's committed offsets of ``topic``, summed: the records it is done with.
    (Counted, not compared with end offsets, which tansu reports per record batch.)"""
    total = 0
    for p in consumer.partitions_for_topic(topic) or ():
        total += await consumer.committed(TopicPartition(topic, p)) or 0
    return total


async def rows(engine: AsyncEngine) -> dict[str, str]:
    async with engine.connect() as conn:
        return {k: v for k, v in (await conn.execute(sa.select(TABLE.c.k, TABLE.c.v))).all()}


def inserter(engine: AsyncEngine, seen: list[list[bytes]],
             before: str | None = None) -> Callable[[list[Record]], Awaitable[None]]:
    """A handler as the services write them: the whole batch in one transaction, idempotent."""

    async def handle(records: list[Record]) -> None:
        seen.append([r.value or b"" for r in records])
        async with engine.begin() as conn:
            if before is not None:
                await conn.execute(sa.text(before))
            for r in records:
                k, _, v = (r.value or b"").decode().partition("=")
                await conn.execute(pg_insert(TABLE).values(k=k, v=v).on_conflict_do_nothing())

    return handle


async def test_a_record_the_database_rejects_is_dead_lettered_and_the_rest_committed(settings: Settings) -> None:
    topic, group = settings.clean_topic, settings.triage_group
    poison = b"r3=this value is longer than eight"
    good = [f"r{i}=v{i}".encode() for i in range(7) if i != 3]
    # one key: one partition, so the first fetch brings the poison in a batch with the others
    await publish(settings, topic, [(b"k", v) for v in good[:3] + [poison] + good[3:]])
    registry = CollectorRegistry()
    seen: list[list[bytes]] = []
    stop = asyncio.Event()
    async with engine_with_table(settings) as engine, open_producer(settings) as producer, \
            open_consumer(settings, [topic], group) as consumer:
        task = asyncio.create_task(consume_batches(
            consumer, inserter(engine, seen), stop, max_records=100, poll_timeout_ms=100,
            lag=ConsumerLag.of(registry), group=group, dead_letter=dead_letter_to(producer, dlq_topic(topic)),
        ))
        try:
            dead = await read_topic(settings, dlq_topic(topic), expect=1)
            assert [r.value for r in dead] == [poison]
            assert header(dead[0], "dlq.reason") == b"db_data_exception"
            assert (header(dead[0], "dlq.detail") or b"").startswith(b"22001 StringDataRightTruncationError")
            assert header(dead[0], "dlq.source.topic") == topic.encode()
            assert int(header(dead[0], "dlq.source.offset") or b"-1") == 3

            expected = {f"r{i}": f"v{i}" for i in range(7) if i != 3}
            await eventually(lambda: _equals(rows(engine), expected), what="every good record handled")
            await eventually(lambda: _is(committed(consumer, topic), 7), what="offsets committed past the poison")
            # bisected: the poison came in a batch with others, and was tried alone at last
            assert any(poison in b and len(b) > 1 for b in seen), seen
            assert [poison] in seen

            # not wedged: a record published now is handled too
            await publish(settings, topic, [(b"k", b"late=ok")])
            await eventually(lambda: _equals(rows(engine), {**expected, "late": "ok"}), what="the loop goes on")
            await eventually(lambda: _is(committed(consumer, topic), 8), what="committed after the late one")
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
    assert sample(registry, "livetriage_consumer_dead_lettered_total", group=group, reason="db_data_exception") == 1
    assert sample(registry, "livetriage_consumer_errors_total", group=group, kind="permanent",
                  reason="db_data_exception") >= 2  # the whole batch, then the parts holding the poison
    assert sample(registry, "livetriage_consumer_errors_total", group=group, kind="transient",
                  reason="db_contention") == 0


async def test_a_transient_failure_is_retried_until_it_succeeds(settings: Settings) -> None:
    topic, group = settings.clean_topic, settings.triage_group
    await publish(settings, topic, [(b"k", f"r{i}=v{i}".encode()) for i in range(5)])
    registry = CollectorRegistry()
    seen: list[list[bytes]] = []
    stop = asyncio.Event()
    async with engine_with_table(settings) as engine, open_producer(settings) as producer, \
            open_consumer(settings, [topic], group) as consumer, engine.connect() as holder:
        # the table is locked: every attempt fails with 55P03 lock_not_available until released
        await holder.execute(sa.text("LOCK TABLE poison_probe IN ACCESS EXCLUSIVE MODE"))
        task = asyncio.create_task(consume_batches(
            consumer, inserter(engine, seen, before="SET LOCAL lock_timeout = '50ms'"), stop,
            max_records=100, poll_timeout_ms=100, lag=ConsumerLag.of(registry), group=group,
            dead_letter=dead_letter_to(producer, dlq_topic(topic)),
        ))
        try:
            await eventually(lambda: sample(registry, "livetriage_consumer_errors_total", group=group,
                                            kind="transient", reason="db_contention") >= 2,
                             what="retried while the table is locked")
            assert await committed(consumer, topic) == 0  # nothing committed past a failure
            await holder.rollback()  # the lock goes away: the next retry goes through
            await eventually(lambda: _equals(rows(engine), {f"r{i}": f"v{i}" for i in range(5)}), what="handled")
            await eventually(lambda: _is(committed(consumer, topic), 5), what="committed")
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
    assert await read_topic(settings, dlq_topic(topic), expect=0) == []
    assert sample(registry, "livetriage_consumer_dead_lettered_total", group=group, reason="db_contention") == 0


async def test_without_a_dead_letter_topic_a_permanent_failure_stops_the_loop(settings: Settings) -> None:
    topic, group = settings.clean_topic, settings.triage_group
    await publish(settings, topic, [(b"k", b"a=ok"), (b"k", b"b=much too long to fit")])
    stop = asyncio.Event()
    async with engine_with_table(settings) as engine, open_consumer(settings, [topic], group) as consumer:
        with pytest.raises(DBAPIError) as failed:
            await asyncio.wait_for(consume_batches(
                consumer, inserter(engine, []), stop, max_records=100, poll_timeout_ms=100, group=group,
            ), 30)
        assert sqlstate_of(failed.value) == "22001"
        assert await committed(consumer, topic) == 0  # nothing lost: redone after a restart


async def _equals(got: Awaitable[dict[str, str]], want: dict[str, str]) -> bool:
    return await got == want


async def _is(got: Awaitable[int], want: int) -> bool:
    return await got == want


async def test_ingest_dead_letters_to_the_reports_dlq_and_counts_it(settings: Settings) -> None:
    from datetime import timedelta

    from services.ingest.dedup import Deduplicator
    from services.ingest.metrics import IngestMetrics
    from services.ingest.runner import Ingester

    await publish(settings, settings.reports_topic, [(b"k", b'{"report_id": "x"}')])
    [rec] = await read_topic(settings, settings.reports_topic, expect=1)
    registry = CollectorRegistry()
    async with open_engine(settings) as engine, open_producer(settings) as producer:
        ingester = Ingester(settings, producer, Deduplicator(engine, timedelta(hours=1)), IngestMetrics(registry))
        await ingester.dead_letter(rec, "db_data_exception", "22021 invalid byte sequence")
    [dead] = await read_topic(settings, settings.dlq_topic, expect=1)  # the configured one
    assert dead.value == rec.value and header(dead, "dlq.reason") == b"db_data_exception"
    assert sample(registry, "livetriage_ingest_dlq_total", reason="db_data_exception") == 1
