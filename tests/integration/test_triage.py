"""Triage on a real broker and real Postgres: restarts, crashes, two instances, lateness,
brigades. The reference is always an uninterrupted single-instance run of the same input."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import pytest_asyncio
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from services.triage.metrics import TriageMetrics
from services.triage.runner import run_triage
from shared.db import open_engine
from shared.kafka import ensure_topics, open_producer
from shared.settings import Settings
from tests.conftest import make_settings, scratch_database
from tests.helpers import eventually, read_topic

pytestmark = pytest.mark.integration
T0 = int(datetime(2026, 11, 23, 12, 0, tzinfo=UTC).timestamp() * 1000)


def traffic(seed: int = 1) -> list[dict[str, Any]]:
    """20 minutes of event time: 12 quiet streams, one surge, one brigade, late stragglers."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    n = 0

    def rep(ts: int, stream: str, category: str, reporter: str, **kw: Any) -> None:
        nonlocal n
        n += 1
        out.append({"report_id": f"r{n}", "stream_id": stream, "category": category, "source": "user",
                    "reporter_id": reporter, "region": rng.choice(["DE", "BR"]), "viewer_count": 5000,
                    "reported_at": ts, **kw})

    for sec in range(0, 1200):
        ts = T0 + sec * 1000
        for s in range(12):
            if rng.random() < 0.05:  # ~3 reports per minute per stream
                rep(ts, f"s{s}", "hate", f"u{rng.randrange(10**6)}")
        if 600 <= sec < 780:  # surge: many distinct viewers report s3 for violence
            for _ in range(2):
                rep(ts + rng.randrange(1000), "s3", "violence", f"v{rng.randrange(10**6)}")
        if 300 <= sec < 420:  # brigade: 2 accounts flood s7
            rep(ts, "s7", "harassment", f"troll{sec % 2}")
    # stragglers: far behind the watermark by the time they arrive
    rep(T0 + 5_000, "s1", "hate", "late1")
    rep(T0 + 6_000, "s1", "hate", "late2")
    return out


async def publish_clean(
    settings: Settings, reports: list[dict[str, Any]], *, first_offset: int = 0, src_partition: int = 0
) -> None:
    """As ingest publishes: canonical JSON, key stream_id, event-time timestamp, source stamp."""
    async with open_producer(settings) as producer:
        futs = []
        for offset, r in enumerate(reports, start=first_offset):
            body = {**r, "reported_at": datetime.fromtimestamp(r["reported_at"] / 1000, UTC).isoformat()}
            futs.append(await producer.send(
                settings.clean_topic, orjson.dumps(body), key=r["stream_id"].encode(),
                timestamp_ms=r["reported_at"], headers=[("lt.src", f"{src_partition}:{offset}".encode())],
            ))
        await asyncio.gather(*futs)


async def checkpointed(settings: Settings, engine: Any, topic: str, group: str) -> int:
    """Records of ``topic`` covered by the group's checkpoints (offsets start at 0)."""
    async with engine.connect() as conn:
        total = await conn.scalar(
            sa.text("SELECT coalesce(sum(next_offset), 0) FROM triage_checkpoints "
                    "WHERE group_id = :g AND topic = :t"), {"g": group, "t": topic})
    return int(total or 0)


async def run_until(settings: Settings, n: int, *, instances: int = 1,
                    crash_when: Callable[[TriageMetrics], bool] | None = None,
                    **producer_overrides: Any) -> list[TriageMetrics]:
    """Run triage until the checkpoints cover all ``n`` clean reports and every trend
    outbox; with ``crash_when``, first kill one instance abruptly (no final checkpoint)."""
    metrics: list[TriageMetrics] = []
    async with open_engine(settings) as engine, open_producer(settings, **producer_overrides) as producer:
        # an earlier run drained what it published; count on from there
        before = await checkpointed(settings, engine, settings.trends_topic, settings.trend_group)

        def start() -> tuple[asyncio.Task[None], asyncio.Event]:
            m = TriageMetrics(CollectorRegistry())
            stop = asyncio.Event()
            metrics.append(m)
            return asyncio.create_task(
                run_triage(settings, producer=producer, engine=engine, metrics=m, stop=stop)), stop

        running = [start() for _ in range(instances)]
        if crash_when is not None:
            victim_metrics = metrics[0]
            await eventually(lambda: crash_when(victim_metrics), timeout=60, what="crash point")
            running[0][0].cancel()  # like kill -9: state since the last checkpoint is lost
            await asyncio.gather(running[0][0], return_exceptions=True)
            running[0] = start()

        async def streams_done() -> bool:
            return await checkpointed(settings, engine, settings.clean_topic, settings.triage_group) == n

        await eventually(streams_done, timeout=120, what="stream checkpoints cover every report")
        for _, stop in running:
            stop.set()  # graceful: the final checkpoint publishes the last trend outboxes
        await asyncio.gather(*(t for t, _ in running))

        # one more instance applies what is left on the trends topic
        drain, stop = start()

        async def trends_done() -> bool:
            # what is on the topic, read back: an instance cancelled while publishing may have
            # put records there that its counter never saw (acks it did not wait for)
            on_topic = len(await records_of(settings, settings.trends_topic))
            done = await checkpointed(settings, engine, settings.trends_topic, settings.trend_group)
            return on_topic > before and done == on_topic

        await eventually(trends_done, timeout=60, what="trend checkpoints cover every outbox")
        stop.set()
        await drain
    return metrics


