"""The adversarial suite: foolbox attacks through the engine, on GAP and GCP models."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from robustbench_gcp.cli import main
from robustbench_gcp.config import AttackSpec
from robustbench_gcp.data.folders import scan_folder
from robustbench_gcp.data.loader import Preprocess, iterate_batches
from robustbench_gcp.engine.runner import Classifier, Context, ImageSource
from robustbench_gcp.evaluate import evaluate
from robustbench_gcp.models import create_model, load_model
from robustbench_gcp.suites.adversarial import DEFAULT_BUDGETS, AttackMemoryError, AttackTask

EPS = "0,1/255,4/255"


def attack_report(image_folder, checkpoint, store, **kwargs):
    options = dict(checkpoint=str(checkpoint), suite="adversarial", data=str(image_folder),
                   store=str(store), batch_size=5, attacks="fgsm,pgd-linf", epsilons=EPS, steps=2)
    options.update(kwargs)
    return evaluate(options.pop("model", "resnet18-gap"), **options)


def by_attack(report):
    out = {}
    for entry in report["attacks"]:
        out.setdefault(entry["attack"], []).append(entry)
    return out


def test_robust_accuracy_is_monotone_and_starts_at_clean(image_folder, gap_checkpoint, tmp_path):
    report = attack_report(image_folder, gap_checkpoint, tmp_path / "s.db")
    clean_accuracy = 1 - report["clean"]["top1_error"]
    assert 0 < clean_accuracy < 1
    attacks = by_attack(report)
    assert set(attacks) == {"fgsm", "pgd-linf"}
    for entries in attacks.values():
        assert [e["epsilon"] for e in entries] == [0.0, 1 / 255, 4 / 255]
        robust = [e["robust_accuracy"] for e in entries]
        assert robust[0] == pytest.approx(clean_accuracy)
        assert all(a >= b for a, b in zip(robust, robust[1:]))
        assert all(e["clean_accuracy"] == pytest.approx(clean_accuracy) for e in entries)
        assert entries[0]["success_rate"] == 0.0
    # a 4/255 PGD attack breaks something on a random-weight model
    assert attacks["pgd-linf"][-1]["robust_accuracy"] < clean_accuracy


def test_same_seed_same_numbers_for_batch_sizes_1_and_5(image_folder, gap_checkpoint, tmp_path):
    kwargs = dict(attacks="pgd-l2", epsilons="0.25,1.0", steps=2, limit=5)
    one = attack_report(image_folder, gap_checkpoint, tmp_path / "a.db", batch_size=1, **kwargs)
    five = attack_report(image_folder, gap_checkpoint, tmp_path / "b.db", batch_size=5, **kwargs)
    assert one["attacks"] == five["attacks"]
    other_seed = attack_report(image_folder, gap_checkpoint, tmp_path / "c.db", seed=1, **kwargs)
    assert other_seed["run"] != one["run"]


def _batch(image_folder, n=4):
    paths = scan_folder(image_folder).paths()[:n]
    images, _ = next(iterate_batches(paths, Preprocess(), batch_size=n))
    labels = torch.tensor(scan_folder(image_folder).labels[:n])
    return images.float() / 255, labels


@pytest.mark.parametrize("attack, eps", [
    ("fgsm", 2 / 255), ("pgd-linf", 2 / 255), ("pgd-l2", 0.5), ("deepfool-linf", 2 / 255),
    ("deepfool-l2", 0.5), ("cw-l2", 0.5),
])
def test_adversarial_examples_stay_in_the_ball_and_the_box(image_folder, gap_checkpoint, attack, eps):
    model = load_model("resnet18-gap", gap_checkpoint)
    classifier = Classifier(model, torch.device("cpu"), mean=model.pretrained_cfg.mean,
                            std=model.pretrained_cfg.std)
    params = dict(DEFAULT_BUDGETS[attack])
    params.update({k: v for k, v in (("steps", 2), ("binary_search_steps", 2), ("candidates", 3))
                   if k in params})
    task = AttackTask(AttackSpec(attack, (eps, 4 * eps), params), ImageSource(image_folder), 1000)
    x, y = _batch(image_folder, n=3)
    adversarials, _ = task.adversarials(x, y, [0, 1, 2], Context(classifier))
    for adversarial, budget in zip(adversarials, (eps, 4 * eps)):
        delta = (adversarial - x).double().flatten(1)
        norms = delta.abs().amax(1) if "linf" in attack or attack == "fgsm" else delta.norm(dim=1)
        assert (norms <= budget + 1e-6).all()
        assert adversarial.min() >= 0 and adversarial.max() <= 1
        assert adversarial.dtype == x.dtype and adversarial.shape == x.shape


def test_gcp_models_are_attackable(image_folder, tmp_path):
    from robustbench_gcp.data.folders import imagenet_wnids
    from tests.conftest import WNIDS

    torch.manual_seed(0)
    model = create_model("resnet18-isqrt", reduction_dim=32)
    keep = torch.tensor([imagenet_wnids().index(w) for w in WNIDS])
    fc = model.get_classifier() if hasattr(model, "get_classifier") else model.fc
    with torch.no_grad():
        weight = torch.zeros_like(fc.weight)
        weight[keep] = fc.weight[keep] * 50
        bias = torch.full_like(fc.bias, -100.0)
        bias[keep] = 0
        fc.weight.copy_(weight)
        fc.bias.copy_(bias)
    checkpoint = tmp_path / "isqrt.pth"
    torch.save(model.state_dict(), checkpoint)
    report = attack_report(image_folder, checkpoint, tmp_path / "s.db", model="resnet18-isqrt",
                           attacks="pgd-linf", epsilons="0,8/255", steps=3, limit=4)
    entries = report["attacks"]
    assert entries[0]["robust_accuracy"] == pytest.approx(1 - report["clean"]["top1_error"])
    assert entries[0]["clean_accuracy"] > 0
    assert entries[1]["success_rate"] > 0  # gradients flow through the Newton-Schulz head


def test_minimization_attacks_store_perturbation_sizes(image_folder, gap_checkpoint, tmp_path):
    report = attack_report(image_folder, gap_checkpoint, tmp_path / "s.db", attacks="deepfool-l2",
                           epsilons="0.1,10", steps=20, limit=4)
    entries = report["attacks"]
    assert entries[0]["median_perturbation"] is not None and entries[0]["median_perturbation"] > 0
    assert entries[1]["robust_accuracy"] <= entries[0]["robust_accuracy"]


class _Hungry(torch.nn.Module):
    """A model whose forward pass asks for far more memory than any machine has."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 4)

    def forward(self, x):
        torch.empty(10**13, device=x.device)  # 40 TB
        return self.fc(x.mean((2, 3)))


