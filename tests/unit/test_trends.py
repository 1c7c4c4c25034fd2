"""TrendTask: platform-wide trends from the outboxes of several StreamTasks, independent of
how outboxes interleave, applied once per (src, seq), checkpointable."""

from __future__ import annotations

import random
import zlib
from functools import cache
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.triage.detector import DetectorConfig
from services.triage.streams import StreamTask
from services.triage.tally import CAP
from services.triage.trends import TrendTask
from shared.events import Signal

T0 = 1_700_000_000_000
CFG = DetectorConfig(trend_history_s=600)  # the surge comes 14 minutes in: history enough
MIN = 60_000
HOP = CFG.hop_ms
STREAMS = [f"s{i}" for i in range(12)]
REGION = {s: ("DE" if i % 3 else "FR") for i, s in enumerate(STREAMS)}
END = T0 + 40 * MIN

Report = tuple[dict[str, Any], int]
Outbox = dict[str, Any]


def rep(rid: str, stream: str, category: str, reporter: str) -> dict[str, Any]:
    return {"report_id": rid, "stream_id": stream, "category": category, "source": "user",
            "reporter_id": reporter, "viewer_count": 2_000, "region": REGION[stream]}


@cache
def platform(seed: int) -> tuple[Report, ...]:
    """40 minutes of hate reports across 12 streams: ~3 per 10 s pane, a surge of 14 per pane
    from 14 to 18 min; at most CAP per pane, so no pane tally overflows. Some spam too."""
    rng = random.Random(seed)
    out: list[Report] = []
    n = 0
    for pane in range(T0, END, HOP):
        surge = T0 + 14 * MIN <= pane < T0 + 18 * MIN
        k = 14 if surge else min(CAP, sum(rng.random() < 0.3 for _ in range(10)))
        for _ in range(k):
            s = rng.choice(STREAMS)
            out.append((rep(f"h{n}", s, "hate", f"u{rng.getrandbits(32)}"), pane + rng.randrange(HOP)))
            n += 1
        if rng.random() < 0.5:
            out.append((rep(f"x{n}", rng.choice(STREAMS), "spam", f"u{rng.getrandbits(32)}"),
                        pane + rng.randrange(HOP)))
            n += 1
    # arrival order: by event time, shuffled a little (within the grace period)
    out.sort(key=lambda r: r[1] + rng.randrange(15_000))
    return tuple(out)


def partition_of(stream: str, n: int) -> int:
    return zlib.crc32(stream.encode()) % n


def outboxes(reports: tuple[Report, ...], n_parts: int, take_seed: int, n_takes: int = 6) -> list[list[Outbox]]:
    """Run the reports through ``n_parts`` StreamTasks; take outboxes (through JSON) after each
    at random points and after moving every task past the end."""
    rng = random.Random(take_seed)
    tasks = [StreamTask(CFG, p) for p in range(n_parts)]
    out: list[list[Outbox]] = [[] for _ in range(n_parts)]
    takes = {rng.randrange(len(reports)) for _ in range(n_takes)}

    def take(p: int) -> None:
        out[p].append(orjson.loads(orjson.dumps(tasks[p].take_trend_outbox())))

    for i, (r, ts) in enumerate(reports):
        p = partition_of(r["stream_id"], n_parts)
        tasks[p].process(r, ts)
        if i in takes:
            take(rng.randrange(n_parts))
    for p in range(n_parts):
        tasks[p].advance(END + 15 * MIN)
        take(p)
    return out


def interleave(per_src: list[list[Outbox]], seed: int, redeliver: int = 0) -> tuple[list[Outbox], int]:
    """A random merge that keeps each source's own order (one Kafka producer per source), with
    ``redeliver`` copies of already delivered outboxes sprinkled in."""
    rng = random.Random(seed)
    queues = [list(q) for q in per_src]
    order: list[Outbox] = []
    while any(queues):
        q = rng.choice([q for q in queues if q])
        order.append(q.pop(0))
        if redeliver and rng.random() < 0.3:
            order.append(rng.choice(order))
            redeliver -= 1
    dups = len(order) - sum(len(q) for q in per_src)
    return order, dups


def by_key(sigs: list[Signal] | tuple[Signal, ...]) -> dict[str, list[Signal]]:
    """Signals per incident, in order. Across keys, order follows when windows closed: not a
    contract (a close that covers several windows emits key by key)."""
    out: dict[str, list[Signal]] = {}
    for s in sigs:
        out.setdefault(s.dedup_key, []).append(s)
    return out


def trend_task(expected: int | None) -> TrendTask:
    task = TrendTask(CFG, 0)
    task.expected = expected  # the runner sets it: the number of clean-topic partitions
    return task


def trend_signals(
    order: list[Outbox], task: TrendTask | None = None, *, expected: int | None = None
) -> tuple[list[Signal], TrendTask]:
    task = task or trend_task(expected if expected is not None else len({ob["src"] for ob in order}))
    out: list[Signal] = []
    for ob in order:
        out.extend(task.process(ob, {}))
    return out, task


