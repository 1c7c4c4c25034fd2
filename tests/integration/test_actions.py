"""Moderation actions over a real broker into real Postgres: time-to-action, resolution, pages."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from livetriage.runtime import start_services
from services.notifier.actions import apply_action
from services.notifier.store import apply_signal, get_incident, get_timeline
from shared.db import open_engine
from shared.events import Category, ModerationAction, Severity, Signal
from shared.kafka import ensure_topics, header
from tests.conftest import make_settings
from tests.helpers import eventually, publish, read_topic
from tests.integration.test_delivery import routing_for
from tests.receiver import running_receiver

pytestmark = pytest.mark.integration


def sig(sid: str, stream: str, category: str, start: datetime) -> Signal:
    return Signal(
        signal_id=sid, kind="spike", dedup_key=f"spike:{stream}:{category}", stream_id=stream,
        category=Category(category), severity=Severity.SEV2, score=0.6, observed_at=start, window_start=start,
        report_count=40, reason=f"{category} on {stream}",
    )


def action(action_id: str, stream: str, kind: str, at: datetime, actor: str = "mod-kim") -> dict[str, Any]:
    return {"action_id": action_id, "stream_id": stream, "action": kind, "actor": actor, "acted_at": at.isoformat()}


def enc(*items: dict[str, Any] | bytes) -> list[tuple[bytes | None, bytes]]:
    out: list[tuple[bytes | None, bytes]] = []
    for it in items:
        if isinstance(it, bytes):
            out.append((b"s1", it))
        else:
            out.append((it["stream_id"].encode(), orjson.dumps(it)))
    return out


async def test_terminal_action_resolves_records_time_to_action_and_pages(
    broker: str, database_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    start = now - timedelta(minutes=5)
    async with running_receiver() as rec:
        routing_for(rec, tmp_path)
        s = make_settings(broker, database_url, routing_file=tmp_path / "routing.yaml")
        await ensure_topics(s)
        stop = asyncio.Event()
        async with start_services(s, ["notifier"], stop, api=False) as running:
            assert running.deliverer is not None
            async with open_engine(s) as engine:
                routing = routing_for(rec, tmp_path)
                async with engine.begin() as conn:
                    a = await apply_signal(conn, signal=sig("a", "s1", "violence", start), now=now, routing=routing)
                    b = await apply_signal(conn, signal=sig("b", "s1", "hate", start + timedelta(seconds=30)),
                                           now=now, routing=routing)
                    c = await apply_signal(conn, signal=sig("c", "s2", "violence", start), now=now, routing=routing)
                running.deliverer.wake.set()
                await eventually(lambda: len([r for r in rec.requests if r.path == "/pd"]) == 3,
                                 what="three trigger pages")

                await publish(s, s.actions_topic, enc(
                    action("w1", "s1", "warning", start + timedelta(seconds=90), actor="mod-lee"),
                    b"{not json",
                    {"action_id": "x", "stream_id": "s1", "action": "nuke", "actor": "m", "acted_at": now.isoformat()},
                    action("e1", "s1", "stream_ended", start + timedelta(seconds=120)),
                ))

                def resolves() -> list[dict[str, Any]]:
                    return [r.json() for r in rec.requests if r.path == "/pd" and r.json()["event_action"] == "resolve"]

                await eventually(lambda: len(resolves()) == 2, timeout=30, what="two resolve pages")
                assert {p["dedup_key"] for p in resolves()} == {"spike:s1:violence", "spike:s1:hate"}

                async with engine.connect() as conn:
                    ra = await get_incident(conn, incident_id=a.incident_id)  # type: ignore[arg-type]
                    rb = await get_incident(conn, incident_id=b.incident_id)  # type: ignore[arg-type]
                    rc = await get_incident(conn, incident_id=c.incident_id)  # type: ignore[arg-type]
                    ta = [t["kind"] for t in await get_timeline(conn, incident_id=a.incident_id)]  # type: ignore[arg-type]
                assert ra is not None and rb is not None and rc is not None
                assert ra["status"] == rb["status"] == "resolved" and rc["status"] == "triggered"
                assert ra["resolved_how"] == "action" and ra["resolved_by"] == "mod-kim"
                assert ra["first_action_at"] == start + timedelta(seconds=90)  # the warning came first
                assert ra["time_to_action_s"] == pytest.approx(90.0)
                assert rb["time_to_action_s"] == pytest.approx(60.0)
                assert rc["first_action_at"] is None and rc["time_to_action_s"] is None
                assert ta.count("moderation_action") == 2 and "resolved" in ta

                dlq = await read_topic(s, s.actions_topic + ".dlq", expect=2)
                assert len(dlq) == 2 and {header(r, "dlq.reason") for r in dlq} == {b"invalid_action"}

                async def snapshot() -> tuple[Any, ...]:
                    async with engine.connect() as conn:
                        return tuple([(await conn.execute(sa.text(q))).scalar() for q in (
                            "SELECT count(*) FROM incident_timeline", "SELECT count(*) FROM notifications",
                            "SELECT count(*) FROM moderation_actions",
                            "SELECT max(updated_at) FROM incidents")])

                before = await snapshot()
                # Redelivered actions change nothing; a marker behind them (same key, same
                # partition) tells us they were consumed.
                await publish(s, s.actions_topic, enc(
                    action("e1", "s1", "stream_ended", start + timedelta(seconds=120)),
                    action("w1", "s1", "warning", start + timedelta(seconds=90), actor="mod-lee"),
                    action("marker", "s1", "no_violation", now),
                ))

                async def marker_seen() -> bool:
                    async with engine.connect() as conn:
                        return bool(await conn.scalar(sa.text(
                            "SELECT count(*) FROM moderation_actions WHERE action_id = 'marker'")))

                await eventually(marker_seen, what="the marker action")
                after = await snapshot()
                assert after[0] == before[0] and after[1] == before[1] and after[3] == before[3]
                assert after[2] == before[2] + 1
                assert len(resolves()) == 2
            stop.set()


async def test_apply_action_is_idempotent_and_non_terminal_actions_keep_incidents_open(settings) -> None:  # type: ignore[no-untyped-def]
    t0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    async with open_engine(settings) as engine:
        async with engine.begin() as conn:
            res = await apply_signal(conn, signal=sig("a", "s9", "spam", t0), now=t0)
            act = ModerationAction.model_validate(action("n1", "s9", "no_violation", t0 + timedelta(seconds=7)))
            first = await apply_action(conn, action=act, now=t0)
            second = await apply_action(conn, action=act, now=t0)
            later = await apply_action(conn, action=ModerationAction.model_validate(
                action("n2", "s9", "warning", t0 + timedelta(seconds=30))), now=t0)
            row = await get_incident(conn, incident_id=res.incident_id)  # type: ignore[arg-type]
        assert first.incidents == 1 and not first.duplicate and first.resolved == 0
        assert second.duplicate and later.incidents == 1
        assert row is not None and row["status"] == "triggered" and row["time_to_action_s"] == 7.0
        with pytest.raises(ValueError):
            ModerationAction.model_validate(action("n3", "s9", "warning", datetime(2026, 11, 23, 12)))
    assert uuid.UUID(str(res.incident_id))
