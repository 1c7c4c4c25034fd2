"""Dependencies of the API: the state the app was built with, and a DB connection."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
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


async def authorize(request: Request) -> None:
    """Every /v1 route needs a key: GET needs the read scope, anything else write, and
    /v1/admin routes admin. 401 without a valid key, 403 without the scope."""
    path = request.url.path
    if not path.startswith("/v1/"):
        return
    header = request.headers.get("authorization", "")
    key = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
    if not key:
        raise HTTPException(401, "an API key is required (Authorization: Bearer <key>)",
                            headers={"WWW-Authenticate": "Bearer"})
    principal = await _principal(get_state(request), key)
    if principal is None:
        raise HTTPException(401, "the API key is unknown or revoked", headers={"WWW-Authenticate": "Bearer"})
    scope = "admin" if path.startswith("/v1/admin") else "read" if request.method in ("GET", "HEAD") else "write"
    if not principal.allows(scope):
        raise HTTPException(403, f"this key lacks the {scope!r} scope")
    request.state.principal = principal


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