@cache
def reference(seed: int) -> tuple[Signal, ...]:
    per_src = outboxes(platform(seed), 2, take_seed=0)
    sigs, task = trend_signals(interleave(per_src, 0)[0])
    assert task.late == 0 and task.replayed == 0
    return tuple(sigs)


def test_reference_run_finds_the_surge_and_resolves_it() -> None:
    sigs = reference(0)
    kinds = [(s.kind, s.dedup_key) for s in sigs]
    assert ("trend", "trend:hate") in kinds and ("resolve", "trend:hate") in kinds
    assert kinds.count(("trend", "trend:hate")) >= 1
    opens = [s for s in sigs if s.kind == "trend" and ":sev" not in s.signal_id]
    assert len([s for s in opens if s.dedup_key == "trend:hate"]) == 1
    op = next(s for s in opens if s.dedup_key == "trend:hate")
    assert T0 + 14 * MIN < op.observed_at.timestamp() * 1000 <= T0 + 19 * MIN
    assert op.stream_id is None and op.region is None and op.category.value == "hate"
    assert op.window_end is not None and op.observed_at == op.window_end  # tested on close
    assert op.sample_report_ids == []
    for s in sigs:
        if s.kind == "resolve":
            assert s.signal_id.startswith("resolve:trend:")
    # every open is resolved once, with the same dedup key
    assert sorted(s.dedup_key for s in opens) == sorted(s.dedup_key for s in sigs if s.kind == "resolve")
    assert not any(s.dedup_key.startswith("trend:spam") for s in sigs)


@settings(max_examples=20)
@given(
    n_parts=st.integers(2, 3),
    take_seed=st.integers(0, 2**32 - 1),
    order_seed=st.integers(0, 2**32 - 1),
    n_takes=st.integers(0, 12),
    redeliver=st.integers(0, 4),
)
def test_trend_signals_do_not_depend_on_partitioning_takes_or_interleaving(
    n_parts: int, take_seed: int, order_seed: int, n_takes: int, redeliver: int
) -> None:
    per_src = outboxes(platform(0), n_parts, take_seed, n_takes)
    order, dups = interleave(per_src, order_seed, redeliver)
    sigs, task = trend_signals(order)
    assert by_key(sigs) == by_key(reference(0))
    assert len(sigs) == len(reference(0))
    assert task.replayed == dups and task.late == 0


