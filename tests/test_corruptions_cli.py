"""``gcp-robust bench corruptions`` and ``gcp-robust bench fidelity`` through CliRunner."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from robustbench_gcp.cli import main


def run(*args):
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "200"})  # rich: no wrapping


def test_help_texts():
    for command in ("corruptions", "fidelity"):
        result = run("bench", command, "--help")
        assert result.exit_code == 0, result.output
        assert "--corruptions" in result.output and "--json" in result.output


def test_bench_corruptions_json():
    result = run("bench", "corruptions", "--corruptions", "contrast,gaussian_noise",
                 "--severities", "1,5", "--batch-size", "2", "--size", "64",
                 "--reference-images", "1", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [row["corruption"] for row in report["rows"]] == ["contrast", "gaussian_noise"]
    for row in report["rows"]:
        assert row["ms_per_image"] > 0 and row["reference_ms_per_image"] > 0
        assert row["speedup"] == pytest.approx(row["reference_ms_per_image"] / row["ms_per_image"])
    assert report["settings"] == {"device": "cpu", "batch_size": 2, "size": 64,
                                  "severities": [1, 5], "reference_images": 1, "repeats": 3}
    assert report["geometric_mean"]["speedup"] > 0


def test_bench_corruptions_table():
    result = run("bench", "corruptions", "--corruptions", "noise", "--severities", "2",
                 "--batch-size", "2", "--size", "32", "--reference-images", "1")
    assert result.exit_code == 0, result.output
    for text in ("ms/image", "speed-up", "gaussian_noise", "impulse_noise", "geometric mean"):
        assert text in result.stdout


def test_bench_fidelity_json():
    result = run("bench", "fidelity", "--corruptions", "brightness,shot_noise", "--images", "1",
                 "--seeds", "1", "--severities", "2", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [(r["corruption"], r["severity"]) for r in rows] == [("brightness", 2), ("shot_noise", 2)]
    assert rows[0]["mad"] < 0.01 and rows[0]["reference"] == "imagecorruptions"
    assert "psnr" not in rows[0]
    assert rows[1]["mad"] < 0.01  # paired: the reference's Poisson draws
    assert abs(rows[1]["psnr_diff"]) < 2 and rows[1]["samples"] == 1


def test_bad_arguments_are_usage_errors():
    result = run("bench", "corruptions", "--corruptions", "gausian_noise")
    assert result.exit_code == 2
    assert "Did you mean 'gaussian_noise'?" in result.output
    result = run("bench", "fidelity", "--severities", "0,3")
    assert result.exit_code == 2
    assert "should be 1..5" in result.output
    result = run("bench", "corruptions", "--device", "cuda:7", "--corruptions", "fog")
    if not torch.cuda.is_available():
        assert result.exit_code == 2
        assert "CUDA is not available" in result.output
