"""A stored baseline run normalizes the protocol's way only on the same images and seed: then
comparisons resample it with those images (its figures are sample means too); otherwise reports
say so, and its figures stay fixed."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from robustbench_gcp.cli import main

SELECTION = ("--perturbations", "translate,rotate,brightness")


def cli(*args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return json.loads(result.stdout) if code == 0 else result


def p_args(demo_val, store, limit, *extra):
    return ["--data", demo_val, "--class-order", "sorted", "--store", store, "--limit", limit,
            "--workers", 0, "--format", "json", *SELECTION, *extra]


def other_images(notes):
    return [n for n in notes if n.startswith("baseline 'gapbase' was evaluated on")]


def test_an_imagenet_p_baseline_on_the_same_images_is_resampled_with_them(demo_val, tmp_path):
    store = tmp_path / "s.db"
    cli("baseline", "--model", "demo-gap", "--name", "gapbase", *p_args(demo_val, store, 10))
    out = cli("compare", "--model", "demo-gap", "--model", "demo-isqrt", "--suite", "imagenet-p",
              "--baseline", "gapbase", "--resamples", 200, *p_args(demo_val, store, 10))
    (comparison,) = out["comparisons"]
    gap, isqrt = (m["metrics"]["mFR"] for m in comparison["models"])
    # the baseline against itself: 100 in every resample, not an interval around 100
    assert gap["estimate"] == pytest.approx(100.0, abs=1e-4)
    assert gap["low"] == pytest.approx(100.0, abs=1e-4) and gap["high"] == pytest.approx(100.0, abs=1e-4)
    assert isqrt["low"] < isqrt["estimate"] < isqrt["high"]
    assert not any(other_images(r["notes"]) for r in out["reports"])


def test_a_baseline_on_other_images_or_seed_is_noted_and_fixed(demo_val, tmp_path):
    store = tmp_path / "s.db"
    cli("baseline", "--model", "demo-gap", "--name", "gapbase", *p_args(demo_val, store, 20))
    report = cli("eval", "--model", "demo-isqrt", "--suite", "imagenet-p", "--baseline", "gapbase",
                 *p_args(demo_val, store, 10))
    (note,) = other_images(report["notes"])
    assert note.startswith("baseline 'gapbase' was evaluated on other images (20, this run 10): its "
                           "figures normalize a different sample"), note
    assert report["metrics"]["mFR"] is not None  # still normalized, as asked, and said
    seeded = cli("eval", "--model", "demo-isqrt", "--suite", "imagenet-p", "--baseline", "gapbase",
                 "--seed", 3, *p_args(demo_val, store, 20))
    (note,) = other_images(seeded["notes"])
    assert "evaluated on seed 0 (this run 3)" in note, note
    stored = cli("report", "--store", store, "--suite", "imagenet-p", "--baseline", "gapbase",
                 "--format", "json", "--no-intervals")
    noted = {(r["n_images"], r["seed"]): bool(other_images(r["notes"])) for r in stored["reports"]}
    assert noted == {(20, 0): False, (10, 0): True, (20, 3): True}
