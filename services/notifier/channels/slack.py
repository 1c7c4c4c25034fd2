"""Slack-compatible incoming webhooks: one readable message per notification."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from services.notifier.routing import SlackChannel

EMOJI = {"trigger": ":rotating_light:", "update": ":arrow_up:", "acknowledge": ":eyes:",
         "resolve": ":white_check_mark:", "escalate": ":mega:"}


class Slack:
    """Channel for one incoming-webhook URL."""

    def __init__(self, name: str, cfg: SlackChannel) -> None:
        self.name = name
        self.cfg = cfg

    def request(self, n: dict[str, Any]) -> httpx.Request:
        inc = n["payload"]
        where = f"stream `{inc['stream_id']}`" if inc.get("stream_id") else "platform-wide"
        text = (
            f"{EMOJI.get(n['kind'], '')} *{n['kind'].upper()}* {inc['severity']} {inc['category']} "
            f"on {where}: {inc['reason']} (incident {inc['id']})"
        )
        if n["kind"] != "resolve" and inc.get("status") == "resolved":
            text += " (already resolved)"
        if inc.get("targets"):
            text += " paging " + ", ".join(inc["targets"])
        return httpx.Request(
            "POST", str(self.cfg.url), content=orjson.dumps({"text": text}),
            headers={"content-type": "application/json", "idempotency-key": n["key"]},
        )
