"""The notifier's metrics, read from the registry after real signals, actions and pages went
through the real code paths (broker, Postgres, a local HTTP receiver); time from a ManualClock."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from livetriage.runtime import start_services
from services.notifier.escalator import Escalator
from services.notifier.metrics import NotifierMetrics, StateSampler
from services.notifier.routing import Routing, load_routing
from services.notifier.silence_store import create_inhibit_rule, create_silence
from services.notifier.store import apply_signal
from shared.clock import ManualClock
from shared.db import create_engine, open_engine
from shared.events import Category, Severity, Signal
from shared.kafka import ensure_topics
from shared.settings import Settings
from tests.conftest import make_settings
from tests.helpers import eventually, publish
from tests.receiver import running_receiver

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
OBSERVED = T0 - timedelta(seconds=3)  # every signal here reaches the notifier 3 s after it was observed


def sig(sid: str, stream: str, *, kind: str = "spike", category: str = "violence", severity: str = "SEV2",
        dedup_key: str | None = None) -> Signal:
    return Signal(
        signal_id=sid, kind=kind, dedup_key=dedup_key or f"spike:{stream}:{category}",  # type: ignore[arg-type]
        stream_id=stream, category=Category(category), severity=Severity(severity), score=0.6,
        observed_at=OBSERVED, window_start=OBSERVED, report_count=40, reason=f"{category} on {stream}",
    )


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value; a labelled series never touched reads 0."""
    v = registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


GAUGES: dict[str, tuple[str, dict[str, str]]] = {  # short names of the state gauges' series
    "pending": ("livetriage_notifier_outbox_notifications", {"status": "pending"}),
    "dead": ("livetriage_notifier_outbox_notifications", {"status": "dead"}),
    "oldest": ("livetriage_notifier_outbox_oldest_pending_seconds", {}),
    "sev2_triggered": ("livetriage_notifier_incidents_open", {"severity": "SEV2", "status": "triggered"}),
    "sev1_triggered": ("livetriage_notifier_incidents_open", {"severity": "SEV1", "status": "triggered"}),
    "sev2_acked": ("livetriage_notifier_incidents_open", {"severity": "SEV2", "status": "acknowledged"}),
}


def total(registry: CollectorRegistry, name: str) -> float:
    return sum(s.value for f in registry.collect() for s in f.samples if s.name == name)


