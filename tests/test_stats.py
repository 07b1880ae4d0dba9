"""Bootstrap intervals, McNemar's test and the sign-flip test."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from robustbench_gcp.reports.comparison import compare_designs
from robustbench_gcp.stats import MIN_BOOTSTRAP_UNITS, Design, bootstrap, mcnemar, sign_flip

chi2 = pytest.importorskip("scipy.stats").chi2  # the reference; gpu-check machines may lack SciPy


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


@pytest.mark.parametrize(("n", "k"), [(1, 0), (10, 2), (11, 5), (1000, 100), (1000, 450), (20000, 9800),
                                      (49999, 24500)])
def test_mcnemar_exact_tail_equals_integer_arithmetic(n, k):
    """The exact p-value against the binomial sum done in integers (exact_below=50,000: the tail
    of up to 25,000 terms that the test sums in arrays)."""
    a = np.r_[np.ones(k), np.zeros(n - k)].astype(bool)
    term, total = 1, 1  # C(n, 0); then C(n, i + 1) = C(n, i) (n - i) / (i + 1), exact in integers
    for i in range(k):
        term = term * (n - i) // (i + 1)
        total += term
    assert term == math.comb(n, k)
    exact = Fraction(2 * total, 2**n)
    result = mcnemar(a, ~a)
    assert result.method == "exact"
    assert result.p_value == pytest.approx(float(min(exact, Fraction(1))), rel=1e-9, abs=0)


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


def test_too_few_images_for_a_bootstrap_leave_its_intervals_empty():
    """Below MIN_BOOTSTRAP_UNITS images the percentile bootstrap of a mean over cells and of a paired
    difference is left empty (it would be far narrower than 95 %); the estimate, Wilson's interval
    of a proportion and the tests stand. From that many on, intervals have width."""
    rng = np.random.default_rng(4)

    def design(values):
        return Design(["clean", "x", "y"], values, {"clean_error": lambda m: m["clean"],
                                                      "mean": lambda m: (m["x"] + m["y"]) / 2},
                      tests={"x": values[1] == 0}, proportions={"clean_error": "clean"})

    for n in (1, 5, MIN_BOOTSTRAP_UNITS - 1, MIN_BOOTSTRAP_UNITS):
        a, b = (rng.random((3, n)) < 0.5).astype(float), (rng.random((3, n)) < 0.5).astype(float)
        entries = compare_designs(["a", "b"], [design(a), design(b)], ["fp", "fp"], resamples=200)
        mean, delta = entries[1].values["mean"], entries[1].delta["mean"]
        assert mean.estimate == pytest.approx(b[1:].mean()) and delta.estimate == pytest.approx(
            b[1:].mean() - a[1:].mean())
        empty = n < MIN_BOOTSTRAP_UNITS
        assert all(math.isnan(v) == empty for v in (mean.low, mean.high, delta.low, delta.high)), n
        assert mean.as_dict()["low"] is None if empty else mean.low < mean.high
        clean = entries[1].values["clean_error"]
        assert clean.low <= clean.estimate <= clean.high and clean.high > clean.low
        assert 0.0 <= entries[1].tests["x"]["p_value"] <= 1.0


def test_wilson_equals_scipy_and_has_width_at_zero_errors():
    from scipy.stats import binomtest

    from robustbench_gcp.stats import wilson

    for k, n in ((0, 40), (3, 40), (40, 40), (17, 100), (1, 7)):
        interval = wilson(np.r_[np.ones(k), np.zeros(n - k)])
        expected = binomtest(k, n).proportion_ci(method="wilson")
        assert interval.estimate == pytest.approx(k / n)
        assert (interval.low, interval.high) == pytest.approx((expected.low, expected.high), abs=1e-12)
    assert wilson(np.zeros(40)).high > 0.08  # a bootstrap gives [0, 0] here


def test_rare_errors_keep_the_interval_level():
    """The percentile bootstrap of a rare error covers far below 95 % (zero width at 0 errors);
    the interval the comparisons use for a proportion keeps it (the audit's simulation)."""
    from robustbench_gcp.stats import wilson

    rng = np.random.default_rng(0)
    true_rate, n, trials = 0.02, 40, 400
    samples = (rng.random((trials, n)) < true_rate).astype(float)
    covered_wilson = np.mean([(iv := wilson(x)).low <= true_rate <= iv.high for x in samples])
    covered_boot = np.mean([(iv := bootstrap(x, resamples=200, seed=t)).low <= true_rate <= iv.high
                            for t, x in enumerate(samples[:100])])
    assert covered_wilson >= 0.9
    assert covered_boot < 0.7  # why the bootstrap is not used for proportions


def test_paired_proportion_difference_by_hand():
    from robustbench_gcp.stats import paired_proportion_difference

    # 8 images only A gets right, 2 only B, 30 both the same: Bonett and Price add 1 to each
    a = np.r_[np.ones(8), np.zeros(2), np.ones(10), np.zeros(20)]
    b = np.r_[np.zeros(8), np.ones(2), np.ones(10), np.zeros(20)]
    interval = paired_proportion_difference(a, b)
    p12, p21, z = 9 / 42, 3 / 42, 1.959963984540054
    half = z * math.sqrt((p12 + p21 - (p12 - p21) ** 2) / 42)
    assert interval.estimate == pytest.approx(6 / 40)
    assert (interval.low, interval.high) == pytest.approx((p12 - p21 - half, p12 - p21 + half))
    same = paired_proportion_difference(a, a)
    assert same.estimate == 0.0 and same.low < 0 < same.high  # a paired bootstrap gives [0, 0]


def test_a_corruption_is_tested_with_the_image_as_unit():
    """Counts of correct severities: an image that one model gets right at 5 severities and the
    other at none is one image in favour, not 5 (the audit's jpeg_compression case: p 0.0625)."""
    a = np.array([5, 3, 2, 2, 0])
    b = np.array([0, 3, 2, 2, 0])
    result = mcnemar(a, b)
    assert (result.only_a, result.only_b, result.p_value) == (1, 0, 1.0)
    # with one severity the counts are the booleans: McNemar's test
    bits_a, bits_b = np.array([1, 1, 0, 1], bool), np.array([0, 0, 0, 1], bool)
    assert mcnemar(bits_a.astype(int), bits_b.astype(int)) == mcnemar(bits_a, bits_b)
    # large equal counts: chi-square statistic max(|b - c| - 1, 0)^2 / n = 0, p = 1
    even = mcnemar(np.r_[np.ones(30000), np.zeros(30000)], np.r_[np.zeros(30000), np.ones(30000)])
    assert even.method == "chi2" and even.p_value == 1.0


def _scipy_sign_flip(a, b, resamples):
    stats = pytest.importorskip("scipy.stats")
    return stats.permutation_test((a, b), lambda x, y, axis: np.mean(x - y, axis=axis), vectorized=True,
                                  permutation_type="samples", n_resamples=resamples, random_state=0,
                                  batch=1000).pvalue


@pytest.mark.parametrize("n", [2, 5, 11, 16])
def test_sign_flip_is_exact_for_few_units(n):
    rng = np.random.default_rng(n)
    a = rng.normal(size=n)
    b = a + rng.normal(0.5, 1.0, size=n)
    result = sign_flip(a, b)
    assert result.method == "sign-flip exact"
    assert result.p_value == pytest.approx(_scipy_sign_flip(a, b, np.inf), rel=1e-12)
    assert (result.only_a, result.only_b) == (int((a > b).sum()), int((a < b).sum()))
    assert result.p_value >= 2 / 2 ** n  # the observed pattern and its mirror image


def test_sign_flip_draws_agree_with_scipy_at_any_number_of_units():
    rng = np.random.default_rng(7)
    for n in (40, 2500):
        a = rng.normal(size=n)
        b = a + rng.normal(0.25 if n == 40 else 0.04, 1.0, size=n)
        result = sign_flip(a, b, seed=3)
        assert result.method == "sign-flip 10000 draws"
        reference = _scipy_sign_flip(a, b, 20_000)
        assert 0.01 < reference < 0.9  # a p-value worth comparing
        assert result.p_value == pytest.approx(reference, abs=0.02)
        assert sign_flip(a, b, seed=3) == result  # seeded
    # one extreme difference among many small ones: the draws see the skew the normal law misses
    d = np.r_[np.full(30, 0.01), 5.0]
    reference = _scipy_sign_flip(d, np.zeros_like(d), 20_000)
    assert sign_flip(d, np.zeros_like(d)).p_value == pytest.approx(reference, abs=0.02)
    # and so at 2,500 units, where the normal approximation was taken: p 0.046 (z = 2), a
    # difference at p < 0.05, where the permutation p is about 1/16 (the 4 large ones of one sign)
    d = np.r_[np.full(4, 1000.0), np.tile([1e-3, -1e-3], 1248)]
    reference = _scipy_sign_flip(d, np.zeros_like(d), 20_000)
    assert 0.055 < reference < 0.075
    assert sign_flip(d, np.zeros_like(d)).p_value == pytest.approx(reference, abs=0.01)


def test_sign_flip_ignores_ties_and_values_that_are_not_finite():
    a = np.array([1.0, 2.0, 3.0, np.nan, np.inf, 4.0])
    b = np.array([1.0, 1.0, 2.0, 0.0, 0.0, 3.0])
    result = sign_flip(a, b)
    assert (result.only_a, result.only_b, result.p_value) == (3, 0, 0.25)  # 3 units: 2 of 8 patterns
    assert sign_flip(a[:1], b[:1]).p_value == 1.0  # nothing differs
    with pytest.raises(ValueError, match="same shape"):
        sign_flip(a, b[:3])
    with pytest.raises(ValueError, match="same shape"):  # not paired by position once flattened
        sign_flip(np.zeros((2, 2)), np.zeros(4))


@pytest.mark.parametrize("n", [12, 300, 3000])
def test_sign_flip_p_values_do_not_depend_on_the_scale(n):
    """The normal approximation squared the raw differences: at 1e-170 they underflowed to 0 and p
    was 0 (a false difference), at 1e160 they overflowed and p was 1."""
    rng = np.random.default_rng(n)
    d = rng.normal(size=n)
    base = sign_flip(d, np.zeros(n), seed=1).p_value
    for scale in (1e-170, 1e160):
        assert sign_flip(d * scale, np.zeros(n), seed=1).p_value == pytest.approx(base, rel=1e-9)


def test_holm_by_hand():
    from robustbench_gcp.stats import holm

    assert holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5}) == pytest.approx(
        {"a": 0.04, "b": 0.09, "c": 0.09, "d": 0.5})
    assert holm({}) == {}
    for bad in (float("nan"), -0.1, 1.5):
        with pytest.raises(ValueError, match="p-value of 'b' should be in"):
            holm({"a": 0.01, "b": bad})


