"""Learned baselines: EWMA of mean and variance, quiet-window catch-up, Poisson-floored z."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.triage.baseline import Baseline, alpha_for_half_life, log10_sf, tail_threshold


@given(
    c=st.floats(0.0, 1000.0),
    mean0=st.floats(0.0, 100.0),
    var0=st.floats(0.0, 100.0),
    n0=st.integers(0, 50),
    alpha=st.floats(0.05, 0.5),
)
def test_ewma_converges_to_a_constant_input(c: float, mean0: float, var0: float, n0: int, alpha: float) -> None:
    b = Baseline(mean0, var0, n0)
    for _ in range(600):
        b.observe(c, alpha)
    assert b.n == n0 + 600
    assert b.mean == pytest.approx(c, rel=1e-6, abs=1e-6)
    assert b.var == pytest.approx(0.0, abs=1e-6 * max(1.0, c * c, var0))


@given(c=st.floats(0.0, 1000.0), var0=st.floats(1e-3, 100.0), n0=st.integers(1, 50), alpha=st.floats(0.001, 0.9))
def test_variance_shrinks_while_input_equals_the_mean(c: float, var0: float, n0: int, alpha: float) -> None:
    b = Baseline(c, var0, n0)  # n0 >= 1: the very first observation (weight 1) resets var
    prev = b.var
    for k in range(20):
        b.observe(c, alpha)
        a = max(alpha, 1.0 / (n0 + k + 1))
        assert b.mean == c
        assert b.var == pytest.approx((1.0 - a) * prev)
        assert b.var < prev
        prev = b.var


def test_early_observations_weigh_one_over_n_plus_one() -> None:
    # a prior counting as 3 observations of mean 1, then one observation of 9: a plain average
    b = Baseline(1.0, 4.0, 3)
    b.observe(9.0, alpha=0.01)
    assert b.mean == pytest.approx((3 * 1.0 + 9.0) / 4)
    assert b.n == 4
    # once n is large the weight is alpha
    big = Baseline(1.0, 4.0, 10_000)
    big.observe(11.0, alpha=0.1)
    assert big.mean == pytest.approx(2.0)


def test_new_spread_raises_variance() -> None:
    b = Baseline(5.0, 1.0, 100)
    b.observe(25.0, alpha=0.1)
    assert b.var > 1.0
    assert b.var == pytest.approx(0.9 * (1.0 + 0.1 * 400.0))


@given(
    mean0=st.floats(0.0, 500.0), var0=st.floats(0.0, 500.0), n0=st.integers(0, 3000),
    m=st.integers(0, 300), alpha=st.floats(1e-4, 0.5),
)
def test_observe_zeros_equals_m_observations_of_zero(
    mean0: float, var0: float, n0: int, m: int, alpha: float
) -> None:
    a, b = Baseline(mean0, var0, n0), Baseline(mean0, var0, n0)
    a.observe_zeros(m, alpha)
    for _ in range(m):
        b.observe(0.0, alpha)
    # the closed form agrees with one window at a time up to rounding
    assert a.n == b.n
    assert a.mean == pytest.approx(b.mean, rel=1e-9, abs=1e-12)
    assert a.var == pytest.approx(b.var, rel=1e-9, abs=1e-12)


@given(m=st.integers(0, 2000), cut=st.integers(0, 2000), alpha=st.floats(1e-4, 0.5))
def test_observe_zeros_in_parts_is_observe_zeros_at_once(m: int, cut: int, alpha: float) -> None:
    """However a backlog's batches split a quiet stretch, the baseline comes out the same (two
    instances must decide as one does)."""
    a, b = Baseline(40.0, 90.0, 7), Baseline(40.0, 90.0, 7)
    a.observe_zeros(m, alpha)
    b.observe_zeros(min(cut, m), alpha)
    b.observe_zeros(m - min(cut, m), alpha)
    assert a.n == b.n
    assert a.mean == pytest.approx(b.mean, rel=1e-9, abs=1e-12)
    assert a.var == pytest.approx(b.var, rel=1e-9, abs=1e-12)


def test_observe_zeros_is_bounded_by_limit() -> None:
    a, b = Baseline(50.0, 10.0, 10), Baseline(50.0, 10.0, 10)
    a.observe_zeros(10_000_000, 0.01, limit=100)
    b.observe_zeros(100, 0.01)
    assert a.dump() == b.dump()
    assert a.n == 110
    assert a.mean < 50.0 * 0.99**90  # it did decay


def test_z_uses_the_largest_of_variance_mean_and_floor() -> None:
    # variance dominates
    assert Baseline(4.0, 25.0, 10).z(14.0, var_floor=1.0) == pytest.approx(10.0 / 5.0)
    # Poisson: variance at least the mean
    assert Baseline(16.0, 1.0, 10).z(24.0, var_floor=1.0) == pytest.approx(8.0 / 4.0)
    # floor: a near-silent key does not page on a few reports
    assert Baseline(0.1, 0.0, 10).z(4.1, var_floor=4.0) == pytest.approx(4.0 / 2.0)
    # below the mean is negative
    assert Baseline(10.0, 10.0, 10).z(0.0, var_floor=4.0) < 0


@given(mean=st.floats(0.0, 1e4), var=st.floats(0.0, 1e4), floor=st.floats(0.1, 100.0), x=st.floats(0.0, 1e5))
def test_z_formula(mean: float, var: float, floor: float, x: float) -> None:
    z = Baseline(mean, var, 1).z(x, floor)
    assert z == pytest.approx((x - mean) / math.sqrt(max(var, mean, floor)))
    # never more extreme than with the floor alone
    assert abs(z) <= abs(x - mean) / math.sqrt(floor) + 1e-9


def test_alpha_for_half_life() -> None:
    a = alpha_for_half_life(3600.0, 10.0)
    assert 0 < a < 1
    # after one half-life of hops a constant jump is half learned
    assert (1 - a) ** 360 == pytest.approx(0.5)
    assert alpha_for_half_life(10.0, 10.0) == pytest.approx(0.5)
    assert alpha_for_half_life(60.0, 10.0) < alpha_for_half_life(30.0, 10.0)


# ---- count tail test ----------------------------------------------------------------------------


def _direct_sf(c: int, mean: float, var: float) -> float:
    """P(X >= c) as 1 - P(X < c), from the pmf written out (fine where the tail is not tiny)."""
    if var > mean:
        r = mean * mean / (var - mean)
        q = mean / (r + mean)

        def pmf(k: int) -> float:
            return math.exp(math.lgamma(k + r) - math.lgamma(r) - math.lgamma(k + 1)
                            + r * math.log1p(-q) + k * math.log(q))
    else:

        def pmf(k: int) -> float:
            return math.exp(-mean + k * math.log(mean) - math.lgamma(k + 1))

    return 1.0 - sum(pmf(k) for k in range(c))


@given(mean=st.floats(0.05, 50.0), extra=st.one_of(st.just(0.0), st.floats(0.01, 1.0)), above=st.integers(1, 30))
def test_log10_sf_matches_the_pmf(mean: float, extra: float, above: int) -> None:
    var = mean + extra * mean * mean
    c = int(mean) + above
    direct = _direct_sf(c, mean, var)
    if direct > 1e-9:  # the direct form loses the tail to cancellation below that
        assert log10_sf(c, mean, var) == pytest.approx(math.log10(direct), abs=1e-8 + 1e-12 / direct)


def test_log10_sf_known_values() -> None:
    assert log10_sf(1, 0.5, 0.5) == pytest.approx(math.log10(1 - math.exp(-0.5)))
    # P(Poisson(1) >= 10): the sum of the tail, far below what 1 - cdf could resolve
    tail = sum(math.exp(-1.0) / math.factorial(k) for k in range(10, 60))
    assert log10_sf(10, 1.0, 1.0) == pytest.approx(math.log10(tail), rel=1e-9)
    assert log10_sf(3, 5.0, 5.0) == 0.0  # at or below the mean: not a tail


def test_over_dispersion_thickens_the_tail() -> None:
    assert log10_sf(20, 5.0, 5.0 + 0.25 * 25) > log10_sf(20, 5.0, 5.0)
    assert tail_threshold(5.0, 0.25, 7.0) > tail_threshold(5.0, 0.0, 7.0)


@given(mean=st.floats(0.0, 500.0), phi=st.floats(0.0, 3.0), log10_p=st.floats(1.0, 12.0))
def test_tail_threshold_is_the_least_significant_count(mean: float, phi: float, log10_p: float) -> None:
    c = tail_threshold(mean, phi, log10_p)
    m, v = max(mean, 1e-3), max(mean, 1e-3) * (1 + phi * max(mean, 1e-3))
    assert c >= 1
    assert log10_sf(c, m, v) <= -log10_p + 1e-9  # significant even at the exact mean ...
    # ... and not much more than needed: the bucket rounds the mean up by ~2% at most, the
    # dispersion by 0.05 (up to 0.5) or 10% (beyond)
    if c > 1:
        m2 = m * 1.03
        phi2 = phi + 0.05 if phi <= 0.5 else phi * 1.1 + 1e-9
        assert log10_sf(c - 1, m2, m2 * (1 + phi2 * m2)) > -log10_p


@given(mean=st.floats(0.0, 200.0), more=st.floats(0.0, 50.0), phi=st.floats(0.0, 2.0),
       p=st.floats(2.0, 10.0), stricter=st.floats(0.0, 3.0))
def test_tail_threshold_is_monotone(mean: float, more: float, phi: float, p: float, stricter: float) -> None:
    c = tail_threshold(mean, phi, p)
    assert tail_threshold(mean + more, phi, p) >= c
    assert tail_threshold(mean, phi + 0.5, p) >= c
    assert tail_threshold(mean, phi, p + stricter) >= c
