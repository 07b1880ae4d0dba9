"""Metrics computed from stored counts (PROTOCOL.md). Pure functions, no I/O.

Conventions: errors are fractions in [0, 1]; CE, mCE, relative CE and relative
mCE are percentages with the baseline (AlexNet) = 100, as in the literature.

- E(s, c): top-1 error at severity s of corruption c.
- CE_c = sum_s E(s, c) / sum_s E_base(s, c)            (x 100)
- relative CE_c = sum_s (E(s, c) - E_clean) / sum_s (E_base(s, c) - E_base_clean)   (x 100)
- mCE, relative mCE: means of CE_c / relative CE_c over the benchmark corruptions run.
- mean error (unnormalized): mean over corruptions of mean_s E(s, c) (what
  hendrycks' test.py prints; it is not the mCE).
When only some severities were run, both sums run over those severities only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from robustbench_gcp.config import Baseline


def rate(count: float, n: int) -> float | None:
    """count / n, or None when nothing was counted."""
    return count / n if n else None


@dataclass(frozen=True)
class CorruptionSummary:
    corruption: str
    severities: tuple[int, ...]
    mean_error: float
    CE: float | None
    relative_CE: float | None


def corruption_errors(
    errors: Mapping[tuple[str, int], float],
    clean_error: float | None,
    baseline: Baseline | None,
) -> list[CorruptionSummary]:
    """CE and relative CE per corruption from the top-1 error of each (corruption, severity).

    Corruptions keep the order in which they first appear in ``errors``.

    Example:
        >>> from robustbench_gcp.config import Baseline
        >>> base = Baseline("b", clean_error=0.4, imagenet_c={"fog": (0.5, 0.6, 0.7, 0.8, 0.9)})
        >>> s = corruption_errors({("fog", 1): 0.25, ("fog", 2): 0.3}, 0.2, base)[0]
        >>> round(s.CE, 6), round(s.relative_CE, 6)
        (50.0, 50.0)
    """
    by_corruption: dict[str, dict[int, float]] = {}
    for (corruption, severity), error in errors.items():
        by_corruption.setdefault(corruption, {})[severity] = error
    summaries = []
    for corruption, per_severity in by_corruption.items():
        severities = tuple(sorted(per_severity))
        values = [per_severity[s] for s in severities]
        ce = rel = None
        if baseline is not None and corruption in baseline.imagenet_c:
            base = [baseline.error(corruption, s) for s in severities]
            ce = 100.0 * sum(values) / sum(base)
            if clean_error is not None and baseline.clean_error is not None:
                denominator = sum(b - baseline.clean_error for b in base)
                if denominator > 0:
                    rel = 100.0 * sum(v - clean_error for v in values) / denominator
        summaries.append(CorruptionSummary(corruption, severities, sum(values) / len(values), ce, rel))
    return summaries


def mean_corruption_error(
    summaries: Sequence[CorruptionSummary], benchmark: Sequence[str]
) -> dict[str, object]:
    """mCE, relative mCE and the unnormalized mean error over the benchmark corruptions run.

    Returns a dict with ``mCE``, ``relative_mCE`` (None when not computable),
    ``mean_error``, ``corruptions`` (those averaged) and ``missing`` (benchmark
    corruptions that were not run).
    """
    chosen = [s for s in summaries if s.corruption in benchmark]
    chosen.sort(key=lambda s: list(benchmark).index(s.corruption))
    ces = [s.CE for s in chosen]
    rels = [s.relative_CE for s in chosen]
    return {
        "mCE": sum(ces) / len(ces) if chosen and None not in ces else None,
        "relative_mCE": sum(rels) / len(rels) if chosen and None not in rels else None,
        "mean_error": sum(s.mean_error for s in chosen) / len(chosen) if chosen else None,
        "corruptions": [s.corruption for s in chosen],
        "missing": [c for c in benchmark if c not in {s.corruption for s in chosen}],
    }
