"""Uncertainty of the metrics: bootstrap intervals over images and paired tests.

Everything works from the per-image outcomes the store keeps (top-1
correctness bitmaps, per-video flip rates), so intervals and tests need no
re-run. Pure functions, seeded, no I/O.

- :func:`bootstrap` resamples images (the same draw for every cell of a model,
  and for both models of a pair) and returns a percentile interval of any
  statistic of the resampled per-cell means. Below :data:`MIN_BOOTSTRAP_UNITS` images
  the percentile interval is degenerate (one image: no width; for two models of equal error
  rates, the 95 % interval of their difference has no width or 0 only at one end in 91 % of
  samples of 2 images, 76 % of 3, 21 % of 10 and 7 % of 20, and excludes 0 in 8 % of samples of
  2 and 7 % of 10, 5 % of 20, in a simulation), so comparisons leave it empty there.
- :func:`wilson` and :func:`paired_proportion_difference` are the intervals of a proportion
  (a clean error, a robust accuracy) and of the paired difference of two: where errors are
  rare a percentile bootstrap has no width (every resample of 0 errors has 0 errors) and
  covers far less than its level; these keep it.
- :func:`mcnemar` is the exact sign test on paired per-image outcomes: McNemar's test when an
  outcome is correct or not, and with the image as the unit when it is a count (correct
  severities of a corruption). The chi-square approximation (continuity-corrected) serves
  large counts. :func:`sign_flip` is the paired test of real per-image (per-video) values, such
  as a loss band or a flip probability: a permutation test of their mean difference.
  :func:`holm` adjusts the p-values of a family of such tests.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_RESAMPLES = 1000
LEVEL = 0.95
#: the fewest images (videos) a percentile bootstrap interval is given for (see above)
MIN_BOOTSTRAP_UNITS = 20
#: :func:`sign_flip`: every sign pattern up to this many differing units, random draws beyond
SIGN_FLIP_EXACT_UP_TO = 16
SIGN_FLIP_DRAWS = 10_000
#: the sign patterns :func:`sign_flip` draws at once: at most this many (pattern, unit) pairs
SIGN_FLIP_CHUNK = 2_000_000


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    level: float = LEVEL

    def as_dict(self) -> dict:
        """JSON's form; an undefined value (a relative CE whose baseline does not degrade) is null."""
        def finite(value: float) -> float | None:
            return value if math.isfinite(value) else None

        return {"estimate": finite(self.estimate), "low": finite(self.low), "high": finite(self.high),
                "level": self.level}


#: a headline metric of the (resampled) per-row means, by row name
Statistic = Callable[[Mapping[str, np.ndarray]], np.ndarray]


@dataclass
class Design:
    """Per-image values of one evaluation and the metrics computed from their means.

    ``rows`` name the rows of ``values`` (cells x images); a metric maps the (resampled)
    row means, by row name, to its value. ``tests`` lists the per-image outcomes (bools or
    counts) compared with :func:`mcnemar`, by label; ``mean_tests`` the rows of real values
    whose means are compared with :func:`sign_flip` (each test labelled by its row). Each suite builds its own
    (:meth:`robustbench_gcp.suites.base.Suite.design`).
    """

    rows: list[str]
    values: np.ndarray
    metrics: dict[str, Statistic]
    tests: dict[str, np.ndarray] = field(default_factory=dict)
    percent: set[str] = field(default_factory=set)  # metrics on the 0..100 scale
    #: metrics that are the mean of one 0/1 row (metric -> row): a proportion, whose interval is
    #: :func:`wilson`'s and whose paired difference is :func:`paired_proportion_difference`'s
    proportions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # for the comparison (how its intervals were made)
    mean_tests: tuple[str, ...] = ()

    @classmethod
    def of(cls, rows: list[str], values: Sequence[np.ndarray], metrics: dict[str, Statistic],
           tests: dict[str, np.ndarray] | None = None, percent: set[str] | None = None,
           proportions: dict[str, str] | None = None, notes: list[str] | None = None,
           mean_tests: Sequence[str] = ()) -> Design:
        """A design from a list of per-image rows (an empty list gives a 0 x 0 matrix)."""
        matrix = np.array(values) if len(values) else np.zeros((0, 0))
        return cls(rows, matrix, metrics, dict(tests or {}), set(percent or ()), dict(proportions or {}),
                   list(notes or ()), tuple(mean_tests))

    def row(self, name: str) -> np.ndarray:
        """The per-image values of row ``name``."""
        return self.values[self.rows.index(name)]


