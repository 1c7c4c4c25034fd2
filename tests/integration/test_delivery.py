"""Pages through the outbox to a real local HTTP receiver: every page arrives, once per key."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from services.notifier.channels.webhook import sign
from services.notifier.delivery import Deliverer, build_channels
from services.notifier.metrics import NotifierMetrics
from services.notifier.outbox import RetryPolicy
from services.notifier.routing import Routing, load_routing
from services.notifier.store import act, apply_signal
from shared.clock import ManualClock
from shared.db import open_engine
from shared.events import Category, Severity, Signal
from shared.settings import Settings
from tests.helpers import eventually
from tests.receiver import Receiver, running_receiver

from tests.conftest import AUTH

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def routing_for(rec: Receiver, tmp_path: Path) -> Routing:
    f = tmp_path / "routing.yaml"
    f.write_text(f"""
channels:
  pd: {{type: pagerduty, url: "{rec.base}/pd", routing_key: R0UTE}}
  chat: {{type: slack, url: "{rec.base}/slack"}}
  audit: {{type: webhook, url: "{rec.base}/hook", secret: "hunter2hunter2"}}
routes:
  - match: {{category: [spam]}}
    team: spam-patrol
    channels: [chat]
default:
  team: live-ops
  channels: [pd, chat, audit]