async def test_signals_pages_actions_and_outbox_through_the_running_notifier(
    broker: str, database_url: str, tmp_path: Path
) -> None:
    clock = ManualClock(T0)
    registry = CollectorRegistry()
    async with running_receiver() as good, running_receiver() as bad:
        bad.failures, bad.fail_with = 10**6, 400  # a 4xx never succeeds: the first attempt is the last
        (tmp_path / "routing.yaml").write_text(f"""
channels:
  pd: {{type: pagerduty, url: "{good.base}/pd", routing_key: R0UTE}}
  hook: {{type: webhook, url: "{bad.base}/hook", secret: "hunter2hunter2"}}
group_wait_s: 30
default:
  team: live-ops
  channels: [pd, hook]
  resolved_in_group_wait: record
""")
        s = make_settings(broker, database_url, routing_file=tmp_path / "routing.yaml")
        await ensure_topics(s)
        async with open_engine(s) as engine:
            async with engine.begin() as conn:
                await create_silence(conn, matchers={"stream_id": ["s-quiet"]}, starts_at=T0 - timedelta(hours=1),
                                     ends_at=T0 + timedelta(days=1), created_by="amy", comment="maintenance",
                                     now=T0)
        stop = asyncio.Event()
        async with start_services(s, ["notifier"], stop, api=False, registry=registry, clock=clock) as running:
            sampler = running.state_sampler
            assert sampler is not None

            def enc(*signals: Signal) -> list[tuple[bytes | None, bytes]]:
                return [((x.stream_id or "").encode(), x.model_dump_json().encode()) for x in signals]

            await publish(s, s.signals_topic, [
                *enc(sig("a1", "s1"), sig("a1", "s1")),  # paged; then a redelivery
                *enc(sig("b1", "s-quiet")),  # silenced
                *enc(sig("c1", "s2"), sig("c2", "s2", kind="resolve")),  # a flap inside the group wait
                (b"s1", b"{not a signal"),
            ])
            await eventually(lambda: total(registry, "livetriage_notifier_signals_consumed_total") == 5
                             and value(registry, "livetriage_notifier_signals_invalid_total") == 1,
                             timeout=30, what="five signals and one invalid one consumed")

            assert value(registry, "livetriage_notifier_signals_duplicate_total") == 1
            assert value(registry, "livetriage_notifier_incidents_created_total", severity="SEV2") == 3
            assert value(registry, "livetriage_notifier_pages_held_total", reason="silenced") == 1
            assert value(registry, "livetriage_notifier_pages_held_total", reason="group_wait") == 1
            assert value(registry, "livetriage_notifier_pages_held_total", reason="inhibited") == 0
            # observed -> applied, for each signal applied (not the redelivery)
            assert value(registry, "livetriage_notifier_signal_latency_seconds_count") == 4
            assert value(registry, "livetriage_notifier_signal_latency_seconds_sum") == pytest.approx(12.0)
            assert value(registry, "livetriage_notifier_signal_latency_seconds_bucket", le="2.5") == 0
            assert value(registry, "livetriage_notifier_signal_latency_seconds_bucket", le="5.0") == 4

            async def gauges(**expected: float) -> None:
                # the running sampler refreshes them too: a refresh it began before the last
                # change may land after ours, so sample until ours is the one read
                def read() -> dict[str, float]:
                    return {k: value(registry, GAUGES[k][0], **GAUGES[k][1]) for k in expected}

                async def probe() -> bool:
                    await sampler.sample()
                    return read() == expected

                try:
                    await eventually(probe, timeout=5)
                except AssertionError:
                    assert read() == expected

            clock.advance(timedelta(seconds=10))  # inside the group wait: A's two pages wait
            await gauges(pending=2, dead=0, oldest=10.0, sev2_triggered=2, sev1_triggered=0, sev2_acked=0)

            clock.advance(timedelta(seconds=20))  # the group wait is over
            running.deliverer.wake.set()  # type: ignore[union-attr]
            await eventually(
                lambda: value(registry, "livetriage_notifier_notifications_total", channel="pd", status="sent") == 1
                and value(registry, "livetriage_notifier_notifications_total", channel="hook", status="dead") == 1,
                what="A's trigger sent to pd, dead at the hook")
            assert value(registry, "livetriage_notifier_delivery_latency_seconds_count") == 1
            assert value(registry, "livetriage_notifier_delivery_latency_seconds_sum") == 30.0
            await gauges(pending=0, dead=1, oldest=0.0)

            def action(aid: str, kind: str) -> tuple[bytes | None, bytes]:
                return b"s1", orjson.dumps({"action_id": aid, "stream_id": "s1", "action": kind,
                                            "actor": "mod-kim", "acted_at": T0.isoformat()})

            await publish(s, s.actions_topic, [
                action("w1", "warning"), (b"s1", b"[]"), action("e1", "stream_ended"), action("e1", "stream_ended"),
            ])
            await eventually(lambda: total(registry, "livetriage_notifier_actions_consumed_total") == 3
                             and value(registry, "livetriage_notifier_actions_invalid_total") == 1,
                             timeout=30, what="three actions and one invalid one consumed")
            assert value(registry, "livetriage_notifier_actions_consumed_total", action="stream_ended") == 2
            assert value(registry, "livetriage_notifier_actions_consumed_total", action="warning") == 1
            assert value(registry, "livetriage_notifier_actions_duplicate_total") == 1
            assert value(registry, "livetriage_notifier_incidents_resolved_by_action_total") == 1
            await eventually(
                lambda: value(registry, "livetriage_notifier_notifications_total", channel="pd", status="sent") == 2
                and value(registry, "livetriage_notifier_notifications_total", channel="hook", status="dead") == 2,
                what="A's resolve sent to pd, dead at the hook")
            await gauges(sev2_triggered=1, dead=2, pending=0)
            # no escalation policy here
            assert total(registry, "livetriage_notifier_escalations_total") == 0
    assert [r.path for r in good.requests] == ["/pd", "/pd"] and bad.requests == []


async def test_retries_count_as_pending_until_sent(settings: Settings, tmp_path: Path) -> None:
    import httpx

    from services.notifier.delivery import Deliverer, build_channels
    from services.notifier.outbox import RetryPolicy

    clock = ManualClock(T0)
    registry = CollectorRegistry()
    m = NotifierMetrics(registry)
    async with running_receiver() as rec, open_engine(settings) as engine, httpx.AsyncClient() as http:
        rec.failures = 2  # 500 twice, then accepted
        routing = Routing.model_validate({"channels": {"pd": {"type": "pagerduty", "url": f"{rec.base}/pd",
                                                              "routing_key": "R0UTE"}},
                                          "default": {"team": "ops", "channels": ["pd"]}})
        d = Deliverer(engine, build_channels(routing), http, clock, m,
                      policy=RetryPolicy(max_attempts=5, base_s=1.0, cap_s=1.0), seed=1)
        async with engine.begin() as conn:
            await apply_signal(conn, signal=sig("r1", "s1"), now=clock.now(), routing=routing, metrics=m)
        for _ in range(3):
            assert await d.deliver_due() == 1
            clock.advance(timedelta(seconds=1))  # past the (capped) backoff
    assert value(registry, "livetriage_notifier_notifications_total", channel="pd", status="pending") == 2
    assert value(registry, "livetriage_notifier_notifications_total", channel="pd", status="sent") == 1
    assert value(registry, "livetriage_notifier_delivery_latency_seconds_sum") == 2.0