async def records_of(settings: Settings, topic: str) -> list[Any]:
    """Every record on ``topic``, read back (tansu's end offsets can trail the real end)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        empty = 0
        while empty < 3:
            batch = await consumer.getmany(timeout_ms=300)
            if not batch:
                empty += 1
            for recs in batch.values():
                out.extend(recs)
        return out
    finally:
        await consumer.stop()


async def signals_of(settings: Settings) -> dict[str, dict[str, Any]]:
    """Signals on the topic, by id (a replay may re-produce some: same id, same content)."""
    out: dict[str, dict[str, Any]] = {}
    for r in await records_of(settings, settings.signals_topic):
        sig = orjson.loads(r.value)
        prev = out.setdefault(sig["signal_id"], sig)
        assert prev == sig, f"same id, different content: {prev} vs {sig}"
    return out


async def fresh(broker: str, database_url: str) -> Settings:
    # small batches: many checkpoints and trend outboxes, so a crash lands between them
    s = make_settings(broker, database_url, batch_max_records=100, checkpoint_interval_s=0.05)
    await ensure_topics(s)
    return s


def spikes(sigs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in sigs.items() if v["kind"] in ("spike", "resolve", "trend")}


@pytest.fixture(scope="module")
def reports() -> list[dict[str, Any]]:
    return traffic()


@pytest_asyncio.fixture(scope="module")
async def reference(
    broker: str, pg_admin_url: str, template_db: str, reports: list[dict[str, Any]]
) -> AsyncIterator[dict[str, Any]]:
    """One uninterrupted single-instance run, shared by the tests of this module."""
    async with scratch_database(pg_admin_url, template_db) as url:
        s = await fresh(broker, url)
        await publish_clean(s, reports)
        metrics = await run_until(s, len(reports))
        yield {"signals": await signals_of(s), "metrics": metrics}


async def test_reference_run_finds_the_surge_only(reference: dict[str, Any]) -> None:
    sigs = reference["signals"]
    opened = [v for v in sigs.values() if v["kind"] == "spike" and ":sev" not in v["signal_id"]]
    assert [v["dedup_key"] for v in opened] == ["spike:s3:violence"]
    resolved = [v for v in sigs.values() if v["kind"] == "resolve" and v["dedup_key"] == "spike:s3:violence"]
    assert len(resolved) == 1
    assert not any(v["stream_id"] == "s7" for v in sigs.values()), "the 2-account brigade paged"
    # a platform trend key needs 30 minutes of history of its own before it may open: violence
    # had none before the surge (the stream spike is the page)
    assert not any(v["kind"] == "trend" for v in sigs.values())
    late = sum(m.late.labels("streams")._value.get() for m in reference["metrics"])
    assert late == 2  # the two stragglers, counted and not added


async def test_restart_midway_gives_the_same_signals(
    broker: str, database_url: str, reports: list[dict[str, Any]], reference: dict[str, Any]
) -> None:
    s = await fresh(broker, database_url)
    await publish_clean(s, reports[: len(reports) // 2])
    await run_until(s, len(reports) // 2)  # stops gracefully half way
    await publish_clean(s, reports[len(reports) // 2 :], first_offset=len(reports) // 2)
    await run_until(s, len(reports))
    assert spikes(await signals_of(s)) == spikes(reference["signals"])


async def test_crash_gives_the_same_signals(
    broker: str, database_url: str, reports: list[dict[str, Any]], reference: dict[str, Any]
) -> None:
    s = await fresh(broker, database_url)
    await publish_clean(s, reports)
    half = len(reports) // 2
    await run_until(s, len(reports), crash_when=lambda m: m.consumed.labels("streams")._value.get() >= half)
    assert spikes(await signals_of(s)) == spikes(reference["signals"])


async def test_two_instances_give_the_same_signals(
    broker: str, database_url: str, reports: list[dict[str, Any]], reference: dict[str, Any]
) -> None:
    s = await fresh(broker, database_url)
    await publish_clean(s, reports)
    metrics = await run_until(s, len(reports), instances=2)
    assert spikes(await signals_of(s)) == spikes(reference["signals"])
    assert all(m.consumed.labels("streams")._value.get() > 0 for m in metrics[:2]), "one did all"


async def test_republished_reports_are_not_counted_twice(
    broker: str, database_url: str, reports: list[dict[str, Any]], reference: dict[str, Any]
) -> None:
    """Ingest republishes after a crash: the same records (same source offsets) again."""
    s = await fresh(broker, database_url)
    await publish_clean(s, reports)
    await publish_clean(s, reports[300:800], first_offset=300)  # the same source offsets again
    metrics = await run_until(s, len(reports) + 500)
    replayed = sum(m.replayed.labels("streams")._value.get() for m in metrics)
    assert replayed == 500
    assert spikes(await signals_of(s)) == spikes(reference["signals"])


async def test_evicted_baselines_are_found_while_their_checkpoint_is_being_written(database_url: str) -> None:
    """Checkpoints are written in the background: a key evicted into one, coming back before
    the write lands, must resume its baseline, not start again from the prior."""
    from services.triage.state import Checkpoint, TriageStore

    s = make_settings("127.0.0.1:1", database_url)
    key = ("stream-9", "violence")
    row = (3.5, 4.25, 40, T0, [0.0, [[T0 - 7200_000, 4.0], [T0 - 3600_000, 6.5]]])  # with its episodes
    async with open_engine(s) as engine:
        store = TriageStore(engine, "g-unsaved")
        store.maybe_has_rows = False  # a fresh group: lookups are skipped ...
        assert await store.baselines([key]) == {}
        store.stage_evicted({key: row})  # ... until a checkpoint carries evictions
        assert await store.baselines([key, ("other", "spam")]) == {key: row}
        async with engine.connect() as conn:  # not on the table yet: found in memory
            assert (await conn.execute(sa.text(
                "SELECT count(*) FROM triage_baselines WHERE group_id = 'g-unsaved'"))).scalar() == 0
        await store.save("t", {0: Checkpoint(7, orjson.dumps({"x": 1}), None)}, {key: row})
        async with engine.connect() as conn:
            got = (await conn.execute(sa.text(
                "SELECT mean, var, n, closed_ms, recur FROM triage_baselines WHERE group_id = 'g-unsaved'"))).one()
        assert (*got[:4], orjson.loads(got[4])) == row
        assert await store.baselines([key]) == {key: row}
        assert (await store.load("t", [0]))[0].snapshot == {"x": 1}


async def test_outboxes_past_the_record_limit_go_in_parts_with_the_same_signals(
    broker: str, database_url: str, reports: list[dict[str, Any]], reference: dict[str, Any]
) -> None:
    """A backlog read in one go puts all 20 minutes of trend tallies in one outbox, far past a
    producer limit of 8 KiB (as 44 h of them were past 1 MB): it goes in parts under 4 KiB."""
    limit = 4096
    s = make_settings(broker, database_url, batch_max_records=5000, checkpoint_interval_s=1.0,
                      state_record_max_bytes=limit)
    await ensure_topics(s)
    await publish_clean(s, reports)
    metrics = await run_until(s, len(reports), max_request_size=2 * limit)
    assert spikes(await signals_of(s)) == spikes(reference["signals"])
    published = int(sum(m.trend_records._value.get() for m in metrics))
    records = await read_topic(s, s.trends_topic, expect=published)
    assert len(records) == published and all(len(r.value) <= limit for r in records)
    parts = [orjson.loads(r.value) for r in records]
    assert max(p.get("parts", 1) for p in parts) > 3  # one outbox's share was cut in several
    assert sum(m.rewinds.labels(st)._value.get() for m in metrics for st in ("streams", "trends")) == 0
    assert sum(m.late.labels("trends")._value.get() for m in metrics) == 0


async def test_a_record_that_can_never_be_produced_is_dropped_not_retried(
    broker: str, database_url: str, reports: list[dict[str, Any]]
) -> None:
    """Signals and trend records over the producer's max_request_size: counted and dropped;
    the stage moves on (it used to rewind and re-send the same record for ever)."""
    s = make_settings(broker, database_url, batch_max_records=5000, state_record_max_bytes=4096)
    await ensure_topics(s)
    await publish_clean(s, reports)
    m = TriageMetrics(CollectorRegistry())
    stop = asyncio.Event()
    async with open_engine(s) as engine, open_producer(s, max_request_size=1024) as producer:
        task = asyncio.create_task(run_triage(s, producer=producer, engine=engine, metrics=m, stop=stop))

        async def streams_done() -> bool:
            return await checkpointed(s, engine, s.clean_topic, s.triage_group) == len(reports)

        await eventually(streams_done, timeout=60, what="stream checkpoints cover every report")
        stop.set()
        await task
    dropped = {labels[0]: v for labels, v in _samples(m.dropped)}
    assert dropped.get("signal", 0) > 0 and dropped.get("trend", 0) > 0
    assert m.rewinds.labels("streams")._value.get() == 0


def _samples(counter: Any) -> list[tuple[tuple[str, ...], float]]:
    return [(tuple(s.labels.values()), s.value) for metric in counter.collect() for s in metric.samples
            if s.name.endswith("_total")]
