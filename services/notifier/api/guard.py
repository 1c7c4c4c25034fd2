"""The API's front door, one pure ASGI middleware: who is calling, then how much they send.

It runs before routing, so nothing reads, let alone parses, the body of a caller without a
valid key (401) or the scope (403), and no request body grows past ``api_max_body_bytes``:
a larger Content-Length is refused at once, and a body without one (chunked) is counted
while it arrives and refused with 413 as soon as it passes the limit.
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.notifier.api.deps import ApiState, check_key
from services.notifier.api.problems import problem


def _too_large(limit: int) -> str:
    return f"the request body exceeds the limit of {limit} bytes"


class Guard:
    """Authenticate /v1 requests and bound every request body, before the app sees either."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: ApiState = scope["app"].state.api  # read per request: tests rebind it
        headers = Headers(scope=scope)
        path: str = scope["path"]
        if path.startswith("/v1/"):
            try:
                principal = await check_key(state, method=scope["method"], path=path, headers=headers)
            except HTTPException as exc:
                await problem(exc.status_code, None, str(exc.detail), headers=exc.headers)(scope, receive, send)
                return
            scope.setdefault("state", {})["principal"] = principal  # request.state.principal

        limit = state.settings.api_max_body_bytes
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isascii() or not declared.isdigit():
                await problem(400, None, "Content-Length is not a number")(scope, receive, send)
                return
            if int(declared) > limit:
                await problem(413, None, _too_large(limit))(scope, receive, send)
                return
        received = 0

        async def bounded() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # raised inside the route's body read: FastAPI passes an HTTPException
                    # on, and the app's handler renders it as problem+json
                    raise HTTPException(413, _too_large(limit))
            return message

        await self.app(scope, bounded, send)
