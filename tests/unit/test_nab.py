"""NAB scoring as the benchmark publishes it: the numenta detector's nyc_taxi score, rule by rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from livetriage.backtest import nab

T0 = datetime(2014, 7, 1, tzinfo=UTC)
# realKnownCause/nyc_taxi.csv: 10,320 half-hourly rows
TIMESTAMPS = [T0 + timedelta(minutes=30 * i) for i in range(10_320)]
WINDOWS = [(datetime.fromisoformat(a).replace(tzinfo=UTC), datetime.fromisoformat(b).replace(tzinfo=UTC))
           for a, b in [("2014-10-30 15:30", "2014-11-03 22:30"), ("2014-11-25 12:00", "2014-11-29 19:00"),
                        ("2014-12-23 11:30", "2014-12-27 18:30"), ("2014-12-29 21:30", "2015-01-03 04:30"),
                        ("2015-01-24 20:30", "2015-01-29 03:30")]]
# rows where NAB's published numenta detector (results/numenta) scores >= its standard threshold
NUMENTA_ALERTS = {2, 3, 4, 5, 6, 14, 15, 16, 17, 36, 37, 134, 3262, 5928, 5954, 5955, 8523, 8834,
                  10063, 10107}


@pytest.mark.parametrize(("profile", "published"), [("standard", 2.43572773247),
                                                    ("reward_low_FP_rate", 2.32572773247)])
def test_reproduces_the_published_numenta_nyc_taxi_score(profile: str, published: float) -> None:
    s = nab.score_file(TIMESTAMPS, NUMENTA_ALERTS, WINDOWS, nab.PROFILES[profile])
    assert s.raw == pytest.approx(published, abs=1e-9)
    assert s.fp == 1  # NAB's FP column: detections in the probation count for nothing
    assert (s.tp, s.fn) == (4, 1)
    assert s.null == -5.0 and s.perfect == 5.0


def test_null_and_perfect_bound_the_normalised_score() -> None:
    prof = nab.PROFILES["standard"]
    nothing = nab.score_file(TIMESTAMPS, set(), WINDOWS, prof)
    left_edges = {TIMESTAMPS.index(a) for a, _ in WINDOWS}
    perfect = nab.score_file(TIMESTAMPS, left_edges, WINDOWS, prof)
    assert nothing.normalised == 0.0 and nothing.fn == 5
    assert perfect.normalised == pytest.approx(100.0) and perfect.tp == 5
    assert nab.score_corpus([nothing, perfect]) == pytest.approx(50.0)


def test_only_the_earliest_detection_in_a_window_counts_and_late_ones_earn_less() -> None:
    prof = nab.PROFILES["standard"]
    a, b = (TIMESTAMPS.index(t) for t in WINDOWS[0])
    early = nab.score_file(TIMESTAMPS, {a, a + 1, b}, WINDOWS, prof)
    late = nab.score_file(TIMESTAMPS, {b}, WINDOWS, prof)
    assert early.raw == pytest.approx(nab.score_file(TIMESTAMPS, {a}, WINDOWS, prof).raw)
    assert early.fp == 0 and late.raw < early.raw
    # a false alarm right after a window costs less than one far from any window
    just_after = nab.score_file(TIMESTAMPS, {b + 2}, WINDOWS, prof)
    far_before = nab.score_file(TIMESTAMPS, {2000}, WINDOWS, prof)
    assert far_before.raw == pytest.approx(-5.0 - prof.fp)
    assert -5.0 - prof.fp < just_after.raw < -5.0


def test_a_detection_time_lands_on_the_row_that_holds_it() -> None:
    ts = TIMESTAMPS[:4]
    assert nab.alert_rows(ts, [ts[1] + timedelta(minutes=29), ts[3] + timedelta(days=1),
                               ts[0] - timedelta(seconds=1)]) == {1, 3}


def test_a_window_edge_that_is_not_a_row_is_refused() -> None:
    with pytest.raises(ValueError, match="not a row"):
        nab.score_file(TIMESTAMPS, set(), [(T0 + timedelta(minutes=1), T0 + timedelta(days=1))],
                       nab.PROFILES["standard"])
