"""Learned per-key baseline of the window count: EWMA of mean and variance. Pure.

Each closed window is one observation. A new key starts from a prior that counts as
``prior_weight`` observations, so early windows move it quickly and later ones slowly
(the effective weight is max(alpha, 1 / (n + 1))). While a key is in a spike its baseline
is frozen, so a surge is never learned as normal.
"""

from __future__ import annotations

import math


class Baseline:
    """Mean and variance of a key's window count, and how many windows taught it."""

    __slots__ = ("mean", "var", "n")

    def __init__(self, mean: float, var: float, n: int) -> None:
        self.mean = mean
        self.var = var
        self.n = n

    def observe(self, x: float, alpha: float) -> None:
        a = max(alpha, 1.0 / (self.n + 1))
        d = x - self.mean
        self.mean += a * d
        self.var = (1.0 - a) * (self.var + a * d * d)
        self.n += 1

    def observe_zeros(self, m: int, alpha: float, limit: int = 5_000) -> None:
        """``m`` quiet windows in a row (an evicted key coming back). Exact up to ``limit``."""
        for _ in range(min(m, limit)):
            self.observe(0.0, alpha)

    def z(self, x: float, var_floor: float) -> float:
        """How unusual a count is: a z-score whose variance is at least the mean (Poisson)
        and at least ``var_floor``, so a near-silent key does not page on a few reports."""
        return (x - self.mean) / math.sqrt(max(self.var, self.mean, var_floor))

    def dump(self) -> tuple[float, float, int]:
        return self.mean, self.var, self.n


def alpha_for_half_life(half_life_s: float, hop_s: float) -> float:
    """EWMA weight per observation (one per hop) for a given half-life."""
    return 1.0 - 0.5 ** (hop_s / half_life_s)
