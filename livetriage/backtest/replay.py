"""Replay recorded reports through the real pipeline, on event time, at full speed.

Ingest, both triage stages and the notifier run in this process, exactly as ``livetriage up``
runs them (same code, same settings but for the ones below), against a broker and a database
of their own (embedded ones in a temporary directory unless ``KAFKA_BOOTSTRAP_SERVERS`` /
``DATABASE_URL`` are set; then the run's topics, groups and stream ids carry its run id, so
a shared system keeps them apart). The reports are published as fast as the broker takes
them, and the run ends when every stage has handled everything the one before it produced.

What the replay changes: ingest accepts reports older than the dedup horizon
(``accept_old_reports``: recorded traffic is months old; deduplication still holds, its claims
are made now), and consumer groups join faster. Nothing in triage or the notifier knows it
is a replay: detection runs on the reports' own times.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from livetriage.embedded import embedded_broker, embedded_postgres_url, free_port
from livetriage.runtime import ROLES, start_services
from services.notifier.routing import Routing
from services.notifier.tables import incident_signals, incident_timeline, incidents
from shared.db import migrate, open_engine
from shared.kafka import ensure_topics, open_producer, wait_for_broker
from shared.settings import Settings

log = logging.getLogger(__name__)

Feed = Iterator[tuple[int, bytes, str]]  # (event time ms, report bytes, stream id: the key)


@dataclass(frozen=True)
class Found:
    """One incident the replay opened, as scoring needs it."""

    stream_id: str | None
    kind: str
    severity: str
    urgency: str
    started_at: datetime
    detected_event_at: datetime
    paged_event_at: datetime | None  # event time of its first signal in its route's high band
    bursts: int  # 1 + the flaps that re-opened it


@dataclass
class Replayed:
    incidents: list[Found]
    reports: int
    seconds: float
    figures: dict[str, float] = field(default_factory=dict)


def _total(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """Sum of a counter's samples (over the labels not given)."""
    out = 0.0
    for metric in registry.collect():
        for s in metric.samples:
            if s.name == f"{name}_total" and all(s.labels.get(k) == v for k, v in labels.items()):
                out += s.value
    return out


def _drained(registry: CollectorRegistry, published: int) -> tuple[bool, dict[str, float]]:
    """Whether every stage handled what the one before it produced."""
    f = {
        "ingest_consumed": _total(registry, "livetriage_ingest_reports_consumed"),
        "ingest_published": _total(registry, "livetriage_ingest_reports_published"),
        "ingest_duplicates": _total(registry, "livetriage_ingest_duplicates"),
        "ingest_dlq": _total(registry, "livetriage_ingest_dlq"),
        "triage_consumed": _total(registry, "livetriage_triage_records_consumed", stage="streams"),
        "triage_signals": _total(registry, "livetriage_triage_signals"),
        "triage_dropped": _total(registry, "livetriage_triage_records_dropped"),
        "notifier_signals": _total(registry, "livetriage_notifier_signals_consumed"),
    }
    done = (f["ingest_consumed"] >= published
            and f["triage_consumed"] >= f["ingest_published"]
            and f["notifier_signals"] >= f["triage_signals"] - f["triage_dropped"])
    return done, f


def replay_settings(settings: Settings, run: str) -> Settings:
    """The run's own topics and groups (a shared broker keeps runs apart), old reports
    accepted, groups that join in a second or two."""
    topics = ("reports_topic", "clean_topic", "signals_topic", "dlq_topic", "actions_topic", "trends_topic")
    groups = ("ingest_group", "triage_group", "notifier_group", "actions_group", "trend_group")
    update: dict[str, Any] = {n: f"{getattr(settings, n)}.bt-{run}" for n in (*topics, *groups)}
    update |= {"accept_old_reports": True, "session_timeout_ms": 3000,
               "heartbeat_interval_ms": 1000}
    return settings.model_copy(update=update)