""")
    return load_routing(f)


def signal(i: int, severity: str = "SEV2", kind: str = "spike", category: str = "violence",
           at: datetime = T0) -> Signal:
    return Signal(
        signal_id=f"sig-{i}", kind=kind, dedup_key=f"spike:s1:{category}", stream_id="s1",  # type: ignore[arg-type]
        category=Category(category), severity=Severity(severity), score=0.6, observed_at=at,
        window_start=T0, report_count=40, reason="40 violence reports on s1", sample_report_ids=["r1"],
    )


def deliverer(engine, routing: Routing, http: httpx.AsyncClient, clock: ManualClock,  # type: ignore[no-untyped-def]
              max_attempts: int = 5) -> Deliverer:
    return Deliverer(engine, build_channels(routing), http, clock, NotifierMetrics(CollectorRegistry()),
                     policy=RetryPolicy(max_attempts=max_attempts, base_s=1.0, cap_s=4.0), seed=1)


async def drain(d: Deliverer, clock: ManualClock, rounds: int = 20) -> None:
    """Deliver everything due, moving the manual clock past every backoff."""
    for _ in range(rounds):
        while await d.deliver_due():
            pass
        clock.advance(timedelta(seconds=5))


async def test_trigger_update_ack_resolve_reach_every_channel_once(settings: Settings, tmp_path: Path) -> None:
    clock = ManualClock(T0)
    async with running_receiver() as rec, open_engine(settings) as engine, httpx.AsyncClient() as http:
        routing = routing_for(rec, tmp_path)
        d = deliverer(engine, routing, http, clock)
        async with engine.begin() as conn:
            res = await apply_signal(conn, signal=signal(1), now=clock.now(), routing=routing)
            await apply_signal(conn, signal=signal(1), now=clock.now(), routing=routing)  # redelivery
        assert res.created and res.notified == 3
        await drain(d, clock)  # the first page went out: a rise is a page of its own
        async with engine.begin() as conn:
            await apply_signal(conn, signal=signal(2, "SEV1"), now=clock.now(), routing=routing)
        async with engine.connect() as conn:
            history = (await conn.execute(sa.text(
                "SELECT severity FROM incident_severity WHERE incident_id = :i ORDER BY id"),
                {"i": res.incident_id})).scalars().all()
        assert history == ["SEV2", "SEV1"]  # the redelivered signal added nothing
        async with engine.begin() as conn:
            await act(conn, incident_id=res.incident_id, action="acknowledge", actor="alice",
                      now=clock.now(), routing=routing)
            await act(conn, incident_id=res.incident_id, action="acknowledge", actor="bob",
                      now=clock.now(), routing=routing)  # already acknowledged: nothing new
            await act(conn, incident_id=res.incident_id, action="resolve", actor="alice",
                      now=clock.now(), routing=routing, note="stream ended")
        await drain(d, clock)

    pd = [r.json() for r in rec.requests if r.path == "/pd"]
    assert [p["event_action"] for p in pd] == ["trigger", "trigger", "acknowledge", "resolve"]
    assert {p["dedup_key"] for p in pd} == {"spike:s1:violence"}
    assert pd[0]["payload"]["severity"] == "error" and pd[1]["payload"]["severity"] == "critical"
    assert pd[0]["routing_key"] == "R0UTE" and pd[0]["payload"]["custom_details"]["report_count"] == 40
    assert len([r for r in rec.requests if r.path == "/slack"]) == 4
    hooks = [r for r in rec.requests if r.path == "/hook"]
    assert len(hooks) == 4
    for h in hooks:  # the signature verifies with the shared secret
        ts = h.headers["x-livetriage-timestamp"]
        assert h.headers["x-livetriage-signature"] == sign("hunter2hunter2", ts, h.body)
    keys = [r.headers["idempotency-key"] for r in rec.requests]
    assert len(keys) == len(set(keys)) == 12


async def test_route_by_category(settings: Settings, tmp_path: Path) -> None:
    clock = ManualClock(T0)
    async with running_receiver() as rec, open_engine(settings) as engine, httpx.AsyncClient() as http:
        routing = routing_for(rec, tmp_path)
        async with engine.begin() as conn:
            res = await apply_signal(conn, signal=signal(1, category="spam"), now=clock.now(), routing=routing)
            team = await conn.scalar(sa.text("SELECT team FROM incidents WHERE id = :i"), {"i": res.incident_id})
        await drain(deliverer(engine, routing, http, clock), clock)
    assert team == "spam-patrol" and [r.path for r in rec.requests] == ["/slack"]


async def test_endpoint_down_then_up_delivers_each_page_once(settings: Settings, tmp_path: Path) -> None:
    clock = ManualClock(T0)
    async with running_receiver() as rec, open_engine(settings) as engine, httpx.AsyncClient() as http:
        routing = routing_for(rec, tmp_path)
        rec.failures = 7  # the first seven requests get a 500 (and 429 would be the same)
        async with engine.begin() as conn:
            await apply_signal(conn, signal=signal(1), now=clock.now(), routing=routing)
        await drain(deliverer(engine, routing, http, clock, max_attempts=10), clock)
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.text(
                "SELECT n.status, n.attempts, count(a.id) FROM notifications n "
                "JOIN notification_attempts a ON a.notification_id = n.id GROUP BY n.id"))).all()
    assert sorted(r.path for r in rec.requests) == ["/hook", "/pd", "/slack"]
    assert all(status == "sent" for status, _, _ in rows)
    assert sum(attempts for _, attempts, _ in rows) == 3 + 7
    assert all(attempts == n for _, attempts, n in rows)  # every attempt is recorded


async def test_a_permanent_error_marks_the_page_dead_and_visible(settings: Settings, tmp_path: Path) -> None:
    clock = ManualClock(T0)
    async with running_receiver() as rec, open_engine(settings) as engine, httpx.AsyncClient() as http:
        routing = routing_for(rec, tmp_path)
        rec.failures, rec.fail_with = 3, 400
        async with engine.begin() as conn:
            res = await apply_signal(conn, signal=signal(1), now=clock.now(), routing=routing)
        await drain(deliverer(engine, routing, http, clock), clock)
        from services.notifier.api.app import create_app
        from services.notifier.api.deps import ApiState

        async def ok() -> None:
            return None

        app = create_app(ApiState(settings, engine, CollectorRegistry(), ok, routing=routing, clock=clock))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t", headers=AUTH) as api:
            notes = (await api.get(f"/v1/incidents/{res.incident_id}/notifications")).json()
    assert sorted(n["status"] for n in notes) == ["dead", "dead", "dead"]
    assert all(n["attempts"] == 1 and "try later" in n["last_error"] for n in notes)


async def test_crash_during_send_resends_under_the_same_key(settings: Settings, tmp_path: Path) -> None:
    clock = ManualClock(T0)
    async with running_receiver() as rec, open_engine(settings) as engine, httpx.AsyncClient() as http:
        routing = routing_for(rec, tmp_path)
        async with engine.begin() as conn:
            await apply_signal(conn, signal=signal(1), now=clock.now(), routing=routing)
        rec.hold = asyncio.Event()
        first = asyncio.create_task(deliverer(engine, routing, http, clock).deliver_due())
        await asyncio.wait_for(rec.arrived.wait(), 10)
        first.cancel()  # the worker dies with requests in flight and nothing recorded
        await asyncio.gather(first, return_exceptions=True)
        rec.hold.set()
        rec.hold = None
        await eventually(lambda: len(rec.requests) == 3, what="the in-flight requests complete")
        await drain(deliverer(engine, routing, http, clock), clock)
    keys = [r.headers["idempotency-key"] for r in rec.requests]
    assert len(keys) == 6 and len(set(keys)) == 3  # each page twice, never under a new key


def test_bad_routing_files_fail_with_one_clear_line(tmp_path: Path) -> None:
    from shared.errors import ConfigError

    cases = {
        "routes: [{team: x, channels: [nope]}]": "unknown channel 'nope'",
        "channels: {a: {type: carrier-pigeon, url: 'http://x'}}": "channels.a",
        "routes: [: bad": "not valid YAML",
        "default: {channels: []}": "default.team",
    }
    for text, expected in cases.items():
        f = tmp_path / "r.yaml"
        f.write_text(text)
        with pytest.raises(ConfigError) as err:
            load_routing(f)
        assert expected in str(err.value), str(err.value)
    with pytest.raises(ConfigError, match="does not exist"):
        load_routing(tmp_path / "missing.yaml")


async def test_reports_to_page_end_to_end(broker: str, database_url: str, tmp_path: Path) -> None:
    """Reports in on Kafka, a page out at the receiver; then acknowledged over HTTP."""
    from livetriage.runtime import ROLES, start_services
    from shared.kafka import ensure_topics
    from tests.conftest import make_settings
    from tests.helpers import encode_reports, publish, report

    async with running_receiver() as rec:
        routing_for(rec, tmp_path)
        s = make_settings(broker, database_url, routing_file=tmp_path / "routing.yaml")
        await ensure_topics(s)
        stop = asyncio.Event()
        now = datetime.now(UTC)
        async with start_services(s, ROLES, stop) as running:
            await publish(s, s.reports_topic, encode_reports(
                [report("hot", "violence", at=now, viewer_count=80_000) for _ in range(60)]))
            await eventually(lambda: any(r.path == "/pd" for r in rec.requests), timeout=30, what="a page")
            trigger = next(r.json() for r in rec.requests if r.path == "/pd")
            assert trigger["event_action"] == "trigger" and trigger["dedup_key"] == "spike:hot:violence"
            incident_id = trigger["payload"]["custom_details"]["incident_id"]
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.api_port}", headers=AUTH) as api:
                r = await api.post(f"/v1/incidents/{incident_id}/acknowledge", json={"actor": "oncall-amy"})
                assert r.status_code == 200 and r.json()["acknowledged_by"] == "oncall-amy"
                bad = await api.post(f"/v1/incidents/{incident_id}/acknowledge", json={"actor": ""})
                assert bad.status_code == 422 and "actor" in bad.json()["detail"]
            await eventually(
                lambda: any(r.path == "/pd" and r.json()["event_action"] == "acknowledge" for r in rec.requests),
                timeout=15, what="the acknowledge reached PagerDuty")


def grouped(rec: Receiver, tmp_path: Path, **extra: float) -> Routing:
    base = routing_for(rec, tmp_path)
    # (no flap cool-down: these tests are about the group wait; the cool-down has its own)
    return Routing.model_validate({**base.model_dump(mode="json"), "group_wait_s": 30,
                                   "flap_cooldown_s": 0, **extra})


async def test_group_wait_holds_the_first_page_and_folds_a_rise_into_it(settings: Settings, tmp_path: Path) -> None:
    clock = ManualClock(T0)
    async with running_receiver() as rec, open_engine(settings) as engine, httpx.AsyncClient() as http:
        routing = grouped(rec, tmp_path)
        d = deliverer(engine, routing, http, clock)
        async with engine.begin() as conn:
            await apply_signal(conn, signal=signal(1), now=clock.now(), routing=routing)
        assert await d.deliver_due() == 0  # waiting out the group wait
        clock.advance(timedelta(seconds=10))
        async with engine.begin() as conn:
            await apply_signal(conn, signal=signal(2, "SEV1"), now=clock.now(), routing=routing)
        assert await d.deliver_due() == 0
        clock.advance(timedelta(seconds=21))
        await drain(d, clock)
    pd = [r.json() for r in rec.requests if r.path == "/pd"]
    assert [p["event_action"] for p in pd] == ["trigger"]  # one page, with the risen severity
    assert pd[0]["payload"]["severity"] == "critical"


async def test_a_flap_inside_the_group_wait_is_paged_as_opened_and_resolved(
    settings: Settings, tmp_path: Path
) -> None:
    """Group wait folds early changes into the first page; it never decides that an incident
    did not happen. An incident resolved before its first page went out still pages once,
    saying it opened and resolved, and its resolve follows on every channel."""
    clock = ManualClock(T0)
    async with running_receiver() as rec, open_engine(settings) as engine, httpx.AsyncClient() as http:
        routing = grouped(rec, tmp_path)
        async with engine.begin() as conn:
            res = await apply_signal(conn, signal=signal(1), now=clock.now(), routing=routing)
            await apply_signal(conn, signal=signal(3, kind="resolve", at=T0 + timedelta(seconds=10)),
                               now=clock.now(), routing=routing)
        clock.advance(timedelta(minutes=5))
        await drain(deliverer(engine, routing, http, clock), clock)
        async with engine.connect() as conn:
            kinds = (await conn.execute(sa.text(
                "SELECT kind FROM incident_timeline WHERE incident_id = :i ORDER BY id"),
                {"i": res.incident_id})).scalars().all()
    assert "page_cancelled" not in kinds
    pd = [r.json() for r in rec.requests if r.path == "/pd"]
    assert [p["event_action"] for p in pd] == ["trigger", "resolve"]
    assert pd[0]["payload"]["custom_details"]["status"] == "resolved"
    slack = [r.json()["text"] for r in rec.requests if r.path == "/slack"]
    assert len(slack) == 2 and "already resolved" in slack[0] and "RESOLVE" in slack[1]
    hooks = [r.json() for r in rec.requests if r.path == "/hook"]
    assert [h["kind"] for h in hooks] == ["trigger", "resolve"]


async def test_a_route_may_record_a_flap_without_paging_and_says_so(settings: Settings, tmp_path: Path) -> None:
    clock = ManualClock(T0)
    async with running_receiver() as rec, open_engine(settings) as engine, httpx.AsyncClient() as http:
        base = grouped(rec, tmp_path).model_dump(mode="json")
        base["default"]["resolved_in_group_wait"] = "record"
        routing = Routing.model_validate(base)
        async with engine.begin() as conn:
            res = await apply_signal(conn, signal=signal(1), now=clock.now(), routing=routing)
            await apply_signal(conn, signal=signal(3, kind="resolve", at=T0 + timedelta(seconds=10)),
                               now=clock.now(), routing=routing)
            timeline = (await conn.execute(sa.text(
                "SELECT kind, detail FROM incident_timeline WHERE incident_id = :i ORDER BY id"),
                {"i": res.incident_id})).all()
            statuses = (await conn.execute(sa.text(
                "SELECT DISTINCT status FROM notifications WHERE incident_id = :i"),
                {"i": res.incident_id})).scalars().all()
        clock.advance(timedelta(minutes=5))
        await drain(deliverer(engine, routing, http, clock), clock)
    assert rec.requests == []
    cancelled = [d for k, d in timeline if k == "page_cancelled"]
    assert len(cancelled) == 1 and "resolved_in_group_wait: record" in cancelled[0]["reason"]
    assert statuses == ["cancelled"]
    # record-only with no group wait would drop every short incident: refused at load
    no_wait = {**base, "group_wait_s": 0}
    with pytest.raises(ValueError, match="needs group_wait_s > 0"):
        Routing.model_validate(no_wait)


async def test_a_resolve_after_the_wait_on_event_time_is_paged_even_under_a_record_route(
    settings: Settings, tmp_path: Path
) -> None:
    """A catch-up: the notifier reads an incident's open and its resolve (an hour later on
    event time) in one batch. It pages what a live feed paged: the trigger and the resolve."""
    clock = ManualClock(T0 + timedelta(hours=3))
    async with running_receiver() as rec, open_engine(settings) as engine, httpx.AsyncClient() as http:
        base = grouped(rec, tmp_path).model_dump(mode="json")
        base["default"]["resolved_in_group_wait"] = "record"
        routing = Routing.model_validate(base)
        async with engine.begin() as conn:
            await apply_signal(conn, signal=signal(1), now=clock.now(), routing=routing)
            await apply_signal(conn, signal=signal(3, kind="resolve", at=T0 + timedelta(hours=1)),
                               now=clock.now(), routing=routing)
        await drain(deliverer(engine, routing, http, clock), clock, rounds=1)  # no wait left
    pd = [r.json()["event_action"] for r in rec.requests if r.path == "/pd"]
    assert pd == ["trigger", "resolve"]


async def test_open_and_resolve_in_one_batch_with_no_group_wait_page_both(
    settings: Settings, tmp_path: Path
) -> None:
    """Found by an outside test: after a notifier restart both signals arrived in one batch
    and nobody was paged, even with group_wait_s 0."""
    clock = ManualClock(T0 + timedelta(minutes=20))
    async with running_receiver() as rec, open_engine(settings) as engine, httpx.AsyncClient() as http:
        routing = routing_for(rec, tmp_path)
        async with engine.begin() as conn:
            await apply_signal(conn, signal=signal(1), now=clock.now(), routing=routing)
            await apply_signal(conn, signal=signal(3, kind="resolve", at=T0 + timedelta(seconds=5)),
                               now=clock.now(), routing=routing)
        await drain(deliverer(engine, routing, http, clock), clock, rounds=1)
    for path in ("/pd", "/slack", "/hook"):
        assert len([r for r in rec.requests if r.path == path]) == 2, path


async def test_catch_up_folds_by_event_time_as_a_live_feed_does(settings: Settings, tmp_path: Path) -> None:
    """Read long after the fact: a rise inside the group wait (on event time) folds into the
    first page, a rise after it is a page of its own, and nothing waits on the wall clock."""
    clock = ManualClock(T0 + timedelta(hours=2))
    async with running_receiver() as rec, open_engine(settings) as engine, httpx.AsyncClient() as http:
        routing = grouped(rec, tmp_path)
        async with engine.begin() as conn:
            await apply_signal(conn, signal=signal(1, "SEV3"), now=clock.now(), routing=routing)
            await apply_signal(conn, signal=signal(2, "SEV2", at=T0 + timedelta(seconds=20)),
                               now=clock.now(), routing=routing)
            await apply_signal(conn, signal=signal(4, "SEV1", at=T0 + timedelta(seconds=45)),
                               now=clock.now(), routing=routing)
        await drain(deliverer(engine, routing, http, clock), clock, rounds=1)
    pd = [r.json() for r in rec.requests if r.path == "/pd"]
    assert [(p["event_action"], p["payload"]["severity"]) for p in pd] == [
        ("trigger", "error"), ("trigger", "critical")]


async def test_a_resolve_while_the_trigger_is_in_flight_is_paged(settings: Settings, tmp_path: Path) -> None:
    """The deliverer holds a page's row locked during its HTTP call. A resolve arriving then
    must not take the trigger for never sent (a slow receiver may have it already): the
    resolve is paged after it, and deciding that does not wait for the slow call."""
    from services.notifier.channels.base import Outcome
    from services.notifier.outbox import claim, settle

    clock = ManualClock(T0)
    async with running_receiver() as rec, open_engine(settings) as engine, httpx.AsyncClient() as http:
        routing = grouped(rec, tmp_path)
        async with engine.begin() as conn:
            res = await apply_signal(conn, signal=signal(1), now=clock.now(), routing=routing)
        clock.advance(timedelta(seconds=31))  # the group wait is over: the trigger is due
        async with engine.connect() as sending:
            async with sending.begin():
                due = await claim(sending, now=clock.now(), limit=10)  # "in the HTTP call"
                assert {n["kind"] for n in due} == {"trigger"} and len(due) == 3
                async with engine.begin() as conn:
                    await conn.execute(sa.text("SET LOCAL lock_timeout = '2s'"))  # never waits
                    await apply_signal(conn, signal=signal(3, kind="resolve"), now=clock.now(), routing=routing)
                for n in due:  # the slow receiver took it, but the client timed out
                    await settle(sending, notification=n, outcome=Outcome(False, True, None, "ReadTimeout"),
                                 now=clock.now(), duration_ms=5000.0, policy=RetryPolicy(), rng=random.Random(1))
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.text(
                "SELECT kind, status FROM notifications WHERE incident_id = :i ORDER BY id"),
                {"i": res.incident_id})).all()
        assert sorted(rows) == [("resolve", "pending")] * 3 + [("trigger", "pending")] * 3
        clock.advance(timedelta(minutes=10))
        await drain(deliverer(engine, routing, http, clock), clock)
    pd = [r.json()["event_action"] for r in rec.requests if r.path == "/pd"]
    assert pd == ["trigger", "resolve"]


async def test_a_rise_while_the_trigger_is_in_flight_is_a_page_of_its_own(settings: Settings, tmp_path: Path) -> None:
    """A rise folds into the first page only while no channel may have it yet: with one
    channel's trigger in flight, every channel gets the rise as a page of its own."""
    from services.notifier.channels.base import Outcome
    from services.notifier.outbox import claim, settle

    clock = ManualClock(T0)
    async with running_receiver() as rec, open_engine(settings) as engine, httpx.AsyncClient() as http:
        routing = grouped(rec, tmp_path)
        async with engine.begin() as conn:
            res = await apply_signal(conn, signal=signal(1), now=clock.now(), routing=routing)
        clock.advance(timedelta(seconds=31))
        async with engine.connect() as sending:
            async with sending.begin():
                due = await claim(sending, now=clock.now(), limit=1)  # one channel's trigger in flight
                assert len(due) == 1
                async with engine.begin() as conn:
                    await conn.execute(sa.text("SET LOCAL lock_timeout = '2s'"))  # never waits
                    await apply_signal(conn, signal=signal(2, "SEV1"), now=clock.now(), routing=routing)
                await settle(sending, notification=due[0], outcome=Outcome(True, False, 202),
                             now=clock.now(), duration_ms=5.0, policy=RetryPolicy(), rng=random.Random(1))
        async with engine.connect() as conn:
            kinds = (await conn.execute(sa.text(
                "SELECT kind FROM notifications WHERE incident_id = :i ORDER BY id"),
                {"i": res.incident_id})).scalars().all()
        assert sorted(kinds) == ["trigger"] * 3 + ["update"] * 3
        clock.advance(timedelta(minutes=10))
        await drain(deliverer(engine, routing, http, clock), clock)
    # the in-flight trigger was pd's (settled above, not really sent): pd hears the rise, the
    # other two channels their first page and then the rise
    assert due[0]["channel"] == "pd"
    pd = [r.json() for r in rec.requests if r.path == "/pd"]
    assert [(p["event_action"], p["payload"]["severity"]) for p in pd] == [("trigger", "critical")]
    assert len([r for r in rec.requests if r.path == "/slack"]) == 2
    assert len([r for r in rec.requests if r.path == "/hook"]) == 2


