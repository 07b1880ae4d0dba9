"""CE, mCE and relative mCE against hand computations with the AlexNet table."""

from __future__ import annotations

import pytest

from robustbench_gcp.config import load_config
from robustbench_gcp.metrics import baseline_names, corruption_errors, mean_corruption_error, rate

ALEXNET = load_config().baseline("alexnet")
BENCHMARK = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
             "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
             "elastic_transform", "pixelate", "jpeg_compression")


def test_ce_and_relative_ce_by_hand():
    errors = {("fog", s): e for s, e in zip(range(1, 6), (0.30, 0.35, 0.40, 0.50, 0.60))}
    (fog,) = corruption_errors(errors, 0.20, ALEXNET)
    # AlexNet fog: .67474 .76050 .84378 .87260 .94500 (sum 4.09662), clean .4348
    assert fog.CE == pytest.approx(100 * 2.15 / 4.09662, abs=1e-9)
    assert fog.relative_CE == pytest.approx(100 * (2.15 - 5 * 0.20) / (4.09662 - 5 * 0.4348), abs=1e-9)
    assert fog.mean_error == pytest.approx(0.43)


def test_a_model_normalized_by_its_own_errors_has_ce_and_relative_ce_of_exactly_100():
    """The ratio before the 100: 100 * x / x is not always 100 (the stored baseline's own relative CE
    was 99.99999999999999 in JSON and CSV)."""
    from robustbench_gcp.metrics import ce, relative_ce

    rows = [(0.4123, 0.5531, 0.6077, 0.7219, 0.8313), (0.3, 0.35, 0.4, 0.5, 0.6),
            (0.11, 0.13, 0.29, 0.47, 0.61)]
    for errors in rows:
        for clean in (0.0, 0.05, 0.2347, 0.1, 0.0999):
            assert ce(errors, errors) == 100.0 and relative_ce(errors, clean, errors, clean) == 100.0, (
                errors, clean)


def test_partial_severities_sum_the_same_severities_of_the_baseline():
    (fog,) = corruption_errors({("fog", 1): 0.30, ("fog", 3): 0.40}, 0.20, ALEXNET)
    assert fog.severities == (1, 3)
    assert fog.CE == pytest.approx(100 * 0.70 / (0.67474 + 0.84378), abs=1e-9)
    assert fog.relative_CE == pytest.approx(100 * 0.30 / (0.67474 + 0.84378 - 2 * 0.4348), abs=1e-9)


#: PROTOCOL.md's AlexNet errors (Hendrycks & Dietterich's normalizers), entry by entry: the check
#: of the row means below let a last-digit typo in one entry (.86469 for .86468) through.
ALEXNET_ERRORS = {
    "gaussian_noise": (.69528, .82542, .93554, .98138, .99452),
    "shot_noise": (.71224, .85108, .93574, .98182, .99146),
    "impulse_noise": (.78374, .89808, .94870, .98720, .99548),
    "defocus_blur": (.65624, .73202, .85036, .91364, .94714),
    "glass_blur": (.64308, .75054, .88806, .91622, .93344),
    "motion_blur": (.58430, .70048, .82108, .89750, .92638),
    "zoom_blur": (.70008, .76992, .80784, .84198, .87198),
    "snow": (.71726, .88392, .86468, .91870, .94952),
    "frost": (.61390, .79734, .88790, .89942, .93430),
    "fog": (.67474, .76050, .84378, .87260, .94500),
    "brightness": (.45140, .48502, .54048, .62166, .72440),
    "contrast": (.64548, .76150, .88874, .97760, .99270),
    "elastic_transform": (.52596, .70116, .55686, .64076, .80554),
    "pixelate": (.52218, .54620, .73728, .87092, .91262),
    "jpeg_compression": (.51002, .54718, .57294, .65458, .74778),
    "speckle_noise": (.66192, .74440, .90246, .94548, .97268),
    "gaussian_blur": (.54732, .70444, .82574, .89864, .95940),
    "spatter": (.47196, .62194, .75052, .84132, .90182),
    "saturate": (.59342, .65514, .51174, .70834, .82260),
}