def test_comparisons_use_wilson_and_holm_for_proportions():
    rng = np.random.default_rng(3)
    clean_a = np.ones(40)  # no errors
    clean_b = (rng.random(40) < 0.2).astype(float)
    fog = (rng.random((2, 40)) < 0.5).astype(float)

    def design(clean, cells):
        return Design(["clean", "fog/1", "fog/2"], np.vstack([1 - clean, cells]),
                      {"clean_error": lambda m: m["clean"]},
                      tests={"clean": clean.astype(bool), "fog": (cells == 0).sum(axis=0)},
                      proportions={"clean_error": "clean"})

    entries = compare_designs(["a", "b"], [design(clean_a, fog), design(clean_b, fog[::-1])], ["fp", "fp"],
                              resamples=100)
    ref = entries[0].values["clean_error"]
    assert ref.estimate == 0.0 and ref.high > 0.08
    tests = entries[1].tests
    assert set(tests) == {"clean", "fog"}
    # Holm over the model's family (p_holm >= p let an unadjusted p pass for an adjusted one)
    from robustbench_gcp.stats import holm

    assert {k: t["p_holm"] for k, t in tests.items()} == holm({k: t["p_value"] for k, t in tests.items()})
    assert tests["clean"]["p_holm"] > tests["clean"]["p_value"]
    # which side wins: a (the reference, right on every image) is right where b is wrong, never the reverse
    assert (tests["clean"]["only_a"], tests["clean"]["only_b"]) == (int((1 - clean_b).sum()), 0) != (0, 0)
    assert (tests["fog"]["only_a"], tests["fog"]["only_b"]) == (0, 0)  # the same severities right per image
    assert entries[1].delta["clean_error"].low < entries[1].delta["clean_error"].estimate


