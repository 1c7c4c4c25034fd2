"""The triage service: two partitioned stages with state checkpointed to Postgres.

- ``streams`` consumes ``triage.reports``: per-(stream, category) spikes and critical reports;
  it pre-aggregates trend tallies and publishes them to ``triage.trends`` (repartition).
- ``trends`` consumes ``triage.trends``: platform-wide spikes per category and region.

Exactly-once state without Kafka transactions: a partition's task state and the offset it is
valid at are saved together in one Postgres transaction (a checkpoint). On assignment a task
is restored from its checkpoint and the consumer seeks to that offset, so a restart or
rebalance replays exactly what the state has not seen. Signals are produced before the
checkpoint; replays re-produce them with the same deterministic ids, which the notifier
applies once. Trend outboxes are published after the checkpoint commits (an outbox in the
checkpoint row), numbered per source partition so the trend stage applies each once, and cut
into parts of at most ``state_record_max_bytes`` (a backlog puts hours of tallies in one).
On any failure the runner rewinds: it reloads every task from its checkpoint; but a record
that can never be produced (too large, rejected: ``produce.permanent_reason``) is logged,
counted and dropped, or replaying would re-send it for ever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, cast

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.structs import OffsetAndMetadata
from sqlalchemy.ext.asyncio import AsyncEngine

from services.triage.detector import BaselineRow, DetectorConfig
from services.triage.metrics import TriageMetrics
from services.triage.produce import permanent_reason, settle
from services.triage.scoring import ScoringConfig
from services.triage.state import Checkpoint, TriageStore
from services.triage.streams import StreamTask
from services.triage.trends import TrendTask, outbox_records
from shared.errors import retryable_types
from shared.events import Signal
from shared.kafka import Record, backoff_s, dlq_headers, dlq_topic, open_consumer
from shared.publish import key_hash
from shared.settings import Settings

log = logging.getLogger(__name__)
SRC_HEADER = "lt.src"
FORGET_EVERY_S = 600.0
BASELINE_TTL_MS = 7 * 24 * 3600 * 1000


OnPermanent = Callable[[str, BaseException], None]
# reports handled between two yields to the event loop: a 5,000-record batch of a backlog
# otherwise held it for seconds (bench.backlog: 2.3 s), /metrics and heartbeats with it
YIELD_EVERY = 500


def dropper(m: TriageMetrics, record: str) -> OnPermanent:
    """What to do with a ``record`` kind that can never be produced: log it, count it."""
    def on_permanent(reason: str, exc: BaseException) -> None:
        m.dropped.labels(record, reason).inc()
        log.error("triage: dropped a %s record that can never be produced (%s): %r", record, reason, exc)
    return on_permanent


async def send_or_drop(producer: AIOKafkaProducer, on_permanent: OnPermanent, topic: str,
                       value: bytes | None, **kw: Any) -> asyncio.Future[Any] | None:
    """``producer.send``, but a record refused for good (aiokafka refuses one over
    max_request_size before sending it) is handed to ``on_permanent`` instead of raising."""
    try:
        return cast("asyncio.Future[Any]", await producer.send(topic, value, **kw))  # aiokafka is untyped
    except Exception as exc:
        reason = permanent_reason(exc)
        if reason is None:
            raise
        on_permanent(reason, exc)
        return None


def detector_config(s: Settings) -> DetectorConfig:
    return DetectorConfig(
        window_s=s.window_size_s,
        hop_s=s.window_hop_s,
        grace_s=s.window_grace_s,
        half_life_s=s.baseline_half_life_s,
        z_open=s.spike_z_open,
        var_floor=s.spike_var_floor,
        ratio_open=s.spike_ratio_open,
        min_volume=s.spike_min_volume,
        min_reporters=s.spike_min_reporters,
        per_reporter_cap=s.spike_per_reporter_cap,
        z_close=s.spike_z_close,
        close_after=s.spike_close_after,
        idle_evict_s=s.key_idle_evict_s,
        trend_min_volume=s.trend_min_volume,
        trend_history_s=s.trend_history_s,
        trend_z_open=s.trend_z_open,
        scan_windows_s=s.spike_scan_windows_s,
        open_log10_p=s.spike_open_log10_p,
        budget_exponent=s.spike_budget_exponent,
        max_dispersion=s.spike_max_dispersion,
        recur_horizon_s=s.spike_recur_horizon_s,
        ramp_window_s=s.spike_ramp_window_s,
        progress_every_s=s.progress_every_s,
        scoring=ScoringConfig(critical_score=s.critical_score, severity_thresholds=s.severity_thresholds),
    )


class Stage(Protocol):
    """What differs between the streams and trends stages."""

    name: str
    topic: str
    group_id: str
    m: TriageMetrics

    def new(self, partition: int) -> Any: ...
    async def apply(self, task: Any, records: list[Record]) -> list[Signal]: ...
    def take_outbox(self, task: Any) -> dict[str, Any] | None: ...
    def outbox_items(self, task: Any) -> int: ...
    async def publish(self, outboxes: list[dict[str, Any]]) -> None: ...


class StreamsStage:
    """Clean reports -> per-stream signals, plus trend outboxes."""

    name = "streams"

    def __init__(self, s: Settings, cfg: DetectorConfig, store: TriageStore, producer: AIOKafkaProducer,
                 metrics: TriageMetrics) -> None:
        self.s, self.cfg, self.store, self.producer, self.m = s, cfg, store, producer, metrics
        self.topic = s.clean_topic
        self.group_id = s.triage_group
        self._trend_parts: int | None = None
        self._drop_dlq = dropper(metrics, "dlq")
        self._drop_trend = dropper(metrics, "trend")

    def new(self, partition: int) -> StreamTask:
        return StreamTask(self.cfg, partition)

    async def apply(self, task: StreamTask, records: list[Record]) -> list[Signal]:
        # one pass to parse and find keys whose baselines may be in the store, one to decide
        parsed: list[tuple[dict[str, Any], int, tuple[int, int] | None, tuple[str, str]]] = []
        missing: set[tuple[str, str]] = set()
        loads = orjson.loads
        lookups = self.store.maybe_has_rows
        for rec in records:
            try:
                rep = loads(rec.value)
                key = (rep["stream_id"], rep["category"])
                rep["report_id"]  # required: a KeyError dead-letters the record
                ts = rec.timestamp if rec.timestamp_type == 0 else _event_ms(rep["reported_at"])
                src = None
                for hk, hv in rec.headers or ():
                    if hk == SRC_HEADER:
                        sp, _, so = hv.partition(b":")
                        src = (int(sp), int(so))
                parsed.append((rep, ts, src, key))
                if lookups and task.missing(key):
                    missing.add(key)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                self.m.invalid.inc()
                await self._dead_letter(rec, repr(exc)[:300])
        stored = await self.store.baselines(missing) if missing else {}
        out: list[Signal] = []
        late, replayed = task.late, task.replayed
        process = task.process
        for i, (rep, ts, src, key) in enumerate(parsed):
            sigs = process(rep, ts, src, stored.get(key) if stored else None)
            if sigs:
                out.extend(sigs)
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # let heartbeats, commits and /metrics run mid-batch
        self.m.late.labels(self.name).inc(task.late - late)
        self.m.replayed.labels(self.name).inc(task.replayed - replayed)
        return out

    async def _dead_letter(self, rec: Record, detail: str) -> None:
        """The record to the clean topic's DLQ; if the copy itself can never be produced (the
        headers pushed it past the limit), its headers alone: they say where the original is."""
        topic = dlq_topic(self.s.clean_topic)
        headers = dlq_headers(rec, "unreadable_clean_report", detail)
        refused: list[str] = []
        fut = await send_or_drop(self.producer, lambda r, _e: refused.append(r), topic, rec.value,
                                 key=rec.key, headers=headers)
        if fut is not None:
            try:
                await fut
            except Exception as exc:
                reason = permanent_reason(exc)
                if reason is None:
                    raise
                refused.append(reason)
        if refused:
            self.m.dropped.labels("dlq_value", refused[0]).inc()
            headers = [*headers, ("lt.dlq.value_dropped", refused[0].encode())]
            fut = await send_or_drop(self.producer, self._drop_dlq, topic, None, key=rec.key, headers=headers)
            if fut is not None:
                await settle([fut], self._drop_dlq)

    def take_outbox(self, task: StreamTask) -> dict[str, Any]:
        return task.take_trend_outbox()

    def outbox_items(self, task: StreamTask) -> int:
        return len(task.trend_out)

    async def publish(self, outboxes: list[dict[str, Any]]) -> None:
        if not outboxes:
            return
        if self._trend_parts is None:
            self._trend_parts = len(await self.producer.partitions_for(self.s.trends_topic))
        n = self._trend_parts
        futures = []
        for ob in outboxes:
            by_part: list[list[Any]] = [[] for _ in range(n)]
            for item in ob["items"]:
                key = "\x1f".join(item[0]).encode()
                by_part[key_hash(key) % n].append(item)
            for p in range(n):  # every partition hears the watermark, data or not
                for value in outbox_records(ob, by_part[p], self.s.state_record_max_bytes):
                    fut = await send_or_drop(self.producer, self._drop_trend, self.s.trends_topic, value,
                                             partition=p)
                    if fut is not None:
                        futures.append(fut)
        await settle(futures, self._drop_trend)
        self.m.trend_records.inc(len(futures))


class TrendsStage:
    """Trend tallies from every stream partition -> platform-wide signals."""

    name = "trends"

    def __init__(self, s: Settings, cfg: DetectorConfig, store: TriageStore, producer: AIOKafkaProducer,
                 metrics: TriageMetrics) -> None:
        self.s, self.cfg, self.store, self.producer, self.m = s, cfg, store, producer, metrics
        self.topic = s.trends_topic
        self.group_id = s.trend_group
        self._sources: int | None = None

    def new(self, partition: int) -> TrendTask:
        return TrendTask(self.cfg, partition)

    async def apply(self, task: TrendTask, records: list[Record]) -> list[Signal]:
        if self._sources is None:
            self._sources = len(await self.producer.partitions_for(self.s.clean_topic))
        task.expected = self._sources
        out: list[Signal] = []
        late, replayed = task.late, task.replayed
        for rec in records:
            try:
                outbox = orjson.loads(rec.value)
                keys = task.keys_of(outbox)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                self.m.invalid.inc()  # written only by triage itself: log-worthy, never fatal
                log.error("unreadable trend record at %s:%s", rec.partition, rec.offset)
                continue
            missing = [k for k in keys if task.missing(k)]
            stored = await self.store.baselines(missing) if missing else {}
            out.extend(task.process(outbox, stored))
            await asyncio.sleep(0)  # one outbox can close hours of windows: let others run
        self.m.late.labels(self.name).inc(task.late - late)
        self.m.replayed.labels(self.name).inc(task.replayed - replayed)
        return out

    def take_outbox(self, task: TrendTask) -> None:
        return None

    def outbox_items(self, task: TrendTask) -> int:
        return 0

    async def publish(self, outboxes: list[dict[str, Any]]) -> None:
        return None


def _event_ms(reported_at: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(reported_at).timestamp() * 1000)


class PartitionedRunner:
    """Consume -> apply -> produce signals -> checkpoint, for one stage, with rebalances."""

    def __init__(
        self,
        settings: Settings,
        stage: Stage,
        store: TriageStore,
        producer: AIOKafkaProducer,
        metrics: TriageMetrics,
        *,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.s = settings
        self.stage = stage
        self.store = store
        self.producer = producer
        self.m = metrics
        self.wall_ms = wall_ms
        self.lock = asyncio.Lock()
        self.tasks: dict[int, Any] = {}
        self.next_offsets: dict[int, int] = {}
        self.pending: set[int] = set()  # assigned, not yet restored
        self.dirty: set[int] = set()
        self.last_input: dict[int, float] = {}
        self.last_checkpoint = time.monotonic()
        self.last_forget = time.monotonic()
        self.in_flight: list[asyncio.Future[Any]] = []  # signals sent, acks not yet awaited
        self._saving: asyncio.Task[None] | None = None  # the checkpoint being written
        self.consumer: AIOKafkaConsumer | None = None
        self._retryable = retryable_types()
        self._drop_signal = dropper(metrics, "signal")

    # ---- rebalance ----------------------------------------------------------------------

    def listener(self) -> ConsumerRebalanceListener:
        runner = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped: its base is Any
            async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
                async with runner.lock:
                    mine = [tp.partition for tp in revoked if tp.topic == runner.stage.topic]
                    try:
                        await asyncio.wait_for(runner.checkpoint(mine), timeout=10)
                    except Exception as exc:  # noqa: BLE001  (the next owner replays from the last checkpoint)
                        log.warning("%s: checkpoint on revoke failed: %r", runner.stage.name, exc)
                    for p in mine:
                        runner._drop(p)

            async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
                mine = {tp.partition for tp in assigned if tp.topic == runner.stage.topic}
                new = mine - set(runner.tasks)
                runner.pending |= new
                if new and runner.consumer is not None:
                    runner.consumer.pause(*[TopicPartition(runner.stage.topic, p) for p in new])

        return Listener()

    def _drop(self, p: int) -> None:
        self.tasks.pop(p, None)
        self.next_offsets.pop(p, None)
        self.dirty.discard(p)
        self.pending.discard(p)
        self.last_input.pop(p, None)

    async def restore_pending(self) -> None:
        assert self.consumer is not None
        parts = sorted(self.pending)
        cps = await self.store.load(self.stage.topic, parts)
        outboxes = []
        for p in parts:
            task = self.stage.new(p)
            tp = TopicPartition(self.stage.topic, p)
            cp = cps.get(p)
            if cp is not None:
                task.load(cp.snapshot)
                self.consumer.seek(tp, cp.next_offset)
                self.next_offsets[p] = cp.next_offset
                if cp.outbox is not None:
                    outboxes.append(cp.outbox)  # may not have been published before a crash
            else:
                await self.consumer.seek_to_beginning(tp)
                self.next_offsets[p] = 0
            self.tasks[p] = task
            self.last_input[p] = time.monotonic()
        await self.stage.publish(outboxes)
        self.consumer.resume(*[TopicPartition(self.stage.topic, p) for p in parts])
        self.pending.difference_update(parts)
        log.info("%s: restored partitions %s (%d from checkpoints)", self.stage.name, parts, len(cps))

    async def rewind(self) -> None:
        """Forget in-memory state; every owned partition is restored from its checkpoint."""
        assert self.consumer is not None
        self.m.rewinds.labels(self.stage.name).inc()
        pending, self.in_flight = self.in_flight, []
        if self._saving is not None:
            pending.append(self._saving)
            self._saving = None
        await asyncio.gather(*pending, return_exceptions=True)  # replay re-sends what failed
        owned = {tp.partition for tp in self.consumer.assignment() if tp.topic == self.stage.topic}
        for p in list(self.tasks):
            self._drop(p)
        self.pending = owned
        if owned:
            self.consumer.pause(*[TopicPartition(self.stage.topic, p) for p in owned])

    # ---- work ---------------------------------------------------------------------------

    async def _settle_in_flight(self) -> None:
        futures, self.in_flight = self.in_flight, []
        await settle(futures, self._drop_signal)

    async def checkpoint(self, parts: list[int], *, wait: bool = True) -> None:
        """Persist the dirty ones of ``parts`` (a clean task's state is already on disk).

        The snapshot is taken (and encoded) now; writing it — after every signal produced
        so far is acknowledged by the broker — then publishing the outboxes and committing
        offsets run in the background unless ``wait``, overlapping the next batches (the
        write was ~10% of the stage's time). One write at a time: a checkpoint first waits
        for the one before, and a failed write surfaces at the next step, which rewinds."""
        await self._saved()
        parts = [p for p in parts if p in self.tasks and p in self.dirty]
        if not parts:
            return
        started = time.perf_counter()
        acks, self.in_flight = self.in_flight, []
        cps: dict[int, Checkpoint] = {}
        evicted: dict[tuple[str, ...], BaselineRow] = {}
        outboxes = []
        for p in parts:
            task = self.tasks[p]
            ob = self.stage.take_outbox(task)
            if ob is not None:
                outboxes.append(ob)
            evicted.update(task.detector.take_evicted())
            cps[p] = Checkpoint(self.next_offsets[p], orjson.dumps(task.dump()), ob)
            await asyncio.sleep(0)  # a backlog's snapshots are large: one partition at a time
        self.store.stage_evicted(evicted)
        self.dirty.difference_update(parts)
        self._saving = asyncio.create_task(
            self._persist(acks, cps, evicted, outboxes, started), name=f"checkpoint-{self.stage.name}"
        )
        if wait:
            await self._saved()

    async def _saved(self) -> None:
        """Wait for the checkpoint being written, if any; raise what it failed with."""
        saving, self._saving = self._saving, None
        if saving is not None:
            await saving

    async def _persist(
        self,
        acks: list[asyncio.Future[Any]],
        cps: dict[int, Checkpoint],
        evicted: dict[tuple[str, ...], BaselineRow],
        outboxes: list[dict[str, Any]],
        started: float,
    ) -> None:
        await settle(acks, self._drop_signal)
        await self.store.save(self.stage.topic, cps, evicted)
        await self.stage.publish(outboxes)
        self.last_checkpoint = time.monotonic()
        if self.consumer is not None:  # for lag monitoring only; the checkpoint is the truth
            owned = self.consumer.assignment()
            offsets = {
                TopicPartition(self.stage.topic, p): OffsetAndMetadata(cp.next_offset, "")
                for p, cp in cps.items()
                if TopicPartition(self.stage.topic, p) in owned
            }
            try:
                if offsets:
                    await self.consumer.commit(offsets)
            except Exception as exc:  # noqa: BLE001  (a lagging commit is harmless here)
                log.debug("offset commit skipped: %r", exc)
        self.m.checkpoint_seconds.labels(self.stage.name).observe(time.perf_counter() - started)

    async def step(self, batch: dict[TopicPartition, list[Record]]) -> None:
        if self._saving is not None and self._saving.done():
            await self._saved()  # a failed write raises here: the caller rewinds
        signals: list[Signal] = []
        now = time.monotonic()
        for tp, recs in batch.items():
            p = tp.partition
            task = self.tasks.get(p)
            if task is None or p in self.pending:
                continue  # revoked or not yet restored: the owner will read it
            if recs[0].offset < self.next_offsets[p]:  # only right after a seek
                recs = [r for r in recs if r.offset >= self.next_offsets[p]]
                if not recs:
                    continue
            signals.extend(await self.stage.apply(task, recs))
            self.next_offsets[p] = recs[-1].offset + 1
            self.dirty.add(p)
            self.last_input[p] = now
            self.m.consumed.labels(self.stage.name).inc(len(recs))
        if self.s.idle_flush_s > 0:
            signals.extend(self._flush_idle(now))
        for sig in signals:
            self.m.signals.labels(sig.kind).inc()
            # the report ids tie a report to the signal it raised, and (signal_id) to its incident
            log.log(logging.DEBUG if sig.kind == "progress" else logging.INFO, "signal %s: %s", sig.kind,
                    sig.reason, extra={"signal_id": sig.signal_id, "dedup_key": sig.dedup_key,
                                       "severity": sig.severity.value, "report_ids": sig.sample_report_ids})
            # acks are awaited before the next checkpoint, not here: the checkpoint is what
            # makes the input "done", and until then a crash replays (and re-sends) it anyway
            fut = await send_or_drop(self.producer, self._drop_signal, self.s.signals_topic,
                                     sig.model_dump_json().encode(), key=sig.dedup_key.encode())
            if fut is not None:
                self.in_flight.append(fut)
        if len(self.in_flight) > 10_000:
            await self._settle_in_flight()
        if self.dirty and self._saving is None and (
            now - self.last_checkpoint >= self.s.checkpoint_interval_s or self._outbox_full()
        ):
            await self.checkpoint(sorted(self.dirty), wait=False)
        if now - self.last_forget >= FORGET_EVERY_S:
            await self._forget_old_baselines()
            self.last_forget = now
        self.m.keys.labels(self.stage.name).set(sum(len(t.detector.keys) for t in self.tasks.values()))

    def _outbox_full(self) -> bool:
        """A partition's trend outbox is big enough to go now: on a backlog, event time runs far
        ahead of the wall-clock checkpoint interval, and an outbox spanning hours would hold
        the trend stage back for as long (and need many records)."""
        limit = self.s.trend_outbox_max_items
        return any(self.stage.outbox_items(t) >= limit for p, t in self.tasks.items() if p in self.dirty)

    async def _forget_old_baselines(self) -> None:
        """Baselines of keys silent for BASELINE_TTL (event time) go: a million one-off
        streams a day must not grow the table without bound either."""
        await self._saved()  # not alongside a checkpoint's upserts: they may touch the same rows
        marks = [t.detector.closed_through for t in self.tasks.values() if t.detector.closed_through]
        if marks:
            removed = await self.store.forget(min(marks) - BASELINE_TTL_MS)
            if removed:
                log.info("%s: forgot %d idle baselines", self.stage.name, removed)

    def _flush_idle(self, now: float) -> list[Signal]:
        """A partition silent for idle_flush_s moves its clock on, at most as fast as the wall
        clock, so spikes on it can end. The only place the wall clock touches detection."""
        out: list[Signal] = []
        for p, task in self.tasks.items():
            if now - self.last_input.get(p, now) < self.s.idle_flush_s:
                continue
            if not self._caught_up(p):
                continue  # silent because the broker is not answering, not because it is idle
            if isinstance(task, TrendTask):
                if task.waiting():
                    out.extend(task.release())
                    self.dirty.add(p)
                continue
            if task.max_event_ms is None:
                continue
            target = min(self.wall_ms(), task.max_event_ms + int(self.s.idle_flush_s * 1000))
            out.extend(task.advance(target))
            self.last_input[p] = now
            self.dirty.add(p)
        return out

    def _caught_up(self, p: int) -> bool:
        """The broker said, in a fetch answered just now, that nothing is left to read on
        ``p``. A hung or unreachable broker also makes a partition silent; flushing then would
        close windows whose reports are merely delayed (found by the fault suite: SIGSTOP of
        the broker changed the signals)."""
        if self.consumer is None:
            return True
        tp = TopicPartition(self.stage.topic, p)
        if tp not in self.consumer.assignment():
            return False
        high: int | None = self.consumer.highwater(tp)  # aiokafka is untyped
        polled: int | None = self.consumer.last_poll_timestamp(tp)
        if high is None or polled is None:
            return False
        fresh_ms = max(2_000, 5 * self.s.poll_timeout_ms)
        return self.next_offsets.get(p, 0) >= high and time.time() * 1000 - polled <= fresh_ms

    async def run(self, stop: asyncio.Event) -> None:
        async with open_consumer(
            self.s, [self.stage.topic], self.stage.group_id, listener=self.listener()
        ) as consumer:
            self.consumer = consumer
            try:
                log.info("triage %s consuming %s", self.stage.name, self.stage.topic)
                attempt = 0
                while not stop.is_set():
                    try:
                        if self.pending:
                            async with self.lock:
                                await self.restore_pending()
                        batch = await consumer.getmany(
                            timeout_ms=self.s.poll_timeout_ms, max_records=self.s.batch_max_records
                        )
                        await self.stage.m.lag.observe(consumer, self.stage.group_id)
                        async with self.lock:
                            await self.step(batch)
                        attempt = 0
                    except self._retryable as exc:
                        delay = backoff_s(attempt)
                        attempt += 1
                        log.warning("triage %s failed (%r); rewinding, retry in %.2fs", self.stage.name, exc, delay)
                        async with self.lock:
                            await self.rewind()
                        try:
                            await asyncio.wait_for(stop.wait(), timeout=delay)
                        except TimeoutError:
                            pass
                # graceful stop: persist what we have (revoke is not called before stop)
                async with self.lock:
                    try:
                        await self.checkpoint(sorted(self.tasks))  # the dirty ones; others are saved
                    except self._retryable as exc:
                        log.warning("final checkpoint failed, will replay: %r", exc)
            finally:
                # a crash or cancellation mid-write: the write must not outlive the consumer
                # (it commits offsets through it); the checkpoint before it stands
                if self._saving is not None:
                    self._saving.cancel()
                    await asyncio.gather(self._saving, return_exceptions=True)
                    self._saving = None
        self.consumer = None
        log.info("triage %s stopped", self.stage.name)


async def run_triage(
    settings: Settings,
    *,
    producer: AIOKafkaProducer,
    engine: AsyncEngine,
    metrics: TriageMetrics,
    stop: asyncio.Event,
) -> None:
    """Run both triage stages until ``stop`` is set."""
    cfg = detector_config(settings)
    streams_store = TriageStore(engine, settings.triage_group)
    trends_store = TriageStore(engine, settings.trend_group)
    runners = [
        PartitionedRunner(settings, StreamsStage(settings, cfg, streams_store, producer, metrics),
                          streams_store, producer, metrics),
        PartitionedRunner(settings, TrendsStage(settings, cfg, trends_store, producer, metrics),
                          trends_store, producer, metrics),
    ]
    await asyncio.gather(*(r.run(stop) for r in runners))