async def test_a_quiet_incident_resolves_itself_with_a_resolve_page(settings: Settings, tmp_path: Path) -> None:
    from services.notifier.escalator import Escalator

    clock = ManualClock(T0 + timedelta(minutes=1))
    async with running_receiver() as rec, open_engine(settings) as engine, httpx.AsyncClient() as http:
        routing = Routing.model_validate({**routing_for(rec, tmp_path).model_dump(mode="json"),
                                          "auto_resolve_after_s": 900})
        d = deliverer(engine, routing, http, clock)
        esc = Escalator(engine, routing, clock)
        async with engine.begin() as conn:
            res = await apply_signal(conn, signal=signal(1), now=clock.now(), routing=routing)
        await drain(d, clock, rounds=1)
        assert await esc.resolve_quiet() == 0  # the last signal (T0) is a minute old: not quiet
        clock.advance(timedelta(minutes=14))  # now 15 min 5 s after it
        assert await esc.resolve_quiet() == 1
        assert await esc.resolve_quiet() == 0
        await drain(d, clock)
        async with engine.connect() as conn:
            how = await conn.scalar(sa.text("SELECT resolved_how FROM incidents WHERE id = :i"),
                                    {"i": res.incident_id})
    assert how == "quiet"
    pd = [r.json()["event_action"] for r in rec.requests if r.path == "/pd"]
    assert pd == ["trigger", "resolve"]