async def replay(
    settings: Settings,
    feeds: Iterable[Feed],
    *,
    run: str,
    routing: Routing,
    data_dir: Path | None = None,
    timeout_s: float = 3600.0,
    progress: Callable[[int], None] | None = None,
) -> Replayed:
    """Publish the feeds' reports (merged in event-time order) and wait until the pipeline
    has handled them all; return the incidents it opened on the run's streams."""
    async with AsyncExitStack() as stack:
        updates: dict[str, str] = {}
        if not settings.kafka_bootstrap_servers or not settings.database_url:
            where = data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="livetriage-bt-")))
            if not settings.kafka_bootstrap_servers:
                updates["kafka_bootstrap_servers"] = await stack.enter_async_context(
                    embedded_broker(where, free_port()))
            if not settings.database_url:
                updates["database_url"] = await stack.enter_async_context(embedded_postgres_url(where))
        settings = replay_settings(settings.model_copy(update=updates), run)
        await wait_for_broker(settings)
        await ensure_topics(settings)
        await asyncio.to_thread(migrate, settings.require_database())
        registry = CollectorRegistry()
        stop = asyncio.Event()
        started = time.monotonic()
        since = datetime.now().astimezone()
        async with start_services(settings, ROLES, stop, api=False, registry=registry,
                                  routing=routing):
            sent = await _publish(settings, feeds, progress)
            deadline = time.monotonic() + timeout_s
            stable = 0
            while True:
                done, figures = _drained(registry, sent)
                stable = stable + 1 if done else 0
                if stable >= 5:  # and stays so: a trend window may still be closing
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the pipeline did not drain within {timeout_s:.0f} s: {figures}")
                await asyncio.sleep(0.2)  # polling counters with a deadline
        seconds = time.monotonic() - started
        async with open_engine(settings) as engine:
            found = await _incidents(engine, f"bt-{run}-", since, routing)
        return Replayed(found, sent, seconds, figures)


async def _publish(settings: Settings, feeds: Iterable[Feed], progress: Callable[[int], None] | None) -> int:
    sent = 0
    async with open_producer(settings) as producer:
        pending: list[asyncio.Future[Any]] = []
        for _, value, key in heapq.merge(*feeds, key=lambda r: r[0]):
            pending.append(await producer.send(settings.reports_topic, value, key=key.encode() or None))
            sent += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
                if progress is not None:
                    progress(sent)
        await asyncio.gather(*pending)
        if progress is not None:
            progress(sent)
    return sent


async def _incidents(engine: Any, prefix: str, since: datetime, routing: Routing) -> list[Found]:
    c = incidents.c
    async with engine.connect() as conn:
        bursts = (sa.select(sa.func.count()).where(incident_timeline.c.incident_id == c.id,
                                                   incident_timeline.c.kind == "reopened")
                  .scalar_subquery())
        rows = (await conn.execute(
            sa.select(c.id, c.stream_id, c.kind, c.severity, c.urgency, c.category, c.region,
                      c.started_at, c.detected_event_at, bursts.label("reopened"))
            .where(sa.or_(c.stream_id.startswith(prefix), sa.and_(c.kind == "trend", c.detected_at >= since)))
        )).mappings().all()
        ids = [r["id"] for r in rows]
        sigs = (await conn.execute(
            sa.select(incident_signals.c.incident_id, incident_signals.c.kind, incident_signals.c.severity,
                      incident_signals.c.payload["observed_at"].astext.label("observed_at"))
            .where(incident_signals.c.incident_id.in_(ids))
        )).mappings().all() if ids else []
    first_page: dict[Any, datetime] = {}
    by_id = {r["id"]: r for r in rows}
    for s in sigs:
        if s["kind"] in ("resolve", "progress"):
            continue
        row = by_id[s["incident_id"]]
        route = routing.route({**row, "severity": s["severity"]})
        if route.urgency(s["severity"]) != "high":
            continue
        at = datetime.fromisoformat(s["observed_at"])
        if s["incident_id"] not in first_page or at < first_page[s["incident_id"]]:
            first_page[s["incident_id"]] = at
    return [
        Found(stream_id=r["stream_id"], kind=r["kind"], severity=r["severity"], urgency=r["urgency"],
              started_at=r["started_at"], detected_event_at=r["detected_event_at"],
              paged_event_at=first_page.get(r["id"]), bursts=1 + int(r["reopened"]))
        for r in rows
    ]