def escalating_routing(tmp_path: Path) -> Routing:
    f = tmp_path / "routing.yaml"
    f.write_text("""
channels:
  audit: {type: webhook, url: "http://127.0.0.1:9/hook", secret: "hunter2hunter2"}
escalation_policies:
  crit:
    levels:
      - {targets: [amy], ack_timeout_minutes: 5}
      - {targets: [lead], ack_timeout_minutes: 10}
    repeat: 1
repeat_interval_s: 3600
group_wait_s: 30
routes:
  - match: {category: [spam, hate]}
    team: spam-patrol
    channels: [audit]
default:
  team: tns
  channels: [audit]
  escalation_policy: crit
""")
    return load_routing(f)


async def test_escalations_repeats_and_held_pages(settings: Settings, tmp_path: Path) -> None:
    clock = ManualClock(T0)
    registry = CollectorRegistry()
    m = NotifierMetrics(registry)
    routing = escalating_routing(tmp_path)
    async with open_engine(settings) as engine:
        esc = Escalator(engine, routing, clock, metrics=m)
        async with engine.begin() as conn:
            await create_inhibit_rule(conn, source_match={"severity": ["SEV1"]}, target_match={"severity": ["SEV3"]},
                                      equal=["stream_id"], created_by="amy", comment="", now=T0)
            await apply_signal(conn, signal=sig("v1", "s1"), now=clock.now(), routing=routing, metrics=m)
            await apply_signal(conn, signal=sig("p1", "s2", category="spam"), now=clock.now(), routing=routing,
                               metrics=m)
            # a rise while the first page waits out the group wait folds into it
            await apply_signal(conn, signal=sig("p2", "s2", category="spam", severity="SEV1"), now=clock.now(),
                               routing=routing, metrics=m)
            # s2 has an open SEV1: a SEV3 on s2 is inhibited
            await apply_signal(conn, signal=sig("h1", "s2", category="hate", severity="SEV3"), now=clock.now(),
                               routing=routing, metrics=m)
        assert value(registry, "livetriage_notifier_escalations_total", level="1") == 1  # paged at open
        assert value(registry, "livetriage_notifier_pages_held_total", reason="grouped") == 1
        assert value(registry, "livetriage_notifier_pages_held_total", reason="inhibited") == 1

        done = []
        for minutes in (5, 10, 5, 10):  # steps 2..4: levels 2, 1, 2 (the repeat), then exhausted
            clock.advance(timedelta(minutes=minutes))
            done.append(await esc.escalate_due())
        assert done == [1, 1, 1, 0]
        assert value(registry, "livetriage_notifier_escalations_total", level="1") == 2
        assert value(registry, "livetriage_notifier_escalations_total", level="2") == 2
        assert value(registry, "livetriage_notifier_escalation_repeats_total") == 2

        clock.advance(timedelta(minutes=30))  # the spam incident's page (T0) is now 1 h old
        assert await esc.repeat_unacknowledged() == 1
        assert await esc.repeat_unacknowledged() == 0
    assert value(registry, "livetriage_notifier_pages_repeated_total") == 1


async def test_the_state_sampler_survives_a_database_that_is_down(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    m = NotifierMetrics(registry)
    engine = create_engine(Settings(database_url="postgresql://postgres@127.0.0.1:9/nowhere"))
    stop = asyncio.Event()
    sampler = StateSampler(engine, m, ManualClock(T0), period_s=0.05)
    try:
        with caplog.at_level(logging.WARNING, logger="services.notifier.metrics"):
            task = asyncio.create_task(sampler.run(stop))

            def failures() -> list[Any]:
                return [r for r in caplog.records if "state gauges not refreshed" in r.getMessage()]

            await eventually(lambda: len(failures()) >= 3, what="three failed refreshes, each logged")
            assert not task.done()  # still trying
            stop.set()
            await asyncio.wait_for(task, 10)
    finally:
        await engine.dispose()
    assert registry.get_sample_value("livetriage_notifier_outbox_oldest_pending_seconds") == 0
