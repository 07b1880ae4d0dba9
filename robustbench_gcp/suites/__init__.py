"""The suites: one module per kind, each a :class:`~robustbench_gcp.suites.base.Suite`.

Importing this package registers every kind, in report order. Code elsewhere asks the
registry (:func:`get_suite`, :func:`all_suites`, :func:`suite_of_cell`) and never
compares kind names (tests/test_architecture.py counts them); see ARCHITECTURE.md for how
to add a suite.
"""

# Registration order is report order: the order of tables, CSV columns and --help flags.
# isort: off
from robustbench_gcp.suites import clean as _clean  # noqa: F401  (registers the kind)
from robustbench_gcp.suites import imagenet_c as _imagenet_c  # noqa: F401
from robustbench_gcp.suites import imagenet_p as _imagenet_p  # noqa: F401
from robustbench_gcp.suites import adversarial as _adversarial  # noqa: F401
from robustbench_gcp.suites import landscape as _landscape  # noqa: F401
# isort: on

from robustbench_gcp.suites.base import CLEAN, Flag, Selection, Suite, SuiteSpec, Table, TaskInputs
from robustbench_gcp.suites.kinds import (
    all_flags,
    all_suites,
    check_flags,
    flag_suites,
    get_suite,
    long_columns,
    register_suite,
    suite_kinds,
    suite_of_cell,
)

__all__ = [
    "CLEAN",
    "Flag",
    "Selection",
    "Suite",
    "SuiteSpec",
    "Table",
    "TaskInputs",
    "all_flags",
    "all_suites",
    "check_flags",
    "flag_suites",
    "get_suite",
    "long_columns",
    "register_suite",
    "suite_kinds",
    "suite_of_cell",
]
