"""Severity scoring: a report's score from named factors, and score -> severity tier.

Pure and deterministic. Each factor is returned with its contribution so a signal can say
why it fired. Issue #4 adds reporter diversity and configurable weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shared.events import Factor, Severity

CATEGORY_WEIGHT: dict[str, float] = {
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

SOURCE_TRUST_USER = 0.3
SOURCE_TRUST_MODERATOR = 1.0
REACH_FULL_VIEWERS = 1_000_000  # a stream this large gets the whole reach factor

# score thresholds of SEV1, SEV2, SEV3; below the last is SEV4
SEVERITY_THRESHOLDS: tuple[float, float, float] = (0.85, 0.6, 0.35)


@dataclass(frozen=True, slots=True)
class Scored:
    """A score in [0, 1] with the factors that made it."""

    score: float
    factors: tuple[Factor, ...]


def source_trust(source: str, classifier_score: float | None) -> float:
    if source == "moderator":
        return SOURCE_TRUST_MODERATOR
    if source == "classifier":
        return 0.5 + 0.5 * (classifier_score if classifier_score is not None else 0.0)
    return SOURCE_TRUST_USER


def reach(viewer_count: int | None) -> float:
    """0 for no audience, 1 for a million viewers or more, logarithmic in between."""
    if not viewer_count or viewer_count <= 0:
        return 0.0
    return min(1.0, math.log10(1 + viewer_count) / math.log10(1 + REACH_FULL_VIEWERS))


def score_report(
    category: str, source: str, viewer_count: int | None, classifier_score: float | None
) -> Scored:
    """score = category weight x (0.5 + 0.5 trust) x (0.5 + 0.5 reach)."""
    w = CATEGORY_WEIGHT.get(category, CATEGORY_WEIGHT["other"])
    t = source_trust(source, classifier_score)
    r = reach(viewer_count)
    trust_mult = 0.5 + 0.5 * t
    reach_mult = 0.5 + 0.5 * r
    s = w * trust_mult * reach_mult
    return Scored(
        score=s,
        factors=(
            Factor(name="category_weight", value=category, contribution=w),
            Factor(name="source_trust", value=source, contribution=trust_mult),
            Factor(name="reach", value=float(viewer_count or 0), contribution=reach_mult),
        ),
    )


def severity_for(score: float, thresholds: tuple[float, float, float] = SEVERITY_THRESHOLDS) -> Severity:
    if score >= thresholds[0]:
        return Severity.SEV1
    if score >= thresholds[1]:
        return Severity.SEV2
    if score >= thresholds[2]:
        return Severity.SEV3
    return Severity.SEV4
