"""The papers' tables across models (``report --format markdown``): each shows one difficulty,
names its normalizer, and averages the perturbations the dataset's own evaluation averages."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from corruptions import PERTURBATION_SUBSETS
from robustbench_gcp.config import load_config
from robustbench_gcp.data.datasets import get_dataset
from robustbench_gcp.suites import get_suite
from robustbench_gcp.suites.imagenet_p import ImageNetPSpec
from robustbench_gcp.suites.imagenet_p_summary import averaged_perturbations, dataset_subsets, summarize


def _report(model, sections):
    return SimpleNamespace(model=model, sections=sections, heading="H")


def _p_sections(by_difficulty):
    """ImageNet-P sections with FR = flip probability x 100 / 0.5 at each given difficulty."""
    entries = [{"perturbation": p, "difficulty": d, "flip_probability": fp, "top5_distance": 0.0,
                "FR": 200 * fp, "T5D": None, "n_videos": 1}
               for d, values in by_difficulty.items() for p, fp in values.items()]
    means = {str(d): {"mFR": sum(200 * v for v in values.values()) / len(values),
                      "mean_flip_probability": sum(values.values()) / len(values)}
             for d, values in by_difficulty.items()}
    first = min(by_difficulty)
    return {"perturbations": entries,
            "metrics": {"mFR": means[str(first)]["mFR"], "difficulty": first, "by_difficulty": means,
                        "dataset": "imagenet"}}


def test_the_flip_table_shows_the_difficulty_its_mean_is_of():
    sections = _p_sections({1: {"rotate": 0.1, "scale": 0.3}, 3: {"rotate": 0.4, "scale": 0.6}})
    table = get_suite("imagenet-p").detail_markdown([_report("m", sections)])
    assert "FR per perturbation (baseline = 100, difficulty 1)" in table
    row = [line for line in table.splitlines() if line.startswith("| m ")][0]
    assert [cell.strip() for cell in row.strip("|").split("|")] == ["m", "40.0", "20.0", "60.0"]


def test_the_ce_table_names_its_normalizer_or_shows_errors():
    suite = get_suite("imagenet-c")
    entry = {"corruption": "fog", "severities": [1], "mean_error": 0.25, "CE": 50.0, "relative_CE": None}
    normalized = {"per_corruption": [entry], "metrics": {"mCE": 50.0, "mean_error": 0.25, "baseline": "mine"}}
    assert "CE per corruption (mine = 100)" in suite.detail_markdown([_report("m", normalized)])
    bare = {"per_corruption": [{**entry, "CE": None}],
            "metrics": {"mCE": None, "mean_error": 0.25, "baseline": None}}
    table = suite.detail_markdown([_report("m", bare)])
    assert "error per corruption (%, unnormalized)" in table and "AlexNet" not in table
    assert "| m | 25.00 | 25.00 |" in table  # the terminal table's mean err % digits


def test_cifar_p_averages_spatter_where_imagenet_p_has_snow():
    """hendrycks/robustness ImageNet-P/cifar-p-eval.py averages these 10."""
    cifar = averaged_perturbations(get_dataset("cifar10"))
    assert cifar == ("gaussian_noise", "shot_noise", "motion_blur", "zoom_blur", "spatter", "brightness",
                     "translate", "rotate", "tilt", "scale")
    assert averaged_perturbations(get_dataset("cifar100")) == cifar
    assert averaged_perturbations(get_dataset("imagenet")) == PERTURBATION_SUBSETS["test"]
    assert averaged_perturbations(get_dataset("tinyimagenet")) == PERTURBATION_SUBSETS["test"]
    assert set(dataset_subsets(get_dataset("cifar10"))["validation"]) == {
        "speckle_noise", "gaussian_blur", "snow", "shear"}
    # the shipped cifar10-p suite runs them; `test` on the command line means them on CIFAR
    suite, spec = get_suite("imagenet-p"), load_config().suite("cifar10-p")
    assert suite.select(spec, {}).perturbations == cifar
    assert suite.select(spec, {"perturbations": "test"}).perturbations == cifar
    plain = ImageNetPSpec("p", "imagenet-p", perturbations=PERTURBATION_SUBSETS["test"], difficulties=(1,),
                          subset="test", dataset="cifar10")
    assert suite.select(plain, {}).perturbations == cifar


def test_the_cifar_p_mean_leaves_snow_out():
    from robustbench_gcp.store import CellKey, CellResult

    def cell(name, fp):
        counts = {"videos": 4, "comparisons": 4 * 20, "flip_rate_sum": 4 * fp, "distance_rate_sum": 0.0}
        return CellResult(CellKey("imagenet-p", name, "1", '{"dataset":"cifar10","source":"torch"}'), 4,
                          counts, [0], True)

    names = ["gaussian_noise", "shot_noise", "motion_blur", "zoom_blur", "snow", "spatter", "brightness",
             "translate", "rotate", "tilt", "scale"]
    sections, _ = summarize([cell(p, 0.5 if p == "snow" else 0.25) for p in names], baseline=None,
                            baseline_name=None)
    first = sections["metrics"]["by_difficulty"]["1"]
    assert first["mean_flip_probability"] == 0.25 and "snow" not in first["perturbations"]
    assert [e["perturbation"] for e in sections["perturbations"]][4:6] == ["spatter", "brightness"]


def test_the_compared_mean_error_is_the_reports_with_uneven_severities():
    """A run holding fog at severities 1, 2 and contrast at 3 only: the comparison's mean error is
    the report's (the mean over corruptions of each one's mean), not the mean over cells."""
    import numpy as np

    from robustbench_gcp.store import CellKey, CellResult
    from robustbench_gcp.suites.imagenet_c_summary import summarize

    variant = '{"dataset":"cifar10","roundtrip":true,"source":"torch"}'

    def cell(name, level, wrong):
        correct = np.arange(4) >= wrong
        return CellResult(CellKey("imagenet-c", name, str(level), variant), 4,
                          {"top1_errors": wrong, "top5_errors": 0}, [0], True, correct=correct)

    results = [cell("fog", 1, 0), cell("fog", 2, 4), cell("contrast", 3, 1)]
    design = get_suite("imagenet-c").design(results, None)
    means = dict(zip(design.rows, design.values.mean(axis=1)))
    sections, notes = summarize(results, benchmark=["fog", "contrast"], baseline=None)
    assert sections["metrics"]["mean_error"] == (0.5 + 0.25) / 2
    assert ("the corruptions were stored at different severities (fog 1,2; contrast 3): they share none, so "
            "each corruption's CE and mean error cover its own") in notes and design.notes[:1] == notes[:1]
    # the severities the compared means cover, as the report says them
    assert design.notes[1] == "the mean errors average severities 1,2,3 only, not the benchmark's 1-5"
    assert design.notes[1] in notes
    # and what the compared mean averages, of the benchmark's 15 (the report's here: of the 2 given)
    assert design.notes[2].startswith("the means average 2 of the 15 benchmark corruptions; missing: ")
    assert design.metrics["mean_error"](means) == sections["metrics"]["mean_error"]


def test_the_severities_notes_name_the_extra_corruptions_that_keep_their_own():
    """A corruption outside the benchmark keeps its severities while the benchmark's are cut to
    those they share: the notes said every mean covered the shared ones (speckle_noise's 1-5 mean
    beside fog's of 1,3, helper-218); nor did they say the benchmark's 1,3 where an extra one had 1-5."""
    from robustbench_gcp.suites.severities import covered_severities

    bench = ["gaussian_noise", "fog"]
    outside = "(the corruptions outside the benchmark keep their own: speckle_noise 1,2,3,4,5)"
    kept, uneven, only = covered_severities({"gaussian_noise": [1, 2, 3, 4, 5], "fog": [1, 3],
                                             "speckle_noise": [1, 2, 3, 4, 5]}, bench, normalized=False)
    assert kept == {"gaussian_noise": [1, 3], "fog": [1, 3], "speckle_noise": [1, 2, 3, 4, 5]}
    assert uneven.endswith(f": CE, mCE and the means cover the severities they all have, 1,3 {outside}")
    assert only == f"the mean errors average severities 1,3 only, not the benchmark's 1-5 {outside}"
    # the benchmark's at 1,3 alike, the extra one at 1-5: the means' 1,3 are said (it said nothing)
    _, uneven, only = covered_severities({"fog": [1, 3], "speckle_noise": [1, 2, 3, 4, 5]}, bench, True)
    assert uneven == "" and only == ("CE sums over severities 1,3 only, in both the model's errors and the "
                                     f"baseline's {outside}")
    # the benchmark's at 1-5, the extra one at 1,3
    _, uneven, only = covered_severities({"fog": [1, 2, 3, 4, 5], "speckle_noise": [1, 3]}, bench, True)
    assert uneven == "" and only == ("CE sums over severities of their own for the corruptions outside the "
                                     "benchmark: speckle_noise 1,3")
    # an extra one at the benchmark's severities: nothing more to say
    _, _, only = covered_severities({"fog": [1, 3], "speckle_noise": [1, 3]}, bench, False)
    assert only == "the mean errors average severities 1,3 only, not the benchmark's 1-5"
    assert covered_severities({"speckle_noise": [1, 3]}, bench, False)[2] == \
        "the mean errors average severities 1,3 only, not the benchmark's 1-5"


def test_an_imagenet_comparison_without_its_normalizer_compares_the_mean_error():
    """ImageNet-C under a --baseline that is not an ImageNet-C baseline (an ImageNet-P run's name):
    no mCE, and the comparison keeps the unnormalized mean error rather than no corruption metric."""
    import numpy as np

    from robustbench_gcp.metrics import Baseline
    from robustbench_gcp.store import CellKey, CellResult

    variant = '{"roundtrip":true,"source":"torch"}'  # ImageNet: AlexNet-normalized

    def cell(name, level, wrong):
        return CellResult(CellKey("imagenet-c", name, str(level), variant), 4,
                          {"top1_errors": wrong, "top5_errors": 0}, [0], True, correct=np.arange(4) >= wrong)

    results = [cell("fog", 1, 1), cell("fog", 2, 3), cell("contrast", 3, 2)]
    design = get_suite("imagenet-c").design(results, None)
    means = dict(zip(design.rows, design.values.mean(axis=1)))
    assert "mCE" not in design.metrics and design.metrics["mean_error"](means) == (0.5 + 0.5) / 2
    alexnet = Baseline("alexnet", clean_error=0.5, imagenet_c={c: (0.8,) * 5 for c in ("fog", "contrast")})
    normalized = get_suite("imagenet-c").design(results, alexnet)
    assert list(normalized.metrics) == ["mCE", "mean_error"]  # the unnormalized mean too, as the reports
    assert normalized.metrics["mean_error"](means) == (0.5 + 0.5) / 2


def test_a_baseline_without_errors_of_these_corruptions_does_not_normalize_imagenet_c():
    """--baseline a,b takes for ImageNet-C the first name with errors of its corruptions: a run stored
    under a name for another suite or dataset gives an empty table, which must not win by coming first."""
    from robustbench_gcp.metrics import Baseline

    suite = get_suite("imagenet-c")
    assert not suite.normalizes(None) and not suite.normalizes(Baseline("pbase"))
    assert suite.normalizes(Baseline("cbase", clean_error=0.5, imagenet_c={"fog": (0.8,) * 5}))


def test_a_stored_baseline_without_errors_on_a_corruption_says_so():
    """A stored baseline that made no error on a corruption leaves its CE empty: the note said it had
    no complete cells of it, to be stored again, which cannot help."""
    import math

    from robustbench_gcp.metrics import Baseline
    from robustbench_gcp.store import CellKey, CellResult
    from robustbench_gcp.suites.imagenet_c_summary import summarize

    variant = '{"dataset":"tinyimagenet","roundtrip":true,"source":"torch"}'
    results = [CellResult(CellKey("imagenet-c", name, "2", variant), 4, {"top1_errors": 1, "top5_errors": 0},
                          [0], True) for name in ("fog", "pixelate", "contrast")]
    errors = {"fog": 0.5, "pixelate": 0.0}  # contrast: none stored
    table = {c: tuple(e if s == 2 else math.nan for s in range(1, 6)) for c, e in errors.items()}
    baseline = Baseline("tgap", clean_error=0.1, run=object(), imagenet_c=table)
    sections, notes = summarize(results, benchmark=["fog", "pixelate", "contrast"], baseline=baseline)
    assert {e["corruption"]: e["CE"] for e in sections["per_corruption"]} == {
        "fog": 50.0, "contrast": None, "pixelate": None}
    assert "CE left empty for pixelate: the stored baseline 'tgap' made no error there (a zero " \
        "normalizer); so there is no mCE (nor relative mCE)" in notes
    assert any(n.startswith("CE left empty for contrast: the stored baseline 'tgap' has no complete cells")
               for n in notes)


def test_a_comparison_under_a_baseline_without_errors_on_a_corruption_keeps_the_mean_error():
    """The comparison's mCE under such a baseline was null, with no Δ; as mFR does, it falls back to
    the unnormalized mean error."""
    import numpy as np

    from robustbench_gcp.metrics import Baseline
    from robustbench_gcp.store import CellKey, CellResult

    variant = '{"roundtrip":true,"source":"torch"}'  # ImageNet: AlexNet-normalized, no mean_error of its own

    def cell(name, level, wrong):
        return CellResult(CellKey("imagenet-c", name, str(level), variant), 4,
                          {"top1_errors": wrong, "top5_errors": 0}, [0], True, correct=np.arange(4) >= wrong)

    results = [cell("fog", 1, 1), cell("contrast", 1, 2)]
    table = {"fog": (0.5,) * 5, "contrast": (0.0,) * 5}
    stored = Baseline("gapbase", clean_error=0.1, run=object(), imagenet_c=table)
    design = get_suite("imagenet-c").design(results, stored)
    means = dict(zip(design.rows, design.values.mean(axis=1)))
    assert "mCE" not in design.metrics and "relative_mCE" not in design.metrics
    assert design.metrics["mean_error"](means) == (0.25 + 0.5) / 2
    table["contrast"] = (0.25,) * 5  # an error there: normalized
    design = get_suite("imagenet-c").design(results, stored)
    means = dict(zip(design.rows, design.values.mean(axis=1)))
    assert design.metrics["mCE"](means) == (50.0 + 200.0) / 2
    assert list(design.metrics) == ["mCE", "mean_error"]


def test_an_undefined_relative_ce_and_extras_alone_are_explained():
    """Relative CE is undefined where the baseline errs there no more than on the clean images, and
    the means cover the benchmark corruptions only: both left the cells empty with no note."""
    from robustbench_gcp.metrics import Baseline
    from robustbench_gcp.store import CellKey, CellResult
    from robustbench_gcp.suites.imagenet_c_summary import summarize

    variant = '{"dataset":"tinyimagenet","roundtrip":true,"source":"torch"}'

    def cell(key, wrong):
        return CellResult(key, 4, {"top1_errors": wrong, "top5_errors": 0}, [0], True)

    results = [cell(CellKey("clean"), 1), cell(CellKey("imagenet-c", "fog", "1", variant), 2),
               cell(CellKey("imagenet-c", "contrast", "1", variant), 3)]
    table = {"fog": (0.5,) * 5, "contrast": (0.2,) * 5}  # contrast: below its clean error, 0.25
    baseline = Baseline("tgap", clean_error=0.25, run=object(), imagenet_c=table)
    sections, notes = summarize(results, benchmark=["fog", "contrast"], baseline=baseline)
    relative = {e["corruption"]: e["relative_CE"] for e in sections["per_corruption"]}
    assert relative == {"fog": 100 * (0.5 - 0.25) / (0.5 - 0.25), "contrast": None}
    assert sections["metrics"]["relative_mCE"] is None
    assert ("relative CE left empty for contrast: the baseline 'tgap' errs there no more than on the clean "
            "images (its sum of E(s, c) - E_clean is not positive), so relative CE is undefined; so there is "
            "no relative mCE") in notes
    _, notes = summarize(results, benchmark=["snow"], baseline=baseline)
    assert ("the means (mCE, relative mCE, mean error) average the 1 benchmark corruptions, and none was "
            "run: the extra corruptions get their own CE and mean error only") in notes


@pytest.mark.parametrize("stored", [False, True], ids=["table", "stored-run"])
def test_a_zero_normalizer_of_a_benchmark_corruption_says_there_is_no_mce(stored):
    """A baseline that made no error on one corruption leaves its CE empty, and so the mCE: the note
    said the CE only, and a stored baseline's note said "CE and mCE are normalized by" it (the
    demo's --limit 10, helper-230)."""
    import numpy as np

    from robustbench_gcp.metrics import Baseline
    from robustbench_gcp.store import CellKey, CellResult
    from robustbench_gcp.suites.imagenet_c_summary import summarize

    variant = '{"dataset":"cifar10","roundtrip":true,"source":"torch"}'

    def cell(name, level, wrong):
        return CellResult(CellKey("imagenet-c", name, str(level), variant), 4,
                          {"top1_errors": wrong, "top5_errors": 0}, [0], True, correct=np.arange(4) >= wrong)

    base = Baseline("b", clean_error=0.25, imagenet_c={"fog": (0.0,) * 5, "contrast": (0.5,) * 5},
                    run=object() if stored else None)
    sections, notes = summarize([cell("fog", 1, 1), cell("contrast", 1, 2)], benchmark=["fog", "contrast"],
                                baseline=base)
    assert sections["metrics"]["mCE"] is None and sections["per_corruption"][1]["CE"] == 100.0
    who = "the stored baseline 'b'" if stored else "baseline 'b'"
    assert (f"CE left empty for fog: {who} made no error there (a zero normalizer); so there is no mCE (nor "
            "relative mCE)") in notes, notes
    assert not any("CE and mCE are normalized" in note for note in notes), notes
