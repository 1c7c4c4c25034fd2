"""Severity scoring from named factors, and score -> severity tier. Pure and deterministic.

Every factor comes back with its contribution, so a signal can say why it fired:

- report score = category weight x (0.5 + 0.5 source trust) x (0.5 + 0.5 reach)
- spike score  = category weight x magnitude x diversity x evidence x (0.5 + 0.5 reach)

Source trust: moderator 1.0 > classifier (0.5 + 0.5 classifier_score) > user 0.3. Reach is
logarithmic in viewer_count, 1.0 at ``reach_full_viewers``. Diversity rewards many distinct
reporters over one reporter filing many reports. Evidence is the spike's tail probability:
how many decades below its opening bound P(count >= observed) lies, for its strongest window
(a short burst just over the bar scores 0.5, a sustained change, whose long windows pile up
evidence, climbs to 1): magnitude says how big, evidence how sure and how lasting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from shared.events import Factor, Severity

DEFAULT_CATEGORY_WEIGHT: dict[str, float] = {
    "child_safety": 1.0,
    "violent_extremism": 1.0,
    "self_harm": 0.9,
    "violence": 0.8,
    "dangerous_acts": 0.7,
    "animal_harm": 0.6,
    "hate": 0.6,
    "nudity": 0.5,
    "harassment": 0.4,
    "other": 0.2,
    "spam": 0.1,
}


@dataclass(frozen=True)
class ScoringConfig:
    """Weights and tiers; every field can be set through Settings."""

    category_weight: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_CATEGORY_WEIGHT))
    trust_user: float = 0.3
    trust_moderator: float = 1.0
    reach_full_viewers: int = 1_000_000
    # score thresholds of SEV1, SEV2, SEV3; below the last is SEV4
    severity_thresholds: tuple[float, float, float] = (0.75, 0.5, 0.3)
    critical_score: float = 0.9
    magnitude_full_ratio: float = 50.0  # a spike this many times its baseline has magnitude 1
    diversity_full_reporters: int = 16
    # decades of tail probability past the opening bound at which evidence is full
    evidence_full_decades: float = 24.0

    def weight(self, category: str) -> float:
        return self.category_weight.get(category, self.category_weight.get("other", 0.2))


@dataclass(frozen=True, slots=True)
class Scored:
    """A score in [0, 1] with the factors that made it."""

    score: float
    factors: tuple[Factor, ...]


def source_trust(source: str, classifier_score: float | None, cfg: ScoringConfig | None = None) -> float:
    cfg = cfg or _DEFAULT
    if source == "moderator":
        return cfg.trust_moderator
    if source == "classifier":
        return 0.5 + 0.5 * (classifier_score if classifier_score is not None else 0.0)
    return cfg.trust_user


def reach(viewer_count: int | None, full: int = 1_000_000) -> float:
    """0 for no audience, 1 for ``full`` viewers or more, logarithmic in between."""
    if not viewer_count or viewer_count <= 0:
        return 0.0
    return min(1.0, math.log10(1 + viewer_count) / math.log10(1 + full))


def _report_parts(
    category: str, source: str, viewer_count: int | None, classifier_score: float | None, cfg: ScoringConfig
) -> tuple[float, float, float]:
    """(category weight, trust multiplier, reach multiplier) of one report."""
    return (
        cfg.weight(category),
        0.5 + 0.5 * source_trust(source, classifier_score, cfg),
        0.5 + 0.5 * reach(viewer_count, cfg.reach_full_viewers),
    )


def report_score(
    category: str,
    source: str,
    viewer_count: int | None,
    classifier_score: float | None,
    cfg: ScoringConfig | None = None,
) -> float:
    """The score alone (hot path): category weight x trust x reach multipliers."""
    w, trust_mult, reach_mult = _report_parts(category, source, viewer_count, classifier_score, cfg or _DEFAULT)
    return w * trust_mult * reach_mult


def score_report(
    category: str,
    source: str,
    viewer_count: int | None,
    classifier_score: float | None,
    cfg: ScoringConfig | None = None,
) -> Scored:
    """The score with its factors, for the signal that explains it."""
    w, trust_mult, reach_mult = _report_parts(category, source, viewer_count, classifier_score, cfg or _DEFAULT)
    return Scored(
        score=w * trust_mult * reach_mult,
        factors=(
            Factor(name="category_weight", value=category, contribution=round(w, 4)),
            Factor(name="source_trust", value=source, contribution=round(trust_mult, 4)),
            Factor(name="reach", value=float(viewer_count or 0), contribution=round(reach_mult, 4)),
        ),
    )


def user_can_be_critical(cfg: ScoringConfig) -> bool:
    """Whether any user report could reach the critical score (with defaults it cannot,
    so the hot path skips scoring user reports)."""
    return max(cfg.category_weight.values()) * (0.5 + 0.5 * cfg.trust_user) >= cfg.critical_score


@dataclass(frozen=True, slots=True)
class SpikeScore:
    """A spike's score and its components, as plain numbers (cheap on the hot path)."""

    score: float
    weight: float
    ratio: float
    magnitude: float
    diversity: float
    reach_mult: float
    decades: float = 0.0
    evidence: float = 1.0

    def factors(self, category: str, distinct: int, viewers: int) -> tuple[Factor, ...]:
        return (
            Factor(name="category_weight", value=category, contribution=round(self.weight, 4)),
            Factor(name="magnitude", value=round(self.ratio, 2), contribution=round(self.magnitude, 4)),
            Factor(name="reporter_diversity", value=float(distinct), contribution=round(self.diversity, 4)),
            Factor(name="reach", value=float(viewers), contribution=round(self.reach_mult, 4)),
            Factor(name="evidence", value=round(self.decades, 2), contribution=round(self.evidence, 4)),
        )


def spike_score(
    category: str,
    *,
    effective: float,
    baseline_mean: float,
    distinct: int,
    viewers: int,
    decades: float = 0.0,
    cfg: ScoringConfig | None = None,
) -> SpikeScore:
    """``decades``: how far (in decades, >= 0) the spike's tail probability lies below the
    bound that opened it."""
    cfg = cfg or _DEFAULT
    w = cfg.weight(category)
    ratio = effective / max(baseline_mean, 0.1)
    magnitude = 0.5 + 0.5 * min(1.0, max(0.0, math.log(max(ratio, 1.0)) / math.log(cfg.magnitude_full_ratio)))
    diversity = 0.5 + 0.5 * min(1.0, distinct / cfg.diversity_full_reporters)
    reach_mult = 0.5 + 0.5 * reach(viewers, cfg.reach_full_viewers)
    decades = max(0.0, decades)
    evidence = 0.5 + 0.5 * min(1.0, decades / cfg.evidence_full_decades)
    return SpikeScore(w * magnitude * diversity * evidence * reach_mult, w, ratio, magnitude, diversity,
                      reach_mult, decades, evidence)


def best_spike_score(category: str, viewers: int, cfg: ScoringConfig | None = None) -> float:
    """The most a spike on this key could score: full magnitude and diversity."""
    cfg = cfg or _DEFAULT
    return cfg.weight(category) * (0.5 + 0.5 * reach(viewers, cfg.reach_full_viewers))


def severity_for(score: float, thresholds: tuple[float, float, float] = (0.75, 0.5, 0.3)) -> Severity:
    if score >= thresholds[0]:
        return Severity.SEV1
    if score >= thresholds[1]:
        return Severity.SEV2
    if score >= thresholds[2]:
        return Severity.SEV3
    return Severity.SEV4


_DEFAULT = ScoringConfig()
