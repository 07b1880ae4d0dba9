"""Uncertainty of the metrics: bootstrap intervals over images and paired tests.

Everything works from the per-image outcomes the store keeps (top-1
correctness bitmaps, per-video flip rates), so intervals and tests need no
re-run. Pure functions, seeded, no I/O.

- :func:`bootstrap` resamples images (the same draw for every cell of a model,
  and for both models of a pair) and returns a percentile interval of any
  statistic of the resampled per-cell means.
- :func:`mcnemar` is the exact (binomial) McNemar test on paired correctness,
  with the chi-square approximation (continuity-corrected) for large counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_RESAMPLES = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    level: float = LEVEL

    def as_dict(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "level": self.level}


#: a headline metric of the (resampled) per-row means, by row name
Statistic = Callable[[Mapping[str, np.ndarray]], np.ndarray]


@dataclass
class Design:
    """Per-image values of one evaluation and the metrics computed from their means.

    ``rows`` name the rows of ``values`` (cells x images); a metric maps the (resampled)
    row means, by row name, to its value. ``tests`` lists the boolean per-image outcomes
    compared with McNemar's test, by label. Each suite builds its own
    (:meth:`robustbench_gcp.suites.base.Suite.design`).
    """

    rows: list[str]
    values: np.ndarray
    metrics: dict[str, Statistic]
    tests: dict[str, np.ndarray] = field(default_factory=dict)
    percent: set[str] = field(default_factory=set)  # metrics on the 0..100 scale

    @classmethod
    def of(cls, rows: list[str], values: Sequence[np.ndarray], metrics: dict[str, Statistic],
           tests: dict[str, np.ndarray] | None = None, percent: set[str] | None = None) -> Design:
        """A design from a list of per-image rows (an empty list gives a 0 x 0 matrix)."""
        matrix = np.array(values) if len(values) else np.zeros((0, 0))
        return cls(rows, matrix, metrics, dict(tests or {}), set(percent or ()))


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
) -> Interval:
    """Percentile bootstrap interval over images.

    Args:
        values: (cells, n) per-image values (e.g. 1.0 for an error), the same n
            images in every row; a 1-D array is one cell.
        statistic: maps the (cells, k) resampled cell means to (k,) statistics;
            default: the mean of the single cell.
        resamples, seed, level: number of bootstrap draws, their seed, interval level.

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
    draws = []
    for weights in resample_weights(n, resamples, seed):
        means = matrix @ weights.T.astype(np.float64) / n  # (cells, k)
        draws.append(np.asarray(statistic(means), dtype=np.float64))
    draws = np.concatenate(draws)
    draws = draws[np.isfinite(draws)]
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [alpha, 1.0 - alpha]) if draws.size else (math.nan, math.nan)
    return Interval(estimate, float(low), float(high), level)


def _first_row(means: np.ndarray) -> np.ndarray:
    return means[0]


@dataclass(frozen=True)
class McNemar:
    """Paired comparison of two classifiers on the same images.

    ``only_a``: images A gets right and B gets wrong; ``only_b``: the reverse.
    """

    only_a: int
    only_b: int
    p_value: float
    method: str

    def as_dict(self) -> dict:
        return {"only_a": self.only_a, "only_b": self.only_b, "p_value": self.p_value,
                "method": self.method}


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray, *, exact_below: int = 50_000) -> McNemar:
    """McNemar's test of equal accuracy on paired outcomes.

    Exact two-sided binomial test on the discordant pairs (b, c) with p = 1/2
    when b + c < ``exact_below``; otherwise the chi-square statistic
    (|b - c| - 1)^2 / (b + c) with one degree of freedom.

    Example:
        >>> a = np.array([1, 1, 1, 1, 0, 1], bool); b = np.array([0, 0, 1, 1, 0, 1], bool)
        >>> mcnemar(a, b).p_value   # b=2, c=0: 2 * (1/2)^2
        0.5
    """
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes should have the same shape. Got {a.shape} and {b.shape}")
    only_a = int((a & ~b).sum())
    only_b = int((~a & b).sum())
    n = only_a + only_b
    if n == 0:
        return McNemar(only_a, only_b, 1.0, "exact")
    if n < exact_below:
        k = min(only_a, only_b)
        log_terms = [_log_binom(n, i) - n * math.log(2.0) for i in range(k + 1)]
        top = max(log_terms)
        tail = math.exp(top) * sum(math.exp(t - top) for t in log_terms)
        return McNemar(only_a, only_b, min(1.0, 2.0 * tail), "exact")
    chi2 = (abs(only_a - only_b) - 1) ** 2 / n
    return McNemar(only_a, only_b, math.erfc(math.sqrt(chi2 / 2.0)), "chi2")


def _log_binom(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