async def test_an_unacknowledged_incident_is_paged_again_each_repeat_interval(
    settings: Settings, tmp_path: Path
) -> None:
    from services.notifier.escalator import Escalator

    clock = ManualClock(T0)
    async with running_receiver() as rec, open_engine(settings) as engine, httpx.AsyncClient() as http:
        routing = Routing.model_validate({**routing_for(rec, tmp_path).model_dump(mode="json"),
                                          "repeat_interval_s": 3600})
        d = deliverer(engine, routing, http, clock)
        esc = Escalator(engine, routing, clock)
        async with engine.begin() as conn:
            res = await apply_signal(conn, signal=signal(1), now=clock.now(), routing=routing)
        await drain(d, clock, rounds=1)
        clock.advance(timedelta(minutes=59))
        assert await esc.repeat_unacknowledged() == 0
        clock.advance(timedelta(minutes=2))
        assert await esc.repeat_unacknowledged() == 1
        assert await esc.repeat_unacknowledged() == 0  # repeated once per interval
        await drain(d, clock, rounds=1)
        async with engine.begin() as conn:
            await act(conn, incident_id=res.incident_id, action="acknowledge", actor="amy",
                      now=clock.now(), routing=routing)
        clock.advance(timedelta(hours=2))
        assert await esc.repeat_unacknowledged() == 0  # acknowledged: no more repeats
        await drain(d, clock)
    pd = [r.json()["event_action"] for r in rec.requests if r.path == "/pd"]
    assert pd == ["trigger", "trigger", "acknowledge"]