def test_the_alexnet_normalizers_are_protocols_entry_by_entry():
    assert ALEXNET.clean_error == 0.4348
    stored = {c: tuple(ALEXNET.error(c, s) for s in range(1, 6)) for c in ALEXNET_ERRORS}
    assert stored == ALEXNET_ERRORS


def test_mce_of_alexnet_itself_is_100():
    errors = {(c, s): ALEXNET.error(c, s) for c in BENCHMARK for s in range(1, 6)}
    summaries = corruption_errors(errors, ALEXNET.clean_error, ALEXNET)
    metrics = mean_corruption_error(summaries, BENCHMARK)
    assert metrics["mCE"] == pytest.approx(100.0)
    assert metrics["relative_mCE"] == pytest.approx(100.0)
    # the unnormalized mean error is the mean of the table's row means
    row_means = [0.886428, 0.894468, 0.922640, 0.819880, 0.826268, 0.785948, 0.798360, 0.866816,
                 0.826572, 0.819324, 0.564592, 0.853204, 0.646056, 0.717840, 0.606500]
    assert metrics["mean_error"] == pytest.approx(sum(row_means) / 15, abs=1e-6)
    assert metrics["missing"] == []


def test_mce_by_hand_over_a_subset_and_extras_left_out():
    errors = {}
    for c, e in (("gaussian_noise", 0.5), ("contrast", 0.4), ("speckle_noise", 0.9)):
        errors.update({(c, s): e for s in range(1, 6)})
    summaries = corruption_errors(errors, 0.25, ALEXNET)
    metrics = mean_corruption_error(summaries, BENCHMARK)
    ce_gauss = 100 * 2.5 / (0.69528 + 0.82542 + 0.93554 + 0.98138 + 0.99452)
    ce_contrast = 100 * 2.0 / (0.64548 + 0.76150 + 0.88874 + 0.97760 + 0.99270)
    assert metrics["mCE"] == pytest.approx((ce_gauss + ce_contrast) / 2, abs=1e-9)
    assert metrics["corruptions"] == ["gaussian_noise", "contrast"]
    assert len(metrics["missing"]) == 13 and "speckle_noise" not in metrics["corruptions"]
    speckle = next(s for s in summaries if s.corruption == "speckle_noise")
    assert speckle.CE == pytest.approx(100 * 4.5 / (0.66192 + 0.74440 + 0.90246 + 0.94548 + 0.97268))


def test_without_clean_error_relative_is_none():
    (fog,) = corruption_errors({("fog", 2): 0.3}, None, ALEXNET)
    assert fog.relative_CE is None and fog.CE is not None
    assert mean_corruption_error([fog], BENCHMARK)["relative_mCE"] is None


def test_mce_averages_in_the_benchmarks_order_whatever_order_the_cells_came_in():
    """The mean's terms in the benchmark's order (the same bits however the store listed the cells)."""
    errors = {(c, 1): e for c, e in (("fog", 0.3), ("gaussian_noise", 0.5), ("contrast", 0.4))}
    metrics = mean_corruption_error(corruption_errors(errors, 0.2, ALEXNET), BENCHMARK)
    assert metrics["corruptions"] == ["gaussian_noise", "fog", "contrast"]
    ordered = (("gaussian_noise", 0.5), ("fog", 0.3), ("contrast", 0.4))
    ces = [100.0 * (e / ALEXNET.error(c, 1)) for c, e in ordered]
    assert metrics["mCE"] == sum(ces) / 3  # exactly: summed in this order


def test_a_rate_of_nothing_is_none_and_baseline_names_are_listed_once():
    """A success rate over no correctly classified image is undefined, not 0."""
    assert rate(0, 0) is None and rate(3, 4) == 0.75
    assert baseline_names(" alexnet, demo-gap,alexnet,") == ["alexnet", "demo-gap"]
