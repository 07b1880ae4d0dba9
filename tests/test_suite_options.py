"""Suite options that were taken without a check, and what a run left behind: the library's
`steps=0` (robust at every epsilon), YAML step sizes of 0 and DeepFool with one candidate, one
budget written two ways, YAML landscape steps of `true`, landscape labels that joined two step
grids, and a module you bring left with its weights frozen after attacks or the landscape."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from robustbench_gcp import evaluate
from robustbench_gcp.cli import main
from robustbench_gcp.config import load_config
from robustbench_gcp.errors import ConfigError
from robustbench_gcp.store import Store
from robustbench_gcp.suites import get_suite
from robustbench_gcp.yaml_checks import Checker


def common(demo_val, tmp_path, **extra):
    return dict(data=str(demo_val), class_order="sorted", store=str(tmp_path / "s.db"), limit=4,
                batch_size=4, **extra)


@pytest.mark.parametrize(("option", "value", "said"), [
    ("steps", 0, "`--steps` should be a positive integer. Got 0"),
    ("steps", True, "`--steps` should be a positive integer. Got True"),
    ("steps", 2.5, "`--steps` should be a positive integer. Got 2.5"),
])
def test_the_library_checks_suite_options_as_the_command_line(demo_val, tmp_path, option, value, said):
    with pytest.raises(ConfigError, match=f"^{said}$"):
        evaluate("demo-gap", suite="adversarial", attacks="pgd-linf", epsilons="1/255",
                 **common(demo_val, tmp_path, **{option: value}))
    assert not (tmp_path / "s.db").exists()


def test_switches_and_choices_of_the_library_are_checked(demo_val, tmp_path):
    with pytest.raises(ConfigError, match="^`--storage-roundtrip` should be True or False. Got 'no'$"):
        evaluate("demo-gap", suite="imagenet-c", corruptions="fog", severities=[1], storage_roundtrip="no",
                 **common(demo_val, tmp_path))
    with pytest.raises(ConfigError, match="^`--backend` should be one of torch, reference. Got 'gpu'$"):
        evaluate("demo-gap", suite="imagenet-c", corruptions="fog", backend="gpu",
                 **common(demo_val, tmp_path))
    # numpy integers are integers
    report = evaluate("demo-gap", suite="adversarial", attacks="pgd-linf", epsilons="1/255",
                      **common(demo_val, tmp_path, steps=np.int64(1)))
    assert json.loads(report.cells[-1].key.variant)["steps"] == 1


@pytest.mark.parametrize(("entry", "said"), [
    ({"attack": "deepfool-l2", "epsilons": [0.25], "candidates": 1}, r"candidates: should be >= 2, got 1"),
    ({"attack": "pgd-linf", "epsilons": [0.01], "rel_stepsize": 0}, r"rel_stepsize: should be > 0"),
    ({"attack": "cw-l2", "epsilons": [0.25], "stepsize": 0.0}, r"stepsize: should be > 0"),
    ({"attack": "cw-l2", "epsilons": [0.25], "initial_const": 0}, r"initial_const: should be > 0"),
])
def test_yaml_attack_settings_that_never_attack_are_refused(entry, said):
    """rel_stepsize 0 gave 100 % robust accuracy; DeepFool with 1 candidate crashed mid-run."""
    suite = get_suite("adversarial")
    with pytest.raises(ConfigError, match=said):
        suite.parse(Checker("x.yaml"), "mine", {"kind": "adversarial", "attacks": [entry]}, "suites.mine")


def test_one_budget_written_two_ways_is_one_budget():
    """4/255 and 0.0156862745 were two cells that reports showed as one 4/255 (refused since 0.7.3);
    a YAML file's 0.0627450980 and --epsilons 16/255 were two cells, not paired, under one label,
    and the note leaving them out of comparisons named both alike. A Linf budget that prints as
    k/255 is k/255 now."""
    from robustbench_gcp.suites.attacks import AttackSpec, format_epsilon

    suite = get_suite("adversarial")
    spec = load_config().suite("adversarial")
    (fgsm,) = suite.select(spec, {"attacks": "fgsm", "epsilons": "4/255,0.0156862745"}).attacks
    assert fgsm.epsilons == (4 / 255,)
    assert len(suite.select(spec, {"attacks": "fgsm", "epsilons": "4/255,5/255"}).attacks[0].epsilons) == 2
    yaml = suite.parse(Checker("x.yaml"), "mine", {"kind": "adversarial", "attacks": [
        {"attack": "fgsm", "epsilons": [0.0627450980, 0.001]}]}, "suites.mine")
    assert yaml.attacks[0].epsilons == (0.001, 16 / 255)  # 0.001 is 0.255/255: kept as given
    assert AttackSpec("pgd-l2", (0.0627450980,)).epsilons == (0.0627450980,)  # L2: no k/255
    assert format_epsilon(1e-9, "linf") == "1e-09"  # was 0/255
    with pytest.raises(ConfigError, match=r"epsilons 0\.5 and 0\.5000000001 of pgd-l2 are both 0\.5 in "
                                          r"reports"):
        suite.select(spec, {"attacks": "pgd-l2", "epsilons": "0.5,0.5000000001"})
    # a budget on the wrong scale in a YAML file names the file and the key (it was said at eval)
    with pytest.raises(ConfigError, match=r"x\.yaml: suites\.mine\.attacks\[0\]\.epsilons: epsilon 8 for "
                                          r"the Linf attack pgd-linf is not on the \[0, 1\] pixel scale"):
        suite.parse(Checker("x.yaml"), "mine", {"kind": "adversarial", "attacks": [
            {"attack": "pgd-linf", "epsilons": [8]}]}, "suites.mine")


def test_yaml_landscape_entries_are_checked_as_the_command_line():
    suite = get_suite("landscape")
    with pytest.raises(ConfigError, match=r"suites\.mine\.etas"):
        suite.parse(Checker("x.yaml"), "mine", {"kind": "landscape", "etas": [True, 1, 3]}, "suites.mine")
    with pytest.raises(ConfigError, match=r"suites\.mine\.severities: applies to corrupted images"):
        suite.parse(Checker("x.yaml"), "mine", {"kind": "landscape", "severities": [3]}, "suites.mine")


def test_landscape_step_grids_are_labelled_apart():
    """1/3:1:3 and 0.333333:1:3 were both "0.333333 to 1": one experiment in reports."""
    from robustbench_gcp.suites.landscape import _eta_text

    texts = {_eta_text(eta) for eta in (1 / 3, 0.333333, 1234567.0, 1234568.0)}
    assert _eta_text(0.03 / 1000) == "3e-05"
    assert len(texts) == 4
    assert [_eta_text(eta) for eta in (0.1 / 256, 75 / 256, 0.05, 75.0, 0.045 / 96)] == [
        "0.1/256", "75/256", "0.05", "75", "0.12/256"]


@pytest.mark.parametrize("suite", ["adversarial", "landscape"])
def test_a_module_you_bring_is_trainable_after_attacks_and_the_landscape(demo_val, tmp_path, suite):
    """Both suites froze the weights for good (requires_grad False): a later training step of the
    module then did nothing."""
    from robustbench_gcp.models import load_model

    net = load_model("demo-gap", load_config().model("demo-gap").checkpoint).train()
    net.fc.requires_grad_(False)  # the caller's own choice stays
    options = dict(attacks="pgd-linf", epsilons="1/255", steps=2) if suite == "adversarial" else dict(
        etas="0.1:1:3")
    evaluate(net, name="mine", suite=suite, **common(demo_val, tmp_path, **options))
    flags = {name: p.requires_grad for name, p in net.named_parameters()}
    assert not flags["fc.weight"] and not flags["fc.bias"]
    assert all(flag for name, flag in flags.items() if not name.startswith("fc."))
    assert all(p.grad is None for p in net.parameters())


def test_imagenet_p_headline_is_at_the_smallest_difficulty_with_a_test_perturbation(demo_val, tmp_path):
    """A validation perturbation stored at difficulty 1 beside test ones at 2 put the headline at 1,
    with no means, while the comparisons took difficulty 2."""
    args = ["--model", "demo-gap", "--suite", "imagenet-p", "--data", demo_val, "--class-order", "sorted",
            "--limit", 3, "--store", tmp_path / "s.db", "--workers", 0]
    runner = CliRunner()
    for extra in (["--perturbations", "rotate,brightness", "--difficulties", 2],
                  ["--perturbations", "gaussian_blur", "--difficulties", 1]):
        result = runner.invoke(main, ["eval", *map(str, args), *map(str, extra)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["report", "--store", str(tmp_path / "s.db"), "--format", "json"])
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.stdout)["reports"]
    metrics = report["metrics"]
    assert metrics["difficulty"] == 2
    assert metrics["by_difficulty"]["2"]["perturbations"] == ["brightness", "rotate"]
    markdown = runner.invoke(main, ["report", "--store", str(tmp_path / "s.db"), "--format", "markdown"])
    assert "difficulty 2" in markdown.output and "difficulty 1)" not in markdown.output
    # compared with a model of difficulty 1 as well: the comparison is at 2 for both, and says so
    extra = ["--perturbations", "rotate,brightness", "--difficulties", "1,2"]
    result = runner.invoke(main, ["eval", *map(str, args[2:]), "--model", "demo-isqrt", *map(str, extra)],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["report", "--store", str(tmp_path / "s.db"), "--format", "json"])
    reports = {r["model"]: r for r in json.loads(result.stdout)["reports"]}
    assert reports["demo-isqrt"]["metrics"]["difficulty"] == 1
    (comparison,) = json.loads(result.stdout)["comparisons"]
    assert ("mFR and mT5D (or the mean flip figures) at difficulty 2, the smallest every compared model "
            "has") in comparison["notes"]
    # the Markdown table per perturbation too: at 2 for both (it took 1, any model's smallest: the
    # model measured at 2 alone was dashes, and the other's mean FP was not the comparison's)
    markdown = runner.invoke(main, ["report", "--store", str(tmp_path / "s.db"), "--format", "markdown",
                                    "--suite", "imagenet-p"])
    table = markdown.output[markdown.output.index("flip probability per perturbation"):]
    assert table.startswith("flip probability per perturbation (%, unnormalized, difficulty 2)")
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| demo-")}
    assert set(rows) == {"demo-gap", "demo-isqrt"} and not any("| - |" in row for row in rows.values())
    mean = {r["model"]: r["metrics"]["by_difficulty"]["2"]["mean_flip_probability"] for r in reports.values()}
    for model, row in rows.items():
        assert row.split("|")[2].strip() == f"{100 * mean[model]:.2f}"


@pytest.mark.parametrize(("width", "height"), [(90, 73), (73, 75), (100, 83), (73, 73), (300, 260)])
@pytest.mark.parametrize(("square", "crop"), [(73, 64), (256, 224), (70, 64), (74, 64)])
def test_a_square_centred_on_the_crop_gives_the_images_own_centre_crop(width, height, square, crop):
    """ImageNet-P's square, cut and then cropped at its centre as the perturbations do, is the
    image's own centre crop (the original crops once); two centred crops were a pixel off it at 73 / 64
    (round half to even)."""
    from PIL import Image

    from robustbench_gcp.data.loader import Preprocess

    rng = np.random.default_rng(width * height)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    image = image.resize((width * square // min(width, height), height * square // min(width, height)))
    whole = Preprocess(None, crop)(image)
    cut = Preprocess(None, square, centred_on=crop)(image)
    inner = int(round((square - crop) / 2.0))
    assert np.array_equal(cut[inner:inner + crop, inner:inner + crop], whole)


def test_one_integer_check_takes_numpy_integers_and_refuses_bools_floats_and_strings():
    from robustbench_gcp.errors import check_integer
    from robustbench_gcp.metrics import comparison_pairs
    from robustbench_gcp.models.matrix import newton_schulz_sqrt

    value = check_integer("--limit", np.int64(3))
    assert value == 3 and type(value) is int
    assert check_integer("--workers", 0, low=0) == 0
    for bad in (True, np.bool_(True), 2.0, "3", None, 0):
        with pytest.raises(ConfigError, match=r"^`--limit` should be a positive integer\. Got "):
            check_integer("--limit", bad)
    with pytest.raises(ConfigError, match=r"^`--workers` should be a non-negative integer\. Got -1$"):
        check_integer("--workers", -1, low=0)
    # the library's callers, given NumPy integers (a loop over np.arange), as Python's
    assert comparison_pairs(5, mode="sequential", difficulty=np.int64(2)) == ([0, 1, 2], [2, 3, 4])
    spd = torch.eye(3, dtype=torch.float64)[None] * 4
    assert torch.equal(newton_schulz_sqrt(spd, iters=np.int32(5)), newton_schulz_sqrt(spd, iters=5))
    with pytest.raises(ValueError, match="`difficulty` should be a positive integer. Got 0"):
        comparison_pairs(5, mode="sequential", difficulty=0)


def test_a_stored_baseline_given_to_imagenet_c_on_imagenet_images_is_refused_before_compute(demo_val,
                                                                                            tmp_path):
    """ImageNet's CE is normalized by benchmarks.yaml's published errors: a stored run never
    normalizes it for a model of ImageNet's 1000 classes. Such a --baseline was taken, every unit
    computed, and the mCE came out empty. A model of other classes is another task: a stored run
    normalizes it, AlexNet's errors do not."""
    store = tmp_path / "s.db"
    made = CliRunner().invoke(main, ["baseline", "--name", "mybase", "--model", "demo-gap", "--suite",
                                     "imagenet-p", "--data", str(demo_val), "--class-order", "sorted",
                                     "--store", str(store), "--limit", "2", "--perturbations",
                                     "gaussian_noise", "--difficulties", "1"])
    assert made.exit_code == 0, made.output
    with pytest.raises(ConfigError, match=r"^`--baseline mybase` cannot normalize ImageNet-C on ImageNet "):
        evaluate("resnet18-gap", random_weights=True, suite="imagenet-c", baseline="mybase",
                 corruptions="fog", severities=[1], **common(demo_val, tmp_path))
    with Store(store) as opened:
        assert [run.model for run in opened.runs()] == ["demo-gap"]  # nothing of resnet18-gap computed
    from robustbench_gcp import plan

    assert plan("demo-isqrt", suite="imagenet-c", baseline="mybase", **common(demo_val, tmp_path))
    # a list takes the first name that normalizes each suite: alexnet for ImageNet-C, mybase for -P
    for suite in ("imagenet-c", "imagenet-p"):
        plan("demo-isqrt", suite=suite, baseline="alexnet,mybase", **common(demo_val, tmp_path))
