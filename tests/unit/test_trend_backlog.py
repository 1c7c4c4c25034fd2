"""TrendTask on a backlog: hours of panes ahead of its clock give the same signals as the task
that put every pane straight into the detector (``bench.trends.LegacyTrendTask``), with work
per closed window that does not grow with the backlog; and outboxes cut into size-bounded
records round-trip."""

from __future__ import annotations

import random
from functools import cache
from typing import Any

import orjson
import pytest
from bench.trends import T0, LegacyTrendTask, backlog, drive, watch
from services.triage.baseline import Baseline
from services.triage.detector import BaselineRow, DetectorConfig
from services.triage.trends import TrendTask, outbox_records
from shared.events import Signal

CFG = DetectorConfig()
# what one detector call may hold per key: the longest window back, and the look-ahead plus
# one step forward (and the pane being closed)
BOUND = (CFG.window_ms + CFG.window_ms + CFG.grace_ms + CFG.window_ms) // CFG.hop_ms + 2


def by_key(sigs: list[Signal]) -> dict[str, list[Signal]]:
    out: dict[str, list[Signal]] = {}
    for s in sigs:
        out.setdefault(s.dedup_key, []).append(s)
    return out


@cache
def legacy(hours: float, outbox_hours: float, seed: int) -> tuple[tuple[Signal, ...], int, dict[Any, Any]]:
    order = backlog(hours, 2, outbox_hours, categories=2, seed=seed)
    task = LegacyTrendTask(CFG, 0)
    store: dict[tuple[str, ...], BaselineRow] = {}
    sigs = drive(task, order, store, 2)
    bases = {k: ks.base.dump() for k, ks in task.detector.keys.items()}
    return tuple(sigs), task.late, {"bases": bases, "store": store}


def run_new(order: list[dict[str, Any]], *, cut: int | None = None) -> tuple[list[Signal], TrendTask,
                                                                             dict[Any, Any], dict[str, int]]:
    task = TrendTask(CFG, 0)
    seen = watch(task)
    store: dict[tuple[str, ...], BaselineRow] = {}
    if cut is None:
        sigs = drive(task, order, store, 2)
    else:  # a checkpoint and a restart part way through
        sigs = drive(task, order[:cut], store, 2)
        again = TrendTask(CFG, 0)
        again.load(orjson.loads(orjson.dumps(task.dump())))
        seen2 = watch(again)
        sigs += drive(again, order[cut:], store, 2)
        task = again
        seen = {k: max(seen[k], seen2[k]) for k in seen}
    return sigs, task, store, seen