def test_real_valued_rows_get_the_sign_flip_test_in_the_models_holm_family():
    rng = np.random.default_rng(5)
    loss = rng.gamma(2.0, 1.0, size=(2, 30))
    loss[1] = loss[0] + rng.uniform(0.6, 1.0, size=30)  # b's losses are higher on every image

    def design(row):
        return Design(["loss"], row[None, :], {"loss": lambda m: m["loss"]}, mean_tests=("loss",))

    a, b = compare_designs(["a", "b"], [design(loss[0]), design(loss[1])], ["fp", "fp"], resamples=100)
    assert a.tests is None
    test = b.tests["loss"]
    assert test == {**sign_flip(loss[0], loss[1]).as_dict(), "p_holm": test["p_value"]}
    assert test["only_b"] == 30 and test["p_value"] == 1 / 10_001  # no random pattern reaches it
    assert b.delta["loss"].estimate == pytest.approx((loss[1] - loss[0]).mean())


def test_infinite_and_undefined_draws_count():
    """A resample in which a stored baseline never flips gives an infinite FR: it widens the
    interval (to null above) instead of being dropped; undefined draws (0 / 0) beyond the tail
    make both bounds unknown."""
    from robustbench_gcp.stats import percentile_bounds

    finite = np.arange(100.0)
    assert percentile_bounds(finite) == pytest.approx(np.quantile(finite, [0.025, 0.975]))
    low, high = percentile_bounds(np.r_[finite, np.full(3, np.inf)])
    assert low == pytest.approx(np.quantile(np.r_[finite, [1e9] * 3], 0.025)) and high == math.inf
    low, high = percentile_bounds(np.r_[finite, np.full(2, np.nan)])  # 2 of 102: within the tail
    assert (low, high) == pytest.approx(np.quantile(finite, [0.025, 0.975]))
    assert all(math.isnan(b) for b in percentile_bounds(np.r_[finite, np.full(4, np.nan)]))
    # a bound between -inf and +inf draws is the infinity on its side (the upper one was -inf)
    assert percentile_bounds(np.array([-math.inf, math.inf])) == (-math.inf, math.inf)
    halves = np.r_[np.full(975, -np.inf), np.full(25, np.inf)]  # 0.975's position falls between them
    assert percentile_bounds(halves) == (-math.inf, math.inf)

    def inverse(m):  # infinite where the resample has no 1
        return np.where(m[0] > 0, 1 / np.where(m[0] > 0, m[0], 1), np.inf)

    interval = bootstrap(np.r_[np.zeros(20), 1.0], inverse, resamples=400)
    assert interval.high == math.inf and interval.as_dict()["high"] is None


