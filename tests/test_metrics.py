"""CE, mCE and relative mCE against hand computations with the AlexNet table."""

from __future__ import annotations

import pytest

from robustbench_gcp.config import load_config
from robustbench_gcp.metrics import corruption_errors, mean_corruption_error

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


def test_partial_severities_sum_the_same_severities_of_the_baseline():
    (fog,) = corruption_errors({("fog", 1): 0.30, ("fog", 3): 0.40}, 0.20, ALEXNET)
    assert fog.severities == (1, 3)
    assert fog.CE == pytest.approx(100 * 0.70 / (0.67474 + 0.84378), abs=1e-9)
    assert fog.relative_CE == pytest.approx(100 * 0.30 / (0.67474 + 0.84378 - 2 * 0.4348), abs=1e-9)


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