def test_out_of_memory_advises_a_smaller_batch(image_folder):
    classifier = Classifier(_Hungry().eval(), torch.device("cpu"), mean=(0.5,) * 3, std=(0.5,) * 3)
    task = AttackTask(AttackSpec("pgd-linf", (1 / 255,), dict(DEFAULT_BUDGETS["pgd-linf"])),
                      ImageSource(image_folder), num_classes=4)
    images = torch.zeros(3, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(AttackMemoryError, match="attack pgd-linf at batch size 3 needs more memory than cpu "
                                                r"has \(.*\); lower --batch-size"):
        task.process(images, torch.zeros(3, dtype=torch.long), [0, 1, 2], Context(classifier))


@pytest.mark.parametrize("extra, message", [
    (("--epsilons", "-1"), "Error: `--epsilons` should be >= 0. Got -1"),
    (("--epsilons", "abc"), "Error: `--epsilons` should be numbers such as 0.5 or 2/255. Got 'abc'"),
    (("--attacks", "pgd-linf", "--epsilons", "0.5"),
     "Error: epsilon 0.5 for the Linf attack pgd-linf would let every pixel move by 50% of its range; "
     "if you meant an L2 budget, use pgd-l2 (Linf budgets are usually 1/255 to 16/255)"),
    (("--attacks", "fgsm", "--epsilons", "8"),
     "Error: epsilon 8 for the Linf attack fgsm is not on the [0, 1] pixel scale: did you mean 8/255?"),
    (("--attacks", "pgd-lnf"), "Error: unknown attack 'pgd-lnf'. Did you mean 'pgd-linf'?"),
    (("--attacks", "pgd-linf,pgd-l2", "--epsilons", "0.1"),
     "Error: `--epsilons` applies to every chosen attack, but they mix Linf and L2 budgets "
     "(pgd-linf: linf, pgd-l2: l2); choose attacks of one norm with --attacks"),
    (("--attacks", "fgsm", "--steps", "3"), "Error: `--steps` does not apply to fgsm (a single-step attack)"),
    (("--suite", "clean", "--attacks", "fgsm"),
     "Error: `--attacks` applies to the adversarial suite, not to 'clean'"),
])
def test_bad_attack_options(image_folder, gap_checkpoint, tmp_path, extra, message):
    args = ["eval", "--model", "resnet18-gap", "--checkpoint", str(gap_checkpoint), "--data",
            str(image_folder), "--store", str(tmp_path / "s.db"), "--suite", "adversarial", *extra]
    if "--suite" in extra:
        args.remove("adversarial")
        args.remove("--suite")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines()[-1] == message


def test_cli_json_has_attacks(image_folder, gap_checkpoint, tmp_path):
    result = CliRunner().invoke(main, [
        "eval", "--model", "resnet18-gap", "--checkpoint", str(gap_checkpoint), "--data", str(image_folder),
        "--store", str(tmp_path / "s.db"), "--suite", "adversarial", "--attacks", "fgsm",
        "--epsilons", "1/255", "--limit", "4", "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (entry,) = report["attacks"]
    assert set(entry) >= {"attack", "norm", "epsilon", "n", "robust_accuracy", "success_rate"}
    assert entry["norm"] == "linf" and entry["n"] == 4 and report["clean"]["n"] == 4
