"""The registry of suite kinds: each :class:`~robustbench_gcp.suites.base.Suite` subclass is
registered under its ``kind`` (:func:`register_suite`), and code outside the suites asks here
(:func:`get_suite`, :func:`all_suites`, :func:`suite_of_cell`) instead of comparing kind names.
The suite flags of every kind are checked here too (:func:`check_flags`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from robustbench_gcp.errors import ConfigError, UnknownNameError, check_integer, suggest
from robustbench_gcp.store import CellKey
from robustbench_gcp.suites.base import Flag, Suite, SuiteSpec

_SUITES: dict[str, Suite] = {}


def register_suite(cls: type[Suite]) -> type[Suite]:
    """Register a :class:`Suite` subclass under its ``kind`` (a class decorator).

    Raises:
        ValueError: the kind is empty or already registered, or a flag it declares is
            declared differently by another suite.
    """
    if not cls.kind:
        raise ValueError(f"suite {cls.__name__} has no `kind`")
    if cls.kind in _SUITES:
        raise ValueError(f"suite kind '{cls.kind}' is already registered "
                         f"(by {type(_SUITES[cls.kind]).__name__})")
    known = {flag.name: flag for suite in _SUITES.values() for flag in suite.flags}
    for flag in cls.flags:
        if flag.name in known and known[flag.name] != flag:
            raise ValueError(f"flag {flag.option} of suite '{cls.kind}' differs from another suite's")
    _SUITES[cls.kind] = cls()
    return cls


def unregister_suite(kind: str) -> None:
    """Remove a registered kind (for tests, and for tools that register suites temporarily)."""
    _SUITES.pop(kind, None)


def get_suite(kind: str) -> Suite:
    """The suite of a kind.

    Raises:
        UnknownNameError: no such kind (the closest suggested).
    """
    try:
        return _SUITES[kind]
    except KeyError:
        raise UnknownNameError("suite kind", kind, _SUITES) from None


def all_suites() -> list[Suite]:
    """Every registered suite, in registration order."""
    return list(_SUITES.values())


def kinds_help(where: Callable[[Suite], bool] | None = None) -> str:
    """Every kind (of those ``where`` takes) and what it measures, for ``--help``."""
    return "Suite kinds: " + "; ".join(f"{suite.kind} ({suite.summary})" for suite in _SUITES.values()
                                       if where is None or where(suite)) + "."


def suite_kinds(where: Callable[[Suite], bool] | None = None) -> tuple[str, ...]:
    """The registered kind names (of the suites ``where`` takes), in registration order."""
    return tuple(kind for kind, suite in _SUITES.items() if where is None or where(suite))


#: the long CSV columns of the clean cell, which every suite's report may hold
CLEAN_LONG_COLUMNS = ("n", "top1_error", "top5_error")


def long_columns() -> list[str]:
    """The measured columns of the long CSV: the clean cell's, then each suite's, once."""
    return list(dict.fromkeys([*CLEAN_LONG_COLUMNS, *(c for s in _SUITES.values() for c in s.long_columns)]))


def all_flags(where: Callable[[Suite], bool] | None = None) -> list[Flag]:
    """Every suite flag once (of the suites ``where`` takes), in the order suites declare them."""
    return list({flag.name: flag for suite in _SUITES.values() if where is None or where(suite)
                 for flag in suite.flags}.values())


def flag_suites(name: str) -> list[str]:
    """The kinds that take the flag ``name``."""
    return [suite.kind for suite in _SUITES.values() if any(f.name == name for f in suite.flags)]


def suite_of_cell(key: CellKey) -> Suite:
    """The suite a stored cell belongs to."""
    for suite in _SUITES.values():
        if suite.owns(key):
            return suite
    raise UnknownNameError("suite kind", key.kind, _SUITES)


def check_flags(spec: SuiteSpec, flags: Mapping[str, Any]) -> dict[str, Any]:
    """The set flags, each checked to apply to ``spec``'s kind.

    Raises:
        ConfigError: a flag that this kind does not take (naming the kinds that do).
        TypeError: a name that no suite declares.
    """
    suite = get_suite(spec.kind)
    own = {flag.name for flag in suite.flags}
    known = {flag.name: flag for flag in all_flags()}
    chosen = {}
    for name, value in flags.items():
        if value is None:
            continue
        if name not in known:
            raise TypeError(f"unexpected option {name!r}.{suggest(name, sorted(known))}")
        if name not in own:
            kinds = flag_suites(name)
            raise ConfigError(f"`{known[name].option}` applies to the {'/'.join(kinds)} suite, "
                              f"not to '{spec.name}'")
        chosen[name] = _checked_value(known[name], value)
    return chosen


def _checked_value(flag: Flag, value: Any) -> Any:
    """``value`` of ``flag`` as the command line would take it (the library's keywords are not
    parsed by click: ``steps=0`` ran attacks of no step, robust at every epsilon).

    Raises:
        ConfigError: an ``int`` that is no integer >= 1, a ``switch`` that is no bool, a ``choice``
            that is none of its choices.
    """
    if flag.kind == "int":
        return check_integer(flag.option, value)
    said = f"`{flag.option}` should be"
    if flag.kind == "switch" and not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{said} True or False. Got {value!r}")
    if flag.kind == "choice" and value not in flag.choices:
        raise ConfigError(f"{said} one of {', '.join(flag.choices)}. Got {value!r}")
    return bool(value) if flag.kind == "switch" else value
