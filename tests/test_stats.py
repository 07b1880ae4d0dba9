"""Bootstrap intervals and McNemar's test."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import chi2

from robustbench_gcp.reports.comparison import compare_designs
from robustbench_gcp.stats import Design, bootstrap, mcnemar


def test_bootstrap_interval_covers_a_known_rate_at_its_level():
    rng = np.random.default_rng(0)
    true_rate, n, trials = 0.3, 400, 200
    covered = 0
    for trial in range(trials):
        sample = (rng.random(n) < true_rate).astype(float)
        interval = bootstrap(sample, resamples=400, seed=trial)
        covered += interval.low <= true_rate <= interval.high
    # 95 % nominal; with 200 trials the coverage has a standard deviation of about 1.5 %
    assert 0.90 <= covered / trials <= 0.99


def test_bootstrap_is_seeded_and_reports_the_sample_statistic():
    sample = np.r_[np.ones(37), np.zeros(63)]
    a, b = bootstrap(sample, seed=5), bootstrap(sample, seed=5)
    assert a == b and a.estimate == pytest.approx(0.37)
    assert a.low < 0.37 < a.high
    assert bootstrap(sample, seed=6) != a


def test_mcnemar_exact_by_hand():
    # 8 images only A gets right, 2 only B: p = 2 * sum_{i<=2} C(10, i) / 2^10
    a = np.array([1] * 8 + [0] * 2 + [1] * 5 + [0] * 4, bool)
    b = np.array([0] * 8 + [1] * 2 + [1] * 5 + [0] * 4, bool)
    result = mcnemar(a, b)
    assert (result.only_a, result.only_b) == (8, 2)
    assert result.p_value == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert result.method == "exact"
    assert mcnemar(a, a).p_value == 1.0
    symmetric = mcnemar(np.array([1, 0], bool), np.array([0, 1], bool))
    assert symmetric.p_value == 1.0  # min(1, 2 * P(X <= 1 | n = 2)) = min(1, 1.5)


def test_mcnemar_chi_square_for_large_counts():
    a = np.r_[np.ones(30000), np.zeros(29000), np.ones(100)].astype(bool)
    b = np.r_[np.zeros(30000), np.ones(29000), np.ones(100)].astype(bool)
    result = mcnemar(a, b, exact_below=1000)
    statistic = (abs(30000 - 29000) - 1) ** 2 / 59000
    assert result.method == "chi2"
    assert result.p_value == pytest.approx(chi2.sf(statistic, 1), rel=1e-9)
    assert result.p_value == pytest.approx(mcnemar(a, b).p_value, rel=0.05)  # the exact test agrees


def test_paired_difference_of_identical_models_is_zero():
    rng = np.random.default_rng(1)
    values = (rng.random((3, 50)) < 0.4).astype(float)
    d = Design(["clean", "x", "y"], values, {"mean": lambda m: (m["x"] + m["y"]) / 2},
               tests={"x": values[1] == 0})
    entries = compare_designs(["a", "b"], [d, d], ["fp", "fp"], resamples=200)
    assert entries[1].delta["mean"].low == entries[1].delta["mean"].high == 0.0
    assert entries[1].tests["x"]["p_value"] == 1.0
    unpaired = compare_designs(["a", "b"], [d, d], ["fp", "other"], resamples=200)
    assert unpaired[1].delta is None and not unpaired[1].paired
    assert math.isclose(unpaired[1].values["mean"].estimate, values[1:].mean())
