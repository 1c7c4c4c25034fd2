"""Population: the empirical-Bayes prior a key without history is judged against."""

from __future__ import annotations

import random

import numpy as np
import pytest

from services.triage.baseline import alpha_for_half_life
from services.triage.population import Population

HOP = 10_000
ALPHA = alpha_for_half_life(3600.0, 10.0)


def feed(pop: Population, rng: np.random.Generator, keys: int, hops: int, rate_per_kviewer: float,
         phi: float) -> None:
    """Windows of ``keys`` keys whose rates are rate_per_kviewer per 1,000 viewers times a
    gamma factor of dispersion ``phi`` (0: none), viewers Zipf-distributed."""
    viewers = [200_000 // (i + 1) for i in range(keys)]
    factor = rng.gamma(1 / phi, phi, keys) if phi else np.ones(keys)
    for h in range(hops):
        for i, v in enumerate(viewers):
            x = int(rng.poisson(v / 1000 * rate_per_kviewer * factor[i]))
            pop.observe("hate", x, v, 1.0, (h + 1) * HOP)


def test_nothing_is_known_until_enough_windows_were_seen() -> None:
    pop = Population(ALPHA, HOP)
    assert pop.prior("hate", 1000) is None
    pop.observe("hate", 5, 1000, 1.0, HOP)
    assert pop.prior("hate", 1000) is None
    assert pop.prior("spam", 1000) is None


@pytest.mark.parametrize("phi", [0.0, 0.5, 2.0])
def test_rate_per_viewer_and_dispersion_are_learned(phi: float) -> None:
    pop = Population(ALPHA, HOP)
    feed(pop, np.random.default_rng(1), keys=400, hops=30, rate_per_kviewer=0.5, phi=phi)
    prior = pop.prior("hate", 10_000)
    assert prior is not None
    mu, got = prior
    assert mu == pytest.approx(5.0, rel=0.35)  # 10,000 viewers x 0.5 per 1,000
    # never much below the truth (that would page); above it when a few huge keys with an
    # unusual audience pull the rate per viewer off (a prior that errs towards quiet)
    assert phi * 0.7 - 0.05 <= got <= max(0.3, 3.5 * phi)


def test_keys_without_a_viewer_count_are_pooled_apart() -> None:
    pop = Population(ALPHA, HOP)
    rng = random.Random(2)
    for h in range(10):
        for _ in range(50):
            pop.observe("hate", rng.choice([0, 1, 2, 3]), 0, 1.0, (h + 1) * HOP)
    assert pop.prior("hate", 5000) is None  # nobody with viewers taught anything
    prior = pop.prior("hate", 0)
    assert prior is not None and prior[0] == pytest.approx(1.5, rel=0.2)


def test_part_covered_windows_teach_the_rate_not_a_fraction_of_it() -> None:
    pop = Population(ALPHA, HOP)
    rng = np.random.default_rng(3)
    for i in range(300):  # the first window after a start: a sixth of it held data
        pop.observe("hate", int(rng.poisson(60 / 6)), 1000, 1 / 6, HOP)
    prior = pop.prior("hate", 1000)
    assert prior is not None and prior[0] == pytest.approx(60.0, rel=0.1)


def test_dump_and_load_round_trip() -> None:
    pop = Population(ALPHA, HOP)
    feed(pop, np.random.default_rng(4), keys=100, hops=5, rate_per_kviewer=1.0, phi=0.5)
    again = Population(ALPHA, HOP)
    again.load(pop.dump())
    assert again.prior("hate", 3000) == pop.prior("hate", 3000)
    assert again.dump() == pop.dump()
