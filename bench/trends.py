"""Trend-stage micro-benchmark: ``TrendTask`` alone, in process, over a long backlog.

A backlog is what the trend stage sees when the streams stage catches up on hours of
reports: each upstream partition's outboxes cover ``--outbox-hours`` of event time (a
checkpoint every few wall-clock seconds while the streams stage races through event time),
and the watermark jumps by as much at once. Synthetic outboxes (no broker, no StreamTask):
``--sources`` upstream partitions, per pane (10 s) and per trend key (``--categories``
categories, each alone and per region) a tally with a diurnal rate, a few surges and a few
hour-long silences per key, so spikes open and resolve and idle keys are evicted and come back
from the "store" (a dict fed by the evicted baselines, asked for missing keys as the runner
does).

Runs the current ``TrendTask`` and, with ``--baseline``, ``LegacyTrendTask`` (the task as it
was: every pane straight into the detector) over the same outboxes, and prints per run:
reports/s (reports summarised by the tallies / seconds in ``process``), the most panes one
detector call held (the detector scans a key's panes for each window it closes: the work per
closed window) and the most pane-scans per closed window summed over keys; with both, whether
the signals per key are the same.

    python -m bench.trends [--hours 48] [--sources 4] [--outbox-hours 4] [--baseline] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from services.triage.detector import BaselineRow, DetectorConfig, KeyedDetector
from services.triage.signals import from_decision
from services.triage.tally import CAP
from services.triage.trends import TrendTask
from shared.events import Signal

T0 = 1_700_000_000_000
HOUR = 3_600_000
CATEGORIES = ("hate", "spam", "violence", "nudity", "scam", "self_harm")
REGIONS = ("DE", "FR", "US")


def _category(key: tuple[str, ...]) -> str:
    return key[0]


class LegacyTrendTask:
    """The trend task before it held panes back: every pane goes straight into the detector
    (so on a backlog each closed window rescans hours of panes). The baseline of this bench
    and the reference the tests compare the current task with."""

    def __init__(self, cfg: DetectorConfig, partition: int) -> None:
        self.cfg = cfg
        self.partition = partition
        self.detector = KeyedDetector(
            cfg, early=False, min_volume=cfg.trend_min_volume, category_of=_category,
            z_open=cfg.trend_z_open, min_history=cfg.trend_history_s // cfg.hop_s,
        )
        self.sources: dict[int, tuple[int, int | None]] = {}
        self.expected: int | None = None
        self.released = False
        self.late = 0
        self.replayed = 0

    def keys_of(self, outbox: dict[str, Any]) -> list[tuple[str, ...]]:
        return [tuple(item[0]) for item in outbox["items"]]

    def missing(self, key: tuple[str, ...]) -> bool:
        return self.detector.missing(key)

    def watermark_ms(self) -> int | None:
        marks = [wm for _, wm in self.sources.values() if wm is not None]
        if not marks:
            return None
        if self.expected is not None and len(marks) < self.expected and not self.released:
            return None
        return min(marks)

    def release(self) -> list[Signal]:
        self.released = True
        mark = self.watermark_ms()
        if mark is None:
            return []
        return [from_decision(d, self.cfg, trend=True) for d in self.detector.close_through(mark)]

    def process(self, outbox: dict[str, Any], stored: dict[tuple[str, ...], BaselineRow]) -> list[Signal]:
        src, seq = int(outbox["src"]), int(outbox["seq"])
        prev = self.sources.get(src)
        if prev is not None and seq <= prev[0]:
            self.replayed += 1
            return []
        closed = self.detector.closed_through
        horizon = None if closed is None else closed - self.cfg.window_ms + self.cfg.hop_ms
        for k, pane, count, reps, overflow in outbox["items"]:
            if horizon is not None and pane < horizon:
                self.late += count
                continue
            key = tuple(k)
            self.detector.add(key, pane, tally=(count, reps, overflow), stored=stored.get(key))
        wm = outbox["wm"]
        if prev is not None and prev[1] is not None and (wm is None or wm < prev[1]):
            wm = prev[1]
        self.sources[src] = (seq, wm)
        mark = self.watermark_ms()
        if mark is None:
            return []
        return [from_decision(d, self.cfg, trend=True) for d in self.detector.close_through(mark)]


# ---- the synthetic backlog ------------------------------------------------------------------

def _poisson(rng: random.Random, lam: float) -> int:
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def backlog(hours: float, sources: int, outbox_hours: float, *, categories: int = 4,
            seed: int = 0) -> list[dict[str, Any]]:
    """Outboxes of ``sources`` upstream partitions over ``hours`` of event time, interleaved
    (each source in its own order), as a caught-up streams stage would never send them:
    ``outbox_hours`` of panes each. Deterministic in ``seed``."""
    cfg = DetectorConfig()
    hop = cfg.hop_ms
    rng = random.Random(seed)
    keys: list[tuple[str, ...]] = []
    for c in CATEGORIES[:categories]:
        keys.append((c,))
        keys.extend((c, r) for r in REGIONS)
    end = T0 + int(hours * HOUR)
    # per key: a base rate per pane and source, surges (start, end, factor), silences
    base = {k: rng.uniform(0.8, 3.0) * (3 if len(k) == 1 else 1) for k in keys}
    surges = {k: [(t, t + rng.randrange(3, 12) * 60_000, rng.uniform(4, 10))
                  for t in (rng.randrange(T0 + HOUR, end) for _ in range(max(1, int(hours / 12))))]
              for k in keys}
    silences = {k: [(t, t + rng.randrange(20, 90) * 60_000)
                    for t in (rng.randrange(T0, end) for _ in range(max(1, int(hours / 8))))]
                for k in keys if len(k) > 1}
    span = max(hop, int(outbox_hours * HOUR) // hop * hop)
    per_src: list[list[dict[str, Any]]] = []
    for src in range(sources):
        srng = random.Random(seed * 1_000 + src)
        boxes = []
        seq = 0
        for start in range(T0, end, span):
            items = []
            for pane in range(start, min(end, start + span), hop):
                day = 1.0 + 0.6 * math.sin(2 * math.pi * (pane - T0) / (24 * HOUR))
                for k in keys:
                    if any(a <= pane < b for a, b in silences.get(k, ())):
                        continue
                    lam = base[k] * day
                    for a, b, f in surges[k]:
                        if a <= pane < b:
                            lam *= f
                    n = _poisson(srng, lam)
                    if n:
                        reps = sorted({srng.getrandbits(32) for _ in range(n)})
                        items.append([list(k), pane, n, [[r, 1] for r in reps[:CAP]], len(reps) > CAP])
            seq += 1
            wm = min(end, start + span) - cfg.grace_ms
            boxes.append({"src": src, "seq": seq, "wm": wm, "items": items})
        seq += 1
        boxes.append({"src": src, "seq": seq, "wm": end + HOUR, "items": []})  # the idle flush
        per_src.append(boxes)
    order, queues = [], [list(reversed(q)) for q in per_src]
    while any(queues):
        order.append(rng.choice([q for q in queues if q]).pop())
    return order


# ---- running a task over it ---------------------------------------------------------------------

@dataclass
class Run:
    task: str
    reports: int
    seconds: float
    reports_per_s: float
    signals: int
    max_panes_per_key: int  # the most panes one key held in one detector call
    max_pane_scans_per_window: int  # panes scanned per closed window, summed over keys
    late: int


def watch(task: Any) -> dict[str, int]:
    """Wrap ``task.detector.close_through`` to record the panes held when it is called (each
    window it closes scans them, per key)."""
    det = task.detector
    inner = det.close_through
    seen = {"per_key": 0, "per_window": 0}

    def close_through(mark: int) -> Iterator[Any]:
        held = [len(ks.panes) for ks in det.keys.values()]
        if held:
            seen["per_key"] = max(seen["per_key"], max(held))
            seen["per_window"] = max(seen["per_window"], sum(held))
        return inner(mark)

    det.close_through = close_through  # type: ignore[method-assign]
    return seen


def drive(task: Any, order: list[dict[str, Any]], store: dict[tuple[str, ...], BaselineRow],
          expected: int) -> list[Signal]:
    """What ``TrendsStage`` and the runner do: look up missing keys, process, persist evicted."""
    task.expected = expected
    out: list[Signal] = []
    for ob in order:
        missing = [k for k in task.keys_of(ob) if task.missing(k)]
        stored = {k: store[k] for k in missing if k in store}
        out.extend(task.process(ob, stored))
        store.update(task.detector.take_evicted())  # a checkpoint after every outbox
    return out


def run(cls: type[Any], order: list[dict[str, Any]], sources: int) -> tuple[Run, list[Signal]]:
    task = cls(DetectorConfig(), 0)
    seen = watch(task)
    reports = sum(it[2] for ob in order for it in ob["items"])
    started = time.perf_counter()
    sigs = drive(task, order, {}, sources)
    secs = time.perf_counter() - started
    return Run(cls.__name__, reports, round(secs, 3), round(reports / secs), len(sigs), seen["per_key"],
               seen["per_window"], task.late), sigs


def per_key(sigs: list[Signal]) -> dict[str, list[Signal]]:
    out: dict[str, list[Signal]] = {}
    for s in sigs:
        out.setdefault(s.dedup_key, []).append(s)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=48.0)
    ap.add_argument("--sources", type=int, default=4)
    ap.add_argument("--outbox-hours", type=float, default=4.0)
    ap.add_argument("--categories", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--baseline", action="store_true", help="also run LegacyTrendTask and compare")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    order = backlog(a.hours, a.sources, a.outbox_hours, categories=a.categories, seed=a.seed)
    runs = []
    new, new_sigs = run(TrendTask, order, a.sources)
    runs.append(new)
    same = None
    if a.baseline:
        old, old_sigs = run(LegacyTrendTask, order, a.sources)
        runs.append(old)
        same = per_key(old_sigs) == per_key(new_sigs)
    if a.json:
        print(json.dumps({"runs": [asdict(r) for r in runs], "same_signals": same}))
        return
    print(f"backlog: {a.hours:g} h of event time, {a.sources} sources, outboxes of {a.outbox_hours:g} h, "
          f"{len(order)} outboxes, {runs[0].reports:,} reports")
    for r in runs:
        print(f"  {r.task:16s} {r.reports_per_s:>12,} reports/s  {r.seconds:8.2f} s  signals {r.signals:5d}  "
              f"max panes/key per call {r.max_panes_per_key:6d}  max pane-scans per window "
              f"{r.max_pane_scans_per_window:7d}  late {r.late}")
    if same is not None:
        print(f"  same signals per key: {same}")


if __name__ == "__main__":
    main()
