"""Recurrence: the peaks of a key's recent episodes of unusual windows."""

from __future__ import annotations

from services.triage.recurrence import MAX_EPISODES, Recurrence

H = 3_600_000
DAY = 24 * H


def burst(r: Recurrence, at: int, peak: float, windows: int = 6) -> None:
    for i in range(windows):
        r.observe(peak if i == windows // 2 else peak / 2, at + i * 10_000)
    r.observe(0.0, at + windows * 10_000)


def test_one_or_two_bursts_are_news_a_third_makes_a_pattern() -> None:
    r = Recurrence()
    burst(r, 0, 5.0)
    burst(r, 4 * H, 8.0)
    assert r.usual(5 * H, DAY, 3) == 0.0
    burst(r, 8 * H, 6.0)
    assert r.usual(9 * H, DAY, 3) == 5.0  # the third-highest: a bigger burst still opens
    assert r.usual(DAY + 5 * 60_000, DAY, 3) == 0.0  # the first has aged out of the day


def test_a_long_surge_is_one_episode_and_an_open_one_does_not_raise_its_own_bar() -> None:
    r = Recurrence()
    burst(r, 0, 4.0)
    burst(r, H, 4.0)
    for i in range(360):  # an hour of surge, still going on
        r.observe(20.0, 2 * H + i * 10_000)
    assert len(r.episodes) == 2 and r.usual(3 * H, DAY, 3) == 0.0
    r.observe(0.0, 3 * H)
    assert r.usual(3 * H, DAY, 3) == 4.0


def test_memory_is_bounded_and_round_trips() -> None:
    r = Recurrence()
    for i in range(MAX_EPISODES + 5):
        burst(r, i * H, float(i + 3))
    assert len(r.episodes) == MAX_EPISODES
    assert Recurrence.load(r.dump()).dump() == r.dump() and bool(r) and not Recurrence()
