"""The embedded demo: every suite on two tiny trained models, offline.

The data is generated from the photographs that ship inside scikit-image
(:mod:`robustbench_gcp.data.demo_images`); the models, a GAP and an iSQRT-COV ResNet
trained on it by ``scripts/train_demo.py``, are committed to the package and listed (with
their sha256) in benchmarks.yaml. The demo runs clean, ImageNet-C (15 corruptions x 5
severities), ImageNet-P (the 10 test perturbations), a short adversarial suite and the loss
landscape at the stem on both, and compares them. Every job is planned (checked) before the
first one runs.

Suites normalized by a stored run (ImageNet-P flip rates; ImageNet-C's CE, since the demo
models classify into 10 classes, no task AlexNet's published errors normalize) are normalized by
the GAP demo model (stored as the baseline ``demo-gap``): AlexNet, the literature's baseline,
was never trained on the demo classes.
"""

from __future__ import annotations

from pathlib import Path

from robustbench_gcp.engine.runner import ProgressHook
from robustbench_gcp.pipeline.execution import renormalized, run_all, store_baseline
from robustbench_gcp.pipeline.planning import plan_all
from robustbench_gcp.reports.comparison import compare_reports
from robustbench_gcp.reports.report_type import Report
from robustbench_gcp.suites import get_suite

DEMO_MODELS = ("demo-gap", "demo-isqrt")
P_BASELINE = "demo-gap"
#: (suite of benchmarks.yaml, its overrides)
DEMO_SUITES = (
    ("clean", {}),
    ("imagenet-c", {}),
    ("imagenet-p", {}),
    ("adversarial", {"attacks": "fgsm,pgd-linf", "steps": 5}),
    # the paper's per-image steps at the stem, 5 of them instead of 50
    ("landscape", {"etas": "0.1/256:75/256:5"}),
)


def run_demo(out: str | Path, *, progress: ProgressHook | None = None, config=None,
             **engine) -> tuple[list[Report], list[dict]]:
    """Build the demo data, evaluate both demo models on every suite, compare them.

    Args:
        out: folder for the generated data and the store (``demo.db``).
        progress: progress events (a RichProgress shows a bar over the batch).
        config: benchmarks.yaml path or Config (default: the shipped one).
        **engine: engine options of :class:`~robustbench_gcp.pipeline.planning.EvalOptions`
            (device, batch_size, workers, limit ...).

    Returns:
        ``(reports, comparisons)``: a report per model and suite, and the comparison objects.
        Under torchrun, ranks other than 0 return ``([], [])``.
    """
    from robustbench_gcp.config import Config, load_config
    from robustbench_gcp.data.demo_images import build_demo_dataset

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        from robustbench_gcp.errors import OutputError

        raise OutputError(f"cannot make the demo folder {out}: {error.strerror or error}") from None
    cfg = config if isinstance(config, Config) else load_config(config)
    for name in DEMO_MODELS:
        cfg.model(name)  # a clear error if benchmarks.yaml lost the demo models
    data = build_demo_dataset(out / "data") / "val"
    store = out / "demo.db"
    # the demo classes are named folders (not wnids), numbered in sorted order as in training
    common = {"store": str(store), "seed": 0, "data": str(data), "class_order": "sorted", "config": cfg,
              **engine}
    jobs = [(model, {"suite": suite, **overrides})
            for suite, overrides in DEMO_SUITES for model in DEMO_MODELS]
    # P_BASELINE's runs of the suites normalized by stored runs become those baselines once made:
    # such jobs are planned with the default baseline and renormalized from the store (rank 0)
    plans = plan_all(jobs, common)
    reports = run_all(plans, progress)
    if reports is None:  # torchrun ranks other than 0
        return [], []
    for plan, report in zip(plans, reports):
        if plan.suite.stored_baseline and plan.model.label == P_BASELINE:
            store_baseline(report, P_BASELINE, replace=True)  # the demo's own store
    # ImageNet-C's CE too: the demo's 10 classes are no task AlexNet's published errors normalize
    reports = [renormalized(plan, report, P_BASELINE)
               if plan.suite.normalized_by_stored_run(plan.label_dataset) else report
               for plan, report in zip(plans, reports)]
    comparisons = compare_reports(reports, reference=DEMO_MODELS[0], seed=0)
    for report in reports:
        report.notes.append(f"demo data: CE, mCE, FR and T5D are relative to {P_BASELINE} (= 100)")
    return reports, comparisons


#: how a report's generated cells were made: merged from one report, together
GENERATION_FIELDS = ("backend", "storage_roundtrip", "source")


def generation_fields(reports: list[Report]) -> dict:
    """``backend``, ``storage_roundtrip`` and ``source`` of the report that sets most of them
    (the first such), taken together: the suite that generates images and round-trips them
    through storage (ImageNet-C in the demo) rather than one that has no such fields (clean), so
    that they are never null because another suite came first, nor a mix of two suites' values."""
    best = max(reports, key=lambda r: sum(getattr(r, name) is not None for name in GENERATION_FIELDS))
    return {name: getattr(best, name) for name in GENERATION_FIELDS}


def merged_reports(reports: list[Report]) -> list[dict]:
    """One object per model in the ``eval`` JSON schema with every suite's sections; the run's
    facts come from its first report, :data:`GENERATION_FIELDS` from
    :func:`generation_fields`."""
    merged: dict[str, dict] = {}
    for report in reports:
        data = report.to_json()
        target = merged.setdefault(report.model, {
            **{k: v for k, v in data.items() if k not in ("suite", "kind", "notes", "computed")
               and k not in report.sections},
            "suite": "demo", "kind": "demo", "suites": [], "metrics": {}, "notes": [],
        })
        target["suites"].append(report.suite)
        renamed = get_suite(report.kind).merged_metric_names
        for key, value in report.sections.items():
            if key == "metrics":
                target["metrics"].update({renamed.get(k, k): v for k, v in value.items()})
            elif value is not None or key not in target:
                target[key] = value
        target["notes"] += [n for n in report.notes if n not in target["notes"]]
    for model, target in merged.items():
        target.update(generation_fields([r for r in reports if r.model == model]))
    return list(merged.values())
