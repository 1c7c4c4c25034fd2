"""Escalation against real Postgres and a real local receiver, time driven by a ManualClock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from services.notifier.delivery import Deliverer, build_channels
from services.notifier.escalator import Escalator
from services.notifier.metrics import NotifierMetrics
from services.notifier.outbox import RetryPolicy
from services.notifier.routing import Routing, load_routing
from services.notifier.store import act, apply_signal, get_incident, get_timeline
from shared.clock import ManualClock
from shared.db import open_engine
from shared.events import Category, Severity, Signal
from shared.settings import Settings
from tests.receiver import Receiver, running_receiver

try:
    from tests.conftest import AUTH  # API keys, where the API requires them
except ImportError:
    AUTH = {}

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def routing_for(rec: Receiver, tmp_path: Path, repeat: int = 0) -> Routing:
    f = tmp_path / "routing.yaml"
    f.write_text(f"""
channels:
  chat: {{type: slack, url: "{rec.base}/slack"}}
  audit: {{type: webhook, url: "{rec.base}/hook", secret: "hunter2hunter2"}}
schedules:
  tns:
    rotations: [{{people: [amy, bo], start: 2026-11-23, handoff_time: "12:00", tz: UTC, length: 1 day}}]
escalation_policies:
  crit:
    levels:
      - {{targets: ["schedule:tns"], ack_timeout_minutes: 5}}
      - {{targets: [lead], ack_timeout_minutes: 10}}
    repeat: {repeat}
routes:
  - match: {{category: [spam]}}
    team: spam-patrol
    channels: [chat]
default:
  team: tns
  channels: [audit, chat]
  escalation_policy: crit
