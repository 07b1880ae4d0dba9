"""The clean suite: top-1 and top-5 error on the unmodified images.

Its one cell (:data:`~robustbench_gcp.suites.base.CLEAN`) joins every other suite's
report as the reference; the section, rows and comparison outcome of that cell are the
base class's, so this module only registers the kind (and that it corrupts nothing).
"""

from __future__ import annotations

from robustbench_gcp.suites.base import Selection, Suite
from robustbench_gcp.suites.kinds import register_suite


@register_suite
class CleanSuite(Suite):
    """Top-1 / top-5 error of the clean images."""

    kind = "clean"
    summary = "top-1 / top-5 error on the clean images"
    draws = False

    def corrupts(self, selection: Selection) -> bool:
        return False