async def test_group_interval_folds_rises_into_one_update_page(settings: Settings, tmp_path: Path) -> None:
    clock = ManualClock(T0)
    async with running_receiver() as rec, open_engine(settings) as engine, httpx.AsyncClient() as http:
        routing = Routing.model_validate({**routing_for(rec, tmp_path).model_dump(mode="json"),
                                          "group_interval_s": 300})
        d = deliverer(engine, routing, http, clock)
        async with engine.begin() as conn:
            await apply_signal(conn, signal=signal(1, "SEV3"), now=clock.now(), routing=routing)
        await drain(d, clock, rounds=1)  # the first page goes out at once (no group wait)
        async with engine.begin() as conn:
            await apply_signal(conn, signal=signal(2, "SEV2"), now=clock.now(), routing=routing)
            await apply_signal(conn, signal=signal(3, "SEV1"), now=clock.now(), routing=routing)
        assert await d.deliver_due() == 0  # within the group interval
        clock.advance(timedelta(minutes=5))
        await drain(d, clock)
    pd = [r.json() for r in rec.requests if r.path == "/pd"]
    assert [p["payload"]["severity"] for p in pd] == ["warning", "critical"]  # SEV2 folded into SEV1


async def test_a_page_that_may_have_arrived_is_never_cancelled_and_its_resolve_follows(
    settings: Settings, tmp_path: Path
) -> None:
    """Found by the fault suite: the trigger's attempt failed (the receiver may still have got
    it), then the incident resolved. Cancelling the trigger would leave on-call with a page
    that is never resolved: both must go out."""
    clock = ManualClock(T0)
    async with running_receiver() as rec, open_engine(settings) as engine, httpx.AsyncClient() as http:
        routing = routing_for(rec, tmp_path)
        d = deliverer(engine, routing, http, clock)
        rec.failures = 1000  # every first attempt fails; as far as we know, they may have arrived
        async with engine.begin() as conn:
            await apply_signal(conn, signal=signal(1), now=clock.now(), routing=routing)
        assert await d.deliver_due() > 0
        rec.failures = 0
        async with engine.begin() as conn:
            await apply_signal(conn, signal=signal(3, kind="resolve"), now=clock.now(), routing=routing)
            statuses = (await conn.execute(sa.text("SELECT status FROM notifications"))).scalars().all()
        assert "cancelled" not in statuses
        clock.advance(timedelta(seconds=routing.flap_cooldown_s))  # the resolve waits out the cool-down
        await drain(d, clock)
    pd = [r.json()["event_action"] for r in rec.requests if r.path == "/pd"]
    assert pd == ["trigger", "resolve"]


