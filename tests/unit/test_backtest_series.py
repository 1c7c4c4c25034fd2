"""Count series become reports: as many as the counts say, inside their rows, the same every run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from livetriage.backtest.series import load_csv, reports_of, scale_for, series_name, stream_id_for
from shared.events import Report


def write(tmp_path: Path, rows: str, name: str = "art.csv") -> Path:
    d = tmp_path / "artificialWithAnomaly"
    d.mkdir(exist_ok=True)
    p = d / name
    p.write_text("timestamp,value\n" + rows)
    return p


def test_each_row_becomes_its_count_of_valid_reports_inside_its_interval(tmp_path: Path) -> None:
    p = write(tmp_path, "2014-04-01 00:00:00,3\n2014-04-01 00:05:00,0\n2014-04-01 00:10:00,7.0\n")
    s = load_csv(p, "run1")
    assert s.name == "artificialWithAnomaly/art.csv" and s.stream_id.startswith("bt-run1-")
    out = list(reports_of(s, scale=1.0, category="violence", viewers=500, seed=3))
    assert len(out) == 10
    t0 = datetime(2014, 4, 1, tzinfo=UTC).timestamp() * 1000
    ats = [at for at, _ in out]
    assert ats == sorted(ats)
    assert sum(1 for at in ats if at < t0 + 300_000) == 3
    assert all(t0 + 600_000 <= at < t0 + 900_000 for at in ats[3:])  # the last row keeps the step
    reports = [Report.model_validate_json(raw) for _, raw in out]
    assert len({r.report_id for r in reports}) == 10 and len({r.reporter_id for r in reports}) == 10
    assert {r.stream_id for r in reports} == {s.stream_id} and reports[0].viewer_count == 500
    assert [orjson.loads(raw) for _, raw in out] == [
        orjson.loads(raw) for _, raw in reports_of(s, scale=1.0, category="violence", viewers=500, seed=3)]


def test_scaling_rounds_without_bias_and_the_median_scale_hits_its_target(tmp_path: Path) -> None:
    rows = "".join(f"2014-04-01 {h:02d}:{m:02d}:00,0.5\n" for h in range(10) for m in range(0, 60, 5))
    s = load_csv(write(tmp_path, rows), "r")
    n = sum(1 for _ in reports_of(s, scale=1.0, category="spam", viewers=None, seed=1))
    assert 35 <= n <= 85  # 120 rows of half a report: about 60, never 0 or 120
    assert scale_for([10.0, 20.0, 40.0, 0.0], 60.0) == pytest.approx(3.0)


def test_rows_that_repeat_a_timestamp_share_their_interval_at_their_mean(tmp_path: Path) -> None:
    # NAB's ec2_request_latency repeats 03:00 four times where the clock changed
    rows = "2014-04-01 00:00:00,10\n2014-04-01 00:05:00,30\n2014-04-01 00:05:00,50\n2014-04-01 00:10:00,10\n"
    s = load_csv(write(tmp_path, rows), "r")
    assert len(s.timestamps) == 4  # rows stay as they are: NAB scores by row
    ats = [at for at, _ in reports_of(s, scale=1.0, category="spam", viewers=None, seed=1)]
    t5 = datetime(2014, 4, 1, 0, 5, tzinfo=UTC).timestamp() * 1000
    assert len(ats) == 10 + 40 + 10
    assert sum(1 for at in ats if t5 <= at < t5 + 300_000) == 40


def test_bad_series_fail_with_the_line_that_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=":3: timestamps must not go back"):
        load_csv(write(tmp_path, "2014-04-01 00:05:00,1\n2014-04-01 00:00:00,1\n"), "r")
    with pytest.raises(ValueError, match=":2:"):
        load_csv(write(tmp_path, "yesterday,1\n2014-04-01 00:00:00,1\n"), "r")
    with pytest.raises(ValueError, match="timestamp and value"):
        p = tmp_path / "x.csv"
        p.write_text("a,b\n1,2\n")
        load_csv(p, "r")


def test_stream_ids_stay_within_the_contract() -> None:
    long = "realKnownCause/" + "x" * 300 + ".csv"
    assert len(stream_id_for(long, "abcdef12")) <= 128
    assert series_name(Path("/data/realKnownCause/nyc_taxi.csv")) == "realKnownCause/nyc_taxi.csv"
