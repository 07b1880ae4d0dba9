"""The adversarial suite: foolbox attacks through the engine, on GAP and GCP models.

Most tests use the embedded demo models (trained GAP and iSQRT-COV ResNets on
64 px images), which keeps real attacks on real trained networks fast on a CPU.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sqlite3

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from robustbench_gcp import evaluate
from robustbench_gcp.cli import main
from robustbench_gcp.config import load_config
from robustbench_gcp.data.folders import scan_folder
from robustbench_gcp.data.loader import Preprocess, iterate_batches
from robustbench_gcp.engine.classifier import Classifier
from robustbench_gcp.engine.runner import Context, ImageSource
from robustbench_gcp.models import load_model
from robustbench_gcp.reports.comparison import ALIGNED
from robustbench_gcp.store import CellKey, CellResult
from robustbench_gcp.suites.attacks import (
    DEFAULT_BUDGETS,
    AttackMemoryError,
    AttackSpec,
    AttackTask,
    budget_of,
)


def attack_report(demo_val, store, **kwargs):
    options = dict(suite="adversarial", data=str(demo_val), class_order="sorted", store=str(store),
                   batch_size=10, attacks="fgsm,pgd-linf", epsilons="0,1/255,4/255,16/255", steps=3, limit=30)
    options.update(kwargs)
    return evaluate(options.pop("model", "demo-gap"), **options).to_json()


def by_attack(report):
    out = {}
    for entry in report["attacks"]:
        out.setdefault(entry["attack"], []).append(entry)
    return out


def test_robust_accuracy_is_monotone_and_starts_at_clean(demo_val, tmp_path):
    report = attack_report(demo_val, tmp_path / "s.db")
    clean_accuracy = 1 - report["clean"]["top1_error"]
    assert clean_accuracy > 0.9
    attacks = by_attack(report)
    assert set(attacks) == {"fgsm", "pgd-linf"}
    for entries in attacks.values():
        assert [e["epsilon"] for e in entries] == [0.0, 1 / 255, 4 / 255, 16 / 255]
        robust = [e["robust_accuracy"] for e in entries]
        assert robust[0] == pytest.approx(clean_accuracy)
        assert all(a >= b for a, b in zip(robust, robust[1:]))
        assert all(e["clean_accuracy"] == pytest.approx(clean_accuracy) for e in entries)
        assert entries[0]["success_rate"] == 0.0
    assert attacks["pgd-linf"][-1]["robust_accuracy"] < clean_accuracy  # 16/255 breaks something
    assert attacks["pgd-linf"][-1]["robust_accuracy"] <= attacks["fgsm"][-1]["robust_accuracy"] + 0.1


def test_same_seed_same_numbers_for_batch_sizes_1_and_5(demo_val, tmp_path):
    kwargs = dict(model="demo-isqrt", attacks="pgd-l2", epsilons="0.25,1.0", steps=2, limit=10)
    one = attack_report(demo_val, tmp_path / "a.db", batch_size=1, **kwargs)
    five = attack_report(demo_val, tmp_path / "b.db", batch_size=5, **kwargs)
    assert one["attacks"] == five["attacks"]
    other_seed = attack_report(demo_val, tmp_path / "c.db", seed=1, **kwargs)
    assert other_seed["run"] != one["run"]


def _demo_batch(demo_val, n=4):
    images = scan_folder(demo_val, class_order="sorted")
    batch, _ = next(iterate_batches(images.paths()[:n], Preprocess(73, 64), batch_size=n))
    return batch.float() / 255, torch.tensor(images.labels[:n])


@pytest.mark.parametrize("attack, eps", [
    ("fgsm", 2 / 255), ("pgd-linf", 2 / 255), ("pgd-l2", 0.5), ("deepfool-linf", 2 / 255),
    ("deepfool-l2", 0.5), ("cw-l2", 0.5),
])
def test_adversarial_examples_stay_in_the_ball_and_the_box(demo_val, attack, eps):
    spec = load_config().model("demo-gap")
    model = load_model("demo-gap", spec.checkpoint)
    classifier = Classifier(model, torch.device("cpu"), mean=model.pretrained_cfg.mean,
                            std=model.pretrained_cfg.std)
    params = dict(DEFAULT_BUDGETS[attack])
    params.update({k: v for k, v in (("steps", 3), ("binary_search_steps", 2), ("candidates", 3))
                   if k in params})
    if attack == "cw-l2":  # strong enough to find adversarials (failed images are left unmoved)
        params.update(steps=20, initial_const=1.0)
    task = AttackTask(AttackSpec(attack, (eps, 4 * eps), params), ImageSource(demo_val), model.num_classes)
    x, y = _demo_batch(demo_val, n=6)
    adversarials, _ = task.adversarials(x, y, list(range(6)), Context(classifier))
    for adversarial, budget in zip(adversarials, (eps, 4 * eps)):
        delta = (adversarial - x).double().flatten(1)
        norms = delta.abs().amax(1) if "linf" in attack or attack == "fgsm" else delta.norm(dim=1)
        assert (norms <= budget + 1e-6).all()
        assert adversarial.min() >= 0 and adversarial.max() <= 1
        assert adversarial.dtype == x.dtype and adversarial.shape == x.shape
        assert (norms > 0).any()  # the attack did move the images


def test_carlini_wagner_does_not_depend_on_the_batch(demo_val):
    """foolbox's C&W stops early on the loss summed over its batch: each image's result depended on
    the images batched with it (the sizes moved with --batch-size, which results must not)."""
    spec = load_config().model("demo-gap")
    model = load_model("demo-gap", spec.checkpoint)
    classifier = Classifier(model, torch.device("cpu"), mean=model.pretrained_cfg.mean,
                            std=model.pretrained_cfg.std)
    # a light budget that converges (10 steps of 0.1 for 5 constants): with foolbox's early stop a third
    # of the values moved, as with the default budget, whose 500 steps, three times, took 8 minutes
    budget = {**DEFAULT_BUDGETS["cw-l2"], "steps": 10, "binary_search_steps": 5, "stepsize": 0.1}
    task = AttackTask(AttackSpec("cw-l2", (0.5,), budget), ImageSource(demo_val), model.num_classes)
    x, y = _demo_batch(demo_val, n=12)
    whole, sizes = task.adversarials(x, y, list(range(12)), Context(classifier))
    halves = [task.adversarials(x[i:i + 6], y[i:i + 6], list(range(i, i + 6)), Context(classifier))
              for i in (0, 6)]
    # the same but for float rounding (the backward pass of 12 images and of 6 differ in the last bits):
    # with the early stop, 6 of the 12 adversarials were 0.06 to 0.27 apart (L2)
    torch.testing.assert_close(whole[0], torch.cat([half[0][0] for half in halves]), atol=1e-5, rtol=0)
    torch.testing.assert_close(sizes, torch.cat([half[1] for half in halves]), atol=1e-5, rtol=0)


def test_gcp_and_gap_models_are_both_attackable(demo_val, tmp_path):
    for model in ("demo-gap", "demo-isqrt"):
        report = attack_report(demo_val, tmp_path / f"{model}.db", model=model, attacks="pgd-linf",
                               epsilons="0,8/255", steps=3, limit=20)
        clean, attacked = report["attacks"]
        assert clean["robust_accuracy"] == pytest.approx(1 - report["clean"]["top1_error"])
        assert clean["robust_accuracy"] > 0
        assert attacked["success_rate"] > 0, model  # gradients flow through the pooling head


def test_gradients_through_the_gcp_head_after_evaluation_in_inference_mode():
    """Attacks follow evaluations in one process: cached head tensors must not be inference tensors."""
    spec = load_config().model("demo-isqrt")
    model = load_model("demo-isqrt", spec.checkpoint)
    with torch.inference_mode():
        model(torch.rand(2, 3, 64, 64))
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_minimization_attacks_store_perturbation_sizes(demo_val, tmp_path):
    report = attack_report(demo_val, tmp_path / "s.db", attacks="deepfool-l2", epsilons="0.1,10", steps=20,
                           limit=10)
    small, large = report["attacks"]
    assert small["median_perturbation"] is not None and small["median_perturbation"] > 0
    assert large["robust_accuracy"] <= small["robust_accuracy"]
    assert large["median_perturbation"] == small["median_perturbation"]  # one minimization, all epsilons


def test_a_failed_cw_image_is_not_taken_for_an_adversarial(demo_val):
    """foolbox's C&W returns all zeros where it found nothing (its best_advs start as zeros): such
    an image stays unperturbed, robust at every epsilon, its size infinite (not ||x||)."""
    import foolbox as fb

    spec = load_config().model("demo-gap")
    model = load_model("demo-gap", spec.checkpoint)
    classifier = Classifier(model, torch.device("cpu"), mean=model.pretrained_cfg.mean,
                            std=model.pretrained_cfg.std)
    params = {"steps": 2, "binary_search_steps": 1, "initial_const": 1e-3}  # too weak to succeed often
    task = AttackTask(AttackSpec("cw-l2", (0.5, 50.0), params), ImageSource(demo_val), model.num_classes)
    assert json.loads(task.keys[0].variant)["revision"] == 3  # cells of 0.7.0 and 0.7.1-29 are not reused
    assert "revision" not in budget_of(task.keys[0])  # nor shown as a budget
    x, y = _demo_batch(demo_val, n=8)
    ctx = Context(classifier)
    (_, wide), minimal = task.adversarials(x, y, list(range(8)), ctx)
    raw = fb.attacks.L2CarliniWagnerAttack(**params, abort_early=False).run(
        fb.PyTorchModel(model.eval(), bounds=(0, 1), preprocessing=dict(
            mean=list(model.pretrained_cfg.mean), std=list(model.pretrained_cfg.std), axis=-3)),
        x, y, early_stop=None)
    failed = (raw == 0).flatten(1).all(1)
    assert failed.any(), "the weak budget should leave some images without an adversarial"
    assert torch.equal(minimal[failed], x[failed]) and torch.equal(wide[failed], x[failed])
    assert torch.equal(minimal[~failed], raw[~failed])
    [_, at_50] = task.process((x * 255).round().to(torch.uint8), y, list(range(8)), ctx)
    sizes = at_50.extra.cpu()  # 0: wrong to begin with; inf: no adversarial found (on the device)
    assert ((sizes[failed] == 0) | torch.isinf(sizes[failed])).all() and torch.isinf(sizes[failed]).any()
    assert torch.isfinite(sizes[~failed]).all()


class _Hungry(torch.nn.Module):
    """A model whose forward pass asks for far more memory than any machine has."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 4)

    def forward(self, x):
        torch.empty(10**13, device=x.device)  # 40 TB
        return self.fc(x.mean((2, 3)))