def resample_weights(n: int, resamples: int, seed: int, chunk: int = 200):
    """Yield (k, n) float32 arrays of bootstrap multiplicities (each row sums to n)."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < resamples:
        k = min(chunk, resamples - done)
        yield rng.multinomial(n, np.full(n, 1.0 / n), size=k).astype(np.float32)
        done += k


def bootstrap(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
    means: np.ndarray | None = None,
) -> Interval:
    """Percentile bootstrap interval over images.

    Args:
        values: (cells, n) per-image values (e.g. 1.0 for an error), the same n
            images in every row; a 1-D array is one cell.
        statistic: maps the (cells, k) resampled cell means to (k,) statistics;
            default: the mean of the single cell.
        resamples, seed, level: number of bootstrap draws, their seed, interval level.
        means: the (cells, resamples) resampled means of ``values`` already made
            (:func:`resampled_means` with this ``resamples`` and ``seed``), shared by the
            statistics of one matrix; default: made here.

    Returns:
        The statistic on the full sample and the percentile interval.

    Example:
        >>> bits = np.r_[np.ones(30), np.zeros(70)]
        >>> iv = bootstrap(bits, seed=1)
        >>> round(iv.estimate, 2), iv.low < 0.3 < iv.high
        (0.3, True)
    """
    matrix = np.atleast_2d(np.asarray(values, dtype=np.float64))
    n = matrix.shape[1]
    if n == 0:
        raise ValueError("`values` holds no images")
    if statistic is None:
        if matrix.shape[0] != 1:
            raise ValueError("give a `statistic` for more than one cell")
        statistic = _first_row
    estimate = float(statistic(matrix.mean(axis=1, keepdims=True))[0])
    if means is None:
        (means,) = resampled_means([matrix], resamples=resamples, seed=seed)
    draws = np.asarray(statistic(means), dtype=np.float64)
    return Interval(estimate, *percentile_bounds(draws, level), level)


def resampled_means(matrices: Sequence[np.ndarray], *, resamples: int = DEFAULT_RESAMPLES,
                    seed: int = 0) -> list[np.ndarray]:
    """The (cells, resamples) bootstrap means of the rows of each of ``matrices`` (cells, n), all of
    the same n: the draws of :func:`bootstrap`, made once for all of them (the weights depend on
    n, resamples and seed only)."""
    wide = [np.atleast_2d(np.asarray(m, dtype=np.float64)) for m in matrices]
    n = wide[0].shape[1]
    chunks: list[list[np.ndarray]] = [[] for _ in wide]
    for weights in resample_weights(n, resamples, seed):
        w = weights.T.astype(np.float64)
        for matrix, parts in zip(wide, chunks):
            parts.append(matrix @ w / n)  # (cells, k)
    return [np.concatenate(parts, axis=1) for parts in chunks]


def percentile_bounds(draws: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of bootstrap ``draws``.

    A draw may be infinite (a ratio whose resampled denominator is 0: a baseline that never
    flips in that resample) and counts as such, so that a bound beyond every finite draw is
    infinite (JSON null), not the largest finite one. A draw may be undefined (NaN: 0 / 0, a
    relative CE whose baseline improves under corruption); those are left out while they are
    at most the tail ``(1 - level) / 2`` of the draws, and beyond that both bounds are NaN
    (null): the interval cannot be told.
    """
    alpha = (1.0 - level) / 2.0
    defined = draws[~np.isnan(draws)]
    if not defined.size or (draws.size - defined.size) > alpha * draws.size:
        return math.nan, math.nan
    if np.isfinite(defined).all():
        low, high = np.quantile(defined, [alpha, 1.0 - alpha])
        return float(low), float(high)
    ordered = np.sort(defined)
    return _linear_quantile(ordered, alpha), _linear_quantile(ordered, 1.0 - alpha)


def _linear_quantile(ordered: np.ndarray, q: float) -> float:
    """NumPy's default (linear) quantile of sorted values, where a neighbour that is infinite
    makes the quantile infinite (NumPy's interpolation gives NaN between two infinities):
    between -inf and +inf, the one on ``q``'s side of the median (a bound of an interval widens;
    the upper bound was -inf)."""
    position = (ordered.size - 1) * q
    below = math.floor(position)
    above = min(below + 1, ordered.size - 1)
    a, b, t = float(ordered[below]), float(ordered[above]), position - below
    if t == 0.0:
        return a
    if math.isinf(a) and math.isinf(b) and a != b:
        return b if q > 0.5 else a
    if math.isinf(a):
        return a
    if math.isinf(b):
        return b
    return a + (b - a) * t


def _first_row(means: np.ndarray) -> np.ndarray:
    return means[0]


