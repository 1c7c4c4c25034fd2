"""Generic JSON webhooks signed with HMAC-SHA256.

Headers: ``X-Livetriage-Timestamp`` (unix seconds), ``X-Livetriage-Signature``
(``sha256=`` + hex HMAC of ``timestamp + "." + body`` with the channel secret), and
``Idempotency-Key`` (the notification's key: the same on every retry).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import httpx
import orjson

from services.notifier.routing import WebhookChannel


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class Webhook:
    """Channel for one signed webhook endpoint."""

    def __init__(self, name: str, cfg: WebhookChannel) -> None:
        self.name = name
        self.cfg = cfg

    def request(self, n: dict[str, Any]) -> httpx.Request:
        body = orjson.dumps({"key": n["key"], "kind": n["kind"], "incident": n["payload"]})
        ts = str(int(time.time()))
        return httpx.Request(
            "POST", str(self.cfg.url), content=body,
            headers={
                "content-type": "application/json",
                "idempotency-key": n["key"],
                "x-livetriage-timestamp": ts,
                "x-livetriage-signature": sign(self.cfg.secret, ts, body),
            },
        )