def aged(rows: dict[tuple[str, ...], BaselineRow], to: dict[tuple[str, ...], BaselineRow]) -> dict[Any, Any]:
    """``rows`` as they would be at the ``closed_ms`` of ``to``'s: a key the old task evicted
    at the end of a jump of the clock, this one evicts at the step it went idle; the quiet
    windows between are applied when it comes back, so the two rows are the same key."""
    out = {}
    for k, (mean, var, n, closed, *rest) in rows.items():
        base = Baseline(mean, var, n)
        later = to.get(k, (0, 0, 0, closed))[3]
        base.observe_zeros(max(0, later - closed) // CFG.hop_ms, CFG.alpha)
        out[k] = (*base.dump(), max(closed, later), *rest)
    return out


def close(a: dict[Any, tuple[Any, ...]], b: dict[Any, tuple[Any, ...]]) -> bool:
    """The same keys, their (mean, var, n[, closed]) equal up to floating-point rounding."""
    return a.keys() == b.keys() and all(
        len(a[k]) == len(b[k]) and all(x == y if y is None else x == pytest.approx(y, rel=1e-9, abs=1e-12)
                                       for x, y in zip(a[k], b[k], strict=True))
        for k in a)


@pytest.mark.parametrize(("seed", "outbox_hours"), [(0, 0.5), (1, 1.5), (2, 3.0), (3, 1.0)])
def test_a_backlog_gives_the_signals_and_baselines_of_feeding_every_pane_at_once(
    seed: int, outbox_hours: float
) -> None:
    ref_sigs, ref_late, ref = legacy(4.0, outbox_hours, seed)
    sigs, task, store, _ = run_new(backlog(4.0, 2, outbox_hours, categories=2, seed=seed))
    assert by_key(sigs) == by_key(list(ref_sigs))
    assert sorted(s.signal_id for s in sigs) == sorted(s.signal_id for s in ref_sigs)
    assert any(s.kind == "trend" for s in sigs) and any(s.kind == "resolve" for s in sigs)
    assert task.late == ref_late == 0
    # baselines equal up to rounding: quiet stretches are applied in closed form, and where a
    # backlog cuts them changes the last bits (never a decision: the signals above are equal)
    assert close({k: ks.base.dump() for k, ks in task.detector.keys.items()}, ref["bases"])
    assert store.keys() == ref["store"].keys()  # the same keys were evicted ...
    assert close(aged(store, ref["store"]), ref["store"])  # ... with the same baselines
    assert task.pending_panes() == 0


def test_work_per_closed_window_does_not_grow_with_the_backlog() -> None:
    held = {}
    for outbox_hours in (0.25, 1.0, 4.0):
        order = backlog(8.0, 2, outbox_hours, categories=1, seed=1)
        _, task, _, seen = run_new(order)
        held[outbox_hours] = seen["per_key"]
        assert seen["per_key"] <= BOUND
        legacy_task = LegacyTrendTask(CFG, 0)
        legacy_seen = watch(legacy_task)
        drive(legacy_task, order, {}, 2)
        # the old task held every pane of an outbox: hours of them
        assert legacy_seen["per_key"] >= outbox_hours * 360 // 2
    assert len(set(held.values())) == 1  # the same, whatever the outboxes span


def test_a_checkpoint_with_panes_pending_changes_nothing() -> None:
    order = backlog(4.0, 2, 1.5, categories=2, seed=7)
    whole, _, _, _ = run_new(order)
    # cut right after outboxes whose panes run far ahead of the clock (pending ones dumped)
    for cut in (1, 2, 3, len(order) // 2, len(order) - 1):
        cut_sigs, task, _, _ = run_new(order, cut=cut)
        assert by_key(cut_sigs) == by_key(whole)
    assert task.pending_panes() == 0


def test_pending_keys_keep_their_stored_baseline() -> None:
    high = (900.0, 200.0, 10_000, T0)  # a key that normally sees far more than its surges
    order = backlog(3.0, 2, 1.5, categories=1, seed=3)
    asked: list[tuple[str, ...]] = []

    def run(task: Any) -> list[Signal]:
        task.expected = 2
        out: list[Signal] = []
        for ob in order:
            missing = [k for k in dict.fromkeys(task.keys_of(ob)) if task.missing(k)]
            asked.extend(missing)
            out.extend(task.process(ob, {("hate",): high} if ("hate",) in missing else {}))
        return out

    new, old = run(TrendTask(CFG, 0)), run(LegacyTrendTask(CFG, 0))
    assert by_key(new) == by_key(old)
    assert not any(s.dedup_key == "trend:hate" for s in new)  # the high baseline was used
    assert asked.count(("hate",)) == 2  # once per task: kept while its panes waited


# ---- outbox records ---------------------------------------------------------------------------

def outbox(n_items: int, seed: int = 0, *, src: int = 0, seq: int = 1, wm: int | None = 5) -> dict[str, Any]:
    rng = random.Random(seed)
    items = [[["hate", "DE"] if i % 2 else ["hate"], 1_000 + 10_000 * i, 17,
              [[rng.getrandbits(32), rng.randrange(1, 4)] for _ in range(16)], True] for i in range(n_items)]
    return {"src": src, "seq": seq, "wm": wm, "items": items}


def test_a_small_outbox_is_one_record_as_before() -> None:
    ob = outbox(10)
    (rec,) = outbox_records(ob, ob["items"], 512 * 1024)
    assert orjson.loads(rec) == ob and "part" not in orjson.loads(rec)


@pytest.mark.parametrize("max_bytes", [4_096, 65_536, 512 * 1024])
def test_a_large_outbox_is_cut_into_bounded_parts_that_round_trip(max_bytes: int) -> None:
    ob = outbox(6_000)  # ~1.6 MB as one record: past the broker's default 1 MB
    assert len(orjson.dumps(ob)) > 1024 * 1024
    recs = outbox_records(ob, ob["items"], max_bytes)
    assert len(recs) > 1 and all(len(r) <= max_bytes for r in recs)
    parts = [orjson.loads(r) for r in recs]
    assert [p["part"] for p in parts] == list(range(1, len(recs) + 1))
    assert {p["parts"] for p in parts} == {len(recs)} and {p["seq"] for p in parts} == {1}
    assert [p["wm"] for p in parts] == [None] * (len(recs) - 1) + [5]  # the clock moves on the last
    assert [it for p in parts for it in p["items"]] == ob["items"]
    assert outbox_records(ob, ob["items"], max_bytes) == recs  # a re-publish cuts it the same


def test_parts_apply_once_and_give_what_the_whole_outbox_gives() -> None:
    order = backlog(3.0, 2, 1.5, categories=2, seed=5)
    whole, _, _, _ = run_new(order)
    cut: list[dict[str, Any]] = []
    for ob in order:
        parts = [orjson.loads(r) for r in outbox_records(ob, ob["items"], 16_384)]
        cut.extend(parts)
        cut.append(parts[0])  # a re-delivered part is skipped
    task = TrendTask(CFG, 0)
    sigs = drive(task, cut, {}, 2)
    assert by_key(sigs) == by_key(whole)
    assert task.replayed == len(order) and task.late == 0
    assert len(cut) > 3 * len(order)
