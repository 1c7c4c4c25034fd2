"""``livetriage backtest`` end to end: a labelled count series through the real pipeline."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from livetriage.backtest.command import cmd_backtest
from livetriage.cli import build_parser
from tests.conftest import make_settings

pytestmark = pytest.mark.integration

T0 = datetime(2014, 4, 1, tzinfo=UTC)
ROWS, SURGE = 300, range(250, 256)  # 5-minute rows; half an hour at 8x near the end


def ts(i: int) -> str:
    return (T0 + timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S")


async def test_a_labelled_surge_is_found_scored_and_nothing_else_opens(
    broker: str, database_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "data" / "recorded"
    data.mkdir(parents=True)
    (data / "step.csv").write_text("timestamp,value\n" + "".join(
        f"{ts(i)},{80 if i in SURGE else 10}\n" for i in range(ROWS)))
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"recorded/step.csv": [[ts(245), ts(265)]]}))
    out = tmp_path / "out.json"
    args = build_parser().parse_args(["backtest", "--labels", str(labels), "--json", str(out),
                                      "--timeout", "120", str(data / "step.csv")])
    assert await cmd_backtest(make_settings(broker, database_url), args) == 0
    result = json.loads(out.read_text())
    assert result["pipeline"]["reports"] == 10 * ROWS + 70 * len(SURGE)
    assert result["pipeline"]["ingest_dlq"] == 0
    (row,) = result["series"]
    assert row["series"] == "recorded/step.csv" and row["windows"] == 1
    assert row["incidents:standard:counts"] == {"tp": 1, "fp": 0, "fn": 0}
    assert row["incidents:standard"] > 50  # found well inside its window