async def test_a_flap_within_the_cool_down_continues_its_incident_with_one_page(
    settings: Settings, tmp_path: Path
) -> None:
    """Alertmanager's most asked-for fix: a spike that opens again on the same key soon after
    it resolved is the same incident. One trigger, one resolve (held for the cool-down, sent
    when no burst came), and the timeline shows each burst; a burst after the cool-down is a
    new incident."""
    clock = ManualClock(T0)
    async with running_receiver() as rec, open_engine(settings) as engine, httpx.AsyncClient() as http:
        routing = routing_for(rec, tmp_path)
        assert routing.flap_cooldown_s == 900  # the default
        d = deliverer(engine, routing, http, clock)

        async def apply(sig: Signal) -> None:
            if sig.observed_at > clock.now():
                clock.advance(sig.observed_at - clock.now())
            async with engine.begin() as conn:
                await apply_signal(conn, signal=sig, now=clock.now(), routing=routing)
            await drain(d, clock, rounds=2)

        minute = timedelta(minutes=1)
        await apply(signal(1))
        await apply(signal(2, kind="resolve", at=T0 + 2 * minute))
        assert [r.json()["event_action"] for r in rec.requests if r.path == "/pd"] == ["trigger"]
        await apply(signal(3, at=T0 + 6 * minute))  # a second burst: the same incident
        await apply(signal(4, kind="resolve", at=T0 + 8 * minute))
        clock.advance(timedelta(minutes=16))  # no burst within the cool-down: the resolve goes out
        await drain(d, clock, rounds=2)
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.text(
                "SELECT id, status, signal_count FROM incidents WHERE dedup_key = 'spike:s1:violence'"))).all()
            assert len(rows) == 1 and rows[0].status == "resolved" and rows[0].signal_count == 2  # two bursts
            kinds = (await conn.execute(sa.text(
                "SELECT kind FROM incident_timeline WHERE incident_id = :i ORDER BY id"), {"i": rows[0].id})
            ).scalars().all()
        assert kinds.count("reopened") == 1 and kinds.count("resolved") == 2
        pd = [r.json()["event_action"] for r in rec.requests if r.path == "/pd"]
        assert pd == ["trigger", "resolve"]
        await apply(signal(5, at=clock.now() + 20 * minute))  # past the cool-down: a new incident
        async with engine.connect() as conn:
            n = await conn.scalar(sa.text("SELECT count(*) FROM incidents WHERE dedup_key = 'spike:s1:violence'"))
        assert n == 2
        assert [r.json()["event_action"] for r in rec.requests if r.path == "/pd"] == ["trigger", "resolve", "trigger"]


