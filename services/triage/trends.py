"""The platform-wide trend task: per (category) and (category, region), across all streams.

Stream tasks pre-aggregate pane tallies and publish them, keyed by trend key, to a
repartition topic (``triage.trends``), as Kafka Streams does: every trend key lands in one
partition, whichever triage instance counted its reports. A ``TrendTask`` per repartition
partition merges them. Each upstream partition numbers its outboxes (``seq``; a large one is
split into ``part``s, see ``outbox_records``), so a re-published outbox is applied once; its
watermark comes along (on the last part), and this task's clock is
the minimum over all upstream partitions (``expected``): it does not move until every one of
them has reported a watermark, so no upstream partition's early data is judged late because
it started a little after the others. Windows are tested when they close, with complete
counts, so the result does not depend on arrival order or on how many instances ran.
An upstream partition that never sees a report would hold the clock forever; the runner
``release``s the wait after a wall-clock idle period (the one use of the wall clock).

Linear on a backlog: when the stream stage is catching up, outboxes carry hours of panes
ahead of this task's clock. The detector scans every pane a key holds for each window it
closes, so panes are handed to it only when the clock comes near them (``_ahead``); the rest
wait here, merged per (pane, key), in a heap by pane. The clock is moved ``_step`` at a time,
so one detector call never holds more than a few windows of panes per key, however far the
watermark jumped. What the detector sees is what it would have seen had every pane gone in at
once (the same windows, closed in the same order per key); only the order across keys of the
signals from one jump differs, which was never a contract.
"""

from __future__ import annotations

import heapq
from typing import Any

import orjson

from services.triage.detector import BaselineRow, Decision, DetectorConfig, KeyedDetector
from services.triage.signals import from_decision
from services.triage.tally import Tally
from shared.events import Signal

Key = tuple[str, ...]


def _category(key: Key) -> str:
    return key[0]


