"""Dependencies of the API: the state the app was built with, and a DB connection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.settings import Settings


@dataclass(frozen=True)
class ApiState:
    """What the API needs; owned by whoever built the app."""

    settings: Settings
    engine: AsyncEngine
    registry: CollectorRegistry
    broker_check: Callable[[], Awaitable[object]]


def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


async def get_conn(request: Request) -> AsyncIterator[AsyncConnection]:
    async with get_state(request).engine.connect() as conn:
        yield conn
