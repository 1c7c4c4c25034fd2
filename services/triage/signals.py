"""Turning detector decisions into explainable, deterministic ``Signal`` events. Pure."""

from __future__ import annotations

from datetime import UTC, datetime

from services.triage.detector import Decision, DetectorConfig
from services.triage.scoring import Scored, severity_for
from shared.events import Category, Factor, RatePoint, RateSeries, Severity, Signal


def ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def stream_dedup_key(key: tuple[str, ...]) -> str:
    return f"spike:{key[0]}:{key[1]}"


def trend_dedup_key(key: tuple[str, ...]) -> str:
    return "trend:" + ":".join(key)


def _describe(d: Decision, cfg: DetectorConfig, what: str) -> str:
    ratio = d.effective / max(d.mean, 0.1)
    if d.kind == "resolve":
        return (
            f"{what}: back to {d.effective} reports per {cfg.window_s}s "
            f"(baseline {d.mean:.1f}) for {cfg.close_after} windows"
        )
    return (
        f"{what}: {d.raw} reports from {d.distinct if d.distinct <= 16 else '16+'} distinct reporters "
        f"in {cfg.window_s}s, {ratio:.1f}x its baseline of {d.mean:.1f} (z={d.z:.1f})"
    )


def from_decision(d: Decision, cfg: DetectorConfig, *, trend: bool) -> Signal:
    if trend:
        category = d.key[0]
        region = d.key[1] if len(d.key) > 1 else None
        stream_id = None
        dedup = trend_dedup_key(d.key)
        what = f"platform-wide {category}" + (f" in {region}" if region else "")
        kind = "trend"
    else:
        stream_id, category = d.key[0], d.key[1]
        region = None
        dedup = stream_dedup_key(d.key)
        what = f"{category} on stream {stream_id}"
        kind = "spike"
    if d.kind == "open":
        sid = f"{dedup}:{d.opened_end_ms}"
    elif d.kind == "raise":
        sid = f"{dedup}:{d.opened_end_ms}:sev{d.tier}"
    elif d.kind == "progress":
        sid = f"progress:{dedup}:{d.opened_end_ms}:{d.window_end_ms}"
        kind = "progress"
    else:
        sid = f"resolve:{dedup}:{d.opened_end_ms}"
        kind = "resolve"
    factors = [
        *d.components.factors(category, d.distinct, d.viewers),
        Factor(name="baseline_mean", value=round(d.mean, 3), contribution=0.0),
        Factor(name="z_score", value=round(d.z, 2), contribution=0.0),
        Factor(name="effective_count", value=float(d.effective), contribution=0.0),
    ]
    return Signal(
        signal_id=sid,
        kind=kind,  # type: ignore[arg-type]
        dedup_key=dedup,
        stream_id=stream_id,
        category=Category(category),
        region=region,
        severity=Severity(f"SEV{d.tier}"),
        score=round(d.score, 4),
        observed_at=ts(d.at_ms),
        started_at=ts(d.started_ms) if d.started_ms else None,
        window_start=ts(d.window_end_ms - cfg.window_ms),
        window_end=ts(d.window_end_ms),
        report_count=d.raw,
        reason=_describe(d, cfg, what),
        factors=factors,
        sample_report_ids=list(d.samples),
        rate=RateSeries(
            hop_s=cfg.hop_s, window_s=cfg.window_s, baseline=round(d.mean, 3), upper=d.upper,
            points=[RatePoint(at=ts(p), count=c) for p, c in d.rate],
        ) if d.rate else None,
    )


def critical(report: dict, scored: Scored, ts_ms: int, cfg: DetectorConfig) -> Signal:  # type: ignore[type-arg]
    category = report["category"]
    viewers = report.get("viewer_count") or 0
    return Signal(
        signal_id=f"critical:{report['report_id']}",
        kind="critical_report",
        dedup_key=f"critical:{report['stream_id']}:{category}",
        stream_id=report["stream_id"],
        category=Category(category),
        region=report.get("region"),
        severity=severity_for(scored.score, cfg.scoring.severity_thresholds),
        score=round(scored.score, 4),
        observed_at=ts(ts_ms),
        report_count=1,
        reason=(
            f"critical {category} report from a {report['source']} on a stream with "
            f"{viewers} viewers (score {scored.score:.2f})"
        ),
        factors=list(scored.factors),
        sample_report_ids=[report["report_id"]],
    )
