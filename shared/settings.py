"""The one typed settings object for every livetriage process.

Built once in ``main()`` from the environment (prefix ``LIVETRIAGE_``; the conventional
``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL`` are honoured too) and passed down.
Frozen, so nothing changes it behind a running service's back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, cast

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import ConfigError


class Settings(BaseSettings):
    """Configuration shared by ingest, triage, notifier and the CLI."""

    model_config = SettingsConfigDict(env_prefix="LIVETRIAGE_", frozen=True, extra="ignore")

    # --- infrastructure: unset means "start an embedded one under data_dir" (``up`` only)
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "LIVETRIAGE_KAFKA_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers, host:port[,host:port].",
    )
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "LIVETRIAGE_DATABASE_URL"),
        description="PostgreSQL URL (postgresql://user:pass@host:port/db).",
    )
    data_dir: Path = Field(Path(".livetriage"), description="Embedded broker/database live here.")
    embedded_kafka_port: int = Field(19092, description="Port of the embedded tansu broker.")

    # --- topics
    reports_topic: str = Field("live.reports", description="Raw reports in (the producers' topic).")
    clean_topic: str = Field("triage.reports", description="Validated first sightings, keyed by stream_id.")
    signals_topic: str = Field("triage.signals", description="Triage's signals to the notifier, keyed by dedup_key.")
    dlq_topic: str = Field("live.reports.dlq", description="Rejected raw reports, original bytes and a reason.")
    actions_topic: str = Field("moderation.actions", description="Moderation actions taken on streams.")
    topic_partitions: int = Field(6, ge=1, description="Partitions for topics livetriage creates.")
    topic_replication: int = Field(1, ge=1, description="Replication factor of topics livetriage creates.")

    # --- consumer groups and Kafka client tuning
    ingest_group: str = Field("livetriage-ingest", description="Consumer group of ingest.")
    triage_group: str = Field("livetriage-triage", description="Consumer group of triage's stream stage.")
    notifier_group: str = Field("livetriage-notifier", description="Consumer group of the notifier.")
    actions_group: str = Field("livetriage-actions", description="Consumer group of moderation actions.")
    batch_max_records: int = Field(5000, ge=1, description="Max records handled per batch.")
    poll_timeout_ms: int = Field(200, ge=1, description="Longest wait of one poll for a batch.")
    session_timeout_ms: int = Field(10_000, ge=1000, description="Consumer group session timeout.")
    heartbeat_interval_ms: int = Field(1_000, ge=100, description="Consumer group heartbeat interval.")
    producer_linger_ms: int = Field(5, ge=0, description="Producer linger before a batch goes out.")
    compression_type: str | None = Field(None, description="None, gzip, snappy, lz4 or zstd.")

    # --- ingest
    max_report_bytes: int = Field(16_384, ge=256, description="Larger reports go to the DLQ.")
    max_text_chars: int = Field(2_000, ge=1, description="Longer report text goes to the DLQ (text_too_long).")
    dedup_ttl_hours: float = Field(
        48.0, gt=0, description="How long a report_id is remembered; older reports are rejected."
    )
    accept_old_reports: bool = Field(
        False,
        description="Replay mode (livetriage backtest sets it): ingest accepts reports older than "
        "the dedup horizon. The replay is still deduplicated: its claims live dedup_ttl_hours of "
        "wall time from when they are made.",
    )
    max_future_skew_s: float = Field(300.0, ge=0, description="Reject reports this far in the future.")

    # --- triage: event-time hopping windows, learned baselines, spike test
    trends_topic: str = Field("triage.trends", description="Repartition topic of trend tallies.")
    trend_group: str = Field("livetriage-trends", description="Consumer group of triage's trend stage.")
    window_size_s: int = Field(60, ge=1, description="Sliding window size on reported_at.")
    window_hop_s: int = Field(10, ge=1, description="Windows hop by this much (pane size).")
    window_grace_s: int = Field(30, ge=0, description="Lateness allowed before a window closes.")
    baseline_half_life_s: float = Field(3600.0, gt=0, description="EWMA half-life of baselines.")
    spike_z_open: float = Field(7.5, gt=0, description="z-score that opens a spike.")
    spike_var_floor: float = Field(2.0, gt=0, description="Least variance the z-score assumes.")
    spike_ratio_open: float = Field(2.5, ge=1, description="Multiple of the baseline that opens one.")
    spike_min_volume: int = Field(6, ge=1, description="Minimum effective reports per window.")
    spike_min_reporters: int = Field(5, ge=1, description="Distinct reporters needed to open.")
    spike_per_reporter_cap: int = Field(1, ge=1, description="Reports one reporter can add per window.")
    spike_z_close: float = Field(2.0, ge=0, description="Below baseline + z_close sd is quiet.")
    spike_close_after: int = Field(6, ge=1, description="Quiet windows in a row that end a spike.")
    spike_scan_windows_s: tuple[int, ...] = Field(
        (20, 120, 300), description="Window lengths besides window_size_s the per-stream test scans."
    )
    spike_open_log10_p: float = Field(
        5.4, gt=0, description="False-alarm rate 10**-this per window_size_s, split over the windows."
    )
    spike_budget_exponent: float = Field(
        2.0, ge=0, description="Window w's share of that rate goes as w**(this - 1): above 1, long windows get more."
    )
    spike_max_dispersion: float = Field(
        16.0, ge=0, description="Cap of the tail test's over-dispersion (var - mean) / mean**2."
    )
    spike_recur_horizon_s: int = Field(
        86_400, ge=0, description="Bursts that recur: once a stream key has had 3 episodes of unusual windows "
        "within this long, it opens only past 1.25x the third-highest of their peaks. 0: off."
    )
    spike_ramp_window_s: int = Field(
        1800, ge=0, description="Slow ramps: once a minute, a stream key with 2 h of history opens if its last this "
        "many seconds hold 2.5x what a baseline with a 6 h half-life expects, past its 1e-7 tail. 0: off."
    )
    progress_every_s: int = Field(
        60, ge=0, description="An open spike's chart and last-seen go to the notifier at most this often "
        "(sooner when its window count crosses a power of two); each update carries every pane since the last."
    )
    trend_min_volume: int = Field(40, ge=1, description="Minimum reports per window for a trend.")
    trend_history_s: int = Field(
        1800, ge=0, description="A platform trend key opens only after this much history of its own."
    )
    trend_z_open: float = Field(5.0, gt=0, description="z-score that opens a platform trend.")
    key_idle_evict_s: int = Field(600, ge=60, description="Evict keys idle this long (event time).")
    critical_score: float = Field(0.9, ge=0, le=1, description="Single-report signal level.")
    severity_thresholds: tuple[float, float, float] = Field(
        (0.75, 0.5, 0.3), description="Score thresholds of SEV1, SEV2, SEV3."
    )
    checkpoint_interval_s: float = Field(
        10.0, gt=0, description="How often triage persists state (a crash replays at most this much)."
    )
    idle_flush_s: float = Field(
        30.0, ge=0, description="Advance a silent partition's clock after this long (0 = never)."
    )
    state_record_max_bytes: int = Field(
        512 * 1024, ge=4096,
        description="Largest trend outbox record triage produces (bigger ones are cut in parts); "
                    "keep well below the broker's message limit and the producer's max_request_size.",
    )
    trend_outbox_max_items: int = Field(
        20_000, ge=1, description="Checkpoint early once a partition's trend outbox holds this many tallies.",
    )

    # --- notifier: routing and delivery
    routing_file: Path | None = Field(None, description="YAML routing file (channels, routes).")
    delivery_max_attempts: int = Field(8, ge=1, description="Attempts before a page is dead.")
    delivery_backoff_base_s: float = Field(1.0, gt=0, description="First retry delay (jittered).")
    delivery_backoff_cap_s: float = Field(300.0, gt=0, description="Longest retry delay.")
    delivery_timeout_s: float = Field(10.0, gt=0, description="HTTP timeout of one attempt.")

    # --- program figures
    sla_ack_minutes: dict[str, float] = Field(
        default_factory=lambda: cast("dict[str, float]", {"SEV1": 5, "SEV2": 15, "SEV3": 60, "SEV4": 240}),
        description="Acknowledge within this many minutes, per severity.",
    )
    sla_action_minutes: dict[str, float] = Field(
        default_factory=lambda: cast("dict[str, float]", {"SEV1": 15, "SEV2": 60, "SEV3": 240, "SEV4": 1440}),
        description="First moderation action within this many minutes of the first report.",
    )

    # --- notifier / API
    bootstrap_api_key: SecretStr | None = Field(
        None, description="An admin API key (lt_<prefix>_<secret>) to create at start, for automation."
    )
    api_host: str = Field("127.0.0.1", description="Address the HTTP API and console listen on.")
    api_port: int = Field(8080, ge=0, le=65535, description="Port of the HTTP API and console.")
    metrics_port: int = Field(0, ge=0, le=65535, description="Standalone services: 0 = off.")
    page_size_max: int = Field(200, ge=1, description="Largest page (limit) a list request may ask for.")
    api_max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Larger API request bodies get 413, refused while they arrive."
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: Literal["text", "json"] = Field(
        "text", description="json: one object per line with report/incident ids (for log shipping)."
    )

    @field_validator("compression_type")
    @classmethod
    def _known_codec(cls, v: str | None) -> str | None:
        if v in (None, "", "none"):
            return None
        if v not in {"gzip", "snappy", "lz4", "zstd"}:
            raise ValueError("compression_type must be one of none, gzip, snappy, lz4, zstd")
        return v

    def require_kafka(self) -> str:
        if not self.kafka_bootstrap_servers:
            raise ConfigError("KAFKA_BOOTSTRAP_SERVERS is not set (only `livetriage up` embeds one)")
        return self.kafka_bootstrap_servers

    def require_database(self) -> str:
        if not self.database_url:
            raise ConfigError("DATABASE_URL is not set (only `livetriage up` embeds one)")
        return self.database_url