def test_redelivered_outbox_is_skipped_and_changes_nothing() -> None:
    per_src = outboxes(platform(0), 2, take_seed=1, n_takes=8)
    order, _ = interleave(per_src, 1)
    task = TrendTask(CFG, 0)
    seen: list[Outbox] = []
    for ob in order:
        task.process(ob, {})
        seen.append(ob)
        snap = orjson.dumps(task.dump())
        for old in (ob, seen[0], seen[len(seen) // 2]):  # all delivered already
            assert task.process(old, {}) == []
        assert orjson.dumps(task.dump()) == snap
    assert task.replayed == 3 * len(order)


def test_trend_task_checkpoint_through_json_changes_nothing() -> None:
    per_src = outboxes(platform(0), 2, take_seed=2, n_takes=10)
    order, _ = interleave(per_src, 2)
    whole, _ = trend_signals(order)
    for cut in range(0, len(order) + 1, 3):
        first, task = trend_signals(order[:cut], expected=2)
        again = trend_task(2)
        again.load(orjson.loads(orjson.dumps(task.dump())))
        rest, _ = trend_signals(order[cut:], again)
        assert first + rest == whole


def test_stored_trend_baseline_is_used_for_a_missing_key() -> None:
    per_src = outboxes(platform(0), 2, take_seed=3)
    order, _ = interleave(per_src, 3)
    key = ("hate",)
    high = (500.0, 100.0, 10_000, T0)  # a key that normally sees far more than the surge
    task = trend_task(2)
    sigs: list[Signal] = []
    asked = 0
    for ob in order:
        stored = {key: high} if task.missing(key) else {}
        asked += bool(stored)
        sigs.extend(task.process(ob, stored))
    assert asked >= 1  # asked while the key was not in memory ...
    assert not task.missing(key)  # ... then kept it (in memory, or evicted once idle)
    row = task.detector.keys[key].base.dump() if key in task.detector.keys else task.detector.evicted[key]
    assert row[0] > 100
    assert any(s.dedup_key == "trend:hate" for s in reference(0))
    assert not any(s.dedup_key == "trend:hate" for s in sigs)
    assert any(s.dedup_key.startswith("trend:hate:") for s in sigs)  # regions kept the prior


def test_watermark_is_the_minimum_over_sources_heard_from() -> None:
    task = TrendTask(CFG, 0)  # expected unknown: whoever has reported
    assert task.watermark_ms() is None
    task.process({"src": 0, "seq": 1, "wm": None, "items": []}, {})
    assert task.watermark_ms() is None
    task.process({"src": 0, "seq": 2, "wm": T0 + 50_000, "items": []}, {})
    task.process({"src": 1, "seq": 1, "wm": T0 + 20_000, "items": []}, {})
    assert task.watermark_ms() == T0 + 20_000
    # a source's watermark never goes back, even if an outbox carries an older (or no) one
    task.process({"src": 1, "seq": 2, "wm": T0 + 10_000, "items": []}, {})
    task.process({"src": 0, "seq": 3, "wm": None, "items": []}, {})
    assert task.sources == {0: (3, T0 + 50_000), 1: (2, T0 + 20_000)}
    assert task.process({"src": 1, "seq": 2, "wm": T0 + 90_000, "items": []}, {}) == []
    assert task.replayed == 1 and task.watermark_ms() == T0 + 20_000


def test_items_behind_closed_windows_are_late() -> None:
    task = TrendTask(CFG, 0)
    task.process({"src": 0, "seq": 1, "wm": T0, "items": []}, {})
    task.process({"src": 0, "seq": 2, "wm": T0 + 5 * MIN, "items": []}, {})
    horizon = task.detector.closed_through - CFG.window_ms + CFG.hop_ms  # type: ignore[operator]
    items = [[["hate"], horizon - HOP, 7, [[1, 7]], False], [["hate"], horizon, 3, [[2, 3]], False]]
    task.process({"src": 0, "seq": 3, "wm": T0 + 5 * MIN, "items": items}, {})
    assert task.late == 7
    assert sum(t.count for t in task.detector.keys[("hate",)].panes.values()) == 3


def test_the_clock_waits_for_every_expected_source() -> None:
    task = trend_task(2)
    items = [[["hate"], T0, 3, [[1, 1], [2, 1], [3, 1]], False]]
    assert task.process({"src": 0, "seq": 1, "wm": T0 + 5 * MIN, "items": items}, {}) == []
    assert task.watermark_ms() is None and task.waiting()
    assert task.detector.closed_through is None
    task.process({"src": 1, "seq": 1, "wm": None, "items": []}, {})  # heard, but no watermark
    assert task.waiting()
    task.process({"src": 1, "seq": 2, "wm": T0 + 2 * MIN, "items": []}, {})
    assert task.watermark_ms() == T0 + 2 * MIN and not task.waiting()
    # the clock started at the earliest data, so pane T0 was closed, not skipped
    assert task.detector.closed_through == T0 + 2 * MIN
    assert task.late == 0


def test_release_stops_waiting_for_a_silent_source() -> None:
    task = trend_task(3)
    for src in (0, 1):
        task.process({"src": src, "seq": 1, "wm": T0 + (src + 1) * MIN,
                      "items": [[["hate"], T0, 1, [[src, 1]], False]]}, {})
    assert task.waiting() and task.release() == [] and not task.waiting()
    assert task.watermark_ms() == T0 + MIN and task.detector.closed_through == T0 + MIN
    snap = orjson.loads(orjson.dumps(task.dump()))
    again = trend_task(3)
    again.load(snap)
    assert again.released and again.watermark_ms() == T0 + MIN


def test_a_source_racing_ahead_before_another_is_heard_loses_nothing() -> None:
    per_src = outboxes(platform(0), 2, take_seed=4, n_takes=12)
    fair, _ = interleave(per_src, 4)
    racing = per_src[0] + per_src[1]  # all of source 0, then all of source 1
    sigs, task = trend_signals(racing)
    assert task.late == 0
    assert by_key(sigs) == by_key(trend_signals(fair)[0])
    # without knowing how many sources to wait for, source 1's early panes would be late
    _, blind = trend_signals(racing, trend_task(None))
    assert blind.late > 0


def test_overflowing_pane_gives_the_same_trend_in_any_order() -> None:
    def partition(p: int, reporters: list[str]) -> list[Outbox]:
        task = StreamTask(CFG, p)
        task.process(rep(f"w{p}", "s1", "spam", f"w{p}"), T0)
        warm = orjson.loads(orjson.dumps(task.take_trend_outbox()))
        pane = T0 + 60_000
        for i, who in enumerate(reporters):
            task.process(rep(f"p{p}-{i}", "s1", "hate", who), pane + i)
        task.advance(pane + 5 * MIN)
        return [warm, orjson.loads(orjson.dumps(task.take_trend_outbox()))]

    # partition 0: 16 distinct reporters; partition 1: one account filing 30, plus 15 others
    a = partition(0, [f"a{i}" for i in range(16)])
    b = partition(1, ["brigader"] * 30 + [f"b{i}" for i in range(15)])
    ab, _ = trend_signals([a[0], b[0], a[1], b[1]])
    ba, _ = trend_signals([a[0], b[0], b[1], a[1]])
    assert ab == ba
