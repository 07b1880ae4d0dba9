"""The embedded demo: every suite on two tiny trained models, offline.

The data is generated from the photographs that ship inside scikit-image
(:mod:`robustbench_gcp.data.demo_images`); the models, a GAP and an iSQRT-COV ResNet
trained on it by ``scripts/train_demo.py``, are committed to the package and
listed (with their sha256) in benchmarks.yaml. The demo runs clean, ImageNet-C
(15 corruptions x 5 severities), ImageNet-P (the 10 test perturbations) and a
short adversarial suite on both, and compares them.

ImageNet-P flip rates are normalized by the GAP demo model (stored as the
baseline ``demo-gap``): AlexNet, the literature's baseline, was never trained on
the demo classes. mCE keeps the AlexNet normalizers of benchmarks.yaml, for
illustration only.
"""

from __future__ import annotations

from pathlib import Path

from robustbench_gcp.engine.runner import ProgressHook

DEMO_MODELS = ("demo-gap", "demo-isqrt")
P_BASELINE = "demo-gap"
#: (suite of benchmarks.yaml, overrides)
DEMO_SUITES = (
    ("clean", {}),
    ("imagenet-c", {}),
    ("imagenet-p", {"baseline": P_BASELINE}),
    ("adversarial", {"attacks": "fgsm,pgd-linf", "steps": 5}),
)


def run_demo(out: str | Path, *, progress: ProgressHook | None = None, config=None, **engine) -> tuple:
    """Build the demo data, evaluate both demo models on every suite, compare them.

    Args:
        out: folder for the generated data and the store (``demo.db``).
        progress: progress events (a RichProgress shows a bar over the batch).
        config: benchmarks.yaml path or Config (default: the shipped one).
        **engine: engine options for :func:`run_evaluation` (device, batch_size, workers ...).

    Returns:
        ``(evaluated, comparisons)``: (report, cells) pairs for every model and
        suite, and the comparison objects.
    """
    from robustbench_gcp.compare import compare_reports
    from robustbench_gcp.config import Config, load_config
    from robustbench_gcp.data.demo_images import build_demo_dataset
    from robustbench_gcp.evaluation import run_evaluation
    from robustbench_gcp.reports.objects import DEFAULT_BASELINE
    from robustbench_gcp.store import Store

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config if isinstance(config, Config) else load_config(config)
    for name in DEMO_MODELS:
        cfg.model(name)  # a clear error if benchmarks.yaml lost the demo models
    data = build_demo_dataset(out / "data") / "val"
    store = out / "demo.db"
    engine = {"store": str(store), "seed": 0, **engine}
    jobs = [(model, suite, overrides) for suite, overrides in DEMO_SUITES for model in DEMO_MODELS]
    evaluated = []
    for index, (model, suite, overrides) in enumerate(jobs):
        if hasattr(progress, "item"):
            progress.item(index, len(jobs), f"{model} {suite}")
        makes_baseline = model == P_BASELINE and suite == "imagenet-p"
        first = {**overrides, "baseline": DEFAULT_BASELINE} if makes_baseline else overrides  # not stored yet
        evaluated.append(run_evaluation(model, progress=progress, suite=suite, data=str(data),
                                        config=cfg, **first, **engine))
        if makes_baseline:
            with Store(store) as db:
                db.set_baseline(P_BASELINE, db.run_by_key(evaluated[-1][0]["run"]).id)
            # the baseline was stored after its own report was made: make it again, normalized
            evaluated[-1] = run_evaluation(model, progress=progress, suite=suite, data=str(data),
                                           config=cfg, **overrides, **engine)
        if hasattr(progress, "item_done"):
            progress.item_done(index)
    with Store(store) as db:
        comparisons = compare_reports(db, evaluated, reference=DEMO_MODELS[0],
                                      baseline=cfg.baselines.get("alexnet"), p_baseline_name=P_BASELINE,
                                      seed=0)
    for report, _ in evaluated:
        report["notes"].append("demo data: mCE uses the AlexNet normalizers for illustration; "
                               f"FR and T5D are relative to {P_BASELINE} (= 100)")
    return evaluated, comparisons


def merged_reports(evaluated) -> list[dict]:
    """One object per model in the ``eval`` schema with every suite's sections."""
    merged: dict[str, dict] = {}
    for report, _ in evaluated:
        target = merged.setdefault(report["model"], {
            **{k: v for k, v in report.items() if k not in ("suite", "kind", "metrics", "notes", "computed")},
            "suite": "demo", "kind": "demo", "suites": [], "metrics": {}, "notes": [], "attacks": [],
            "perturbations": [], "cells": [], "per_corruption": [], "clean": None,
        })
        target["suites"].append(report["suite"])
        for key in ("cells", "per_corruption", "perturbations", "attacks"):
            if report.get(key):
                target[key] = report[key]
        if report.get("clean"):
            target["clean"] = report["clean"]
        metrics = dict(report.get("metrics") or {})
        if report["kind"] == "imagenet-p":
            metrics["flip_baseline"] = metrics.pop("baseline", None)
        elif report["kind"] != "imagenet-c":  # clean / adversarial reports carry empty C metrics
            metrics = {}
        target["metrics"].update(metrics)
        target["notes"] += [n for n in report["notes"] if n not in target["notes"]]
    return list(merged.values())
