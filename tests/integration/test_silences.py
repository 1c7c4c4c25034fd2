"""Silences and inhibition against real Postgres: held pages are recorded, not sent; the API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notifier import outbox, silence_store
from services.notifier.api.app import create_app
from services.notifier.api.deps import ApiState
from services.notifier.routing import Routing
from services.notifier.store import apply_signal, get_incident, get_timeline
from shared.clock import ManualClock
from shared.db import open_engine
from shared.events import Category, Severity, Signal
from shared.settings import Settings
from tests.conftest import AUTH
from tests.integration.test_delivery import deliverer, drain, routing_for
from tests.receiver import Receiver, running_receiver

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def sig(sid: str, *, kind: str = "spike", stream: str | None = "s1", category: str = "violence",
        severity: str = "SEV2") -> Signal:
    key = f"trend:{category}" if kind == "trend" else f"spike:{stream}:{category}"
    return Signal(
        signal_id=sid, kind=kind, dedup_key=key, stream_id=stream, category=Category(category),  # type: ignore[arg-type]
        severity=Severity(severity), score=0.6, observed_at=T0, window_start=T0, report_count=40,
        reason=f"{kind} of {category}",
    )


@dataclass
class Env:
    engine: AsyncEngine
    routing: Routing
    rec: Receiver
    clock: ManualClock
    http: httpx.AsyncClient


@pytest_asyncio.fixture
async def env(settings: Settings, tmp_path: Path) -> AsyncIterator[Env]:
    async with running_receiver() as rec, open_engine(settings) as engine, httpx.AsyncClient() as http:
        yield Env(engine, routing_for(rec, tmp_path), rec, ManualClock(T0), http)


async def kinds(env: Env, incident_id: uuid.UUID) -> list[str]:
    async with env.engine.connect() as conn:
        return [t["kind"] for t in await get_timeline(conn, incident_id=incident_id)]


async def test_a_silence_holds_the_page_but_the_incident_is_recorded(env: Env) -> None:
    async with env.engine.begin() as conn:
        s = await silence_store.create_silence(
            conn, matchers={"category": ["violence"], "region": ["XX", "YY"]}, starts_at=T0,
            ends_at=T0 + timedelta(hours=1), created_by="amy", comment="region-scoped: does not match",
            now=T0)
        silent = await silence_store.create_silence(
            conn, matchers={"category": ["violence"]}, starts_at=T0 - timedelta(minutes=1),
            ends_at=T0 + timedelta(hours=1), created_by="amy", comment="known raid", now=T0)
        res = await apply_signal(conn, signal=sig("a1"), now=T0, routing=env.routing)
        other = await apply_signal(conn, signal=sig("b1", category="hate"), now=T0, routing=env.routing)
    assert res.created and res.notified == 0 and other.notified == 3
    async with env.engine.connect() as conn:
        row = await get_incident(conn, incident_id=res.incident_id)  # type: ignore[arg-type]
        timeline = await get_timeline(conn, incident_id=res.incident_id)  # type: ignore[arg-type]
        assert await outbox.for_incident(conn, incident_id=res.incident_id) == []  # type: ignore[arg-type]
    assert row is not None and row["status"] == "triggered" and row["silenced_by"] == silent["id"]
    assert s["id"] != silent["id"]
    held = [t for t in timeline if t["kind"] == "page_silenced"]
    assert len(held) == 1 and held[0]["detail"]["silence_id"] == str(silent["id"])
    assert held[0]["detail"]["kind"] == "trigger"
    await drain(deliverer(env.engine, env.routing, env.http, env.clock), env.clock)
    assert {r.json()["dedup_key"] for r in env.rec.requests if r.path == "/pd"} == {"spike:s1:hate"}


async def test_expiring_a_silence_pages_what_it_held_and_later_pages_flow(env: Env) -> None:
    async with env.engine.begin() as conn:
        s = await silence_store.create_silence(
            conn, matchers={"stream_id": ["s1"]}, starts_at=T0, ends_at=T0 + timedelta(hours=1),
            created_by="amy", comment="test stream", now=T0)
        res = await apply_signal(conn, signal=sig("a1"), now=T0, routing=env.routing)
    assert res.notified == 0
    env.clock.advance(timedelta(minutes=5))
    async with env.engine.begin() as conn:
        expired = await silence_store.expire_silence(conn, silence_id=s["id"], now=env.clock.now(),
                                                     routing=env.routing)
        again = await silence_store.expire_silence(conn, silence_id=s["id"], now=env.clock.now(),
                                                   routing=env.routing)  # idempotent
        assert await silence_store.expire_silence(conn, silence_id=uuid.uuid4(), now=T0) is None
        row = await get_incident(conn, incident_id=res.incident_id)  # type: ignore[arg-type]
        upd = await apply_signal(conn, signal=sig("a2", severity="SEV1"), now=env.clock.now(),
                                 routing=env.routing)
    assert expired is not None and expired["expired_at"] == env.clock.now()
    assert again is not None and again["expired_at"] == expired["expired_at"]
    assert row is not None and row["silenced_by"] is None
    # no group wait: the rise is a page of its own, as it is when read live (folding runs on
    # event time, so a catch-up pages what a live feed pages)
    assert upd.notified == 3
    await drain(deliverer(env.engine, env.routing, env.http, env.clock), env.clock)
    pd = [r.json() for r in env.rec.requests if r.path == "/pd"]
    assert [(p["event_action"], p["payload"]["severity"]) for p in pd] == [
        ("trigger", "error"), ("trigger", "critical")]
    assert (await kinds(env, res.incident_id)).count("page_queued") == 2  # type: ignore[arg-type]


async def test_an_open_trend_inhibits_stream_spike_pages_of_its_category(env: Env) -> None:
    async with env.engine.begin() as conn:
        rule = await silence_store.create_inhibit_rule(
            conn, source_match={"kind": ["trend"]}, target_match={"kind": ["spike"]}, equal=["category"],
            created_by="amy", comment="a platform-wide trend pages once", now=T0)
        trend = await apply_signal(conn, signal=sig("t1", kind="trend", stream=None), now=T0, routing=env.routing)
        spike = await apply_signal(conn, signal=sig("s1"), now=T0, routing=env.routing)
        hate = await apply_signal(conn, signal=sig("h1", stream="s2", category="hate"), now=T0,
                                  routing=env.routing)
    assert trend.notified == 3 and spike.created and spike.notified == 0 and hate.notified == 3
    async with env.engine.connect() as conn:
        timeline = await get_timeline(conn, incident_id=spike.incident_id)  # type: ignore[arg-type]
        row = await get_incident(conn, incident_id=spike.incident_id)  # type: ignore[arg-type]
    held = [t for t in timeline if t["kind"] == "page_inhibited"]
    assert held and held[0]["detail"]["rule_id"] == str(rule["id"])
    assert held[0]["detail"]["source_incident_id"] == str(trend.incident_id)
    assert row is not None and row["silenced_by"] is None
    # The trend ends: the spike's next page goes out.
    async with env.engine.begin() as conn:
        await apply_signal(conn, signal=sig("t2", kind="resolve", stream=None).model_copy(
            update={"dedup_key": "trend:violence"}), now=T0, routing=env.routing)
        later = await apply_signal(conn, signal=sig("s2", severity="SEV1"), now=T0, routing=env.routing)
    assert later.notified == 3
    async with env.engine.begin() as conn:
        assert await silence_store.delete_inhibit_rule(conn, rule_id=rule["id"])
        assert not await silence_store.delete_inhibit_rule(conn, rule_id=rule["id"])
        assert await silence_store.list_inhibit_rules(conn) == []


# ---- API -----------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def api(env: Env, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async def ok() -> None:
        return None

    app = create_app(ApiState(settings, env.engine, CollectorRegistry(), ok, routing=env.routing, clock=env.clock))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t", headers=AUTH) as c:
        yield c


def iso(d: datetime) -> str:
    return d.isoformat()


async def test_silence_api_crud_and_expiry_repages(api: httpx.AsyncClient, env: Env) -> None:
    body = {"matchers": {"category": ["violence"]}, "ends_at": iso(T0 + timedelta(hours=2)),
            "created_by": "amy", "comment": "raid in progress"}
    r = await api.post("/v1/silences", json=body)
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["state"] == "active" and s["starts_at"] == "2026-11-23T12:00:00Z" and s["matchers"] == {
        "category": ["violence"]}
    future = (await api.post("/v1/silences", json={**body, "starts_at": iso(T0 + timedelta(hours=1))})).json()
    assert future["state"] == "pending"
    assert {x["id"] for x in (await api.get("/v1/silences")).json()} == {future["id"], s["id"]}
    assert [x["id"] for x in (await api.get("/v1/silences", params={"active": "true"})).json()] == [s["id"]]
    assert (await api.get(f"/v1/silences/{s['id']}")).json()["comment"] == "raid in progress"

    async with env.engine.begin() as conn:
        res = await apply_signal(conn, signal=sig("a1"), now=T0, routing=env.routing)
    assert res.notified == 0
    r = await api.delete(f"/v1/silences/{s['id']}")
    assert r.status_code == 200 and r.json()["state"] == "expired"
    async with env.engine.connect() as conn:
        notes = await outbox.for_incident(conn, incident_id=res.incident_id)  # type: ignore[arg-type]
    assert sorted(n["channel"] for n in notes) == ["audit", "chat", "pd"]
    assert {n["kind"] for n in notes} == {"trigger"}

    missing = uuid.uuid4()
    for r in (await api.get(f"/v1/silences/{missing}"), await api.delete(f"/v1/silences/{missing}")):
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["status"] == 404 and str(missing) in r.json()["detail"]
    assert (await api.get("/v1/silences/not-a-uuid")).status_code == 422


@pytest.mark.parametrize("change, where", [
    ({"matchers": {}}, "at least one field"),
    ({"matchers": {"colour": ["red"]}}, "matchers.colour"),
    ({"matchers": {"category": []}}, "matchers.category"),
    ({"ends_at": "2026-11-23T13:00:00"}, "ends_at"),  # no offset
    ({"starts_at": "2026-11-23T13:00:00Z", "ends_at": "2026-11-23T12:30:00Z"}, "ends_at must be after"),
    ({"ends_at": "2026-11-23T11:00:00Z"}, "in the past"),
    ({"ends_at": "2027-02-01T00:00:00Z"}, "30 days"),
    ({"created_by": ""}, "created_by"),
    ({"comment": None}, "comment"),
    ({"extra": 1}, "extra"),
])
async def test_silence_api_rejects_bad_requests_with_clear_422s(
    api: httpx.AsyncClient, change: dict[str, object], where: str
) -> None:
    body: dict[str, object] = {"matchers": {"category": ["violence"]}, "ends_at": "2026-11-23T13:00:00Z",
                               "created_by": "amy", "comment": "c"}
    body.update(change)
    r = await api.post("/v1/silences", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert where in r.json()["detail"], r.json()


async def test_inhibit_rule_api_crud(api: httpx.AsyncClient) -> None:
    body = {"source_match": {"kind": ["trend"]}, "target_match": {"kind": ["spike"], "severity": ["SEV3", "SEV2"]},
            "equal": ["category"], "created_by": "amy", "comment": "trend pages once"}
    r = await api.post("/v1/inhibit-rules", json=body)
    assert r.status_code == 201, r.text
    rule = r.json()
    assert rule["target_match"] == {"kind": ["spike"], "severity": ["SEV2", "SEV3"]}
    assert [x["id"] for x in (await api.get("/v1/inhibit-rules")).json()] == [rule["id"]]
    for bad, where in (({"equal": ["colour"]}, "equal"), ({"equal": ["category", "category"]}, "twice"),
                       ({"source_match": {}}, "source_match"), ({"target_match": None}, "target_match")):
        r = await api.post("/v1/inhibit-rules", json={**body, **bad})
        assert r.status_code == 422 and where in r.json()["detail"], r.text
    assert (await api.delete(f"/v1/inhibit-rules/{rule['id']}")).status_code == 204
    r = await api.delete(f"/v1/inhibit-rules/{rule['id']}")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    assert (await api.get("/v1/inhibit-rules")).json() == []


async def test_a_silence_that_runs_out_pages_what_it_held_once(env: Env) -> None:
    from services.notifier.escalator import Escalator

    async with env.engine.begin() as conn:
        await silence_store.create_silence(
            conn, matchers={"stream_id": ["s1"]}, starts_at=T0, ends_at=T0 + timedelta(minutes=30),
            created_by="amy", comment="maintenance", now=T0)
        res = await apply_signal(conn, signal=sig("r1"), now=T0, routing=env.routing)
    assert res.notified == 0
    esc = Escalator(env.engine, env.routing, env.clock)
    env.clock.advance(timedelta(minutes=29))
    assert await esc.end_elapsed_silences() == 0  # still in force
    env.clock.advance(timedelta(minutes=2))
    assert await esc.end_elapsed_silences() == 1
    assert await esc.end_elapsed_silences() == 0  # ended once
    await drain(deliverer(env.engine, env.routing, env.http, env.clock), env.clock)
    pd = [r.json()["event_action"] for r in env.rec.requests if r.path == "/pd"]
    assert pd == ["trigger"]
    assert "page_queued" in await kinds(env, res.incident_id)  # type: ignore[arg-type]
