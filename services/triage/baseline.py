"""Learned per-key baseline of the window count: EWMA of mean and variance. Pure.

Each closed window is one observation. A new key starts from nothing (n = 0) and learns a
running average until its weight reaches ``alpha`` (the weight is max(alpha, 1 / (n + 1)));
what it is judged against meanwhile leans on the population's prior (population.py). While a
key is in a spike its baseline is frozen, so a surge is never learned as normal.
"""

from __future__ import annotations

import functools
import math


class Baseline:
    """Mean and variance of a key's window count, and how many windows taught it."""

    __slots__ = ("mean", "n", "var")

    def __init__(self, mean: float, var: float, n: int) -> None:
        self.mean = mean
        self.var = var
        self.n = n

    def observe(self, x: float, alpha: float) -> None:
        a = 1.0 / (self.n + 1)
        if a < alpha:  # (max(alpha, 1 / (n + 1)), without the call: once per closed window)
            a = alpha
        d = x - self.mean
        self.mean += a * d
        self.var = (1.0 - a) * (self.var + a * d * d)
        self.n += 1

    def observe_zeros(self, m: int, alpha: float, limit: int = 5_000) -> None:
        """``m`` quiet windows in a row (an idle key, or an evicted one coming back), at most
        ``limit``. In closed form once the weight is ``alpha``: with q = (1 - alpha)**m the
        mean becomes q * mean and the variance q * (var + mean**2 * (1 - q)). A backlog closes
        hours of windows at once for every idle key: one window at a time was a quarter of
        triage's time there."""
        m = min(m, limit)
        if m > 0 and self.n == 0:  # the first window's weight is 1: it replaces the prior
            self.observe(0.0, alpha)
            m -= 1
        # while 1 / (n + 1) > alpha the weight is 1 / (n + 1): a running average, whose k
        # zeros give mean * n / (n + k) and (n var + mean**2 n k / (n + k)) / (n + k)
        k = min(m, max(0, math.ceil(1.0 / alpha - self.n - 1)))
        if k > 0:
            n, mean = self.n, self.mean
            self.var = (n * self.var + mean * mean * n * k / (n + k)) / (n + k)
            self.mean = mean * n / (n + k)
            self.n += k
            m -= k
        if m <= 0:
            return
        q = (1.0 - alpha) ** m
        self.var = q * (self.var + self.mean * self.mean * (1.0 - q))
        self.mean *= q
        self.n += m

    def z(self, x: float, var_floor: float) -> float:
        """How unusual a count is: a z-score whose variance is at least the mean (Poisson)
        and at least ``var_floor``, so a near-silent key does not page on a few reports."""
        return (x - self.mean) / math.sqrt(max(self.var, self.mean, var_floor))

    def dump(self) -> tuple[float, float, int]:
        return self.mean, self.var, self.n


def alpha_for_half_life(half_life_s: float, hop_s: float) -> float:
    """EWMA weight per observation (one per hop) for a given half-life."""
    kept: float = 0.5 ** (hop_s / half_life_s)  # float ** float is Any to mypy
    return 1.0 - kept


# ---- count-appropriate tail test ------------------------------------------------------------
#
# A z-score treats a count as normal; for the few reports a quiet key sees in a window that is
# badly wrong (the upper tail of a count with mean 0.5 is far thinner than a normal's). The
# early spike test instead asks how likely a count at least this large is under a negative
# binomial with the learned mean and variance (Poisson when the variance is not above the
# mean), and opens when that probability is below 10**-log10_p. The threshold count only
# depends on (mean, dispersion, log10_p), so it is computed once per (rounded-up) bucket.

_MEAN_STEPS = 32  # mean buckets per doubling (~2% apart), rounded up: never more lenient
_PHI_STEPS = 20  # dispersion buckets per unit up to _PHI_LINEAR, rounded up ...
_PHI_LINEAR = 0.5
_PHI_GROWTH = 1.1  # ... then 10% apart (a heavy tail's bar is not sensitive to its exact phi)
_PHI_MAX = 16.0
_PHI_LOG_GROWTH = math.log(_PHI_GROWTH)


def _phi_of(bucket: int) -> float:
    lin = round(_PHI_LINEAR * _PHI_STEPS)
    if bucket <= lin:
        return bucket / _PHI_STEPS
    return _PHI_LINEAR * _PHI_GROWTH ** (bucket - lin)


