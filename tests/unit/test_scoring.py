"""Severity scoring: factor ordering and tiers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.triage.scoring import DEFAULT_CATEGORY_WEIGHT as CATEGORY_WEIGHT, reach, score_report, severity_for, source_trust
from shared.events import Category, Severity


def test_every_category_has_a_weight() -> None:
    assert set(CATEGORY_WEIGHT) == {c.value for c in Category}
    assert CATEGORY_WEIGHT["child_safety"] > CATEGORY_WEIGHT["hate"] > CATEGORY_WEIGHT["spam"]


def test_source_trust_order() -> None:
    assert source_trust("moderator", None) > source_trust("classifier", 0.5) > source_trust("user", None)
    assert source_trust("classifier", 0.95) > source_trust("classifier", 0.2)


def test_reach_is_logarithmic_and_capped() -> None:
    assert reach(None) == 0 and reach(0) == 0
    assert 0 < reach(100) < reach(10_000) < reach(1_000_000) == 1.0
    assert reach(50_000_000) == 1.0


def test_critical_moderator_report_on_a_big_stream_is_sev1() -> None:
    s = score_report("child_safety", "moderator", 500_000, None)
    assert s.score >= 0.9 and severity_for(s.score) is Severity.SEV1
    assert [f.name for f in s.factors] == ["category_weight", "source_trust", "reach"]


def test_spam_from_a_user_is_sev4() -> None:
    assert severity_for(score_report("spam", "user", 100, None).score) is Severity.SEV4


@given(
    cat=st.sampled_from([c.value for c in Category]),
    src=st.sampled_from(["user", "moderator", "classifier"]),
    viewers=st.one_of(st.none(), st.integers(0, 10**9)),
    cs=st.one_of(st.none(), st.floats(0, 1)),
)
def test_score_is_in_unit_interval_and_product_of_factors(cat, src, viewers, cs) -> None:  # type: ignore[no-untyped-def]
    s = score_report(cat, src, viewers, cs)
    assert 0.0 <= s.score <= 1.0
    prod = 1.0
    for f in s.factors:
        prod *= f.contribution
    assert abs(prod - s.score) < 1e-3  # contributions are rounded to 4 places
