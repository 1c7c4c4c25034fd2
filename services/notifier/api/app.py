"""The FastAPI application: incidents API, health, metrics, RFC 9457 errors."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.notifier.api.console import mount_console
from services.notifier.api.deps import ApiState, authorize
from services.notifier.api.guard import Guard
from services.notifier.api.problems import problem
from services.notifier.api.routes import router
from services.notifier.api.silence_routes import router as silence_router

# PostgreSQL refuses U+0000 in text and jsonb (22021 character_not_in_repertoire, 22P05
# untranslatable_character): input a client sent, so a 422, not a 500.
BAD_TEXT_SQLSTATES = frozenset({"22021", "22P05"})


def _problem(status: int, title: str | None, detail: str | None, errors: list[Any] | None = None) -> JSONResponse:
    return problem(status, title, detail, errors)


def create_app(state: ApiState) -> FastAPI:
    """Build the app around resources the caller owns (engine, registry, broker check)."""
    app = FastAPI(
        title="livetriage",
        version="0.1.0",
        description="Incidents raised from live-stream reports. Errors are RFC 9457 problem+json.",
    )
    app.state.api = state
    app.include_router(router, dependencies=[Depends(authorize)])
    app.include_router(silence_router, dependencies=[Depends(authorize)])
    mount_console(app)  # /console/ (public static files), / redirects there, GET /v1/whoami
    # the key is checked, and the body bounded, before any route reads a byte of it
    app.add_middleware(Guard)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        resp = _problem(exc.status_code, None, str(exc.detail))
        if exc.headers:
            resp.headers.update(exc.headers)
        return resp

    @app.exception_handler(DBAPIError)
    async def database_error(_: Request, exc: DBAPIError) -> JSONResponse:
        if getattr(exc.orig, "sqlstate", None) in BAD_TEXT_SQLSTATES:
            return _problem(422, "Invalid request", "text must not contain NUL (U+0000) characters")
        raise exc  # anything else is ours: a 500

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
        return _problem(422, "Invalid request", detail, errors)

    return app
