"""From a model and a suite to a report: :func:`plan` (every check, no compute), then :func:`run`.

>>> from robustbench_gcp.pipeline import plan, run
>>> report = run(plan("demo-gap", suite="imagenet-c", data="demo/val", class_order="sorted",
...                   limit=20))                                                # doctest: +SKIP
>>> report.sections["metrics"]["mean_error"]  # 10 classes: no AlexNet-normalized mCE  # doctest: +SKIP
"""

from robustbench_gcp.pipeline.execution import (
    RankResult,
    evaluate,
    renormalized,
    report_of,
    run,
    run_all,
    store_baseline,
)
from robustbench_gcp.pipeline.planning import EvalOptions, Plan, plan, plan_all, plan_options
from robustbench_gcp.pipeline.weights import ModelChoice, choose_model, load_chosen, model_spec

__all__ = [
    "EvalOptions",
    "ModelChoice",
    "Plan",
    "RankResult",
    "choose_model",
    "evaluate",
    "load_chosen",
    "model_spec",
    "plan",
    "plan_all",
    "plan_options",
    "renormalized",
    "report_of",
    "run",
    "run_all",
    "store_baseline",
]
