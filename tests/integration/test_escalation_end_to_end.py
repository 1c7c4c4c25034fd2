"""Escalation through the running notifier: a signal on the real broker pages level 1, the
clock passes the ack timeout, level 2 is paged once, an acknowledgement over the API stops it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from livetriage.runtime import start_services
from shared.clock import ManualClock
from shared.db import open_engine
from shared.events import Category, Severity, Signal
from shared.kafka import ensure_topics
from tests.conftest import AUTH, make_settings
from tests.helpers import eventually, publish
from tests.receiver import Receiver, running_receiver

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def write_routing(rec: Receiver, tmp_path: Path) -> Path:
    # Levels name whom to page; the pages go to the route's channels with the targets in them.
    # With ``repeat: 1`` step 3 (level 1 again) would follow step 2 unless acknowledged.
    f = tmp_path / "routing.yaml"
    f.write_text(f"""
channels:
  pager: {{type: webhook, url: "{rec.base}/hook", secret: "hunter2hunter2"}}
escalation_policies:
  crit:
    levels:
      - {{targets: [amy], ack_timeout_minutes: 5}}
      - {{targets: [lead-lee], ack_timeout_minutes: 10}}
    repeat: 1
default:
  team: tns
  channels: [pager]
  escalation_policy: crit
""")
    return f


def spike(sid: str, stream: str, at: datetime) -> Signal:
    return Signal(
        signal_id=sid, kind="spike", dedup_key=f"spike:{stream}:violence", stream_id=stream,
        category=Category.violence, severity=Severity.SEV2, score=0.7, observed_at=at, window_start=at,
        report_count=50, reason=f"50 violence reports on {stream}",
    )


def pages(rec: Receiver, stream: str, kind: str | None = None) -> list[dict[str, Any]]:
    """Pages about ``stream``'s incident that reached the receiver, in arrival order."""
    out = [r.json() for r in rec.requests if r.path == "/hook"]
    return [p for p in out if p["incident"]["stream_id"] == stream and (kind is None or p["kind"] == kind)]


async def test_the_running_notifier_escalates_once_then_stops_at_the_acknowledgement(
    broker: str, database_url: str, tmp_path: Path
) -> None:
    clock = ManualClock(T0)
    async with running_receiver() as rec:
        s = make_settings(broker, database_url, routing_file=write_routing(rec, tmp_path))
        await ensure_topics(s)
        stop = asyncio.Event()
        async with start_services(s, ["notifier"], stop, clock=clock) as running, \
                open_engine(s) as engine, \
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.api_port}", headers=AUTH) as api:

            async def publish_spike(sid: str, stream: str) -> None:
                sig = spike(sid, stream, clock.now())
                await publish(s, s.signals_topic, [(stream.encode(), sig.model_dump_json().encode())])

            await publish_spike("hot-1", "hot")
            await eventually(lambda: pages(rec, "hot", "trigger"), timeout=30, what="the level-1 page")
            trigger = pages(rec, "hot", "trigger")[0]["incident"]
            assert trigger["targets"] == ["amy"] and pages(rec, "hot", "escalate") == []
            incident_id = trigger["id"]

            clock.advance(timedelta(minutes=5))  # level 1's ack timeout
            await eventually(lambda: pages(rec, "hot", "escalate"), what="the level-2 page")
            level2 = pages(rec, "hot", "escalate")[0]["incident"]
            assert level2["targets"] == ["lead-lee"] and level2["escalation_level"] == 2

            r = await api.post(f"/v1/incidents/{incident_id}/acknowledge", json={"actor": "lead-lee"})
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "acknowledged"
            await eventually(lambda: pages(rec, "hot", "acknowledge"), what="the acknowledge page")

            # A second incident opened now is due at level 2 once the clock moves on: its page
            # shows that the escalator swept after the move, and would have paged step 3 of
            # the first incident in the same sweep had the acknowledgement not stopped it.
            await publish_spike("canary-1", "canary")
            await eventually(lambda: pages(rec, "canary", "trigger"), timeout=30, what="the canary's page")
            clock.advance(timedelta(hours=1))
            await eventually(lambda: pages(rec, "canary", "escalate"), what="the canary's level-2 page")

            async def outbox_drained() -> bool:
                async with engine.connect() as conn:
                    return not await conn.scalar(sa.text(
                        "SELECT count(*) FROM notifications WHERE status = 'pending'"))

            await eventually(outbox_drained, what="nothing left to send")
            assert [p["kind"] for p in pages(rec, "hot")] == ["trigger", "escalate", "acknowledge"]

            timeline = (await api.get(f"/v1/incidents/{incident_id}/timeline")).json()
            incident = (await api.get(f"/v1/incidents/{incident_id}")).json()
        stop.set()

    escalated = [e["detail"] for e in timeline if e["kind"] == "escalated"]
    assert [(d["level"], d["targets"]) for d in escalated] == [(1, ["amy"]), (2, ["lead-lee"])]
    acks = [e for e in timeline if e["kind"] == "acknowledged"]
    assert len(acks) == 1 and acks[0]["actor"] == "lead-lee"
    kinds = [e["kind"] for e in timeline]
    assert kinds.index("acknowledged") > max(i for i, k in enumerate(kinds) if k == "escalated")
    assert incident["status"] == "acknowledged" and incident["escalation_level"] == 2
    for level in ("1", "2"):  # each of the two incidents paged at levels 1 and 2, once
        assert running.registry.get_sample_value("livetriage_notifier_escalations_total", {"level": level}) == 2
