"""The README's main command: `gcp-robust demo` (on a subset of the demo images, to stay quick)."""

from __future__ import annotations

import json

from click.testing import CliRunner
from PIL import Image

from robustbench_gcp.cli import main


def test_demo_json_has_every_suite_for_both_models(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--out", str(out), "--limit", "20", "--format", "json"])
    assert result.exit_code == 0, result.output
    objects = json.loads(result.stdout)
    assert [o["model"] for o in objects] == ["demo-gap", "demo-isqrt"]
    for o in objects:
        assert o["n_images"] == 20 and o["clean"]["n"] == 20
        assert o["suites"] == ["clean", "imagenet-c", "imagenet-p", "adversarial", "landscape"]
        assert o["landscape"]["n"] == 20 and len(o["landscape"]["per_eta"]) == 5
        assert len(o["cells"]) == 75 and len(o["per_corruption"]) == 15
        assert len(o["perturbations"]) == 10 and {a["attack"] for a in o["attacks"]} == {"fgsm", "pgd-linf"}
        assert {a["budget"]["steps"] for a in o["attacks"] if a["attack"] == "pgd-linf"} == {5}  # the demo's
        metrics = o["metrics"]
        # the demo's 10 classes: CE relative to demo-gap's errors, not AlexNet's (on 20 images demo-gap
        # makes no error under a corruption or two: their CE, and so the mCE, stay empty)
        assert metrics["mean_error"] > 0 and metrics["baseline"] == "demo-gap" and metrics["classes"] == 10
        assert "mFR" in metrics and "mT5D" in metrics and metrics["flip_baseline"] == "demo-gap"
    # the GAP model is the flip-rate baseline: its FR is 100 wherever it flips at all
    frs = [e["FR"] for e in objects[0]["perturbations"]]
    assert all(fr == 100.0 for fr in frs if fr is not None) and any(fr is not None for fr in frs)
    ces = [e["CE"] for e in objects[0]["per_corruption"]]  # and the CE baseline: 100 where it errs
    assert all(ce == 100.0 for ce in ces if ce is not None) and any(ce is not None for ce in ces)
    plots = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert plots == ["adversarial_robust_accuracy.png", "imagenet-c_ce_per_corruption.png",
                     "imagenet-c_error_vs_severity.png", "imagenet-p_flip_probability.png",
                     "landscape_grad_change_vs_eta.png", "landscape_loss_vs_eta.png"]
    with Image.open(out / "plots" / "imagenet-c_error_vs_severity.png") as image:
        assert image.info["Axes"] == "15"

    again = CliRunner().invoke(main, ["demo", "--out", str(out), "--limit", "20"])
    assert again.exit_code == 0, again.output
    assert "imagenet-c (torch, JPEG round trip, 10 classes): 20 images, reference demo-gap" in again.stdout
    assert "demo-isqrt" in again.stdout and "McNemar" in again.stdout