class TrendTask:
    """Detection state of one repartition-topic partition."""

    def __init__(self, cfg: DetectorConfig, partition: int) -> None:
        self.cfg = cfg
        self.partition = partition
        self.detector = KeyedDetector(
            cfg, early=False, min_volume=cfg.trend_min_volume, category_of=_category,
            z_open=cfg.trend_z_open, min_history=cfg.trend_history_s // cfg.hop_s,
        )
        self.sources: dict[int, tuple[int, int | None]] = {}  # src partition -> (seq, watermark)
        self.parts: dict[int, int] = {}  # src partition -> last part applied of its seq (if > 0)
        self.expected: int | None = None  # upstream partitions; None = whoever has reported
        self.released = False
        self.late = 0
        self.replayed = 0
        self._hop = cfg.hop_ms
        # panes at or past clock + _ahead wait in _pending (a window and its grace: in steady
        # state every pane goes straight in); the clock moves at most _step per detector call
        self._ahead = cfg.window_ms + cfg.grace_ms
        self._step = cfg.window_ms
        self._pending: dict[int, dict[Key, Tally]] = {}  # pane -> key -> merged tally
        self._heap: list[int] = []  # the panes of _pending
        # per key with pending panes: the latest one (the detector's idea of when the key was
        # last seen must include them, or it would evict a key that has data coming)
        self._pending_last: dict[Key, int] = {}
        # the stored baseline of a key with pending panes that the detector does not hold
        # (None: looked up, none stored), kept until it is created from it
        self._stored: dict[Key, BaselineRow | None] = {}

    def keys_of(self, outbox: dict[str, Any]) -> list[Key]:
        return [tuple(item[0]) for item in outbox["items"]]

    def missing(self, key: Key) -> bool:
        return key not in self._stored and self.detector.missing(key)

    def watermark_ms(self) -> int | None:
        marks = [wm for _, wm in self.sources.values() if wm is not None]
        if not marks:
            return None
        if self.expected is not None and len(marks) < self.expected and not self.released:
            return None  # somebody has not spoken yet
        return min(marks)

    def waiting(self) -> bool:
        """True while data is held back because an upstream partition has not reported."""
        return self.watermark_ms() is None and (bool(self.detector.keys) or bool(self._heap))

    def pending_panes(self) -> int:
        """(pane, key) tallies held back until the clock comes near them."""
        return sum(len(v) for v in self._pending.values())

    def release(self) -> list[Signal]:
        """Stop waiting for silent upstream partitions (called after an idle period)."""
        self.released = True
        mark = self.watermark_ms()
        if mark is None:
            return []
        return self._close_through(mark)

    def process(self, outbox: dict[str, Any], stored: dict[Key, BaselineRow]) -> list[Signal]:
        src, seq = int(outbox["src"]), int(outbox["seq"])
        part = int(outbox.get("part", 0))
        prev = self.sources.get(src)
        if prev is not None and (seq, part) <= (prev[0], self.parts.get(src, 0)):
            self.replayed += 1
            return []
        det = self.detector
        closed = det.closed_through
        horizon = None if closed is None else closed - self.cfg.window_ms + self.cfg.hop_ms
        feed_below = None if closed is None else closed + self._ahead
        for k, pane, count, reps, overflow in outbox["items"]:
            if horizon is not None and pane < horizon:
                self.late += count
                continue
            key = tuple(k)
            if feed_below is not None and pane < feed_below:
                row = stored.get(key)
                self._add(key, pane, (count, reps, overflow), row if row is not None else self._stored.get(key))
            else:
                self._hold(key, pane, count, reps, overflow, stored.get(key))
        wm = outbox["wm"]
        if prev is not None and prev[1] is not None and (wm is None or wm < prev[1]):
            wm = prev[1]
        self.sources[src] = (seq, wm)
        if part:
            self.parts[src] = part
        else:
            self.parts.pop(src, None)
        mark = self.watermark_ms()
        if mark is None:
            return []
        return self._close_through(mark)

    # ---- panes ahead of the clock ---------------------------------------------------------

    def _add(self, key: Key, pane: int, tally: tuple[int, list[tuple[int, int]], bool],
             stored: BaselineRow | None) -> None:
        det = self.detector
        det.add(key, pane, tally=tally, stored=stored)
        last = self._pending_last.get(key)
        if last is not None:
            ks = det.keys[key]
            if ks.last_ms < last:
                ks.last_ms = last

    def _hold(self, key: Key, pane: int, count: int, reps: list[tuple[int, int]], overflow: bool,
              stored: BaselineRow | None) -> None:
        by_key = self._pending.get(pane)
        if by_key is None:
            by_key = self._pending[pane] = {}
            heapq.heappush(self._heap, pane)
        t = by_key.get(key)
        if t is None:
            t = by_key[key] = Tally()
        t.merge(count, reps, overflow)  # merging is order-free: the detector sees the same pane
        last = self._pending_last.get(key)
        if last is None or pane > last:
            self._pending_last[key] = pane
        det = self.detector
        ks = det.keys.get(key)
        if ks is not None:
            if ks.last_ms < pane:
                ks.last_ms = pane  # what adding the pane would have done
        elif key not in self._stored:
            # as the detector would: an evicted row not yet persisted first, then the store's
            row = det.evicted.get(key)
            self._stored[key] = row if row is not None else stored

    def _feed(self, below: int) -> None:
        """Hand every pending pane before ``below`` to the detector, in pane order."""
        heap = self._heap
        if not heap or heap[0] >= below:
            return
        pending, fed = self._pending, set()
        while heap and heap[0] < below:
            pane = heapq.heappop(heap)
            for key, t in pending.pop(pane).items():
                self._add(key, pane, t.dump(), self._stored.get(key))
                fed.add(key)
        for key in fed:
            if self._pending_last[key] < below:  # nothing of it waits any more
                del self._pending_last[key]
                self._stored.pop(key, None)

    def _close_through(self, mark: int) -> list[Signal]:
        det, hop, step, ahead = self.detector, self._hop, self._step, self._ahead
        last = mark - mark % hop
        decisions: list[Decision] = []
        if det.closed_through is None:
            # the clock starts just before the earliest data held or pending
            held = [min(ks.panes) for ks in det.keys.values() if ks.panes]
            if self._heap:
                held.append(self._heap[0])
            earliest = min(held, default=None)
            if earliest is None or earliest >= last:
                decisions.extend(det.close_through(mark))  # nothing to close: starts at mark
                self._feed(last + ahead)
                return [from_decision(d, self.cfg, trend=True) for d in decisions]
            target = min(last, earliest + step)
            self._feed(target)
            decisions.extend(det.close_through(target))
            self._feed(target + ahead)
        closed = det.closed_through
        assert closed is not None
        while closed < last:
            target = min(last, closed + step)
            decisions.extend(det.close_through(target))
            closed = target
            self._feed(closed + ahead)
        return [from_decision(d, self.cfg, trend=True) for d in decisions]

    # ---- checkpoint -----------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        return {
            "detector": self.detector.dump(),
            "sources": [[p, s, wm] for p, (s, wm) in self.sources.items()],
            "parts": [[p, n] for p, n in self.parts.items()],
            "released": self.released,
            "pending": [[list(k), pane, *t.dump()] for pane, by_key in self._pending.items()
                        for k, t in by_key.items()],
            "stored": [[list(k), None if row is None else list(row)] for k, row in self._stored.items()],
        }

    def load(self, d: dict[str, Any]) -> None:
        self.detector.load(d["detector"])
        self.sources = {int(p): (int(s), wm) for p, s, wm in d["sources"]}
        self.parts = {int(p): int(n) for p, n in d.get("parts", ())}
        self.released = bool(d.get("released", False))
        self._pending, self._heap, self._pending_last = {}, [], {}
        self._stored = {tuple(k): None if row is None else tuple(row)
                        for k, row in d.get("stored", ())}
        for k, pane, count, reps, overflow in d.get("pending", ()):
            key = tuple(k)
            by_key = self._pending.get(pane)
            if by_key is None:
                by_key = self._pending[pane] = {}
                heapq.heappush(self._heap, pane)
            by_key[key] = Tally.load((count, reps, overflow))
            if pane > self._pending_last.get(key, pane - 1):
                self._pending_last[key] = pane


