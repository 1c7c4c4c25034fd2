"""Dependencies of the API: the state the app was built with, and a DB connection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import Request
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

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


def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


async def get_conn(request: Request) -> AsyncIterator[AsyncConnection]:
    async with get_state(request).engine.connect() as conn:
        yield conn
