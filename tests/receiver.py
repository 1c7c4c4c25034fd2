"""A real local HTTP server standing in for PagerDuty, Slack and webhook endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)  # wall clock of arrival

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    """Records every request; answers ``fail_with`` for the next ``failures`` requests."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    failures: int = 0
    fail_with: int = 500
    hold: asyncio.Event | None = None  # when set, requests wait for it (a slow endpoint)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0  # requests being answered now
    most_in_flight: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: Request) -> JSONResponse:
        body = await request.body()
        self.arrived.set()
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.hold is not None:
                await self.hold.wait()
        finally:
            self.in_flight -= 1
        if self.failures > 0:
            self.failures -= 1
            return JSONResponse({"error": "try later"}, status_code=self.fail_with)
        self.requests.append(Received(request.url.path, dict(request.headers), body))
        return JSONResponse({"status": "success"}, status_code=202)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def, override]
        yield


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[int]:
    """Serve an ASGI app with uvicorn on a free local port (yielded) for the block."""
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)  # uvicorn exposes no start event
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def running_receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = Starlette(routes=[Route("/{path:path}", rec.handle, methods=["POST"])])
    async with serving(app) as port:
        rec.port = port
        try:
            yield rec
        finally:
            if rec.hold is not None:
                rec.hold.set()
