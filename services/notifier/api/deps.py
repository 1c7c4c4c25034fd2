"""Dependencies of the API: the state the app was built with, and a DB connection."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from fastapi import HTTPException, Request
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.notifier.auth import Principal, authenticate
from services.notifier.routing import Routing
from shared.clock import Clock, SystemClock
from shared.settings import Settings


@dataclass(frozen=True)
class ApiState:
    """What the API needs; owned by whoever built the app."""

    settings: Settings
    engine: AsyncEngine
    registry: CollectorRegistry
    broker_check: Callable[[], Awaitable[object]]
    routing: Routing | None = None
    clock: Clock = field(default_factory=SystemClock)
    on_enqueued: Callable[[], None] | None = None
    auth_cache: dict[str, tuple[float, Principal | None]] = field(default_factory=dict)


def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


async def get_conn(request: Request) -> AsyncIterator[AsyncConnection]:
    """A connection for reads, in autocommit: no BEGIN/ROLLBACK round trips per request."""
    async with get_state(request).engine.connect() as conn:
        yield await conn.execution_options(isolation_level="AUTOCOMMIT")


PUBLIC = ("/healthz", "/readyz", "/metrics")


async def check_key(state: ApiState, *, method: str, path: str, headers: Mapping[str, str]) -> Principal:
    """Every /v1 route needs a key: GET needs the read scope, anything else write, and
    /v1/admin routes admin. HTTPException 401 without a valid key, 403 without the scope.

    The guard middleware calls this before anything reads the request body."""
    header = headers.get("authorization", "")
    key = header[7:].strip() if header.lower().startswith("bearer ") else headers.get("x-api-key", "")
    if not key:
        raise HTTPException(401, "an API key is required (Authorization: Bearer <key>)",
                            headers={"WWW-Authenticate": "Bearer"})
    principal = await _principal(state, key)
    if principal is None:
        raise HTTPException(401, "the API key is unknown or revoked", headers={"WWW-Authenticate": "Bearer"})
    scope = "admin" if path.startswith("/v1/admin") else "read" if method in ("GET", "HEAD") else "write"
    if not principal.allows(scope):
        raise HTTPException(403, f"this key lacks the {scope!r} scope")
    return principal


async def authorize(request: Request) -> None:
    """The /v1 routes' dependency: the guard middleware has checked the key already (before
    the body was read); an app without the guard still gets the same check here."""
    path = request.url.path
    if not path.startswith("/v1/") or getattr(request.state, "principal", None) is not None:
        return
    request.state.principal = await check_key(get_state(request), method=request.method, path=path,
                                              headers=request.headers)


AUTH_CACHE_S = 5.0  # a revoked key stops working within this long, and a request costs one query


async def _principal(state: ApiState, key: str) -> Principal | None:
    cache = state.auth_cache
    now = time.monotonic()
    hit = cache.get(key)
    if hit is not None and now - hit[0] < AUTH_CACHE_S:
        return hit[1]
    async with state.engine.connect() as conn:
        principal = await authenticate(conn, key=key)
    if len(cache) > 10_000:
        cache.clear()  # bounded: a flood of random keys cannot grow it
    cache[key] = (now, principal)
    return principal
