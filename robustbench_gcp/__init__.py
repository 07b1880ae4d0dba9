"""gcp-robust: robustness benchmarks for GAP and global covariance pooling networks.

Public API (imported lazily, so ``import robustbench_gcp`` stays cheap):

>>> from robustbench_gcp import list_models, load_model, evaluate   # doctest: +SKIP
>>> report = evaluate("resnet50-isqrt", suite="imagenet-c", data="val/")   # doctest: +SKIP
>>> report.sections["metrics"]["mCE"], report.to_json()["clean"]          # doctest: +SKIP

The demo model's ten classes are the demo folders' sorted names (it has no AlexNet-normalized
mCE: ``mean_error`` is its mean top-1 error over the corrupted cells):

>>> report = evaluate("demo-gap", suite="imagenet-c", data="demo/val", class_order="sorted")  # doctest: +SKIP
>>> report.sections["metrics"]["mean_error"]                                                 # doctest: +SKIP
"""

from __future__ import annotations

import importlib

__version__ = "0.7.30"

_EXPORTS = {
    "list_models": "robustbench_gcp.models",
    "load_model": "robustbench_gcp.models",
    "create_model": "robustbench_gcp.models",
    "inspect_checkpoint": "robustbench_gcp.models",
    "evaluate": "robustbench_gcp.pipeline",
    "plan": "robustbench_gcp.pipeline",
    "run": "robustbench_gcp.pipeline",
    "ProgressHook": "robustbench_gcp.engine.runner",
    "Report": "robustbench_gcp.reports.report_type",
    "to_report_markdown": "robustbench_gcp.reports.one_report",
    "to_long_csv": "robustbench_gcp.reports.one_report",
    "render_table": "robustbench_gcp.reports.one_report",
    "load_config": "robustbench_gcp.config",
    "Store": "robustbench_gcp.store",
    "flip_stats": "robustbench_gcp.metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'robustbench_gcp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
