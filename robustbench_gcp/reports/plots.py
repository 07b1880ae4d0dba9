"""PNG figures of several reports: every figure each suite draws, one file per figure and suite.

The figures themselves belong to the suites (:meth:`~robustbench_gcp.suites.base.Suite.plots`);
their primitives are in :mod:`robustbench_gcp.reports.figures`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from robustbench_gcp.reports.report_type import Report
from robustbench_gcp.suites import get_suite


def write_plots(reports: Sequence[Report], folder: str | Path) -> list[Path]:
    """Every figure the reports allow, one PNG per figure and suite, into ``folder``."""
    folder = Path(folder)
    written = []
    for suite_name in dict.fromkeys(r.suite for r in reports):
        group = [r for r in reports if r.suite == suite_name]
        stem = suite_name.replace(" ", "_").replace("(", "").replace(")", "").replace(",", "")
        for name, draw in get_suite(group[0].kind).plots().items():
            path = draw(group, folder / f"{stem}_{name}.png")
            if path is not None:
                written.append(path)
    return written
