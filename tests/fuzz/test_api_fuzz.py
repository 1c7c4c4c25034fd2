"""The incidents API fuzzed from its own OpenAPI document (schemathesis), against real
Postgres: no 5xx, responses as documented; every /v1 route needs a key; injection-looking
filters and oversized bodies are refused cleanly."""

from __future__ import annotations

import re
from urllib.parse import quote
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from services.notifier.api.app import create_app
from services.notifier.api.deps import ApiState
from services.notifier.store import apply_signal
from shared.db import async_url, open_engine
from shared.events import Category, Severity, Signal
from shared.settings import Settings
from tests.conftest import AUTH

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import (  # noqa: E402
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.integration
T0 = datetime.now(UTC) - timedelta(hours=1)


async def broker_ok() -> None:
    return None


def _unbound_state() -> ApiState:
    """A stand-in until a test binds the app to its database: the document needs none."""
    engine = create_async_engine("postgresql+asyncpg://unbound/none", poolclass=NullPool)
    return ApiState(Settings(), engine, CollectorRegistry(), broker_ok)


# Built at import: schemathesis's lazy ``from_fixture`` loader fails on pytest 9 (it sets
# ``Item._nodeid``, gone in pytest 9), so the schema is loaded eagerly and each test binds
# the one app to its own fresh database through ``app.state.api``.
APP = create_app(_unbound_state())
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest_asyncio.fixture
async def api_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The real app on a fresh database holding a few incidents.

    NullPool: schemathesis drives the ASGI app from a thread with an event loop per request,
    and an asyncpg connection belongs to the loop that opened it.
    """
    async with open_engine(settings) as seed, seed.begin() as conn:
        for i in range(4):
            await apply_signal(conn, now=T0, signal=Signal(
                signal_id=f"sig-{i}", kind="spike", dedup_key=f"spike:s{i}:hate", stream_id=f"s{i}",
                category=Category.hate, severity=Severity.SEV2, score=0.6, observed_at=T0,
                window_start=T0, report_count=9, reason="seeded"))
    engine = create_async_engine(async_url(settings.require_database()), poolclass=NullPool)
    unbound = APP.state.api
    APP.state.api = ApiState(settings, engine, CollectorRegistry(), broker_ok)
    try:
        yield APP
    finally:
        APP.state.api = unbound
        await engine.dispose()


@schema.parametrize()
@hypothesis_settings(max_examples=12, deadline=None, derandomize=True,
                     suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi(case, api_app: FastAPI) -> None:  # type: ignore[no-untyped-def]
    case.call_and_validate(
        headers=AUTH,
        checks=[not_a_server_error, response_schema_conformance, status_code_conformance],
    )


@pytest_asyncio.fixture
async def http(api_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(api_app), base_url="http://t") as c:
        yield c


def _routes(routes: list[Any]) -> Iterator[Any]:
    """Every endpoint route; FastAPI >= 0.165 keeps included routers nested."""
    for r in routes:
        inner = getattr(r, "original_router", None)
        if inner is not None:
            yield from _routes(inner.routes)
        elif hasattr(r, "methods") and hasattr(r, "path"):
            yield r


async def test_every_v1_route_needs_a_key(api_app: FastAPI, http: httpx.AsyncClient) -> None:
    paths = api_app.openapi()["paths"]
    v1 = {(m.upper(), p) for p, ops in paths.items() if p.startswith("/v1/") for m in ops}
    routed = {(m, r.path) for r in _routes(api_app.routes) if r.path.startswith("/v1/")
              for m in r.methods if m != "HEAD"}
    assert v1 == routed and len(v1) > 10  # the document covers every route
    for method, path in sorted(v1):
        url = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
        for headers in ({}, {"Authorization": "Bearer lt_nope0000_" + "x" * 40}, {"X-API-Key": "nope"},
                        {"Authorization": "Basic YWRtaW46YWRtaW4="}):
            r = await http.request(method, url, headers=headers, json={})
            assert r.status_code == 401, (method, url, headers, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.headers["www-authenticate"] == "Bearer"


INJECTIONS = ["x' OR 1=1 --", "'; DROP TABLE incidents; --", "\" OR \"\"=\"", "1) OR (1=1",
              "%' OR '%'='", "s0' UNION SELECT * FROM api_keys --", "\\", "\x00", "' OR pg_sleep(5) --"]


FILTERS = ["stream_id", "region", "status", "severity", "category", "since", "until", "sort", "cursor",
           "limit"]


@pytest.mark.parametrize("value", INJECTIONS)
async def test_injection_looking_input_is_harmless(http: httpx.AsyncClient, value: str) -> None:
    for param in FILTERS:
        r = await http.get("/v1/incidents", params={param: value}, headers=AUTH)
        # 400: a cursor that does not decode
        assert r.status_code in (200, 400, 422), (param, value, r.status_code, r.text)
        if r.status_code == 200:
            assert r.json() == {"items": [], "next_cursor": None}
        else:
            assert r.headers["content-type"] == "application/problem+json"
    for path in ("/v1/incidents/{}", "/v1/incidents/{}/timeline", "/v1/silences/{}"):
        r = await http.get(path.format(quote(value, safe="")), headers=AUTH)
        assert r.status_code == 422, (path, value, r.status_code)
    r = await http.post("/v1/silences", headers=AUTH, json={
        "matchers": {"stream_id": [value]}, "ends_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        "created_by": value, "comment": value})
    assert r.status_code in (201, 422), (value, r.status_code, r.text)
    # and the table is still there, whole
    assert len((await http.get("/v1/incidents", headers=AUTH)).json()["items"]) == 4


BIG = 2 * 1024 * 1024


@pytest.mark.parametrize("path", ["/v1/silences", "/v1/inhibit-rules",
                                  "/v1/incidents/00000000-0000-0000-0000-000000000000/notes"])
async def test_two_megabyte_bodies_are_refused(http: httpx.AsyncClient, path: str) -> None:
    for body in (b'{"text":"' + b"x" * BIG + b'"}', b"[" + b"1," * (BIG // 2) + b"1]",
                 b"[" * (BIG // 2) + b"]" * (BIG // 2)):
        r = await http.post(path, content=body, headers={**AUTH, "Content-Type": "application/json"},
                            timeout=30)
        assert r.status_code == 413, (r.status_code, r.text[:300])  # over api_max_body_bytes (1 MiB)
        assert r.headers["content-type"] == "application/problem+json"
        # without a key the answer is 401, whatever the body
        anonymous = await http.post(path, content=body, headers={"Content-Type": "application/json"})
        assert anonymous.status_code == 401, anonymous.status_code
