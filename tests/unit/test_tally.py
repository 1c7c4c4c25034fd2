"""Pane tallies: bounded distinct reporters, exact merges, brigade-resistant window stats."""

from __future__ import annotations

import random
import zlib

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from services.triage.tally import CAP, Tally, reporter_hash, window_stats


def tally_of(reporters: list[int]) -> Tally:
    t = Tally()
    for r in reporters:
        t.add(r)
    return t


def merged(parts: list[list[int]]) -> Tally:
    """One tally made by merging (the dumps of) a tally per part, in the given order."""
    out = Tally()
    for part in parts:
        out.merge(*tally_of(part).dump())
    return out


def split(items: list[int], cuts: list[int]) -> list[list[int]]:
    bounds = sorted({c % (len(items) + 1) for c in cuts} | {0, len(items)})
    return [items[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


# ---- add / merge / dump ------------------------------------------------------------------


def test_reporter_hash_is_stable_crc32() -> None:
    # crc32 is the contract: stable across processes (unlike hash()), so checkpoints restore
    assert reporter_hash("u-1") == zlib.crc32(b"u-1")
    assert reporter_hash("u-1") != reporter_hash("u-2")


def test_add_counts_reports_and_reporters() -> None:
    t = tally_of([7, 7, 9, 7])
    assert t.count == 4
    assert t.reporters == {7: 3, 9: 1}
    assert t.overflow is False


def test_add_tracks_exactly_cap_reporters_then_overflows() -> None:
    t = tally_of(list(range(CAP)))
    assert len(t.reporters) == CAP and not t.overflow
    t.add(CAP)  # one more distinct reporter: a crowd
    assert t.overflow
    assert len(t.reporters) == CAP and CAP not in t.reporters
    assert t.count == CAP + 1
    t.add(0)  # a tracked reporter still counts after overflow
    assert t.reporters[0] == 2 and t.count == CAP + 2
    t.add(CAP)  # an untracked one only adds to the count
    assert CAP not in t.reporters and t.count == CAP + 3


def test_merge_adds_counts_and_unions_reporters() -> None:
    t = tally_of([1, 1, 2])
    t.merge(3, [(2, 1), (3, 2)], False)
    assert t.count == 6
    assert t.reporters == {1: 2, 2: 2, 3: 2}
    assert not t.overflow


def test_merge_past_cap_overflows_and_overflow_propagates() -> None:
    t = tally_of(list(range(CAP - 1)))
    t.merge(2, [(100, 1), (101, 1)], False)
    assert t.overflow and len(t.reporters) == CAP and t.count == CAP + 1
    u = tally_of([1])
    u.merge(5, [(2, 5)], True)  # the other side was already a crowd
    assert u.overflow and u.count == 6 and u.reporters == {1: 1, 2: 5}
    v = tally_of([1])
    v.overflow = True
    v.merge(0, [], False)  # merging a non-crowd never clears overflow
    assert v.overflow


def test_dump_load_round_trip_through_json() -> None:
    t = tally_of([5, 3, 5, *range(100, 100 + CAP)])
    assert t.overflow
    data = orjson.loads(orjson.dumps(t.dump()))
    u = Tally.load(data)  # type: ignore[arg-type]
    assert (u.count, u.reporters, u.overflow) == (t.count, t.reporters, t.overflow)
    assert u.dump() == t.dump()
    assert all(type(r) is int and type(n) is int for r, n in u.reporters.items())


# ---- window_stats ------------------------------------------------------------------------


def test_window_stats_raw_distinct_effective() -> None:
    a = tally_of([1] * 10 + [2])  # reporter 1 files ten reports
    b = tally_of([1, 3, 3, 3])
    raw, distinct, eff = window_stats([a, b], per_reporter_cap=2)
    assert raw == 15
    assert distinct == 3
    # reporter 1: 11 -> 2, reporter 2: 1, reporter 3: 3 -> 2
    assert eff == 5
    assert window_stats([a, b], per_reporter_cap=100) == (15, 3, 15)
    assert window_stats([], per_reporter_cap=2) == (0, 0, 0)


def test_window_stats_caps_across_panes_not_per_pane() -> None:
    panes = [tally_of([9, 9]) for _ in range(6)]  # 2 per pane: never over the cap in one pane
    assert window_stats(panes, per_reporter_cap=2) == (12, 1, 2)


def test_window_stats_many_distinct_across_panes_is_a_crowd_but_exact() -> None:
    # each pane is under CAP, the window is not: distinct saturates, effective stays exact
    panes = [tally_of(list(range(i * 10, i * 10 + 10)) + [999] * 5) for i in range(3)]
    assert not any(p.overflow for p in panes)
    raw, distinct, eff = window_stats(panes, per_reporter_cap=2)
    assert raw == 45 and distinct == CAP + 1
    assert eff == 30 + 2  # 999 filed 15, counts 2


def test_window_stats_overflow_takes_off_tracked_excess_only() -> None:
    t = tally_of([0] * 10 + list(range(1, CAP)) + [500, 501, 501, 501])  # 500, 501 untracked
    assert t.overflow
    raw, distinct, eff = window_stats([t], per_reporter_cap=2)
    assert raw == 10 + (CAP - 1) + 4
    assert distinct == CAP + 1
    assert eff == raw - 8  # only reporter 0's excess is known (501's is not)


# ---- properties --------------------------------------------------------------------------

reporter_ids = st.integers(0, 2**32 - 1)


@given(
    pool=st.lists(reporter_ids, min_size=1, max_size=CAP, unique=True),
    picks=st.lists(st.integers(0, CAP - 1), min_size=1, max_size=80),
    cuts=st.lists(st.integers(0, 200), max_size=6),
    order_seed=st.integers(0, 2**16),
    cap=st.integers(1, 5),
)
def test_merge_in_any_split_and_order_equals_one_tally_under_cap(
    pool: list[int], picks: list[int], cuts: list[int], order_seed: int, cap: int
) -> None:
    reports = [pool[i % len(pool)] for i in picks]
    whole = tally_of(reports)
    rng = random.Random(order_seed)
    shuffled = reports[:]
    rng.shuffle(shuffled)
    parts = split(shuffled, cuts)
    rng.shuffle(parts)
    m = merged(parts)
    assert not whole.overflow and not m.overflow
    assert m.count == whole.count and m.reporters == whole.reporters
    assert window_stats([m], cap) == window_stats([whole], cap)
    # a window over the parts as separate panes gives the same stats too
    assert window_stats([tally_of(p) for p in parts], cap) == window_stats([whole], cap)
    raw, distinct, eff = window_stats([whole], cap)
    assert raw == len(reports) and distinct == len(set(reports))
    assert eff == sum(min(cap, reports.count(r)) for r in set(reports))


@settings(max_examples=150)
@given(
    n_reporters=st.integers(1, 3 * CAP),
    picks=st.lists(st.integers(0, 10**6), min_size=1, max_size=150),
    cuts=st.lists(st.integers(0, 300), max_size=8),
    order_seed=st.integers(0, 2**16),
    cap=st.integers(1, 4),
)
def test_overflow_and_raw_are_order_independent(
    n_reporters: int, picks: list[int], cuts: list[int], order_seed: int, cap: int
) -> None:
    reports = [p % n_reporters for p in picks]
    distinct = len(set(reports))
    true_eff = sum(min(cap, reports.count(r)) for r in set(reports))
    rng = random.Random(order_seed)
    for _ in range(3):
        shuffled = reports[:]
        rng.shuffle(shuffled)
        parts = split(shuffled, cuts)
        rng.shuffle(parts)
        m = merged(parts)
        assert m.overflow == (distinct > CAP)
        assert m.count == len(reports)
        assert len(m.reporters) == min(distinct, CAP)
        raw, d, eff = window_stats([m], cap)
        assert raw == len(reports)
        assert d == (distinct if distinct <= CAP else CAP + 1)
        # a crowd only under-counts excess: never below the true effective count
        assert true_eff <= eff <= raw
        if distinct <= CAP:
            assert eff == true_eff