async def test_a_flap_after_its_resolve_went_out_is_paged_again(settings: Settings, tmp_path: Path) -> None:
    """Read in a catch-up, long after the cool-down passed on the wall clock, the resolve
    went out at once; the burst that followed within the cool-down (event time) continues the
    incident and pages it again, so no receiver is left thinking it resolved."""
    clock = ManualClock(T0 + timedelta(hours=3))
    async with running_receiver() as rec, open_engine(settings) as engine, httpx.AsyncClient() as http:
        routing = routing_for(rec, tmp_path)
        d = deliverer(engine, routing, http, clock)
        for sig in (signal(1), signal(2, kind="resolve", at=T0 + timedelta(minutes=2))):
            async with engine.begin() as conn:
                await apply_signal(conn, signal=sig, now=clock.now(), routing=routing)
            await drain(d, clock, rounds=1)
        async with engine.begin() as conn:
            res = await apply_signal(conn, signal=signal(3, at=T0 + timedelta(minutes=5)), now=clock.now(),
                                     routing=routing)
        await drain(d, clock, rounds=1)
        async with engine.connect() as conn:
            n = await conn.scalar(sa.text("SELECT count(*) FROM incidents"))
    assert n == 1 and res.notified == 3
    assert [r.json()["event_action"] for r in rec.requests if r.path == "/pd"] == ["trigger", "resolve", "trigger"]


