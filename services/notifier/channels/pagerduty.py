"""PagerDuty Events API v2: trigger / acknowledge / resolve keyed by the incident's dedup key,
so PagerDuty itself folds repeats of the same page into one alert."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from services.notifier.routing import PagerDutyChannel

PD_SEVERITY = {"SEV1": "critical", "SEV2": "error", "SEV3": "warning", "SEV4": "info"}
PD_ACTION = {"trigger": "trigger", "update": "trigger", "acknowledge": "acknowledge", "resolve": "resolve",
             "escalate": "trigger"}  # same dedup_key: PagerDuty folds it into the open alert


class PagerDuty:
    """Channel for one PagerDuty service (routing key)."""

    def __init__(self, name: str, cfg: PagerDutyChannel) -> None:
        self.name = name
        self.cfg = cfg

    def request(self, n: dict[str, Any]) -> httpx.Request:
        inc = n["payload"]
        body: dict[str, Any] = {
            "routing_key": self.cfg.routing_key,
            "event_action": PD_ACTION[n["kind"]],
            "dedup_key": inc["dedup_key"],
        }
        if body["event_action"] == "trigger":
            body["payload"] = {
                "summary": f"[{inc['severity']}] {inc['reason']}"[:1024],
                "source": inc.get("stream_id") or "livetriage",
                "severity": PD_SEVERITY.get(inc["severity"], "warning"),
                "timestamp": inc["started_at"],
                "component": inc.get("stream_id"),
                "group": inc.get("team"),
                "class": inc["category"],
                "custom_details": {
                    "incident_id": inc["id"], "kind": inc["kind"], "score": inc["score"],
                    "report_count": inc["report_count"], "region": inc.get("region"),
                    "factors": inc.get("factors", []),
                    **({"targets": inc["targets"]} if inc.get("targets") else {}),
                    # a first page that went out after the incident resolved says so
                    **({"status": "resolved", "resolved_at": inc.get("resolved_at")}
                       if inc.get("status") == "resolved" else {}),
                },
            }
        return httpx.Request(
            "POST", str(self.cfg.url), content=orjson.dumps(body),
            headers={"content-type": "application/json", "idempotency-key": n["key"]},
        )
