"""RFC 9457 problem details: the one shape of every API error, from a route or the guard."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi.responses import JSONResponse

PROBLEM_JSON = "application/problem+json"
TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
          405: "Method Not Allowed", 409: "Conflict", 413: "Content Too Large", 422: "Invalid request"}


def problem(status: int, title: str | None, detail: str | None, errors: list[Any] | None = None,
            headers: Mapping[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title or TITLES.get(status, "Error"), "status": status}
    if detail:
        body["detail"] = detail
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)
