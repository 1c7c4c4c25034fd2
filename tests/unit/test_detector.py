"""KeyedDetector: baselines, opening gates, brigade resistance, hysteresis, eviction, checkpoints."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable

import orjson
import pytest

from services.triage.baseline import Baseline, tail_threshold
from services.triage.detector import Decision, DetectorConfig, KeyedDetector

T0 = 1_700_000_000_000  # a multiple of every hop used here
CFG = DetectorConfig()
KEY = ("s1", "violence")


def detector(cfg: DetectorConfig = CFG, *, early: bool = True) -> KeyedDetector:
    return KeyedDetector(cfg, early=early, min_volume=cfg.min_volume, category_of=lambda k: k[-1])


def feed(
    det: KeyedDetector, events: Iterable[tuple[int, int]], key: tuple[str, ...] = KEY, viewers: int = 0
) -> list[Decision]:
    """Apply (ts_ms, reporter) in order the way a StreamTask does: move the watermark, then add."""
    out: list[Decision] = []
    for ts, reporter in events:
        out.extend(det.close_through(ts - det.cfg.grace_ms))
        d = det.add(key, ts, reporter=reporter, viewers=viewers, report_id=f"r{ts}-{reporter}")
        if d is not None:
            out.append(d)
    return out


def poisson(rng: random.Random, rate_per_s: float, start: int, end: int) -> list[int]:
    out, t = [], float(start)
    while True:
        t += rng.expovariate(rate_per_s) * 1000
        if t >= end:
            return out
        out.append(int(t))


def crowd(rng: random.Random, times: list[int]) -> list[tuple[int, int]]:
    return [(t, rng.getrandbits(32)) for t in times]


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        DetectorConfig(window_s=65, hop_s=10)
    with pytest.raises(ValueError):
        DetectorConfig(hop_s=0)
    with pytest.raises(ValueError):
        DetectorConfig(grace_s=-1)
    assert CFG.window_ms == 60_000 and CFG.hop_ms == 10_000 and CFG.grace_ms == 30_000


def test_a_new_key_starts_from_no_history_of_its_own() -> None:
    det = detector()
    det.add(KEY, T0, reporter=1, viewers=1_000_000)
    assert det.keys[KEY].base.dump() == (0.0, 0.0, 0)
    # no population (one key): the configured fallback, wide
    ref = det.reference(KEY, det.keys[KEY])
    assert ref is not None and ref.mean == pytest.approx(20.0)  # 0.02 per 1,000 viewers
    assert (ref.var - ref.mean) / ref.mean**2 == pytest.approx(CFG.fallback_dispersion)
    for i in range(30):  # a population appears, not yet taught: a young key waits for it
        det.add((f"s{i + 2}", "violence"), T0, reporter=1, viewers=1000)
    assert det.reference(KEY, det.keys[KEY]) is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_steady_rate_learns_its_baseline_without_a_spike(seed: int) -> None:
    rng = random.Random(seed)
    det = detector()
    decisions = feed(det, crowd(rng, poisson(rng, 0.1, T0, T0 + 2 * 3600_000)))
    assert decisions == []
    base = det.keys[KEY].base
    assert base.mean == pytest.approx(6.0, rel=0.2)  # 0.1/s x 60 s windows
    assert base.n > 700  # one observation per hop
    assert not det.keys[KEY].in_spike


def test_surge_of_distinct_reporters_opens_then_resolves_after_close_after_quiet_windows() -> None:
    det = detector()
    rng = random.Random(7)
    p = T0 + 2 * 3600_000  # a key with history enough to be judged on its own
    feed(det, [(T0, 1)])  # the clock starts
    list(det.close_through(p - CFG.grace_ms))
    before = det.keys[KEY].base.dump() if KEY in det.keys else det.evicted[KEY][:3]  # idle: evicted
    decisions = feed(det, crowd(rng, [p + i * 100 for i in range(20)]))
    opens = [d for d in decisions if d.kind == "open"]
    assert len(opens) == 1
    op = opens[0]
    assert op.window_end_ms == op.opened_end_ms == p + CFG.hop_ms  # early: the filling window
    assert op.started_ms == p  # the surge's first report, not the window's start
    assert op.window_end_ms - CFG.window_ms < op.started_ms <= op.at_ms
    assert op.effective >= CFG.min_volume and op.distinct >= CFG.min_reporters
    assert det.keys[KEY].in_spike
    # event time moves on with no more reports for this key
    later = [d for d in det.close_through(p + 200_000) if d.kind != "progress"]
    assert [d.kind for d in later] == ["resolve"]
    res = later[0]
    # windows containing pane p are loud; the next close_after windows are quiet
    assert res.window_end_ms == p + CFG.window_ms + CFG.close_after * CFG.hop_ms
    assert res.opened_end_ms == op.opened_end_ms and res.key == KEY
    assert res.started_ms == op.started_ms
    assert not det.keys[KEY].in_spike
    # the baseline did not learn the surge
    assert det.keys[KEY].base.mean <= before[0]


def test_a_loud_window_resets_the_quiet_count() -> None:
    det = detector()
    rng = random.Random(8)
    p = T0 + 2 * 3600_000  # a key with history enough to be judged on its own
    feed(det, [(T0, 1)])
    feed(det, crowd(rng, [p + i * 100 for i in range(20)]))
    assert det.keys[KEY].in_spike
    # two quiet windows close (ending p+70s, p+80s), then a loud pane at p+80s lands in the
    # window ending p+90s, which would have been the third quiet one
    q = p + CFG.window_ms + 2 * CFG.hop_ms
    assert [d for d in det.close_through(q) if d.kind != "progress"] == []
    assert det.keys[KEY].quiet == 2
    loud = p + 80_000
    feed(det, crowd(rng, [loud + i * 100 for i in range(10)]))
    decisions = [d for d in det.close_through(loud + 300_000) if d.kind != "progress"]
    assert [d.kind for d in decisions] == ["resolve"]
    # windows ending up to loud + window are loud; then close_after quiet ones
    assert decisions[0].window_end_ms == loud + CFG.window_ms + CFG.close_after * CFG.hop_ms


def test_baseline_is_frozen_during_a_spike() -> None:
    det = detector()
    rng = random.Random(9)
    p = T0 + 2 * 3600_000  # a key with history enough to be judged on its own
    feed(det, [(T0, 1)])
    feed(det, crowd(rng, [p + i * 100 for i in range(30)]))
    ks = det.keys[KEY]
    frozen = ks.base.dump()
    assert [d for d in det.close_through(p + CFG.window_ms + CFG.hop_ms) if d.kind != "progress"] == []
    assert ks.in_spike and ks.base.dump() == frozen
    list(det.close_through(p + 600_000))
    assert not ks.in_spike and ks.base.n > frozen[2]


@pytest.mark.parametrize("n_brigaders", [1, 2, 3])
def test_brigade_of_a_few_accounts_never_opens(n_brigaders: int) -> None:
    det = detector()
    rng = random.Random(n_brigaders)
    background = crowd(rng, poisson(rng, 0.1, T0, T0 + 3600_000))
    brigade = [(T0 + 1800_000 + i * 600, 1000 + i % n_brigaders) for i in range(500)]
    decisions = feed(det, sorted(background + brigade))
    assert decisions == []


def test_min_reporters_gate() -> None:
    cfg = DetectorConfig(per_reporter_cap=1000)  # isolate the distinct-reporter gate
    det = detector(cfg)
    p = T0 + 2 * 3600_000  # a key with history enough to be judged on its own
    feed(det, [(T0, 1)])
    few = [(p + i * 100, i % (cfg.min_reporters - 1)) for i in range(30)]
    assert feed(det, few) == []
    # one more distinct reporter in the same window; a window that failed the test is looked
    # at again once it has grown by a tenth, so it takes a few of its reports to tip it
    d = feed(det, [(p + 5000 + i, 99) for i in range(4)])
    assert [x.kind for x in d] == ["open"] and d[0].distinct == cfg.min_reporters


def test_min_volume_gate_on_a_silent_key() -> None:
    cfg = DetectorConfig(var_floor=1.0, z_open=4.0)  # z alone would open on a handful of reports
    det = detector(cfg)
    p = T0 + 2 * 3600_000  # a key with history enough to be judged on its own
    feed(det, [(T0, 1)])
    assert feed(det, [(p + i, 100 + i) for i in range(cfg.min_volume - 1)]) == []
    base = det.keys[KEY].base
    assert base.z(cfg.min_volume - 1, cfg.var_floor) >= cfg.z_open  # only min_volume held it
    assert [d.kind for d in feed(det, [(p + 50, 999)])] == ["open"]


def test_tail_gate_on_a_silent_key() -> None:
    """A near-silent key opens on the count its Poisson tail makes significant: no sooner
    (one report fewer stays quiet), and long before a normal z-score would."""
    det = detector()
    p = T0 + 2 * 3600_000  # a key with history enough to be judged on its own
    feed(det, [(T0, 1)])
    ks = det.keys[KEY]
    assert list(det.close_through(p - CFG.grace_ms)) == []  # the baseline the burst meets
    base = ks.base
    phi = min(CFG.max_dispersion, max(0.0, base.var - base.mean) / base.mean**2)
    need = min(
        max(CFG.min_volume, tail_threshold(base.mean * w / CFG.window_s,
                                           phi if w <= CFG.window_s else phi * CFG.window_s / w,
                                           CFG.log10_p_for(w)))
        for w in CFG.early_windows_s
    )
    assert feed(det, [(p + i, 100 + i) for i in range(need - 1)]) == []
    assert base.z(need, CFG.var_floor) < CFG.z_open  # the old z test would not have opened
    assert [d.kind for d in feed(det, [(p + 50, 999)])] == ["open"]


def test_raises_only_improve_the_tier() -> None:
    det = detector(DetectorConfig(z_open=5.0))  # open early, while the surge is still small
    rng = random.Random(11)
    p = T0 + 2 * 3600_000  # a key with history enough to be judged on its own
    key = ("s1", "child_safety")
    feed(det, [(T0, 1)], key, viewers=300_000)
    ts = [p + i * 50 for i in range(400)]  # 20/s for 20 s: the score keeps rising
    decisions = feed(det, crowd(rng, ts), key, viewers=300_000)
    assert decisions[0].kind == "open"
    tiers = [d.tier for d in decisions]
    assert all(d.kind == "raise" for d in decisions[1:])
    assert len(decisions) >= 2, "this surge should escalate"
    assert all(b < a for a, b in zip(tiers, tiers[1:], strict=False))
    assert {d.opened_end_ms for d in decisions} == {decisions[0].opened_end_ms}


def test_trend_mode_decides_only_when_windows_close() -> None:
    cfg = DetectorConfig()
    det = KeyedDetector(cfg, early=False, min_volume=10, category_of=lambda k: k[0])  # no history needed
    key = ("hate",)
    list(det.close_through(T0))
    p = T0 + 100_000
    for i in range(4):
        assert det.add(key, p, tally=(5, [(i * 10 + j, 1) for j in range(5)], False)) is None
    assert list(det.close_through(p)) == []  # the window with pane p has not closed
    decisions = list(det.close_through(p + CFG.hop_ms))
    assert [d.kind for d in decisions] == ["open"]
    assert decisions[0].raw == 20 and decisions[0].at_ms == p + CFG.hop_ms


def test_idle_keys_are_evicted_with_their_baseline_and_restored_with_catch_up() -> None:
    det = detector()
    rng = random.Random(5)
    feed(det, crowd(rng, poisson(rng, 0.1, T0, T0 + 1800_000)))
    learned = det.keys[KEY].base.dump()
    assert not det.missing(KEY)
    quiet_until = T0 + 1800_000 + CFG.idle_evict_s * 1000 + CFG.window_ms + 60_000
    list(det.close_through(quiet_until))
    assert KEY not in det.keys
    assert not det.missing(KEY)  # evicted, not yet persisted: still known here
    row = det.evicted[KEY]
    assert row[3] == det.closed_through
    assert row[2] > learned[2] and row[0] < learned[0]  # quiet windows were learned before eviction
    taken = det.take_evicted()
    assert taken == {KEY: row} and det.evicted == {}
    assert det.missing(KEY)  # now only the store has it
    # later the key comes back: the stored row is caught up with the windows since
    back = quiet_until + 30 * CFG.hop_ms
    list(det.close_through(back))
    assert det.add(KEY, back + 40_000, reporter=1, stored=row) is None
    expect = Baseline(*row[:3])
    expect.observe_zeros(30, CFG.alpha)
    assert det.keys[KEY].base.dump() == expect.dump()
    # without a stored row a returning key starts from nothing
    det.add(("s9", "spam"), back + 40_000, reporter=1)
    assert det.keys[("s9", "spam")].base.dump() == (0.0, 0.0, 0)


def test_evicted_key_coming_back_uses_the_in_memory_row_over_stored() -> None:
    det = detector()
    feed(det, [(T0, 1)])
    list(det.close_through(T0 + 2 * CFG.idle_evict_s * 1000))
    row = det.evicted[KEY]
    bogus = (999.0, 999.0, 999, row[3])
    det.add(KEY, T0 + 2 * CFG.idle_evict_s * 1000 + 40_000, reporter=1, stored=bogus)
    assert det.keys[KEY].base.dump() == row[:3]
    assert KEY not in det.evicted


def test_keys_in_a_spike_are_not_evicted() -> None:
    det = detector(DetectorConfig(idle_evict_s=10, close_after=1000))
    rng = random.Random(3)
    p = T0 + 2 * 3600_000  # a key with history enough to be judged on its own
    feed(det, [(T0, 1)])
    feed(det, crowd(rng, [p + i * 100 for i in range(20)]))
    list(det.close_through(p + 3600_000))
    assert KEY in det.keys and det.keys[KEY].in_spike and det.evicted == {}


@pytest.mark.parametrize("cut", [50, 400, 700, 900])
def test_dump_load_through_json_continues_identically(cut: int) -> None:
    rng = random.Random(cut)
    events = crowd(rng, poisson(rng, 0.1, T0, T0 + 3600_000))
    events += crowd(rng, poisson(rng, 1.5, T0 + 3600_000, T0 + 3800_000))
    events += crowd(rng, poisson(rng, 0.1, T0 + 3800_000, T0 + 5000_000))
    events.sort()
    whole = feed(detector(), events)
    assert [d.kind for d in whole].count("open") == 1 and whole[-1].kind == "resolve"
    det = detector()
    first = feed(det, events[:cut])
    snap = orjson.loads(orjson.dumps(det.dump()))
    again = detector()
    again.load(snap)
    assert first + feed(again, events[cut:]) == whole


def platform(det: KeyedDetector, rng: random.Random, start: int, end: int, keys: int = 300,
             per_kviewer_per_s: float = 0.002) -> None:
    """A population of streams whose reports come in proportion to their viewers (Zipf)."""
    events = []
    for i in range(keys):
        viewers = 200_000 // (i + 1)
        for t in poisson(rng, viewers / 1000 * per_kviewer_per_s, start, end):
            events.append((t, (f"p{i}", "hate"), viewers))
    events.sort()
    for t, key, viewers in events:
        list(det.close_through(t - det.cfg.grace_ms))
        assert det.add(key, t, reporter=rng.getrandbits(32), viewers=viewers) is None


def test_a_new_key_is_judged_against_what_the_population_teaches() -> None:
    """A busy stream first seen at its ordinary rate does not page; a quiet stream first seen
    in a surge does. Without a population neither can open."""
    rng = random.Random(3)
    det = detector()
    busy = [(t, rng.getrandbits(32)) for t in poisson(rng, 0.4, T0, T0 + 60_000)]  # 24/min
    assert feed(det, busy, key=("alone", "hate"), viewers=200_000) == []  # nothing known yet
    det = detector()
    platform(det, rng, T0, T0 + 300_000)  # 5 minutes of 300 streams, 0.12/min per 1,000 viewers
    pop = det.population.prior("hate", 200_000)
    # 24 per 60 s window; it leans high (only windows of keys with data teach it), never low
    assert pop is not None and 24.0 * 0.9 <= pop[0] <= 24.0 * 1.6
    t1 = T0 + 300_000
    busy = [(t, rng.getrandbits(32)) for t in poisson(rng, 0.4, t1, t1 + 120_000)]
    assert feed(det, busy, key=("new-busy", "hate"), viewers=200_000) == []
    surge = [(t, rng.getrandbits(32)) for t in poisson(rng, 1.0, t1, t1 + 60_000)]  # 60/min
    opened = [d for d in feed(det, surge, key=("new-quiet", "hate"), viewers=1_000) if d.kind == "open"]
    assert len(opened) == 1 and opened[0].mean < 2.0


def test_a_trend_key_opens_only_after_history_of_its_own() -> None:
    cfg = DetectorConfig()
    det = KeyedDetector(cfg, early=False, min_volume=10, category_of=lambda k: k[0], min_history=30)
    key = ("hate",)
    list(det.close_through(T0))
    p = T0 + 100_000
    det.add(key, p, tally=(40, [(j, 1) for j in range(40)], False))
    assert [d for d in det.close_through(p + 200_000) if d.kind == "open"] == []
    assert det.keys[key].base.n < 30


def test_settings_defaults_are_the_detector_defaults() -> None:
    """One set of defaults: the service runs what the benchmark tuned."""
    from services.triage.runner import detector_config
    from shared.settings import Settings

    assert detector_config(Settings()) == DetectorConfig()


def test_a_slow_ramp_does_not_raise_its_own_bar() -> None:
    """Windows that did not open a spike teach the baseline only up to mean + learn_clip_z sd."""
    rng = random.Random(11)
    det = detector()
    steady = poisson(rng, 18 / 60, T0, T0 + 3 * 3600_000)  # ~18 per window for 3 hours
    feed(det, crowd(rng, steady))
    var_before = det.keys[KEY].base.var
    t0 = T0 + 3 * 3600_000
    ramp: list[int] = []
    for minute in range(20):  # up to 10x over 20 minutes
        rate = 18 / 60 * (1 + 9 * (minute + 1) / 20)
        ramp += poisson(rng, rate, t0 + minute * 60_000, t0 + (minute + 1) * 60_000)
    opened = [d for d in feed(det, crowd(rng, ramp)) if d.kind == "open"]
    assert opened, "a 10x ramp must open a spike"
    assert det.keys[KEY].base.var < 10 * var_before


# ---- multi-scale early test ---------------------------------------------------------------------


def _first_open(cfg: DetectorConfig, events: list[tuple[int, int]]) -> Decision | None:
    return next((d for d in feed(detector(cfg), events) if d.kind == "open"), None)


def test_a_short_window_opens_a_busy_key_sooner() -> None:
    rng = random.Random(5)
    steady = poisson(rng, 30 / 60, T0, T0 + 2 * 3600_000)  # ~30 per window
    t0 = T0 + 2 * 3600_000
    surge = poisson(rng, 10 * 30 / 60, t0, t0 + 120_000) + poisson(rng, 30 / 60, t0, t0 + 120_000)
    events = crowd(rng, sorted(steady + surge))
    multi = _first_open(CFG, events)
    single = _first_open(DetectorConfig(scan_windows_s=()), events)
    assert multi is not None and single is not None
    assert multi.at_ms <= single.at_ms
    assert multi.at_ms - t0 <= 20_000, "a 10x surge on a busy key opens within two panes"


def test_a_long_window_catches_a_surge_too_thin_for_one_minute() -> None:
    rng = random.Random(6)
    quiet = poisson(rng, 0.3 / 60, T0, T0 + 4 * 3600_000)
    t0 = T0 + 4 * 3600_000
    surge = [t0 + i * 15_000 for i in range(20)]  # 4 a minute for 5 minutes: never 6 in 60 s
    events = crowd(rng, sorted(quiet + surge + poisson(rng, 0.3 / 60, t0, t0 + 600_000)))
    assert _first_open(DetectorConfig(scan_windows_s=(20,)), events) is None
    opened = _first_open(CFG, events)
    assert opened is not None and t0 < opened.at_ms <= t0 + 300_000


def test_a_long_window_does_not_reopen_on_a_resolved_surge() -> None:
    """After a spike ends, the long window still holds the surge; it must not open again."""
    rng = random.Random(8)
    t0 = T0 + 2 * 3600_000
    events = crowd(rng, sorted(poisson(rng, 3 / 60, T0, T0 + 3 * 3600_000)
                               + poisson(rng, 60 / 60, t0, t0 + 180_000)))
    det = detector()
    decisions = feed(det, events)
    assert [d.kind for d in decisions if d.kind not in ("raise", "progress")] == ["open", "resolve"]
    assert det.keys[KEY].clear_from > t0


def test_checkpoints_keep_clear_from_and_old_ones_still_load() -> None:
    det = detector()
    feed(det, [(T0, 1)])
    ks = det.keys[KEY]
    ks.clear_from = T0 + 123_000
    again = detector()
    again.load(orjson.loads(orjson.dumps(det.dump())))
    assert again.keys[KEY].clear_from == T0 + 123_000
    old = orjson.loads(orjson.dumps(det.dump()))
    old["keys"][0][1] = old["keys"][0][1][:13]  # a checkpoint from before clear_from
    again = detector()
    again.load(old)
    assert again.keys[KEY].clear_from == 0 and again.keys[KEY].next_end == ks.next_end


def test_scan_windows_must_be_multiples_of_the_hop() -> None:
    with pytest.raises(ValueError):
        DetectorConfig(scan_windows_s=(15,))
    with pytest.raises(ValueError):
        DetectorConfig(open_log10_p=0)
    assert DetectorConfig(scan_windows_s=(300, 20, 60)).early_windows_s == (20, 60, 300)


def test_the_service_config_carries_every_detector_setting() -> None:
    """Settings that never reach DetectorConfig would be silently ignored by the service."""
    from services.triage.runner import detector_config
    from shared.settings import Settings

    cfg = detector_config(Settings(spike_scan_windows_s=(30,), spike_open_log10_p=7.0, spike_max_dispersion=0.5,
                                   spike_budget_exponent=1.5, progress_every_s=120))
    assert (cfg.scan_windows_s, cfg.open_log10_p, cfg.max_dispersion, cfg.budget_exponent) == ((30,), 7.0, 0.5, 1.5)
    assert cfg.progress_every_s == 120
    assert detector_config(Settings(spike_ramp_window_s=0)).ramp_window_s == 0


def test_budget_split_over_window_lengths() -> None:
    """The false-alarm rate p / window_s is split over the scanned lengths in proportion to
    w**(budget_exponent - 1); a w-second window spends p_w / w of it."""
    for e in (1.0, 2.0, 3.0):
        cfg = DetectorConfig(budget_exponent=e)
        rate = sum(10 ** -cfg.log10_p_for(w) / w for w in cfg.early_windows_s)
        assert rate == pytest.approx(10 ** -cfg.open_log10_p / cfg.window_s)
    even, long_ = DetectorConfig(budget_exponent=1.0), DetectorConfig(budget_exponent=2.0)
    assert even.log10_p_for(60) == pytest.approx(even.open_log10_p + math.log10(len(even.early_windows_s)))
    assert long_.log10_p_for(300) < even.log10_p_for(300)  # quiet keys' window: a lower bar
    assert long_.log10_p_for(20) > even.log10_p_for(20)  # busy keys' fast window: a higher one


def _recurring_bursts(cfg: DetectorConfig, hours: int, seed: int = 5) -> tuple[list[Decision], KeyedDetector]:
    """A key at 0.5 reports/s whose rate triples for 3 minutes every 90 minutes (as real count
    series do: a burst every few hours, a few times the median)."""
    rng = random.Random(seed)
    events = crowd(rng, poisson(rng, 0.5, T0, T0 + hours * 3600_000))
    for start in range(T0 + 1800_000, T0 + hours * 3600_000, 5400_000):
        events += crowd(rng, poisson(rng, 1.0, start, start + 180_000))
    events.sort()
    det = detector(cfg)
    return feed(det, events), det


def test_bursts_that_recur_all_day_stop_opening_once_the_day_long_memory_knows_them() -> None:
    hours = 24
    on, det = _recurring_bursts(CFG, hours)
    off, _ = _recurring_bursts(DetectorConfig(recur_horizon_s=0), hours)
    late = T0 + 12 * 3600_000

    def opens(ds: list[Decision], after: int = 0) -> int:
        return sum(1 for d in ds if d.kind == "open" and d.window_end_ms > after)

    assert opens(off) >= 12 and opens(off, late) >= 6  # the 1 h baseline calls each one new
    assert opens(on) >= 2  # the first ones open: nothing says they are usual yet
    assert opens(on, late) <= 1
    assert len(det.keys[KEY].recur.episodes) >= 10  # each burst is remembered, paged or not


def test_the_day_long_memory_is_checkpointed() -> None:
    _, det = _recurring_bursts(CFG, 8)
    again = detector()
    again.load(orjson.loads(orjson.dumps(det.dump())))
    assert again.keys[KEY].recur.dump() == det.keys[KEY].recur.dump() and det.keys[KEY].recur


def test_the_episode_memory_is_saved_with_an_evicted_baseline() -> None:
    _, det = _recurring_bursts(CFG, 8)
    episodes = det.keys[KEY].recur.episodes
    end = T0 + 8 * 3600_000
    list(det.close_through(end + 3600_000))  # an hour of silence: evicted
    row = det.take_evicted()[KEY]
    assert KEY not in det.keys and row[4] is not None
    later = detector()
    list(later.close_through(end + 7200_000))
    ks = later.state(KEY, 0, row, end + 7200_000)
    assert ks.recur.episodes == episodes and len(episodes) >= 4


@pytest.mark.parametrize("early", [True, False])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_closing_windows_reuses_a_window_only_when_no_pane_entered_or_left(seed: int, early: bool) -> None:
    """The stats of a closing window are taken from the window one hop before unless a pane
    with data entered or left it: a run with that reuse and one recomputing every window
    decide the same and learn the same baselines (stream keys, and trends, which drop a pane
    as soon as it leaves the window)."""
    rng = random.Random(seed)
    keys = [(f"s{i}", "violence") for i in range(12)]
    events: list[tuple[int, tuple[str, str], int]] = []
    for i, key in enumerate(keys):
        rate = 0.002 * (i + 1)  # a report every few minutes .. one every ~40 s
        events += [(t, key, rng.getrandbits(16)) for t in poisson(rng, rate, T0, T0 + 4 * 3_600_000)]
    burst = T0 + 2 * 3_600_000  # one surge of distinct reporters on a quiet key
    events += [(burst + j * 700, keys[0], rng.getrandbits(32)) for j in range(60)]
    events.sort()

    def run(reuse: bool) -> tuple[list[Decision], list[tuple[float, float, int]]]:
        det = detector(early=early)
        if not reuse:
            det._closed_stats = det._window  # type: ignore[method-assign]
        out: list[Decision] = []
        for ts, key, reporter in events:
            out.extend(det.close_through(ts - CFG.grace_ms))
            d = det.add(key, ts, reporter=reporter, viewers=100, report_id=f"r{ts}")
            if d is not None:
                out.append(d)
        out.extend(det.close_through(events[-1][0] + 3_600_000))
        bases = [(ks.base.mean, ks.base.var, ks.base.n) for _, ks in sorted(det.keys.items())]
        return out, bases + [tuple(v[:3]) for _, v in sorted(det.evicted.items())]  # type: ignore[misc]

    reused, recomputed = run(True), run(False)
    assert any(d.kind == "open" for d in reused[0]) or not early
    assert reused[1] and reused == recomputed


def _ramp_events(rng: random.Random, per_min: float, mult: float, minutes: int, start: int) -> list[int]:
    """``per_min`` reports a minute for 4 h, then (on top) a linear rise to ``mult`` times that
    over ``minutes``, and 30 min more of the base rate."""
    ev = poisson(rng, per_min / 60, T0, start + (minutes + 30) * 60_000)
    for m in range(minutes):
        extra = per_min / 60 * (mult - 1) * (m + 0.5) / minutes
        ev += poisson(rng, extra, start + m * 60_000, start + (m + 1) * 60_000)
    return sorted(ev)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_slow_ramp_opens_against_the_slow_baseline_and_ends_against_it(seed: int) -> None:
    """2 reports a minute rising to 8x over an hour: the 1 h baseline learns it as it grows
    (no window is unusual against it), the half-hour count against the 6 h baseline is."""
    import dataclasses

    start = T0 + 4 * 3_600_000
    events = crowd(random.Random(seed), _ramp_events(random.Random(seed), 2.0, 8.0, 60, start))
    without = [d for d in feed(detector(dataclasses.replace(CFG, ramp_window_s=0)), events) if d.kind == "open"]
    det = detector()
    got = feed(det, events)
    opened = [d for d in got if d.kind == "open"]
    assert len(opened) == 1 and start < opened[0].window_end_ms < start + 60 * 60_000
    assert not without or without[0].window_end_ms > opened[0].window_end_ms
    # it lasts while the level stays up against the slow baseline: not a minute-long flap
    resolved = [d for d in got if d.kind == "resolve"]
    assert not resolved or resolved[0].window_end_ms - opened[0].window_end_ms >= 5 * 60_000


def test_a_slow_ramp_of_a_few_accounts_does_not_open() -> None:
    """Three accounts filing more and more for 40 minutes: each window counts them once, and
    three distinct reporters are no crowd."""
    rng = random.Random(5)
    start = T0 + 4 * 3_600_000
    steady = crowd(rng, poisson(rng, 2.0 / 60, T0, start + 70 * 60_000))
    brigade = [(t, 1 + rng.randrange(3)) for t in _ramp_events(rng, 2.0, 5.0, 40, start) if t >= start]
    events = sorted(steady + brigade)
    assert not [d for d in feed(detector(), events) if d.kind == "open" and d.window_end_ms >= start]


def test_the_long_view_is_checkpointed() -> None:
    det = detector()
    rng = random.Random(3)
    feed(det, crowd(rng, poisson(rng, 2.0 / 60, T0, T0 + 3 * 3_600_000)))
    again = detector()
    again.load(orjson.loads(orjson.dumps(det.dump())))
    a, b = det.keys[KEY].ramp, again.keys[KEY].ramp
    assert a.base.n > 0 and a.counts
    assert (a.base.dump(), a.counts) == (tuple(b.base.dump()), b.counts)


def test_a_daily_rise_is_no_ramp_once_the_key_has_seen_the_day_before() -> None:
    """2 reports a minute at night, rising to 8 over two hours each morning: the slow baseline
    alone would call every morning a ramp; held to the same half hour the day before, from
    the second morning on the long view adds no opening."""
    import dataclasses

    rng = random.Random(8)
    day = 86_400_000
    events: list[int] = []
    for d in range(3):
        for minute in range(24 * 60):
            h = minute / 60
            rate = 2.0 + 6.0 * min(1.0, max(0.0, (h - 6.0) / 2.0)) * (h < 18.0)
            start = T0 + d * day + minute * 60_000
            events += poisson(rng, rate / 60, start, start + 60_000)
    feed_events = crowd(rng, sorted(events))

    def opens(cfg: DetectorConfig) -> list[int]:
        return [d.window_end_ms for d in feed(detector(cfg), feed_events) if d.kind == "open"]

    with_ramps, without = opens(CFG), opens(dataclasses.replace(CFG, ramp_window_s=0))
    later = T0 + day + 3 * 3_600_000  # from the second morning on
    assert [t for t in with_ramps if t >= later] == [t for t in without if t >= later]
    assert len(with_ramps) > len(without)  # the first morning, with no day before, is one