def test_out_of_memory_advises_a_smaller_batch(demo_val):
    classifier = Classifier(_Hungry().eval(), torch.device("cpu"), mean=(0.5,) * 3, std=(0.5,) * 3)
    task = AttackTask(AttackSpec("pgd-linf", (1 / 255,), dict(DEFAULT_BUDGETS["pgd-linf"])),
                      ImageSource(demo_val), num_classes=4)
    images = torch.zeros(3, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(AttackMemoryError, match="attack pgd-linf at batch size 3 needs more memory than cpu "
                                                r"has \(.*\); lower --batch-size"):
        task.process(images, torch.zeros(3, dtype=torch.long), [0, 1, 2], Context(classifier))


@pytest.mark.parametrize("extra, message", [
    (("--epsilons", "-1"), "Error: `--epsilons` should be finite and >= 0. Got -1"),
    (("--epsilons", "inf"), "Error: `--epsilons` should be finite and >= 0. Got inf"),
    (("--epsilons", "1e-400"),  # it was read as 0: the clean images, silently
     "Error: `--epsilons` should be 0 or above 7e-46 (half of float32's smallest number, 1.4e-45). Got "
     "1e-400, which rounds to 0"),
    (("--epsilons", "1e-50"),  # 0 in the float32 images the attacks perturb
     "Error: `--epsilons` should be 0 or above 7e-46 (half of float32's smallest number, 1.4e-45). Got "
     "1e-50, which rounds to 0"),
    (("--epsilons", "abc"), "Error: `--epsilons` should be numbers such as 0.5 or 2/255. Got 'abc'"),
    (("--epsilons", "1_0/255"),  # float() read it as 10/255
     "Error: `--epsilons` should be numbers such as 0.5 or 2/255. Got '1_0/255'"),
    (("--attacks", "fgsm", "--epsilons", "0.0156863,0.01568631"),  # the error named no option
     "Error: `--epsilons`: epsilons 0.0156863 and 0.01568631 of fgsm are both 0.0156863 in reports: "
     "give that budget once"),
    (("--attacks", "pgd-linf", "--epsilons", "0.5"),
     "Error: `--epsilons`: epsilon 0.5 for the Linf attack pgd-linf would let every pixel move by 50% of "
     "its range; if you meant an L2 budget, use pgd-l2 (Linf budgets are usually 1/255 to 16/255)"),
    (("--attacks", "fgsm", "--epsilons", "8"),
     "Error: `--epsilons`: epsilon 8 for the Linf attack fgsm is not on the [0, 1] pixel scale: did you mean "
     "8/255?"),
    (("--attacks", "fgsm", "--epsilons", "300/255"),  # it said "did you mean 1.17647/255?"
     "Error: `--epsilons`: epsilon 1.17647 for the Linf attack fgsm is not on the [0, 1] pixel scale: Linf "
     "budgets are usually 1/255 to 16/255"),
    (("--attacks", "pgd-lnf"), "Error: unknown attack 'pgd-lnf'. Did you mean 'pgd-linf'?"),
    (("--attacks", "FGSM"), "Error: unknown attack 'FGSM'. Did you mean 'fgsm'?"),  # (it listed them all)
    (("--attacks", "pgd-linf,pgd-l2", "--epsilons", "0.1"),
     "Error: `--epsilons` applies to every chosen attack, but they mix Linf and L2 budgets "
     "(pgd-linf: linf, pgd-l2: l2); choose attacks of one norm with --attacks"),
    (("--attacks", "fgsm", "--steps", "3"), "Error: `--steps` does not apply to fgsm (a single-step attack)"),
    (("--epsilons", ","), "Error: `--epsilons` should name at least one epsilon (e.g. 1/255,4/255)"),
    (("--attacks", " ,"), "Error: `--attacks` should name at least one attack"),
    (("--suite", "clean", "--attacks", "fgsm"),
     "Error: `--attacks` applies to the adversarial suite, not to 'clean'"),
])
def test_bad_attack_options(demo_val, tmp_path, extra, message):
    suite = ["--suite", "adversarial"] if "--suite" not in extra else []
    args = ["eval", "--model", "demo-gap", "--data", str(demo_val), "--class-order", "sorted",
            "--store", str(tmp_path / "s.db"), *suite, *extra]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines()[-1] == message


def test_an_attack_named_twice_is_one_attack_and_fgsm_stated_as_default_is_the_same_cell():
    """--attacks fgsm,fgsm made two tasks of one cell (a traceback); yaml epsilons given twice too;
    a yaml fgsm with its default random_start: false got cells apart from --attacks fgsm's."""
    from robustbench_gcp.errors import ConfigError
    from robustbench_gcp.suites import get_suite
    from robustbench_gcp.yaml_checks import Checker

    suite = get_suite("adversarial")
    spec = load_config().suite("adversarial")
    chosen = suite.select(spec, {"attacks": "fgsm,pgd-linf,fgsm"}).attacks
    assert [a.attack for a in chosen] == ["fgsm", "pgd-linf"]
    stated = suite.parse(Checker("x.yaml"), "mine", {"kind": "adversarial", "attacks": [
        {"attack": "fgsm", "epsilons": [0.01, 0.01, 0.002], "random_start": False}]}, "suites.mine")
    (fgsm,) = stated.attacks
    assert fgsm.epsilons == (0.002, 0.01) and fgsm.params == {}
    assert fgsm.params == suite.select(spec, {"attacks": "fgsm"}).attacks[0].params
    with pytest.raises(ConfigError, match=r"suites\.mine\.attacks\[1\]: attack 'fgsm' is given twice"):
        suite.parse(Checker("x.yaml"), "mine", {"kind": "adversarial", "attacks": [
            {"attack": "fgsm", "epsilons": [0.01]}, {"attack": "fgsm", "epsilons": [0.02]}]}, "suites.mine")


def test_cli_json_has_attacks(demo_val, tmp_path):
    result = CliRunner().invoke(main, [
        "eval", "--model", "demo-isqrt", "--data", str(demo_val), "--class-order", "sorted",
        "--store", str(tmp_path / "s.db"),
        "--suite", "adversarial", "--attacks", "fgsm", "--epsilons", "1/255", "--limit", "10",
        "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (entry,) = report["attacks"]
    assert set(entry) >= {"attack", "norm", "epsilon", "n", "robust_accuracy", "success_rate"}
    assert entry["norm"] == "linf" and entry["n"] == 10 and report["clean"]["n"] == 10


def test_exact_root_heads_get_a_note_about_gradients(demo_val, tmp_path):
    report = attack_report(demo_val, tmp_path / "s.db", model="demo-isqrt", attacks="fgsm", epsilons="1/255",
                           steps=None, limit=10, sqrt="eig")
    assert any("gradient" in note and "eig" in note for note in report["notes"])


def test_an_l2_attack_with_a_linf_sized_budget_gets_a_note(demo_val, tmp_path):
    """4/255 as an L2 norm over a whole image barely moves it: most likely a Linf budget."""
    report = attack_report(demo_val, tmp_path / "s.db", model="demo-gap", attacks="pgd-l2",
                           epsilons="4/255,0.5", steps=1, limit=4)
    (note,) = [n for n in report["notes"] if "L2 norm" in n]
    assert note.startswith("pgd-l2: epsilon 0.0156863 is an L2 norm of the whole perturbation, the size "
                           "of a Linf budget") and note.endswith("for a Linf budget use pgd-linf")
    report = attack_report(demo_val, tmp_path / "t.db", model="demo-gap", attacks="pgd-l2",
                           epsilons="0.25", steps=1, limit=4)
    assert not [n for n in report["notes"] if "L2 norm" in n]


def test_report_never_mixes_attack_budgets(demo_val, tmp_path):
    """Cells of one attack measured with two budgets or epsilon lists: the report shows the last only
    (tagged), and compare pairs a model with the reference only where budget and list agree."""
    store = tmp_path / "s.db"
    common = dict(attacks="pgd-linf", limit=10)
    attack_report(demo_val, store, model="demo-gap", epsilons="1/255,4/255", steps=None, **common)  # 10
    attack_report(demo_val, store, model="demo-gap", epsilons="4/255", steps=2, **common)
    attack_report(demo_val, store, model="demo-isqrt", epsilons="1/255,4/255", steps=2, **common)

    report = CliRunner().invoke(main, ["report", "--store", str(store), "--suite", "adversarial",
                                       "--models", "demo-gap", "--format", "json"])
    assert report.exit_code == 0, report.output
    (gap,) = json.loads(report.stdout)["reports"]
    shown = [(a["epsilon"], a["budget"]["steps"], a["budget_tag"]) for a in gap["attacks"]]
    assert shown == [(4 / 255, 2, "steps=2")]  # not 1/255 at 10 steps beside 4/255 at 2 steps
    assert ("demo-gap, pgd-linf: only the budget stored last (steps=2, epsilons 4/255) is shown; also "
            "stored: defaults, epsilons 1/255, 4/255") in gap["notes"]
    # the same budget with another epsilon list (an image broken at a smaller epsilon of a list counts
    # as broken at its larger ones): not one curve either
    attack_report(demo_val, store, model="demo-gap", epsilons="2/255,4/255", steps=2, **common)
    again = CliRunner().invoke(main, ["report", "--store", str(store), "--suite", "adversarial",
                                      "--models", "demo-gap", "--format", "json", "--no-intervals"])
    (gap,) = json.loads(again.stdout)["reports"]
    assert [a["epsilon"] for a in gap["attacks"]] == [2 / 255, 4 / 255]
    assert any("only the budget stored last (steps=2, epsilons 2/255, 4/255) is shown" in n
               for n in gap["notes"])

    def comparison():
        compared = CliRunner().invoke(main, ["report", "--store", str(store), "--suite", "adversarial",
                                             "--format", "json", "--resamples", "100"])
        assert compared.exit_code == 0, compared.output
        (found,) = json.loads(compared.stdout)["comparisons"]
        return found, next(m for m in found["models"] if m["model"] == "demo-isqrt")

    # demo-isqrt at 2 steps but on 1/255, 4/255: no attack cell is measured as demo-gap's, none paired
    found, isqrt = comparison()
    assert set(isqrt["tests"]) == {"clean"} and "robust pgd-linf 4/255 (steps=2)" not in isqrt["delta"]
    assert ("demo-isqrt: 2 cells that not every compared model has are left out of the comparison (pgd-linf "
            "1/255 (steps=2, epsilons 1/255, 4/255), pgd-linf 4/255 (steps=2, epsilons 1/255, 4/255))"
            + ALIGNED) in found["notes"]
    attack_report(demo_val, store, model="demo-isqrt", epsilons="2/255,4/255", steps=2, **common)
    _, isqrt = comparison()  # the same budget and list: paired
    assert set(isqrt["tests"]) == {"clean", "pgd-linf 2/255 (steps=2)", "pgd-linf 4/255 (steps=2)"}


def test_a_model_measured_again_at_other_epsilons_is_compared_at_the_budget_all_have(demo_val, tmp_path):
    """helper-260: demo-gap measured again at a new epsilon list dropped fgsm from every comparison
    (each report showed its own last budget, so no cell was common); now the runs on the same images
    agree on the latest budget all of them have complete, while a report of demo-gap alone shows its
    last."""
    store = tmp_path / "s.db"
    common = dict(attacks="fgsm", steps=None, limit=10)
    for model in ("demo-gap", "demo-isqrt"):
        attack_report(demo_val, store, model=model, epsilons="1/255,4/255", **common)
    attack_report(demo_val, store, model="demo-gap", epsilons="2/255,8/255", **common)

    def reported(*extra):
        result = CliRunner().invoke(main, ["report", "--store", str(store), "--suite", "adversarial",
                                           "--format", "json", "--resamples", "100", *extra])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    both = reported()
    (found,) = both["comparisons"]
    isqrt = next(m for m in found["models"] if m["model"] == "demo-isqrt")
    assert set(isqrt["tests"]) == {"clean", "fgsm 1/255", "fgsm 4/255"}
    gap = next(r for r in both["reports"] if r["model"] == "demo-gap")
    assert [a["epsilon"] for a in gap["attacks"]] == [1 / 255, 4 / 255]
    assert ("demo-gap, fgsm: only the latest budget every run on these images has complete (defaults, "
            "epsilons 1/255, 4/255) is shown; also stored: defaults, epsilons 2/255, 8/255") in gap["notes"]
    (alone,) = reported("--models", "demo-gap")["reports"]
    assert [a["epsilon"] for a in alone["attacks"]] == [2 / 255, 8 / 255]


def test_a_stopped_run_of_a_new_budget_does_not_hide_the_finished_one(demo_val, tmp_path):
    """The budget stored last was shown even when unfinished: its cells were then dropped as partial
    and the attack vanished from every output, beside a note naming neither budget as shown."""
    import sqlite3

    store = tmp_path / "s.db"
    common = dict(attacks="pgd-linf", epsilons="4/255", limit=10, shard_size=5, batch_size=5)
    attack_report(demo_val, store, steps=3, **common)
    attack_report(demo_val, store, steps=2, **common)
    with sqlite3.connect(store) as db:  # as a run killed after its first shard of the 2-step budget
        db.execute("DELETE FROM shards WHERE shard > 0 AND cell_id IN (SELECT id FROM cells WHERE "
                   "variant LIKE '%\"steps\": 2%' OR variant LIKE '%\"steps\":2%')")
    report = CliRunner().invoke(main, ["report", "--store", str(store), "--suite", "adversarial",
                                       "--format", "json", "--no-intervals"])
    assert report.exit_code == 0, report.output
    (gap,) = json.loads(report.stdout)["reports"]
    assert [(a["attack"], a["budget"]["steps"]) for a in gap["attacks"]] == [("pgd-linf", 3)]
    assert ("demo-gap, pgd-linf: the budget stored last (steps=2, epsilons 4/255) is not finished (a run "
            "stopped mid-way)") in gap["notes"], gap["notes"]
    assert ("demo-gap, pgd-linf: only the last complete budget (steps=3, epsilons 4/255) is shown; also "
            "stored: steps=2, epsilons 4/255") in gap["notes"], gap["notes"]


def test_every_output_keeps_budgets_apart(demo_val, tmp_path):
    store = tmp_path / "s.db"
    one = dict(attacks="pgd-linf", epsilons="4/255", limit=10)
    attack_report(demo_val, store, model="demo-gap", steps=None, **one)  # the default 10 steps
    attack_report(demo_val, store, model="demo-isqrt", steps=2, **one)
    base = ["report", "--store", str(store), "--no-intervals"]
    wide = CliRunner().invoke(main, [*base, "--format", "csv", "--layout", "wide"])
    assert wide.exit_code == 0, wide.output
    rows = {row["model"]: row for row in csv.DictReader(io.StringIO(wide.stdout))}
    default, short = "robust_pgd_linf_4_255", "robust_pgd_linf_4_255_steps_2"  # snake_case, as with intervals
    assert rows["demo-gap"][default] != "" and rows["demo-gap"][short] == ""
    assert rows["demo-isqrt"][default] == "" and rows["demo-isqrt"][short] != ""
    # the columns the comparisons give (clean_top1_error was clean_accuracy there)
    compared = CliRunner().invoke(main, ["report", "--store", str(store), "--resamples", "100", "--format",
                                         "csv", "--layout", "wide"])
    assert compared.exit_code == 0, compared.output
    assert "clean_accuracy" in next(csv.DictReader(io.StringIO(compared.stdout))) and "clean_accuracy" in \
        rows["demo-gap"] and "clean_top1_error" not in rows["demo-gap"]
    long = CliRunner().invoke(main, [*base, "--format", "csv"])
    items = {(row["model"], row["item"]) for row in csv.DictReader(io.StringIO(long.stdout))}
    assert {("demo-gap", "pgd-linf"), ("demo-isqrt", "pgd-linf (steps=2)")} <= items
    markdown = CliRunner().invoke(main, [*base, "--format", "markdown"])
    assert "pgd-linf 4/255 |" in markdown.stdout and "pgd-linf 4/255 (steps=2) |" in markdown.stdout


def test_markdown_gives_models_measured_at_other_epsilon_lists_columns_of_their_own(demo_val, tmp_path):
    """Robust accuracy at 4/255 counts the images broken at 1/255 of the same list: a model measured
    at 4/255 alone is not in the same column (it was, while the comparisons left the pair out)."""
    store = tmp_path / "s.db"
    attack_report(demo_val, store, model="demo-gap", attacks="fgsm", epsilons="1/255,4/255", limit=10,
                  steps=None)
    attack_report(demo_val, store, model="demo-isqrt", attacks="fgsm", epsilons="4/255", limit=10, steps=None)
    base = ["report", "--store", str(store), "--no-intervals", "--format", "markdown"]
    markdown = CliRunner().invoke(main, base)
    assert markdown.exit_code == 0, markdown.output
    table = markdown.stdout[markdown.stdout.index("Robust accuracy (%)"):]
    header = next(line for line in table.splitlines() if line.startswith("| model"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[2:] == ["fgsm 1/255", "fgsm 4/255 (epsilons 1/255, 4/255)", "fgsm 4/255 (epsilons 4/255)"]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in table.splitlines() if line.startswith("| demo-")}
    assert rows["demo-gap"][4] == "-" and rows["demo-isqrt"][2:4] == ["-", "-"]
    assert rows["demo-isqrt"][4] != "-"
    assert "-" not in rows["demo-gap"][:4]
    # the headline table and the wide CSV part them too (one column `robust fgsm 4/255` held both)
    headline = markdown.stdout[:markdown.stdout.index("Robust accuracy (%)")]
    assert "robust fgsm 4/255 (epsilons 1/255, 4/255)" in headline
    assert "robust fgsm 4/255 (epsilons 4/255)" in headline
    wide = CliRunner().invoke(main, [*base[:-2], "--format", "csv", "--layout", "wide"])
    columns = {row["model"]: {k for k, v in row.items() if v != ""}
               for row in csv.DictReader(io.StringIO(wide.stdout))}
    assert {"robust_fgsm_1_255", "robust_fgsm_4_255_epsilons_1_255_4_255"} <= columns["demo-gap"]
    assert "robust_fgsm_4_255_epsilons_4_255" in columns["demo-isqrt"]
    assert not any(key == "robust_fgsm_4_255" for keys in columns.values() for key in keys)
    # the JSON entries say their lists (two entries of fgsm 4/255 could not be told apart)
    reports = json.loads(CliRunner().invoke(main, [*base[:-2], "--format", "json"]).stdout)["reports"]
    lists = {(r["model"], a["epsilon"]): a["epsilons"] for r in reports for a in r["attacks"]}
    assert lists == {("demo-gap", 1 / 255): [1 / 255, 4 / 255], ("demo-gap", 4 / 255): [1 / 255, 4 / 255],
                     ("demo-isqrt", 4 / 255): [4 / 255]}
    # runs on other images are other tables: their columns are not renamed by each other
    other = tmp_path / "other.db"
    attack_report(demo_val, other, model="demo-gap", attacks="fgsm", epsilons="1/255,4/255", limit=10,
                  steps=None)
    attack_report(demo_val, other, model="demo-isqrt", attacks="fgsm", epsilons="4/255", limit=12, steps=None)
    wide = CliRunner().invoke(main, ["report", "--store", str(other), "--no-intervals", "--format", "csv",
                                     "--layout", "wide"])
    assert all(row["robust_fgsm_4_255"] != "" for row in csv.DictReader(io.StringIO(wide.stdout)))
    alone = CliRunner().invoke(main, [*base, "--model", "demo-isqrt"])  # one list: no suffix
    assert "| fgsm 4/255 |" in alone.stdout and "(epsilons" not in alone.stdout
    # the long CSV's attack rows say the list too (they did not: two 4/255 rows looked alike)
    long = CliRunner().invoke(main, [*base[:-2], "--format", "csv"])
    lists = {(row["model"], row["level"]): row["epsilons"] for row in csv.DictReader(io.StringIO(long.stdout))
             if row["item"] == "fgsm"}
    assert lists == {("demo-gap", repr(1 / 255)): f"{1 / 255!r} {4 / 255!r}",
                     ("demo-gap", repr(4 / 255)): f"{1 / 255!r} {4 / 255!r}",
                     ("demo-isqrt", repr(4 / 255)): repr(4 / 255)}


def test_a_run_stopped_mid_list_is_named_by_the_list_it_was_measured_with(demo_val, tmp_path):
    """A model whose run stopped after 1/255 of 1/255,4/255 was named "fgsm 1/255 (epsilons 1/255)",
    a list it was never measured with, apart from a finished model's column of the same list."""
    store = tmp_path / "s.db"
    for model in ("demo-gap", "demo-isqrt"):
        attack_report(demo_val, store, model=model, attacks="fgsm", epsilons="1/255,4/255", limit=10,
                      steps=None)
    with sqlite3.connect(store) as db:  # what a run stopped before its second epsilon leaves
        db.execute("DELETE FROM shards WHERE cell_id IN (SELECT cells.id FROM cells JOIN runs ON "
                   "runs.id = cells.run_id WHERE runs.model = 'demo-isqrt' AND cells.name = 'fgsm' AND "
                   "cells.level = ?)", (repr(4 / 255),))
    markdown = CliRunner().invoke(main, ["report", "--store", str(store), "--no-intervals", "--format",
                                         "markdown"])
    assert markdown.exit_code == 0, markdown.output
    table = markdown.stdout[markdown.stdout.index("Robust accuracy (%)"):]
    header = next(line for line in table.splitlines() if line.startswith("| model"))
    assert [c.strip() for c in header.strip("|").split("|")][2:] == ["fgsm 1/255", "fgsm 4/255"]


def test_a_linf_median_perturbation_is_shown_on_its_epsilons_scale():
    """The table's epsilons are k/255 for Linf; its median perturbation was on the [0, 1] scale."""
    from robustbench_gcp.suites.adversarial import _median_text

    assert _median_text({"norm": "linf", "median_perturbation": 3 / 255}) == "3/255"
    assert _median_text({"norm": "linf", "median_perturbation": 0.0435}) == "11.1/255"
    assert _median_text({"norm": "l2", "median_perturbation": 0.37}) == 0.37
    assert _median_text({"norm": "linf", "median_perturbation": None}) is None


def test_linf_adversarials_lie_inside_the_ball_after_the_cast_to_float32():
    """The float64 projection cast to float32 rounded 8,689 of 196,608 coordinates past 4/255."""
    from pathlib import Path

    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4, 3, 64, 64), generator=generator).float() / 255
    moved = x + torch.empty_like(x).uniform_(-0.05, 0.05, generator=generator)
    eps = 4 / 255
    task = AttackTask(AttackSpec("pgd-linf", (eps,)), ImageSource(Path(".")), 10)
    projected = task._project(x, moved, eps)
    assert projected.dtype == torch.float32
    distance = (projected.double() - x.double()).abs()
    assert distance.max() <= eps and projected.min() >= 0 and projected.max() <= 1
    rounded = (x.double() + (moved - x).double().clamp(-eps, eps)).clamp(0, 1).float()
    assert ((rounded.double() - x.double()).abs() > eps).sum() > 1000  # the cast alone went past
    assert (projected != rounded).sum() == ((rounded.double() - x.double()).abs() > eps).sum()


def test_an_empty_median_perturbation_says_why(demo_val, tmp_path):
    """'-' in the median column meant both "does not apply" (PGD) and "no adversarial found for half
    the images" (a C&W of one step): the second is now said."""
    report = attack_report(demo_val, tmp_path / "s.db", attacks="cw-l2", steps=1, epsilons="0.5", limit=10)
    (entry,) = report["attacks"]
    assert entry["median_perturbation"] is None and entry["clean_accuracy"] > 0
    assert ("median perturbation left empty for cw-l2 (steps=1): the attack found no adversarial for half or "
            "more of the images classified right") in report["notes"], report["notes"]
    pgd = attack_report(demo_val, tmp_path / "s.db", attacks="pgd-linf", steps=1, epsilons="1/255", limit=10)
    assert not any("median perturbation" in note for note in pgd["notes"])


class _BrightnessClass(torch.nn.Module):
    """Class 1 where an image's mean is above one half, else class 0: what an 'adversarial' image
    is classified as is chosen by its brightness."""

    def forward(self, x):
        score = x.mean(dim=(1, 2, 3)) - 0.5
        return torch.stack([-score, score], dim=1)


def test_robust_accuracy_counts_images_broken_at_a_smaller_epsilon_and_clean_errors_as_broken(
        monkeypatch):
    """An image fooled at a small epsilon is not robust at a larger one even if the attack misses it
    there, and an image the model gets wrong unattacked is never robust. The tests on demo-gap
    could not tell (it is right on every demo image and breaks monotonically)."""
    from pathlib import Path

    dark, bright = torch.full((3, 8, 8), 0.25), torch.full((3, 8, 8), 0.75)
    x = torch.stack([dark, dark, dark, bright])
    labels = torch.tensor([0, 0, 0, 0])  # image 3 is wrong unattacked (bright: class 1)
    task = AttackTask(AttackSpec("fgsm", (1 / 255, 2 / 255)), ImageSource(Path(".")), 2)
    # image 0 resists both; image 1 is fooled at the first epsilon only; image 2 at the second only
    found = [torch.stack([dark, bright, dark, bright]), torch.stack([dark, dark, bright, bright])]
    monkeypatch.setattr(AttackTask, "adversarials", lambda self, *args: (found, None))
    classifier = Classifier(_BrightnessClass(), torch.device("cpu"), mean=[0.0] * 3, std=[1.0] * 3)
    images = (x * 255).round().to(torch.uint8)
    results = task.process(images, labels, [0, 1, 2, 3], Context(classifier))
    counts = [{k: int(v) for k, v in r.counts.items()} for r in results]
    assert counts == [{"clean_errors": 1, "successes": 1, "robust": 2},
                      {"clean_errors": 1, "successes": 2, "robust": 1}]
    assert [r.correct.tolist() for r in results] == [[True, False, True, False],
                                                     [True, False, False, False]]


def test_the_l2_projection_leaves_a_perturbation_inside_the_ball_as_it_is():
    """Only a perturbation longer than epsilon is shortened (to epsilon): the minimal adversarials
    of C&W and DeepFool pass through this projection."""
    from pathlib import Path

    generator = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 16, 16, generator=generator, dtype=torch.float64) * 0.5 + 0.25
    direction = torch.randn(2, 3, 16, 16, generator=generator, dtype=torch.float64)
    direction /= direction.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    eps = 0.5
    task = AttackTask(AttackSpec("pgd-l2", (eps,)), ImageSource(Path(".")), 10)
    inside = x + direction * torch.tensor([eps / 2, 2 * eps], dtype=torch.float64).view(-1, 1, 1, 1)
    projected = task._project(x, inside, eps)
    assert torch.allclose(projected[0], inside[0], rtol=0, atol=1e-12)  # half of eps: unchanged
    assert (projected[1] - x[1]).norm().item() == pytest.approx(eps, abs=1e-9)  # twice: cut to eps
    assert torch.allclose(projected[1] - x[1], direction[1] * eps, rtol=0, atol=1e-9)


def _attack_cell(name, n, counts, extra=None):
    key = CellKey("adversarial", name, repr(1 / 255), '{"epsilons": [0.00392156862745098]}')
    return CellResult(key, n, counts, [0], True, extra=extra)


def test_the_summary_rates_are_the_protocols_over_their_own_images():
    """Clean accuracy and robust accuracy are over all n images, the success rate over the images
    classified right to begin with, the median size over those same images (the zeros stored for the
    others left out). The demo models classify every demo image right, so n stood for both and a
    denominator swapped passed: 3 successes of 8 correct are 0.375, not 0.3."""
    from robustbench_gcp.suites.adversarial import summarize

    (entry,) = summarize([_attack_cell("fgsm", 10, {"clean_errors": 2, "successes": 3, "robust": 5})])
    assert (entry["clean_accuracy"], entry["robust_accuracy"]) == (pytest.approx(0.8), pytest.approx(0.5))
    assert entry["success_rate"] == pytest.approx(3 / 8)
    sizes = np.array([0, 0, 0.1, 0.2, 0.3], dtype=np.float32)  # images 0 and 1 wrong to begin with
    (entry,) = summarize([_attack_cell("deepfool-l2", 5, {"clean_errors": 2, "successes": 3, "robust": 0},
                                       sizes)])
    assert entry["median_perturbation"] == pytest.approx(0.2)


def test_a_linf_minimization_stores_linf_sizes_zero_for_wrong_and_inf_for_failed_images():
    """deepfool-linf's size of an image is max |x' - x| (its L2 norm passed: the only test was of
    deepfool-l2); an image wrong to begin with stores 0 and one the attack failed on inf."""
    task = AttackTask(AttackSpec("deepfool-linf", (1 / 255,)), None, 10)
    x = torch.full((3, 3, 2, 2), 0.5)
    adversarial = x.clone()
    adversarial[:, 0, 0, 0] += 0.1
    adversarial[:, 1, 1, 1] -= 0.05
    sizes = task._sizes(adversarial, x, torch.tensor([True, False, True]), torch.tensor([True, True, False]))
    assert sizes[0].item() == pytest.approx(0.1) and math.isinf(sizes[1].item()) and sizes[2].item() == 0


def test_only_an_all_zero_image_is_taken_for_the_attacks_placeholder():
    """C&W's "nothing found" is an all-zero image; an adversarial with one black pixel is an
    adversarial (taken for the placeholder, it became the clean image and its size inf)."""
    from robustbench_gcp.suites.attacks import without_placeholders

    x = torch.full((2, 3, 2, 2), 0.5)
    minimal = x.clone()
    minimal[0, 0, 0, 0] = 0.0
    minimal[1] = 0.0
    kept = without_placeholders(minimal, x)
    assert torch.equal(kept[0], minimal[0]) and torch.equal(kept[1], x[1])


def test_attacks_named_on_the_command_line_get_their_norms_budgets_and_only_their_options():
    """An L2 attack not in the suite gets the L2 epsilons (0.25, 0.5, 1), not the Linf ones;
    `--steps` goes to the iterative attacks only (FGSM with steps=3 was a budget of its own, its
    stored cells not reused); an epsilon off the k / 255 grid keeps its digits in labels."""
    from robustbench_gcp.suites.attacks import format_epsilon, select_attacks

    (l2,) = select_attacks((), ["pgd-l2"])
    assert l2.epsilons == (0.25, 0.5, 1.0)
    fgsm, pgd = select_attacks((), ["fgsm", "pgd-linf"], steps=3)
    assert "steps" not in fgsm.params and pgd.params["steps"] == 3
    assert format_epsilon(0.0627451, "linf") == "0.0627451" and format_epsilon(16 / 255, "linf") == "16/255"


def test_epsilons_from_a_file_snap_to_the_grid_and_budgets_leave_out_revisions():
    """0.0627450980 (16/255 to 10 digits, as a YAML file may give it) is 16/255 exactly, the same
    cell as `--epsilons 16/255`; 2e-6 / 255 away is another budget. An attack named on the command
    line gets the Linf epsilons of the shipped suite. A cell's revision is not part of its budget
    (cw-l2's revision 2 cells were a budget apart from revision 1's)."""
    from robustbench_gcp.suites.attacks import select_attacks, snap_epsilon

    assert snap_epsilon(0.0627450980, "linf") == 16 / 255
    assert snap_epsilon(16 / 255 + 2e-6 / 255, "linf") != 16 / 255
    assert snap_epsilon(0.0627450980, "l2") == 0.0627450980
    # -0 was a budget of its own (cells at level -0.0, shown "-0"), beside 0's
    for norm in ("linf", "l2"):
        assert math.copysign(1.0, snap_epsilon(-0.0, norm)) == 1.0
    assert AttackSpec("fgsm", (-0.0, 1 / 255)) == AttackSpec("fgsm", (0.0, 1 / 255))
    assert math.copysign(1.0, AttackSpec("pgd-l2", (-0.0,)).epsilons[0]) == 1.0
    shipped = {spec.attack: spec.epsilons for spec in load_config().suite("adversarial").attacks}
    (pgd,) = select_attacks((), ["pgd-linf"])
    assert pgd.epsilons == shipped["fgsm"] == (1 / 255, 2 / 255, 4 / 255)
    key = CellKey("adversarial", "cw-l2", "0.5", '{"epsilons": [0.5], "revision": 2, "steps": 100}')
    assert budget_of(key) == {"steps": 100}


def test_the_foolbox_attacks_are_built_with_their_budgets():
    """FGSM is Goodfellow et al.'s single step from the image (no random start, foolbox's default
    too), PGD starts at a random point as Madry et al., and DeepFool considers at most as many
    candidate classes as the model has."""
    from robustbench_gcp.suites.attacks import make_attack

    assert make_attack(AttackSpec("fgsm", (1 / 255,)), 10).random_start is False
    pgd = make_attack(AttackSpec("pgd-linf", (1 / 255,)), 10)
    assert (pgd.random_start, pgd.steps, pgd.rel_stepsize) == (True, 10, 0.25)
    assert make_attack(AttackSpec("deepfool-l2", (0.5,)), 3).candidates == 3
    assert make_attack(AttackSpec("deepfool-l2", (0.5,)), 1000).candidates == DEFAULT_BUDGETS["deepfool-l2"][
        "candidates"]


def test_an_epsilon_that_float32_keeps_is_taken():
    """1e-45 rounds up to float32's smallest number (1.4e-45), and was refused as rounding to 0."""
    import numpy as np

    from robustbench_gcp.suites.attacks import parse_epsilon

    for text in ("1e-45", "8e-46"):
        assert parse_epsilon(text, "--epsilons") == float(text) and np.float32(float(text)) > 0
    for text in ("7e-46", "1e-46", repr(2.0 ** -150)):  # to 0 in float32 (2**-150: the even neighbour)
        assert np.float32(float(text)) == 0
        with pytest.raises(ValueError, match="which rounds to 0"):
            parse_epsilon(text, "--epsilons")


def test_the_attacks_run_under_warnings_as_errors_and_leave_the_environment(demo_val, tmp_path):
    """foolbox's import warned of scipy's deprecations, which a caller's -W error made a failure
    mid-run; it set GIT_PYTHON_REFRESH in the caller's environment for good (helper-266)."""
    import os
    import subprocess
    import sys

    script = (
        "import os\n"
        "from robustbench_gcp import evaluate\n"
        f"r = evaluate('demo-gap', data={str(demo_val)!r}, class_order='sorted', limit=4, workers=0, "
        f"store={str(tmp_path / 's.db')!r}, suite='adversarial', attacks='fgsm', epsilons='1/255')\n"
        "print(r.sections['attacks'][0]['robust_accuracy'], 'GIT_PYTHON_REFRESH' in os.environ)\n")
    env = {k: v for k, v in os.environ.items() if k != "GIT_PYTHON_REFRESH"}
    done = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", script], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "False", done.stdout