def test_a_ratio_at_a_zero_denominator():
    from robustbench_gcp.suites.stored_baselines import percent_of

    assert percent_of(1.0, 4.0) == 25.0
    values = percent_of(np.array([1.0, 0.0, -1.0, 1.0]), np.array([0.0, 0.0, 0.0, -2.0]))
    assert values[0] == math.inf and math.isnan(values[1]) and values[2] == -math.inf
    assert math.isnan(values[3])  # a baseline better under corruption: undefined


def test_resampled_means_are_each_matrixs_own_draws_made_once():
    """report and compare drew the same weights again for every metric and model (90 % of a report
    of three 50,000-image models); the shared draws are each matrix's own, and the paired
    difference's draws are those of the stacked matrix."""
    from robustbench_gcp.stats import bootstrap, resampled_means

    rng = np.random.default_rng(3)
    a = (rng.random((4, 300)) < 0.6).astype(float)
    b = (rng.random((2, 300)) < 0.4).astype(float)
    together = resampled_means([a, b], resamples=2500, seed=7)
    alone = [resampled_means([m], resamples=2500, seed=7)[0] for m in (a, b)]
    stacked = resampled_means([np.concatenate([a, b])], resamples=2500, seed=7)[0]
    assert all(np.array_equal(x, y) for x, y in zip(together, alone))
    assert np.array_equal(np.concatenate(together), stacked) and together[0].shape == (4, 2500)
    interval = bootstrap(a, lambda m: m.mean(axis=0), resamples=2500, seed=7)
    assert interval.estimate == pytest.approx(a.mean()) and interval.low < a.mean() < interval.high


def test_bounds_at_their_edges():
    """The edges of the intervals, where rounding or a clamp decides: undefined draws exactly at the
    tail are left out (one more and the interval is unknown); a lower neighbour of -inf makes the
    bound -inf (NumPy's interpolation gives NaN); no interval leaves [0, 1] (or [-1, 1] for a
    difference), and an all-ones sample reaches 1 exactly (13 images: 1 - 1e-16 by the formula);
    Holm's adjusted p-values stay at most 1."""
    from robustbench_gcp.stats import holm, paired_proportion_difference, percentile_bounds, wilson

    assert percentile_bounds(np.r_[np.full(25, np.nan), np.arange(75.0)], 0.5) == (18.5, 55.5)
    assert all(math.isnan(b) for b in percentile_bounds(np.r_[np.full(26, np.nan), np.arange(74.0)], 0.5))
    low, high = percentile_bounds(np.r_[-np.inf, np.arange(39.0)])  # the 2.5 % point lies past -inf
    assert low == -math.inf and high == pytest.approx(37.025)
    assert wilson(np.ones(13)).high == 1.0 and wilson(np.zeros(13)).low == 0.0
    apart = paired_proportion_difference(np.ones(2), np.zeros(2))
    assert apart.high == 1.0 and paired_proportion_difference(np.zeros(2), np.ones(2)).low == -1.0
    assert holm({"a": 0.6, "b": 0.7}) == {"a": 1.0, "b": 1.0}


def test_a_mean_of_plus_and_minus_infinite_ce_is_undefined_without_a_warning():
    """Relative CE is +inf for one corruption and -inf for another where a stored baseline errs as
    much corrupted as clean: their mean is NaN (shown '-', with a note), and numpy's 'invalid value
    encountered in add' RuntimeWarning reached the terminal of `report`."""
    import warnings

    from robustbench_gcp.reports.comparison import _statistic
    from robustbench_gcp.suites.stored_baselines import percent_of

    def mean_relative(m):
        return (percent_of(m["a"], 0 * m["a"]) + percent_of(-m["a"], 0 * m["a"])) / 2

    design = Design.of(["a"], [np.ones(4)], {"m": mean_relative})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = _statistic(design, "m")(np.ones((1, 3)))
    assert value.shape == (3,) and np.isnan(value).all()