""")
    return load_routing(f)


def signal(i: int, category: str = "violence") -> Signal:
    return Signal(
        signal_id=f"sig-{i}", kind="spike", dedup_key=f"spike:s{i}:{category}", stream_id=f"s{i}",  # type: ignore[arg-type]
        category=Category(category), severity=Severity.SEV2, score=0.6, observed_at=T0,
        window_start=T0, report_count=40, reason="40 violence reports", sample_report_ids=["r1"],
    )


async def drain(engine, routing: Routing, http: httpx.AsyncClient, clock: ManualClock) -> None:  # type: ignore[no-untyped-def]
    d = Deliverer(engine, build_channels(routing), http, clock, NotifierMetrics(CollectorRegistry()),
                  policy=RetryPolicy(max_attempts=3, base_s=1.0, cap_s=1.0), seed=1)
    while await d.deliver_due():
        pass


def hooks(rec: Receiver, kind: str) -> list[dict]:  # type: ignore[type-arg]
    return [r.json() for r in rec.requests if r.path == "/hook" and r.json()["kind"] == kind]


async def escalations(engine) -> list[tuple[str, dict]]:  # type: ignore[no-untyped-def, type-arg]
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.text(
            "SELECT channel, payload FROM notifications WHERE kind = 'escalate' ORDER BY id"))).all()
    return [(c, p) for c, p in rows]


async def test_unacknowledged_incident_escalates_after_the_ack_timeout(settings: Settings, tmp_path: Path) -> None:
    clock = ManualClock(T0)
    pages: list[int] = []
    async with running_receiver() as rec, open_engine(settings) as engine, httpx.AsyncClient() as http:
        routing = routing_for(rec, tmp_path)
        esc = Escalator(engine, routing, clock, on_enqueued=lambda: pages.append(1))
        async with engine.begin() as conn:
            res = await apply_signal(conn, signal=signal(1), now=clock.now(), routing=routing)
            quiet = await apply_signal(conn, signal=signal(2, "spam"), now=clock.now(), routing=routing)
        async with engine.connect() as conn:
            inc = await get_incident(conn, incident_id=res.incident_id)
            spam = await get_incident(conn, incident_id=quiet.incident_id)
        assert inc is not None and spam is not None
        assert (inc["escalation_policy"], inc["escalation_level"]) == ("crit", 1)
        assert inc["next_escalation_at"] == T0 + timedelta(minutes=5)
        assert spam["next_escalation_at"] is None and spam["escalation_policy"] is None  # no policy

        clock.advance(timedelta(minutes=5) - timedelta(seconds=1))
        assert await esc.escalate_due() == 0  # not yet
        clock.advance(timedelta(seconds=1))
        assert await esc.escalate_due() == 1
        assert await esc.escalate_due() == 0  # level 2 is the last: nothing more is due, ever
        clock.advance(timedelta(hours=1))
        assert await esc.escalate_due() == 0
        await drain(engine, routing, http, clock)
        async with engine.connect() as conn:
            inc = await get_incident(conn, incident_id=res.incident_id)
            timeline = await get_timeline(conn, incident_id=res.incident_id)

    assert inc is not None and inc["escalation_level"] == 2 and inc["next_escalation_at"] is None
    assert inc["status"] == "triggered" and pages == [1]
    trigger = hooks(rec, "trigger")
    assert [t["incident"]["targets"] for t in trigger] == [["amy"]]  # level 1, whoever is on call
    esc_hooks = hooks(rec, "escalate")
    assert len(esc_hooks) == 1
    assert esc_hooks[0]["incident"]["targets"] == ["lead"] and esc_hooks[0]["incident"]["escalation_level"] == 2
    slack = [r.json()["text"] for r in rec.requests if r.path == "/slack"]
    assert any("ESCALATE" in t and "paging lead" in t for t in slack)
    escalated = [e["detail"] for e in timeline if e["kind"] == "escalated"]
    assert [(d["level"], d["targets"]) for d in escalated] == [(1, ["amy"]), (2, ["lead"])]
    assert all(e["actor"] == "livetriage" for e in timeline if e["kind"] == "escalated")


async def test_acknowledged_incident_does_not_escalate(settings: Settings, tmp_path: Path) -> None:
    clock = ManualClock(T0)
    async with running_receiver() as rec, open_engine(settings) as engine:
        routing = routing_for(rec, tmp_path)
        esc = Escalator(engine, routing, clock)
        async with engine.begin() as conn:
            res = await apply_signal(conn, signal=signal(1), now=clock.now(), routing=routing)
        clock.advance(timedelta(minutes=2))
        async with engine.begin() as conn:
            await act(conn, incident_id=res.incident_id, action="acknowledge", actor="amy",
                      now=clock.now(), routing=routing)
            inc = await get_incident(conn, incident_id=res.incident_id)
        assert inc is not None and inc["next_escalation_at"] is None
        clock.advance(timedelta(hours=2))
        assert await esc.escalate_due() == 0
        assert await escalations(engine) == []


async def test_policy_repeats_then_stops(settings: Settings, tmp_path: Path) -> None:
    clock = ManualClock(T0)
    async with running_receiver() as rec, open_engine(settings) as engine:
        routing = routing_for(rec, tmp_path, repeat=1)  # steps: amy, lead, amy, lead
        esc = Escalator(engine, routing, clock)
        async with engine.begin() as conn:
            res = await apply_signal(conn, signal=signal(1), now=clock.now(), routing=routing)
        done = []
        for minutes in (5, 10, 5, 10, 60):  # each level's ack timeout, then long after
            clock.advance(timedelta(minutes=minutes))
            done.append(await esc.escalate_due())
        async with engine.connect() as conn:
            inc = await get_incident(conn, incident_id=res.incident_id)
        rows = await escalations(engine)
    assert done == [1, 1, 1, 0, 0]
    assert inc is not None and inc["escalation_level"] == 4 and inc["next_escalation_at"] is None
    audit = [p for ch, p in rows if ch == "audit"]
    assert [(p["escalation_level"], p["targets"]) for p in audit] == [(2, ["lead"]), (3, ["amy"]), (4, ["lead"])]
    assert len(rows) == 6  # to both channels of the route


async def test_two_escalators_never_page_the_same_level_twice(settings: Settings, tmp_path: Path) -> None:
    clock = ManualClock(T0)
    async with running_receiver() as rec, open_engine(settings) as engine:
        routing = routing_for(rec, tmp_path)
        async with engine.begin() as conn:
            for i in range(5):
                await apply_signal(conn, signal=signal(i), now=clock.now(), routing=routing)
        clock.advance(timedelta(minutes=5))
        a, b = Escalator(engine, routing, clock, batch=2), Escalator(engine, routing, clock, batch=2)
        total = 0
        while n := sum(await asyncio.gather(a.escalate_due(), b.escalate_due())):
            total += n
        rows = await escalations(engine)
    assert total == 5 and len(rows) == 10  # five incidents x two channels, once each
    assert len({(p["id"], ch) for ch, p in rows}) == 10


async def test_who_is_on_call_follows_the_handoff(settings: Settings, tmp_path: Path) -> None:
    from services.notifier.api.app import create_app
    from services.notifier.api.deps import ApiState

    async def ok() -> None:
        return None

    clock = ManualClock(T0 - timedelta(seconds=1))
    async with running_receiver() as rec, open_engine(settings) as engine:
        routing = routing_for(rec, tmp_path)
        app = create_app(ApiState(settings, engine, CollectorRegistry(), ok, routing=routing, clock=clock))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t", headers=AUTH) as api:
            seen = []
            for step in (timedelta(0), timedelta(seconds=1), timedelta(days=1), timedelta(days=1)):
                clock.advance(step)
                r = await api.get("/v1/oncall")
                assert r.status_code == 200, r.text
                body = r.json()
                assert [t["team"] for t in body["teams"]] == ["tns"]
                seen.append((body["teams"][0]["person"], body["teams"][0]["next_handoff_at"]))
        # a page opened after the hand-off goes to the new person
        async with engine.begin() as conn:
            res = await apply_signal(conn, signal=signal(9), now=clock.now(), routing=routing)
            timeline = await get_timeline(conn, incident_id=res.incident_id)
    assert [p for p, _ in seen] == [None, "amy", "bo", "amy"]
    assert datetime.fromisoformat(seen[1][1]) == T0 + timedelta(days=1)
    assert [e["detail"]["targets"] for e in timeline if e["kind"] == "escalated"] == [["amy"]]
