"""`livetriage incidents | oncall | silences`: the on-call's commands, against the HTTP API.

Where the API is and which key to use come from ``LIVETRIAGE_API_URL`` (default
http://127.0.0.1:8080) and ``LIVETRIAGE_API_KEY``. Output is a readable table, or JSON with
``--json`` for scripts. API errors (RFC 9457) print as one line and exit 1.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx

from services.notifier.oncall import parse_length

COMMANDS = ("incidents", "oncall", "silences", "report")


class ApiError(Exception):
    """The API said no (or could not be reached); the message is for the operator."""


def add_parsers(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")

    inc = sub.add_parser("incidents", help="list, show, acknowledge, resolve incidents (HTTP API)")
    isub = inc.add_subparsers(dest="incidents_command", required=True)
    ls = isub.add_parser("list", parents=[common], help="incidents, newest first")
    for name in ("status", "severity", "category", "stream-id", "region"):
        ls.add_argument(f"--{name}")
    ls.add_argument("--sort", choices=["-detected_at", "detected_at", "severity"], default="-detected_at")
    ls.add_argument("--limit", type=int, default=20)
    show = isub.add_parser("show", parents=[common], help="one incident with its timeline")
    show.add_argument("id")
    for verb in ("ack", "resolve"):
        act = isub.add_parser(verb, parents=[common], help=f"{'acknowledge' if verb == 'ack' else 'resolve'} an incident")
        act.add_argument("id")
        act.add_argument("--note")

    sub.add_parser("oncall", parents=[common], help="who is on call now, per team (HTTP API)")

    sil = sub.add_parser("silences", help="list, create, expire silences (HTTP API)")
    ssub = sil.add_subparsers(dest="silences_command", required=True)
    ssub.add_parser("list", parents=[common], help="active and pending silences")
    add = ssub.add_parser("create", parents=[common], help="hold matching pages for a while")
    add.add_argument("--match", action="append", required=True, metavar="FIELD=V1,V2",
                     help="category, severity, region, stream_id, kind or team (repeatable)")
    add.add_argument("--duration", required=True, help="e.g. 2h, 30m, 1d")
    add.add_argument("--comment", required=True)
    add.add_argument("--by", default=os.environ.get("USER", "cli"))
    exp = ssub.add_parser("expire", parents=[common], help="end a silence now")
    exp.add_argument("id")

    rep = sub.add_parser("report", help="weekly program report from the API (CSV or JSON)")
    rsub = rep.add_subparsers(dest="report_command", required=True)
    wk = rsub.add_parser("weekly", help="a week's incidents, MTTA/MTTR, SLA breaches, trend vs the week before")
    wk.add_argument("--week", default=None, help="any date in the week (ISO, weeks start Monday UTC); default: last week")
    wk.add_argument("--format", choices=["csv", "json"], default="csv")


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain aligned table; long cells are cut so a row fits a terminal."""
    def cell(v: Any) -> str:
        s = "-" if v is None else str(v)
        return s if len(s) <= 48 else s[:47] + "…"

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def ago(ts: str | None, now: datetime) -> str | None:
    if ts is None:
        return None
    # kept: without the replace, a malformed ts would fail with a different message
    s = int((now - datetime.fromisoformat(ts.replace("Z", "+00:00"))).total_seconds())  # noqa: FURB162
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{s // n}{unit} ago"
    return f"{max(s, 0)}s ago"


class Api:
    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach the API at {self.http.base_url}: {exc}") from exc
        if r.status_code >= 400:
            try:
                body = r.json()
                msg = f"{body.get('title', r.reason_phrase)}: {body.get('detail', '')}".rstrip(": ")
            except ValueError:
                msg = r.text[:200]
            raise ApiError(f"{r.status_code} {msg}")
        return None if r.status_code == 204 else r.json()


def matchers(specs: Iterable[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for spec in specs:
        field, sep, values = spec.partition("=")
        if not sep or not values:
            raise ApiError(f"--match {spec!r} is not FIELD=VALUE[,VALUE]")
        out.setdefault(field.strip(), []).extend(v.strip() for v in values.split(",") if v.strip())
    return out


def run_client(args: argparse.Namespace, *, transport: httpx.BaseTransport | None = None) -> int:
    url = os.environ.get("LIVETRIAGE_API_URL", "http://127.0.0.1:8080")
    key = os.environ.get("LIVETRIAGE_API_KEY", "")
    if not key:
        print("livetriage: set LIVETRIAGE_API_KEY (create one with `livetriage keys create`)", file=sys.stderr)
        return 2
    headers = {"Authorization": f"Bearer {key}"}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=10.0, transport=transport) as http:
            out = _dispatch(Api(http), args)
    except ApiError as exc:
        print(f"livetriage: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


def week_of(day: str | None, now: datetime) -> datetime:
    """Monday 00:00 UTC of the week holding ``day`` (default: the week before this one)."""
    if day is None:
        ref = now - timedelta(days=7)
    else:
        try:
            ref = datetime.fromisoformat(day)
        except ValueError as exc:
            raise ApiError(f"--week {day!r} is not an ISO date") from exc
        ref = ref if ref.tzinfo else ref.replace(tzinfo=UTC)
    start = ref.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start - timedelta(days=start.weekday())


def weekly_report(api: Api, day: str | None, fmt: str, now: datetime) -> str:
    """What program managers ask every Monday: volumes by category and severity against the
    week before, MTTA, MTTR, time to action, and where the SLA was missed."""
    start = week_of(day, now)

    def stats(since: datetime) -> dict[str, Any]:
        until = since + timedelta(days=7)
        return cast("dict[str, Any]", api.call(
            "GET", "/v1/stats", params={"since": since.isoformat(), "until": until.isoformat()}))

    this, prev = stats(start), stats(start - timedelta(days=7))
    by_cat = {c: {"incidents": n, "previous_week": prev["by"]["category"].get(c, 0)}
              for c, n in sorted(this["by"]["category"].items())}
    for c, n in prev["by"]["category"].items():
        by_cat.setdefault(c, {"incidents": 0, "previous_week": n})
    breaches = [r for r in this["sla"] if r["ack_share"] < 1.0 or r["action_share"] < 1.0]
    report = {
        "week_start": start.date().isoformat(), "incidents": this["incidents"],
        "previous_week_incidents": prev["incidents"], "by_category": by_cat,
        "by_severity": this["by"]["severity"], "mtta_s": this["mtta_s"], "mttr_s": this["mttr_s"],
        "time_to_action_p50_s": this["time_to_action_p50_s"], "time_to_action_p90_s": this["time_to_action_p90_s"],
        "sla_targets_minutes": this["sla_targets_minutes"], "sla": this["sla"], "sla_breaches": breaches,
    }
    if fmt == "json":
        return json.dumps(report, indent=2)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["week_start", "severity", "category", "incidents", "acknowledged_within_sla",
                "actioned_within_sla", "ack_share", "action_share", "sla_breached"])
    for r in this["sla"]:
        w.writerow([report["week_start"], r["severity"], r["category"], r["incidents"],
                    r["acknowledged_within_sla"], r["actioned_within_sla"], r["ack_share"], r["action_share"],
                    r["ack_share"] < 1.0 or r["action_share"] < 1.0])
    w.writerow([])
    w.writerow(["week_start", "category", "incidents", "previous_week", "change"])
    for c, v in by_cat.items():
        w.writerow([report["week_start"], c, v["incidents"], v["previous_week"], v["incidents"] - v["previous_week"]])
    w.writerow([])
    w.writerow(["week_start", "incidents", "previous_week", "mtta_s", "mttr_s", "tta_p50_s", "tta_p90_s"])
    w.writerow([report["week_start"], this["incidents"], prev["incidents"], this["mtta_s"], this["mttr_s"],
                this["time_to_action_p50_s"], this["time_to_action_p90_s"]])
    return buf.getvalue().rstrip("\n")


def _dispatch(api: Api, args: argparse.Namespace) -> str:
    now = datetime.now(UTC)
    as_json = getattr(args, "json", False)
    if args.command == "report":
        return weekly_report(api, args.week, args.format, now)
    if args.command == "oncall":
        body = api.call("GET", "/v1/oncall")
        if as_json:
            return json.dumps(body, indent=2)
        return table(body["teams"], ["team", "person", "next_handoff_at"])
    if args.command == "incidents":
        cmd = args.incidents_command
        if cmd == "list":
            params = {k: v for k, v in {
                "status": args.status, "severity": args.severity, "category": args.category,
                "stream_id": args.stream_id, "region": args.region, "sort": args.sort,
                "limit": args.limit}.items() if v is not None}
            items = api.call("GET", "/v1/incidents", params=params)["items"]
            if as_json:
                return json.dumps(items, indent=2)
            for i in items:
                i["detected"] = ago(i["detected_at"], now)
                i["where"] = i["stream_id"] or (f"platform/{i['region']}" if i["region"] else "platform")
            return table(items, ["id", "severity", "status", "category", "where", "report_count", "detected",
                                 "reason"])
        if cmd == "show":
            inc = api.call("GET", f"/v1/incidents/{args.id}")
            timeline = api.call("GET", f"/v1/incidents/{args.id}/timeline")
            if as_json:
                return json.dumps({"incident": inc, "timeline": timeline}, indent=2)
            head = [f"{inc['severity']} {inc['status']}  {inc['category']}  {inc['stream_id'] or inc['region'] or 'platform'}",
                    f"id {inc['id']}  team {inc['team'] or '-'}  detected {inc['detected_at']}",
                    f"why: {inc['reason']}",
                    "factors: " + ", ".join(f"{f['name']}={f['value']} (+{f['contribution']})" for f in inc["factors"]),
                    ""]
            return "\n".join(head) + table(timeline, ["at", "kind", "actor"])
        path = "acknowledge" if cmd == "ack" else "resolve"
        inc = api.call("POST", f"/v1/incidents/{args.id}/{path}", json={"note": args.note} if args.note else {})
        return json.dumps(inc, indent=2) if as_json else f"{inc['id']} is {inc['status']}"
    # silences
    cmd = args.silences_command
    if cmd == "list":
        rows = api.call("GET", "/v1/silences")
        if as_json:
            return json.dumps(rows, indent=2)
        for r in rows:
            r["matchers"] = " ".join(f"{k}={','.join(v)}" for k, v in r["matchers"].items() if v)
        return table(rows, ["id", "matchers", "ends_at", "created_by", "comment"])
    if cmd == "create":
        try:
            length = parse_length(args.duration)
        except ValueError as exc:
            raise ApiError(str(exc)) from exc
        body = {"matchers": matchers(args.match), "ends_at": (now + length).isoformat(),
                "created_by": args.by, "comment": args.comment}
        made = api.call("POST", "/v1/silences", json=body)
        return json.dumps(made, indent=2) if as_json else f"silence {made['id']} until {made['ends_at']}"
    gone = api.call("DELETE", f"/v1/silences/{args.id}")
    return json.dumps(gone, indent=2) if as_json else f"silence {args.id} expired"