# ---- the records an outbox is published as ------------------------------------------------

def outbox_records(outbox: dict[str, Any], items: list[Any], max_bytes: int) -> list[bytes]:
    """``outbox`` with ``items`` (one repartition partition's share) as JSON records of at most
    ``max_bytes`` each (but for a single item larger than that, alone in its record).

    One record is the outbox as it always was. A larger one is cut into parts numbered
    ``part`` 1..``parts``; only the last carries the watermark, so no part's panes are judged
    late because the clock moved on an earlier one. The cut depends only on the items and
    ``max_bytes``: a re-published outbox is cut the same way, and ``(seq, part)`` dedups it.
    """
    dumps = orjson.dumps
    encoded = [dumps(item) for item in items]
    rest = {k: v for k, v in outbox.items() if k != "items"}
    whole = dumps({**rest, "items": []})  # ends in [], "items" last: the items go in between
    if len(whole) + sum(len(e) + 1 for e in encoded) <= max_bytes:
        return [whole[:-2] + b",".join(encoded) + b"]}"]
    head = {"src": outbox["src"], "seq": outbox["seq"]}
    # room for the envelope: src, seq, part, parts, wm and the brackets
    budget = max_bytes - len(dumps({**head, "part": 10**9, "parts": 10**9, "wm": outbox["wm"], "items": []}))
    chunks: list[list[bytes]] = [[]]
    size = 0
    for e in encoded:
        if chunks[-1] and size + len(e) + 1 > budget:
            chunks.append([])
            size = 0
        chunks[-1].append(e)
        size += len(e) + 1
    n = len(chunks)
    out = []
    for i, chunk in enumerate(chunks, 1):
        env = dumps({**head, "part": i, "parts": n, "wm": outbox["wm"] if i == n else None, "items": []})
        out.append(env[:-2] + b",".join(chunk) + b"]}")
    return out
