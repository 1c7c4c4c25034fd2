"""Reports in on a real broker, incidents out in real Postgres and over HTTP."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from livetriage.runtime import ROLES, start_services
from shared.settings import Settings
from tests.conftest import AUTH
from tests.helpers import encode_reports, eventually, publish, read_topic, report

pytestmark = pytest.mark.integration


async def test_reports_become_an_incident_with_duplicates_and_malformed_input(settings: Settings) -> None:
    stop = asyncio.Event()
    now = datetime.now(UTC)
    spike = [report("hot-stream", "violence", at=now, viewer_count=50_000) for _ in range(60)]
    quiet = [report(f"calm-{i}", "spam", at=now) for i in range(5)]
    duplicates = spike[:3] + quiet[:1]  # client retries: same report_id again
    malformed: list[tuple[bytes | None, bytes]] = [
        (b"k", b"{not json"),
        (b"k", orjson.dumps({**report(), "category": "bogus"})),
        (b"k", orjson.dumps({**report(), "reported_at": "yesterday"})),
        (b"k", orjson.dumps({**report(), "text": "x" * 20_000})),
        (None, b""),
    ]
    async with start_services(settings, ROLES, stop) as running:
        await publish(settings, settings.reports_topic, encode_reports(spike + quiet) + malformed)
        await publish(settings, settings.reports_topic, encode_reports(duplicates))

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.api_port}", headers=AUTH) as http:

            async def incident_listed() -> list:  # type: ignore[type-arg]
                r = await http.get("/v1/incidents", params={"stream_id": "hot-stream"})
                assert r.status_code == 200
                return r.json()["items"]

            items = await eventually(incident_listed, what="incident for hot-stream")
            assert len(items) == 1
            inc = items[0]
            assert inc["kind"] == "spike" and inc["category"] == "violence"
            assert inc["status"] == "triggered" and inc["report_count"] >= settings.spike_min_volume
            assert "hot-stream" in inc["reason"] and "distinct reporters" in inc["reason"]
            assert {f["name"] for f in inc["factors"]} >= {"magnitude", "reporter_diversity", "z_score"}
            assert set(inc["sample_report_ids"]) <= {r["report_id"] for r in spike}

            one = await http.get(f"/v1/incidents/{inc['id']}")
            assert one.status_code == 200 and one.json()["id"] == inc["id"]
            tl = await http.get(f"/v1/incidents/{inc['id']}/timeline")
            kinds = [e["kind"] for e in tl.json()]
            assert kinds[0] == "triggered" and set(kinds) <= {"triggered", "signal_merged", "severity_raised"}
            rate = (await http.get(f"/v1/incidents/{inc['id']}/rate")).json()  # the chart, from triage
            assert rate["hop_s"] == settings.window_hop_s and rate["points"]
            assert sum(p["count"] for p in rate["points"]) >= inc["report_count"]
            assert rate["upper_per_minute"] > rate["baseline_per_minute"] >= 0

        # every valid, unique report reaches the clean topic exactly once
        clean = await read_topic(settings, settings.clean_topic, expect=len(spike) + len(quiet))
        ids = [orjson.loads(r.value)["report_id"] for r in clean]
        assert sorted(ids) == sorted(r["report_id"] for r in spike + quiet)

        # every malformed record reaches the DLQ with its original bytes and a reason
        dlq = await read_topic(settings, settings.dlq_topic, expect=len(malformed))
        assert sorted(r.value for r in dlq) == sorted(v for _, v in malformed)
        reasons = sorted(dict(r.headers)["dlq.reason"].decode() for r in dlq)
        assert reasons == sorted(["invalid_json", "unknown_category", "schema_violation", "oversized", "empty"])
        for r in dlq:
            h = dict(r.headers)
            assert h["dlq.source.topic"].decode() == settings.reports_topic
            assert int(h["dlq.source.offset"]) >= 0 and h["dlq.detail"]

        await eventually(lambda: running.ingest.duplicates._value.get() == len(duplicates), what="dups")
        assert running.ingest.consumed._value.get() == len(spike + quiet + malformed + duplicates)


async def test_dedup_survives_a_restart_of_ingest(settings: Settings) -> None:
    first = [report("s", "hate") for _ in range(4)]
    stop = asyncio.Event()
    async with start_services(settings, ["ingest"], stop, api=False) as running:
        await publish(settings, settings.reports_topic, encode_reports(first))
        await eventually(lambda: running.ingest.published._value.get() == 4, what="first batch")
    # a new process: nothing in memory, same database
    later = [report("s", "hate") for _ in range(2)]
    stop = asyncio.Event()
    async with start_services(settings, ["ingest"], stop, api=False) as running:
        await publish(settings, settings.reports_topic, encode_reports(first[:3] + later))
        await eventually(lambda: running.ingest.consumed._value.get() == 5, what="second batch")
        assert running.ingest.duplicates._value.get() == 3
        assert running.ingest.published._value.get() == 2
    clean = await read_topic(settings, settings.clean_topic, expect=6)
    assert sorted(orjson.loads(r.value)["report_id"] for r in clean) == sorted(
        r["report_id"] for r in first + later
    )


async def test_two_ingest_instances_publish_each_report_once(settings: Settings) -> None:
    reports = [report(f"s{i % 7}", "violence") for i in range(300)]
    dups = reports[::10]
    stop = asyncio.Event()
    async with (
        start_services(settings, ["ingest"], stop, api=False) as a,
        start_services(settings, ["ingest"], stop, api=False) as b,
    ):
        await publish(settings, settings.reports_topic, encode_reports(reports + dups))

        def consumed() -> bool:
            return a.ingest.consumed._value.get() + b.ingest.consumed._value.get() == 330

        await eventually(consumed, timeout=30, what="both instances drained")
        assert a.ingest.published._value.get() + b.ingest.published._value.get() == 300
    clean = await read_topic(settings, settings.clean_topic, expect=300)
    ids = [orjson.loads(r.value)["report_id"] for r in clean]
    assert len(ids) == 300 and set(ids) == {r["report_id"] for r in reports}


async def test_critical_report_opens_an_incident_without_a_window(settings: Settings) -> None:
    stop = asyncio.Event()
    rep = report("kids-stream", "child_safety", source="moderator", viewer_count=800_000)
    async with start_services(settings, ROLES, stop) as running:
        await publish(settings, settings.reports_topic, encode_reports([rep]))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.api_port}", headers=AUTH) as http:

            async def listed() -> list:  # type: ignore[type-arg]
                r = await http.get("/v1/incidents", params={"severity": "SEV1"})
                return r.json()["items"]

            items = await eventually(listed, what="critical incident")
            assert items[0]["kind"] == "critical_report"
            assert items[0]["sample_report_ids"] == [rep["report_id"]]


async def test_redelivered_signals_do_not_duplicate_incidents(settings: Settings) -> None:
    from shared.events import Category, Severity, Signal

    sig = Signal(
        signal_id="spike:s9:hate:60000", kind="spike", dedup_key="spike:s9:hate", stream_id="s9",
        category=Category.hate, severity=Severity.SEV3, score=0.4, observed_at=datetime.now(UTC),
        report_count=12, reason="test",
    )
    payload = [(b"k", sig.model_dump_json().encode())]
    stop = asyncio.Event()
    async with start_services(settings, ["notifier"], stop) as running:
        await publish(settings, settings.signals_topic, payload * 3)
        await eventually(lambda: running.notifier.duplicates._value.get() == 2, what="redeliveries seen")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.api_port}", headers=AUTH) as http:
            items = (await http.get("/v1/incidents")).json()["items"]
    assert len(items) == 1 and items[0]["signal_count"] == 1