def _z(level: float) -> float:
    """The two-sided standard normal quantile of ``level`` (1.959964 for 0.95)."""
    return float(statistics.NormalDist().inv_cdf(0.5 + level / 2.0))


def wilson(values: np.ndarray, *, level: float = LEVEL) -> Interval:
    """The Wilson score interval of the proportion of ones in ``values`` (0/1 per image).

    Unlike a percentile bootstrap it has width with no or all successes (0 of 40 errors:
    [0, 8.8 %]) and keeps its level for small counts.

    Example:
        >>> iv = wilson(np.zeros(40))
        >>> iv.estimate, iv.low, round(iv.high, 4)
        (0.0, 0.0, 0.0876)
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("`values` holds no images")
    return wilson_of_count(float(x.sum()), x.size, level=level)


def wilson_of_count(ones: float, n: int, *, level: float = LEVEL) -> Interval:
    """:func:`wilson` of ``ones`` ones among ``n`` values (a stored cell's errors of its ``n`` images)."""
    if n <= 0 or not 0 <= ones <= n:
        raise ValueError(f"a count of {ones} ones among {n} values")
    p = ones / n
    z = _z(level)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if p == 0.0 else max(0.0, centre - half)  # exactly: the rounding would leave 1e-18
    high = 1.0 if p == 1.0 else min(1.0, centre + half)
    return Interval(p, low, high, level)


def paired_proportion_difference(a: np.ndarray, b: np.ndarray, *, level: float = LEVEL) -> Interval:
    """The interval of mean(a) - mean(b) for 0/1 outcomes of the same images: the adjusted Wald
    interval of Bonett and Price (2012), which adds one to each discordant count. It has width
    when the two never disagree, where a paired bootstrap gives [0, 0].

    Example:
        >>> same = np.r_[np.ones(10), np.zeros(30)]
        >>> iv = paired_proportion_difference(same, same)
        >>> iv.estimate, round(iv.low, 4), round(iv.high, 4)
        (0.0, -0.066, 0.066)
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired outcomes should be the same non-empty shape. Got {a.shape} and {b.shape}")
    n = a.size
    only_a = float(((a == 1) & (b == 0)).sum())
    only_b = float(((a == 0) & (b == 1)).sum())
    p12, p21 = (only_a + 1) / (n + 2), (only_b + 1) / (n + 2)
    centre = p12 - p21
    half = _z(level) * math.sqrt(max(p12 + p21 - centre ** 2, 0.0) / (n + 2))
    return Interval(float(a.mean() - b.mean()), max(-1.0, centre - half), min(1.0, centre + half), level)


@dataclass(frozen=True)
class PairedTest:
    """A paired test of two models on the same images (videos): :func:`mcnemar`'s or
    :func:`sign_flip`'s.

    ``only_a``: the units where A's outcome is larger (A right and B wrong; for counts, more
    right; for real values, a larger value); ``only_b``: the reverse. ``method`` says how
    ``p_value`` was found.
    """

    only_a: int
    only_b: int
    p_value: float
    method: str

    def as_dict(self) -> dict:
        return {"only_a": self.only_a, "only_b": self.only_b, "p_value": self.p_value,
                "method": self.method}


def sign_flip(values_a: np.ndarray, values_b: np.ndarray, *, draws: int = SIGN_FLIP_DRAWS,
              seed: int = 0) -> PairedTest:
    """The paired permutation (sign-flip) test of equal means of real per-unit values.

    Under the null hypothesis each unit's difference a - b is as likely to have either sign,
    so the two-sided p-value is the share of sign patterns whose |sum of signed differences|
    reaches the observed one: every pattern when at most :data:`SIGN_FLIP_EXACT_UP_TO` units
    differ (exact), else ``draws`` seeded random patterns counting the observed one (p = (1 +
    hits) / (1 + draws)), however many units: the normal approximation z = |sum d| / sqrt(sum
    d^2), used from 2,000 units before 0.7.29, gave p = 0.046 where the permutation p is 0.063
    for a few large differences among many small ones. Units with equal values, and those where
    either value or their difference is not finite, take no part. It tests the mean, as a bootstrap
    interval of the mean difference does; ``only_a`` / ``only_b`` count the units where a / b is
    larger.

    Example:
        >>> a = np.array([0.9, 1.2, 0.8, 1.1]); b = np.array([0.5, 0.7, 0.6, 0.4])
        >>> sign_flip(a, b).p_value   # 2 of the 16 patterns: all +, all -
        0.125
    """
    a = np.asarray(values_a, dtype=np.float64)
    b = np.asarray(values_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values should have the same shape. Got {a.shape} and {b.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        d = (a - b).ravel()
    d = d[np.isfinite(d) & (d != 0)]
    only_a, only_b, n = int((d > 0).sum()), int((d < 0).sum()), d.size
    if n == 0:
        return PairedTest(only_a, only_b, 1.0, "sign-flip exact")
    d = d / np.abs(d).max()  # the p-value is the same at any scale; d * d neither underflows nor overflows
    total = d.sum()
    observed = abs(total)
    reached = observed * (1 - 1e-12)  # a pattern equal to the observed one up to rounding counts
    if n <= SIGN_FLIP_EXACT_UP_TO:
        bits = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1
        sums = np.abs((1 - 2 * bits) @ d)
        return PairedTest(only_a, only_b, float((sums >= reached).mean()), "sign-flip exact")
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    at_once = max(1, min(1000, SIGN_FLIP_CHUNK // n))  # patterns per step: 1000 up to 2,000 units
    while done < draws:  # a pattern's sum is total - 2 * (the sum of the flipped differences)
        k = min(at_once, draws - done)
        bits = np.frombuffer(rng.bytes(k * ((n + 7) // 8)), np.uint8).reshape(k, -1)
        flipped = np.unpackbits(bits, axis=1, count=n).astype(np.float64)
        hits += int((np.abs(total - 2 * (flipped @ d)) >= reached).sum())
        done += k
    return PairedTest(only_a, only_b, (1 + hits) / (1 + draws), f"sign-flip {draws} draws")


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray, *, exact_below: int = 50_000) -> PairedTest:
    """McNemar's test of equal accuracy on paired per-image outcomes: the sign test on the
    images where they differ.

    An outcome is a bool (correct or not: McNemar's test) or a count per image (correct
    severities of a corruption: the image is the unit, however many cells it is in). Exact
    two-sided binomial test on the images where A does better (b) and where B does (c) with
    p = 1/2 when b + c < ``exact_below``; otherwise the chi-square statistic
    max(|b - c| - 1, 0)^2 / (b + c) with one degree of freedom.

    Example:
        >>> a = np.array([1, 1, 1, 1, 0, 1], bool); b = np.array([0, 0, 1, 1, 0, 1], bool)
        >>> mcnemar(a, b).p_value   # b=2, c=0: 2 * (1/2)^2
        0.5
    """
    a = np.asarray(correct_a)
    b = np.asarray(correct_b)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes should have the same shape. Got {a.shape} and {b.shape}")
    a, b = a.astype(np.int64), b.astype(np.int64)
    only_a = int((a > b).sum())
    only_b = int((a < b).sum())
    n = only_a + only_b
    if n == 0:
        return PairedTest(only_a, only_b, 1.0, "exact")
    if n < exact_below:
        tail = _binomial_half_tail(n, min(only_a, only_b))
        return PairedTest(only_a, only_b, min(1.0, 2.0 * tail), "exact")
    chi2 = max(abs(only_a - only_b) - 1, 0) ** 2 / n
    return PairedTest(only_a, only_b, math.erfc(math.sqrt(chi2 / 2.0)), "chi2")


def _binomial_half_tail(n: int, k: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2) and k <= n / 2, in one pass of array operations.

    Each term C(n, i) / 2^n is written relative to the largest, the last: C(n, i - 1) / C(n, i)
    = i / (n - i + 1), so log(term_i / term_k) is a cumulative sum of logarithms from the top
    down, small where the terms matter, and only the top goes through lgamma.
    """
    log_top = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2.0)
    i = np.arange(1, k + 1, dtype=np.float64)
    steps = np.log(i) - np.log(n - i + 1)  # log(term_{i-1} / term_i)
    relative = np.cumsum(steps[::-1])[::-1]  # log(term_i / term_k) for i = 0 .. k - 1
    return math.exp(log_top) * (1.0 + float(np.exp(relative).sum()))


def holm(p_values: Mapping[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment of a family of p-values (each compared with 0.05 afterwards
    keeps the chance of any false difference in the family at 5 %).

    Example:
        >>> holm({"a": 0.01, "b": 0.04, "c": 0.03})
        {'a': 0.03, 'b': 0.06, 'c': 0.06}

    Raises:
        ValueError: a p-value that is not a number in [0, 1] (a NaN would sort anywhere and
            leave the others' adjustment unsaid).
    """
    for key, p in p_values.items():
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"the p-value of {key!r} should be in [0, 1]. Got {p!r}")
    order = sorted(p_values, key=lambda k: p_values[k])
    m = len(order)
    adjusted, running = {}, 0.0
    for i, key in enumerate(order):
        running = max(running, min(1.0, (m - i) * p_values[key]))
        adjusted[key] = running
    return {key: adjusted[key] for key in p_values}
