"""The channel seam: turn a notification into one HTTP request, and classify the answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one delivery attempt did. ``retry`` False means it will never succeed (4xx)."""

    ok: bool
    retry: bool
    status: int | None
    error: str | None = None


class Channel(Protocol):
    """An integration that can deliver a notification."""

    name: str

    def request(self, notification: dict[str, Any]) -> httpx.Request: ...


def classify(response: httpx.Response | None, exc: Exception | None) -> Outcome:
    """2xx ok; 429 and 5xx and network errors retry; other 4xx are permanent."""
    if exc is not None:
        return Outcome(False, True, None, f"{type(exc).__name__}: {exc}"[:300])
    assert response is not None
    code = response.status_code
    if 200 <= code < 300:
        return Outcome(True, False, code)
    retry = code == 429 or code >= 500 or code == 408
    return Outcome(False, retry, code, response.text[:300])
