"""The incidents API against real Postgres: filters, keyset pagination, errors, health."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from services.notifier.api.app import create_app
from services.notifier.api.schemas import IncidentOut
from services.notifier.api.deps import ApiState
from services.notifier.store import apply_signal
from shared.db import open_engine
from shared.events import Category, Severity, Signal
from shared.settings import Settings

from tests.conftest import AUTH

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def signal(i: int, *, stream: str, category: str = "violence", severity: str = "SEV3") -> Signal:
    return Signal(
        signal_id=f"sig-{stream}-{i}", kind="spike", dedup_key=f"spike:{stream}:{category}",
        stream_id=stream, category=Category(category), severity=Severity(severity), score=0.5,
        observed_at=T0, window_start=T0, report_count=10, reason="test",
    )


async def broker_ok() -> None:
    return None


async def broker_down() -> None:
    raise ConnectionError("no broker")


@pytest_asyncio.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with open_engine(settings) as engine:
        async with engine.begin() as conn:
            for i in range(25):
                await apply_signal(
                    conn,
                    signal=signal(i, stream=f"s{i:02d}", category="hate" if i % 5 == 0 else "violence",
                                  severity="SEV1" if i % 10 == 0 else "SEV3"),
                    now=T0 + timedelta(seconds=i // 2),  # ties in detected_at on purpose
                )
        app = create_app(ApiState(settings, engine, CollectorRegistry(), broker_ok))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t", headers=AUTH) as c:
            yield c


async def test_keyset_pagination_walks_every_incident_once_newest_first(api: httpx.AsyncClient) -> None:
    seen: list[dict] = []  # type: ignore[type-arg]
    cursor = None
    pages = 0
    while True:
        params = {"limit": 7} | ({"cursor": cursor} if cursor else {})
        body = (await api.get("/v1/incidents", params=params)).json()
        seen += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 4 and len(seen) == 25
    assert len({i["id"] for i in seen}) == 25
    keys = [(i["detected_at"], i["id"]) for i in seen]
    assert keys == sorted(keys, reverse=True)


async def walk(api: httpx.AsyncClient, **params: str) -> list[dict]:  # type: ignore[type-arg]
    seen: list[dict] = []  # type: ignore[type-arg]
    cursor = None
    while True:
        body = (await api.get("/v1/incidents", params={"limit": 4, **params}
                              | ({"cursor": cursor} if cursor else {}))).json()
        seen += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


async def test_sorts_page_through_every_incident_once_in_order(api: httpx.AsyncClient) -> None:
    oldest = await walk(api, sort="detected_at")
    keys = [(i["detected_at"], i["id"]) for i in oldest]
    assert len(set(keys)) == 25 and keys == sorted(keys)
    worst = await walk(api, sort="severity")
    assert len({i["id"] for i in worst}) == 25
    assert [i["severity"] for i in worst] == ["SEV1"] * 3 + ["SEV3"] * 22
    sev3 = [(i["detected_at"], i["id"]) for i in worst[3:]]
    assert sev3 == sorted(sev3, reverse=True)
    hate = await walk(api, sort="severity", category="hate")
    assert [i["stream_id"] for i in hate] == ["s20", "s10", "s00", "s15", "s05"]


async def test_a_cursor_only_continues_its_own_sort(api: httpx.AsyncClient) -> None:
    first = (await api.get("/v1/incidents", params={"limit": 3, "sort": "severity"})).json()
    r = await api.get("/v1/incidents", params={"cursor": first["next_cursor"]})
    assert r.status_code == 400 and "sort=severity" in r.json()["detail"]
    assert (await api.get("/v1/incidents", params={"sort": "viewers"})).status_code == 422


async def test_list_items_render_exactly_as_the_incident_model(api: httpx.AsyncClient) -> None:
    """The list is serialised without pydantic for speed: it must say what IncidentOut says."""
    items = (await api.get("/v1/incidents", params={"limit": 200})).json()["items"]
    assert len(items) == 25
    for item in items:
        one = await api.get(f"/v1/incidents/{item['id']}")
        assert one.status_code == 200
        assert item == one.json()
        assert IncidentOut.model_validate(item).model_dump(mode="json") == item


async def test_filters(api: httpx.AsyncClient) -> None:
    hate = (await api.get("/v1/incidents", params={"category": "hate"})).json()["items"]
    assert len(hate) == 5 and {i["category"] for i in hate} == {"hate"}
    sev1 = (await api.get("/v1/incidents", params={"severity": "SEV1"})).json()["items"]
    assert {i["stream_id"] for i in sev1} == {"s00", "s10", "s20"}
    one = (await api.get("/v1/incidents", params={"stream_id": "s07", "status": "triggered"})).json()
    assert [i["stream_id"] for i in one["items"]] == ["s07"] and one["next_cursor"] is None
    none = (await api.get("/v1/incidents", params={"status": "resolved"})).json()
    assert none == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/incidents?severity=SEV9", 422),
        ("/v1/incidents?status=open", 422),
        ("/v1/incidents?category=bogus", 422),
        ("/v1/incidents?limit=0", 422),
        ("/v1/incidents?limit=100000", 422),
        ("/v1/incidents?cursor=not-a-cursor", 400),
        ("/v1/incidents/not-a-uuid", 422),
        ("/v1/incidents/00000000-0000-0000-0000-000000000000", 404),
        ("/v1/incidents/00000000-0000-0000-0000-000000000000/timeline", 404),
        ("/v1/nothing-here", 404),
    ],
)
async def test_bad_requests_get_problem_json(api: httpx.AsyncClient, path: str, status: int) -> None:
    r = await api.get(path)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["title"] and body.get("detail")


async def test_health_ready_metrics_docs(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok", "checks": {}}
    ready = await api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    assert (await api.get("/metrics")).status_code == 200
    spec = (await api.get("/openapi.json")).json()
    assert {"/v1/incidents", "/v1/incidents/{incident_id}", "/readyz"} <= set(spec["paths"])
    assert (await api.get("/docs")).status_code == 200


async def test_readyz_says_which_dependency_is_down(settings: Settings) -> None:
    async with open_engine(settings) as engine:
        app = create_app(ApiState(settings, engine, CollectorRegistry(), broker_down))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t", headers=AUTH) as c:
            r = await c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["database"] == "ok"
    assert r.json()["checks"]["broker"].startswith("unavailable")


async def test_every_v1_route_needs_a_key_and_the_right_scope(settings: Settings) -> None:
    from tests.conftest import READ_KEY, WRITE_KEY

    async with open_engine(settings) as engine:
        app = create_app(ApiState(settings, engine, CollectorRegistry(), broker_ok))
        spec = app.openapi()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
            zero = "00000000-0000-0000-0000-000000000000"
            for path, item in spec["paths"].items():
                url = path.replace("{incident_id}", zero)
                for method in item:
                    if not path.startswith("/v1/"):
                        continue
                    anonymous = await c.request(method, url, json={})
                    assert anonymous.status_code == 401, (method, path)
                    assert anonymous.headers["www-authenticate"] == "Bearer"
                    bogus = await c.request(method, url, json={}, headers={"Authorization": "Bearer lt_nope_x"})
                    assert bogus.status_code == 401, (method, path)
                    reader = await c.request(method, url, json={}, headers={"X-API-Key": READ_KEY})
                    if method == "get":
                        assert reader.status_code != 401 and reader.status_code != 403, (method, path)
                    else:
                        assert reader.status_code == 403, (method, path)
                        assert reader.json()["detail"] == "this key lacks the 'write' scope"
            assert (await c.get("/healthz")).status_code == 200  # health stays open
            writer = await c.post(f"/v1/incidents/{zero}/notes", json={"text": "hi"},
                                  headers={"Authorization": f"Bearer {WRITE_KEY}"})
            assert writer.status_code == 404  # allowed through; the incident does not exist


async def test_the_actor_defaults_to_the_key_name(api: httpx.AsyncClient) -> None:
    inc = (await api.get("/v1/incidents", params={"limit": 1})).json()["items"][0]
    r = await api.post(f"/v1/incidents/{inc['id']}/acknowledge", json={})
    assert r.status_code == 200 and r.json()["acknowledged_by"] == "test-admin"
    again = await api.post(f"/v1/incidents/{inc['id']}/resolve", json={"actor": "amy", "note": "ok"})
    assert again.json()["status"] == "resolved" and again.json()["resolved_by"] == "amy"
    late = await api.post(f"/v1/incidents/{inc['id']}/acknowledge", json={})
    assert late.status_code == 409 and late.headers["content-type"].startswith("application/problem+json")
    tl = [e["kind"] for e in (await api.get(f"/v1/incidents/{inc['id']}/timeline")).json()]
    assert tl[-2:] == ["acknowledged", "resolved"]


async def test_region_and_time_filters_reassign_and_severity_history(api: httpx.AsyncClient) -> None:
    everything = (await api.get("/v1/incidents", params={"limit": 200})).json()["items"]
    first = everything[-1]["detected_at"]
    later = (await api.get("/v1/incidents", params={"limit": 200, "since": everything[5]["detected_at"]})).json()
    assert all(i["detected_at"] >= everything[5]["detected_at"] for i in later["items"])
    assert 0 < len(later["items"]) < len(everything)
    before = (await api.get("/v1/incidents", params={"limit": 200, "until": everything[0]["detected_at"]})).json()
    assert all(i["detected_at"] < everything[0]["detected_at"] for i in before["items"])
    assert first in {i["detected_at"] for i in before["items"]}
    assert (await api.get("/v1/incidents", params={"region": "Germany"})).status_code == 422
    assert (await api.get("/v1/incidents", params={"since": "2026-01-01T00:00:00"})).status_code == 422
    assert (await api.get("/v1/incidents", params={"region": "ZZ"})).json()["items"] == []

    inc = everything[0]
    r = await api.post(f"/v1/incidents/{inc['id']}/reassign", json={"assignee": "bo"})
    assert r.status_code == 200 and r.json()["assignee"] == "bo"
    tl = (await api.get(f"/v1/incidents/{inc['id']}/timeline")).json()
    assert tl[-1]["kind"] == "reassigned" and tl[-1]["detail"] == {"from": None, "to": "bo"}
    hist = (await api.get(f"/v1/incidents/{inc['id']}/severity")).json()
    assert [h["severity"] for h in hist] == [inc["severity"]]


async def test_stats_for_program_managers(api: httpx.AsyncClient) -> None:
    items = (await api.get("/v1/incidents", params={"limit": 3})).json()["items"]
    await api.post(f"/v1/incidents/{items[0]['id']}/acknowledge", json={})
    await api.post(f"/v1/incidents/{items[1]['id']}/resolve", json={})
    window = {"since": "2026-11-23T00:00:00Z", "until": "2026-11-24T00:00:00Z"}
    body = (await api.get("/v1/stats", params=window)).json()
    assert body["incidents"] == 25
    assert body["by"]["category"] == {"hate": 5, "violence": 20}
    assert body["by"]["severity"] == {"SEV1": 3, "SEV3": 22}
    assert body["by"]["status"] == {"triggered": 23, "acknowledged": 1, "resolved": 1}
    assert body["mtta_s"] is not None and body["mttr_s"] is not None
    rows = {(r["severity"], r["category"]): r for r in body["sla"]}
    assert sum(r["incidents"] for r in rows.values()) == 25
    assert all(0 <= r["ack_share"] <= 1 for r in rows.values())
    assert (await api.get("/v1/stats", params={"since": "2026-11-24T00:00:00Z",
                                              "until": "2026-11-23T00:00:00Z"})).status_code == 400
    empty = (await api.get("/v1/stats", params={"since": "2020-01-01T00:00:00Z",
                                               "until": "2020-01-02T00:00:00Z"})).json()
    assert empty["incidents"] == 0 and empty["mtta_s"] is None and empty["sla"] == []


async def test_rate_series_for_the_chart(settings: Settings) -> None:
    from shared.events import RatePoint, RateSeries

    def rate(*points: tuple[int, int]) -> RateSeries:
        return RateSeries(hop_s=10, window_s=60, baseline=3.0, upper=12.0,
                          points=[RatePoint(at=T0 + timedelta(seconds=s), count=c) for s, c in points])

    opened = signal(0, stream="chart").model_copy(update={"rate": rate((-50, 0), (-40, 1), (-10, 9), (0, 14))})

    def progress(at_s: int, count: int) -> Signal:
        return opened.model_copy(update={
            "signal_id": f"spike:chart:violence:p{at_s}", "kind": "progress",
            "observed_at": T0 + timedelta(seconds=at_s + 10), "rate": rate((at_s, count))})

    async with open_engine(settings) as engine:
        async with engine.begin() as conn:
            first = await apply_signal(conn, signal=opened, now=T0)
            # a redelivery changes nothing; a pane seen again with more reports (the opening
            # signal saw it filling) keeps the larger count
            for s in (progress(10, 20), progress(20, 18), progress(10, 20), progress(0, 16)):
                assert (await apply_signal(conn, signal=s, now=T0)).incident_id == first.incident_id
        app = create_app(ApiState(settings, engine, CollectorRegistry(), broker_ok))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t", headers=AUTH) as c:
            body = (await c.get(f"/v1/incidents/{first.incident_id}/rate")).json()
            assert body["hop_s"] == 10 and body["baseline_per_minute"] == 3.0 and body["upper_per_minute"] == 12.0
            assert [(p["count"], p["per_minute"]) for p in body["points"]] == [
                (0, 0.0), (1, 6.0), (9, 54.0), (16, 96.0), (20, 120.0), (18, 108.0)]
            inc = (await c.get(f"/v1/incidents/{first.incident_id}")).json()
            assert inc["last_signal_at"] == "2026-11-23T12:00:30Z"  # progress keeps it from going quiet
            assert (await c.get("/v1/incidents/00000000-0000-0000-0000-000000000000/rate")).status_code == 404
        async with engine.begin() as conn:  # nothing open any more: progress changes nothing
            await apply_signal(conn, signal=opened.model_copy(update={"signal_id": "r", "kind": "resolve"}), now=T0)
            late = await apply_signal(conn, signal=progress(30, 5), now=T0)
            assert late.incident_id is None


# --- bad input found by an outside fuzzer: refused with 4xx, never a 500 -------------------


def cursor_at(ts: str, *rest: str) -> str:
    import base64
    import orjson

    payload = [ts, "00000000-0000-0000-0000-000000000001", *rest]
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/stats?until=0001-01-01T00:00:00Z",  # until - 7 days overflowed
        "/v1/stats?until=9999-12-31T23:59:59-23:59",  # year 10000 in UTC
        "/v1/stats?since=1969-12-31T23:59:59Z&until=1970-01-02T00:00:00Z",
        "/v1/incidents?since=9999-12-31T23:59:59-23:59",
        "/v1/incidents?until=0001-01-01T00:00:00%2B23:59",
        "/v1/incidents?since=9001-01-01T00:00:00Z",
        "/v1/incidents?until=1970-01-01T00:59:59%2B01:00",  # 1969 in UTC
    ],
)
async def test_times_outside_the_accepted_range_are_422(api: httpx.AsyncClient, path: str) -> None:
    r = await api.get(path)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert "between 1970-01-01T00:00:00Z and 9000-12-31T23:59:59Z" in r.json()["detail"]


async def test_times_at_the_edges_of_the_range_are_accepted(api: httpx.AsyncClient) -> None:
    r = await api.get("/v1/incidents", params={"since": "1970-01-01T00:00:00Z", "until": "9000-12-31T23:59:59Z"})
    assert r.status_code == 200 and len(r.json()["items"]) == 25
    r = await api.get("/v1/incidents", params={"since": "1970-01-01T01:00:00+01:00",
                                              "until": "9000-12-31T23:59:59-00:00"})
    assert r.status_code == 200
    r = await api.get("/v1/stats", params={"until": "1970-01-01T00:00:00Z"})  # since: 7 days before, fine
    assert r.status_code == 200 and r.json()["incidents"] == 0
    r = await api.get("/v1/stats", params={"since": "9000-12-01T00:00:00Z", "until": "9000-12-31T23:59:59Z"})
    assert r.status_code == 200


@pytest.mark.parametrize(
    "cursor",
    [
        cursor_at("9999-12-31T23:59:59-23:59"),
        cursor_at("0001-01-01T00:00:00+23:59"),
        cursor_at("0001-01-01T00:00:00+00:00"),
        cursor_at("1969-12-31T23:59:59+00:00"),
        cursor_at("9001-01-01T00:00:00+00:00"),
    ],
)
async def test_cursors_outside_the_range_are_bad_cursors(api: httpx.AsyncClient, cursor: str) -> None:
    r = await api.get("/v1/incidents", params={"cursor": cursor})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json" and "cursor" in r.json()["detail"]
    for sort in ("detected_at", "severity"):
        tail = (sort, "SEV1") if sort == "severity" else (sort,)
        r = await api.get("/v1/incidents", params={"cursor": cursor_at(cursor_ts(cursor), *tail), "sort": sort})
        assert r.status_code == 400, (sort, r.text)


def cursor_ts(cursor: str) -> str:
    import base64
    import orjson

    return orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))[0]


async def test_silence_times_outside_the_range_are_422(api: httpx.AsyncClient) -> None:
    body = {"matchers": {"category": ["hate"]}, "created_by": "amy", "comment": "far future",
            "starts_at": "9999-12-01T00:00:00-23:59", "ends_at": "9999-12-31T23:59:59-23:59"}
    r = await api.post("/v1/silences", json=body)
    assert r.status_code == 422 and "between 1970" in r.json()["detail"], r.text
    r = await api.post("/v1/silences", json={**body, "starts_at": None, "ends_at": "0001-01-01T00:00:00+23:59"})
    assert r.status_code == 422 and "between 1970" in r.json()["detail"], r.text


@pytest.mark.parametrize("value", [" 5", "5 ", "5.0", "+5", "1e1", "0x5", "5_0", "\u0665", "５", ""])
async def test_integer_parameters_are_written_in_digits(api: httpx.AsyncClient, value: str) -> None:
    for path in ("/v1/incidents", "/v1/silences"):
        r = await api.get(path, params={"limit": value})
        assert r.status_code == 422, (path, value, r.status_code)
        assert r.headers["content-type"] == "application/problem+json"
    assert (await api.get("/v1/incidents", params={"limit": "5"})).json()["items"][4]
    assert (await api.get("/v1/incidents", params={"limit": "-5"})).status_code == 422


# --- the key first, then a bounded body ---------------------------------------------------


class Counting:
    """A request body that says how much of it was pulled."""

    def __init__(self, total: int, chunk: int = 64 * 1024) -> None:
        self.total, self.chunk, self.pulled = total, chunk, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"text":"'
        while self.pulled < self.total:
            self.pulled += self.chunk
            yield b"x" * self.chunk
        yield b'"}'


@pytest_asyncio.fixture
async def small_limit(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with open_engine(settings) as engine:
        app = create_app(ApiState(settings.model_copy(update={"api_max_body_bytes": 256 * 1024}), engine,
                                  CollectorRegistry(), broker_ok))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
            yield c


NOTES = "/v1/incidents/00000000-0000-0000-0000-000000000000/notes"
JSON = {"Content-Type": "application/json"}


async def test_the_key_is_checked_before_the_body_is_read(small_limit: httpx.AsyncClient) -> None:
    from tests.conftest import READ_KEY

    for headers, status in (({}, 401), ({"Authorization": "Bearer lt_nope0000_" + "x" * 40}, 401),
                            ({"X-API-Key": READ_KEY}, 403)):
        body = Counting(9 * 1024 * 1024)
        r = await small_limit.post(NOTES, content=body, headers={**JSON, **headers})
        assert r.status_code == status and body.pulled == 0, (headers, r.status_code, body.pulled)
        assert r.headers["content-type"] == "application/problem+json"
        # a broken body is never parsed: the missing key is the answer
        broken = await small_limit.post(NOTES, content=b'{"text": nope', headers={**JSON, **headers})
        assert broken.status_code == status, (headers, broken.status_code)


async def test_bodies_over_the_limit_are_413_while_they_arrive(small_limit: httpx.AsyncClient) -> None:
    from tests.conftest import WRITE_KEY

    key = {"Authorization": f"Bearer {WRITE_KEY}"}
    # declared too large: refused before a byte is read
    body = Counting(50 * 1024 * 1024)
    r = await small_limit.post(NOTES, content=body,
                               headers={**JSON, **key, "Content-Length": str(50 * 1024 * 1024 + 11)})
    assert r.status_code == 413 and body.pulled == 0, (r.status_code, body.pulled)
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == "the request body exceeds the limit of 262144 bytes"
    # chunked, no length: counted as it arrives, refused just past the limit
    body = Counting(50 * 1024 * 1024)
    r = await small_limit.post(NOTES, content=body, headers={**JSON, **key})
    assert r.status_code == 413, (r.status_code, r.text[:200])
    assert r.headers["content-type"] == "application/problem+json"
    assert 256 * 1024 <= body.pulled <= 256 * 1024 + body.chunk
    # under the limit it goes through to the route (no such incident)
    ok = await small_limit.post(NOTES, json={"text": "y" * 3000}, headers=key)
    assert ok.status_code == 404, ok.text
    assert (await small_limit.post(NOTES, content=b"{}", headers={**JSON, **key, "Content-Length": "x"})
            ).status_code == 400


def test_the_default_body_limit_is_a_mebibyte() -> None:
    assert Settings().api_max_body_bytes == 1024 * 1024
