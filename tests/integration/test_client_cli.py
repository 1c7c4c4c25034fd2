"""`livetriage incidents | oncall | silences` against the real API over HTTP."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from livetriage.cli import main
from services.notifier.api.app import create_app
from services.notifier.api.deps import ApiState
from services.notifier.store import apply_signal
from shared.db import open_engine
from shared.events import Category, Severity, Signal
from shared.settings import Settings
from tests.conftest import READ_KEY, WRITE_KEY
from tests.receiver import serving

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


async def broker_ok() -> None:
    return None


@pytest_asyncio.fixture
async def api_url(settings: Settings) -> AsyncIterator[str]:
    async with open_engine(settings) as engine:
        async with engine.begin() as conn:
            for i, sev in enumerate(("SEV3", "SEV1")):
                await apply_signal(conn, now=T0, signal=Signal(
                    signal_id=f"s{i}", kind="spike", dedup_key=f"spike:cli-{i}:hate", stream_id=f"cli-{i}",
                    category=Category("hate"), severity=Severity(sev), score=0.5, observed_at=T0,
                    report_count=12, reason=f"twelve reports on cli-{i}"))
        app = create_app(ApiState(settings, engine, CollectorRegistry(), broker_ok))
        async with serving(app) as port:
            yield f"http://127.0.0.1:{port}"


async def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str, key: str,
              *argv: str) -> tuple[int, str, str]:
    monkeypatch.setenv("LIVETRIAGE_API_URL", url)
    monkeypatch.setenv("LIVETRIAGE_API_KEY", key)
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_list_show_ack_resolve(api_url: str, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await cli(monkeypatch, capsys, api_url, READ_KEY, "incidents", "list", "--sort", "severity")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["ID", "SEVERITY", "STATUS"]
    assert [ln.split()[1] for ln in lines[1:]] == ["SEV1", "SEV3"]
    code, out, _ = await cli(monkeypatch, capsys, api_url, READ_KEY, "incidents", "list", "--json")
    incidents = json.loads(out)
    sev1 = next(i for i in incidents if i["severity"] == "SEV1")["id"]

    code, out, _ = await cli(monkeypatch, capsys, api_url, READ_KEY, "incidents", "show", sev1)
    assert code == 0 and "why: twelve reports on cli-1" in out and "triggered" in out

    code, _, err = await cli(monkeypatch, capsys, api_url, READ_KEY, "incidents", "ack", sev1)
    assert code == 1 and err.startswith("livetriage: 403 Forbidden")  # a read key cannot act
    code, out, _ = await cli(monkeypatch, capsys, api_url, WRITE_KEY, "incidents", "ack", sev1, "--note", "on it")
    assert code == 0 and out.strip() == f"{sev1} is acknowledged"
    code, out, _ = await cli(monkeypatch, capsys, api_url, WRITE_KEY, "incidents", "resolve", sev1)
    assert out.strip() == f"{sev1} is resolved"
    code, out, _ = await cli(monkeypatch, capsys, api_url, READ_KEY, "incidents", "show", sev1, "--json")
    kinds = [e["kind"] for e in json.loads(out)["timeline"]]
    assert "acknowledged" in kinds and "resolved" in kinds

    code, _, err = await cli(monkeypatch, capsys, api_url, READ_KEY, "incidents", "show",
                             "00000000-0000-0000-0000-000000000000")
    assert code == 1 and "404" in err and "not found" in err


async def test_silences_and_oncall(api_url: str, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await cli(monkeypatch, capsys, api_url, WRITE_KEY, "silences", "create", "--match",
                             "category=hate,spam", "--match", "region=DE", "--duration", "2h",
                             "--comment", "known raid", "--json")
    made = json.loads(out)
    assert code == 0 and made["matchers"]["category"] == ["hate", "spam"] and made["matchers"]["region"] == ["DE"]
    code, out, _ = await cli(monkeypatch, capsys, api_url, READ_KEY, "silences", "list")
    assert made["id"] in out and "category=hate,spam" in out
    code, out, _ = await cli(monkeypatch, capsys, api_url, WRITE_KEY, "silences", "expire", made["id"])
    assert code == 0 and "expired" in out
    code, _, err = await cli(monkeypatch, capsys, api_url, WRITE_KEY, "silences", "create", "--match", "nonsense",
                             "--duration", "2h", "--comment", "x")
    assert code == 1 and "FIELD=VALUE" in err
    code, out, _ = await cli(monkeypatch, capsys, api_url, READ_KEY, "oncall")
    assert code == 0 and out.splitlines()[0].split() == ["TEAM", "PERSON", "NEXT_HANDOFF_AT"]


async def test_weekly_report_as_csv_and_json(api_url: str, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    # the fixture's incidents were detected at T0 (Monday 2026-11-23): that week's report
    code, out, _ = await cli(monkeypatch, capsys, api_url, READ_KEY, "report", "weekly", "--week", "2026-11-25",
                             "--format", "json")
    rep = json.loads(out)
    assert code == 0 and rep["week_start"] == "2026-11-23" and rep["incidents"] == 2
    assert rep["previous_week_incidents"] == 0 and rep["by_category"]["hate"] == {"incidents": 2, "previous_week": 0}
    assert {(r["severity"], r["category"]) for r in rep["sla"]} >= {("SEV1", "hate"), ("SEV3", "hate")}
    assert all(r in rep["sla"] for r in rep["sla_breaches"])
    code, out, _ = await cli(monkeypatch, capsys, api_url, READ_KEY, "report", "weekly", "--week", "2026-11-25")
    rows = list(csv.reader(io.StringIO(out)))
    assert code == 0 and rows[0][:4] == ["week_start", "severity", "category", "incidents"]
    assert ["2026-11-23", "hate", "2", "0", "2"] in rows
    code, _, err = await cli(monkeypatch, capsys, api_url, READ_KEY, "report", "weekly", "--week", "someday")
    assert code == 1 and "not an ISO date" in err