def urgent_from(rec: Receiver, tmp_path: Path, sev: str) -> Routing:
    base = routing_for(rec, tmp_path).model_dump(mode="json")
    base["default"]["high_urgency_from"] = sev
    for r in base["routes"]:
        r["high_urgency_from"] = sev
    return Routing.model_validate({**base, "flap_cooldown_s": 0})


async def test_low_urgency_is_recorded_not_paged_and_pages_once_it_rises(settings: Settings, tmp_path: Path) -> None:
    """A SEV3 incident on a route that pages from SEV2 is on the record and pages nobody, and
    its resolve pages nobody either; one that rises to SEV2 is paged then, once, as a trigger
    (its later resolve follows); the weekly figures count both."""
    clock = ManualClock(T0)
    async with running_receiver() as rec, open_engine(settings) as engine, httpx.AsyncClient() as http:
        routing = urgent_from(rec, tmp_path, "SEV2")
        d = deliverer(engine, routing, http, clock)
        async with engine.begin() as conn:
            quiet = await apply_signal(conn, signal=signal(1, "SEV3"), now=clock.now(), routing=routing)
            await apply_signal(conn, signal=signal(2, kind="resolve", at=T0 + timedelta(minutes=2)),
                               now=clock.now(), routing=routing)
        await drain(d, clock, rounds=2)
        assert rec.requests == []
        async with engine.connect() as conn:
            row = (await conn.execute(sa.text("SELECT urgency, status FROM incidents WHERE id = :i"),
                                      {"i": quiet.incident_id})).one()
            kinds = (await conn.execute(sa.text(
                "SELECT kind FROM incident_timeline WHERE incident_id = :i ORDER BY id"),
                {"i": quiet.incident_id})).scalars().all()
        assert tuple(row) == ("low", "resolved") and "low_urgency" in kinds and "page_queued" not in kinds

        clock.advance(timedelta(minutes=10))
        at = T0 + timedelta(minutes=10)
        async with engine.begin() as conn:
            rising = await apply_signal(conn, signal=signal(3, "SEV4", at=at), now=clock.now(), routing=routing)
            await apply_signal(conn, signal=signal(4, "SEV3", at=at), now=clock.now(), routing=routing)
        await drain(d, clock, rounds=2)
        assert rec.requests == []  # still below the band
        async with engine.begin() as conn:
            await apply_signal(conn, signal=signal(5, "SEV2", at=at), now=clock.now(), routing=routing)
            await apply_signal(conn, signal=signal(6, "SEV1", at=at), now=clock.now(), routing=routing)
            await apply_signal(conn, signal=signal(7, kind="resolve", at=at + timedelta(minutes=1)),
                               now=clock.now(), routing=routing)
        await drain(d, clock, rounds=4)
        pd = [r.json() for r in rec.requests if r.path == "/pd"]
        assert [p["event_action"] for p in pd] == ["trigger", "trigger", "resolve"]  # SEV2, the SEV1 rise, resolve
        async with engine.connect() as conn:
            assert await conn.scalar(sa.text("SELECT urgency FROM incidents WHERE id = :i"),
                                     {"i": rising.incident_id}) == "high"
            from services.notifier.stats import stats
            figures = await stats(conn, since=T0 - timedelta(days=1), until=T0 + timedelta(days=1),
                                  sla_ack_minutes={}, sla_action_minutes={})
        assert figures["by"]["urgency"] == {"low": 1, "high": 1}


def test_every_severity_is_high_urgency_unless_the_file_says_otherwise(tmp_path: Path) -> None:
    route = Routing().default
    assert [route.urgency(s) for s in ("SEV1", "SEV4")] == ["high", "high"]
    strict = Routing.model_validate({"default": {"team": "t", "high_urgency_from": "SEV2"}}).default
    assert [strict.urgency(s) for s in ("SEV1", "SEV2", "SEV3", "SEV4")] == ["high", "high", "low", "low"]
    with pytest.raises(ValueError):
        Routing.model_validate({"default": {"team": "t", "high_urgency_from": "SEV5"}})
