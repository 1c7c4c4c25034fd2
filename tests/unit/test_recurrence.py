"""Recurrence: the day-long share of a key's windows that stood out, by multiple."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.triage.baseline import alpha_for_half_life
from services.triage.recurrence import RATIOS, Recurrence

ALPHA = alpha_for_half_life(86_400, 10)


@given(st.lists(st.floats(0, 60), max_size=40), st.integers(0, 30_000), st.integers(0, 200))
def test_quiet_windows_in_closed_form_match_one_at_a_time(before: list[float], quiet: int, n0: int) -> None:
    a, b = Recurrence(), Recurrence()
    for r in before:
        a.observe(r, ALPHA)
        b.observe(r, ALPHA)
    a.observe_quiet(quiet, ALPHA)
    for _ in range(quiet):
        b.observe(0.0, ALPHA)
    assert a.n == b.n
    assert a.share == pytest.approx(b.share, rel=1e-6, abs=1e-12)


def test_a_multiple_reached_often_is_usual_and_the_bar_is_half_as_much_again() -> None:
    r = Recurrence()
    for i in range(10_000):
        r.observe(5.0 if i % 20 == 0 else 0.0, ALPHA)  # 5% of windows at 5x
    assert r.usual(min_n=2160, share=0.015) == pytest.approx(1.5 * 5.0)
    assert r.usual(min_n=20_000, share=0.015) == 0.0  # not enough history yet


def test_one_ten_minute_surge_in_a_day_is_not_usual() -> None:
    r = Recurrence()
    r.observe_quiet(8640, ALPHA)  # a quiet day of 10 s hops
    for _ in range(66):  # ten minutes at 20x, and the minute its window trails
        r.observe(20.0, ALPHA)
    assert r.usual(min_n=2160, share=0.015) == 0.0
    assert Recurrence.load(r.dump()).share == r.share and len(r.share) == len(RATIOS)