def _phi_bucket(phi: float) -> int:
    phi = min(max(phi, 0.0), _PHI_MAX)
    if phi <= _PHI_LINEAR:
        return math.ceil(phi * _PHI_STEPS - 1e-9)
    return round(_PHI_LINEAR * _PHI_STEPS) + math.ceil(math.log(phi / _PHI_LINEAR) / _PHI_LOG_GROWTH - 1e-9)
_MEAN_MIN = 1e-3


def log10_sf(c: int, mean: float, var: float) -> float:
    """log10 P(X >= c) for a count with this mean and variance: negative binomial when
    ``var > mean`` (dispersion (var - mean) / mean**2 above 1e-6), else Poisson. Summed over the tail
    term by term, so tiny tails are accurate. Counts at or below the mean give 0.0 (P ~ 1)."""
    if c <= 0 or c <= mean:
        return 0.0
    mean = max(mean, 1e-12)
    if var - mean > 1e-6 * mean * mean:  # else as good as Poisson (and lgamma would cancel)
        r = mean * mean / (var - mean)
        q = mean / (r + mean)  # success probability of the "failures" count
        cf = _log_beta_tail(c, r, q)  # P(X >= c) = I_q(c, r): fast however heavy the tail
        if cf is not None:
            return cf / math.log(10.0)
        log_term = (math.lgamma(c + r) - math.lgamma(r) - math.lgamma(c + 1)
                    + r * math.log1p(-q) + c * math.log(q))

        def ratio(k: int) -> float:
            return (k + r) / (k + 1) * q

        limit = q  # term ratios tend to q (from above if r > 1, from below if not)
    else:
        log_term = -mean + c * math.log(mean) - math.lgamma(c + 1)

        def ratio(k: int) -> float:
            return mean / (k + 1)

        limit = 0.0
    # sum the tail in units of the first term (which is its largest: c > mean >= mode)
    total, term, k = 1.0, 1.0, c
    while term > 1e-13 * total:
        rk = ratio(k)
        if k >= c + 20_000:
            # a very slow tail: bound the rest by a geometric series (over-, never under-)
            rk = max(rk, limit)
            total += term * rk / (1.0 - rk)
            break
        term *= rk
        total += term
        k += 1
    return (log_term + math.log(total)) / math.log(10.0)


def _log_beta_tail(a: float, b: float, x: float) -> float | None:
    """ln I_x(a, b), the regularised incomplete beta, by its continued fraction (modified
    Lentz, as in Numerical Recipes' betacf); None if it does not converge (then the caller
    sums the tail). Converges fast for x < (a + 1) / (a + b + 2), which holds above the mean."""
    if x >= (a + 1.0) / (a + b + 2.0):
        return None
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        de = d * c
        h *= de
        if abs(de - 1.0) < 1e-12:
            break
    else:
        return None
    if h <= 0:
        return None
    ln_front = (a * math.log(x) + b * math.log1p(-x) - math.log(a)
                - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)))
    return ln_front + math.log(h)


@functools.lru_cache(maxsize=262_144)
def _threshold(mean_bucket: int, phi_bucket: int, log10_p: float) -> int:
    mean = 2.0 ** (mean_bucket / _MEAN_STEPS)
    var = mean + _phi_of(phi_bucket) * mean * mean
    lo = int(mean)  # sf(lo) ~ 1 > p
    hi = max(lo + 1, 2)
    while log10_sf(hi, mean, var) > -log10_p:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # smallest c with sf(c) <= p lies in (lo, hi]
        mid = (lo + hi) // 2
        if log10_sf(mid, mean, var) > -log10_p:
            lo = mid
        else:
            hi = mid
    return hi


def tail_threshold(mean: float, phi: float, log10_p: float) -> int:
    """Smallest count ``c`` with P(X >= c) <= 10**-log10_p, X a count of mean ``mean`` and
    variance ``mean + phi * mean**2`` (Poisson at ``phi`` 0). The mean and ``phi`` are rounded
    up to a bucket first (so the threshold is never lower than the exact one), and thresholds
    are cached per bucket: this is called for every key at every window end."""
    mb = math.ceil(_MEAN_STEPS * math.log2(max(mean, _MEAN_MIN)) - 1e-9)
    return _threshold(mb, _phi_bucket(phi), log10_p)
