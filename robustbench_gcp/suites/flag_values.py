"""The values of the selection flags (``--corruptions``, ``--severities``, ``--attacks`` ...): what
the command line gives as text (``fog,snow``, ``1,3``) and the library as text, a sequence or one
level, checked into names and levels."""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Iterable, Mapping, Sequence

from robustbench_gcp.errors import ConfigError, UnknownNameError


def resolve_names(value: str | Sequence[str] | None, default: tuple[str, ...],
                  subsets: Mapping[str, tuple[str, ...]], kind: str, flag: str) -> tuple[str, ...]:
    """``--corruptions`` / ``--perturbations``: a comma list of names or subset names
    (``subsets["all"]`` holds every valid name), checked; default: the suite's.

    Raises:
        UnknownNameError: a name that is neither (the closest suggested).
        ConfigError: nothing named.
    """
    if value is None:
        return default
    items = [v.strip() for v in name_items(value, flag, kind)]
    names: list[str] = []
    for item in filter(None, items):
        if item in subsets:
            names.extend(subsets[item])
        elif item in subsets["all"]:
            names.append(item)
        else:
            raise UnknownNameError(kind, item, [*subsets["all"], *subsets], known_as=_known_as(kind, item))
    if not names:
        raise ConfigError(f"`{flag}` should name at least one {kind}")
    return tuple(dict.fromkeys(names))


def _known_as(kind: str, name: str) -> str:
    """What ``name`` is where it is no ``kind``: a perturbation given as a corruption ("an
    ImageNet-P perturbation") or the other way round; else ""."""
    from corruptions._registry import CORRUPTIONS, PERTURBATIONS

    registry = {"corruption": CORRUPTIONS, "perturbation": PERTURBATIONS}.get(kind)
    return registry.sibling_of(name) if registry is not None else ""


def name_items(value: str | Sequence[str], flag: str, kind: str) -> list[str]:
    """``--corruptions`` / ``--attacks`` ...: a comma list as text, or a sequence of names (the
    library's), as the names given.

    Raises:
        ConfigError: anything else (a number, None in the list ...), naming ``flag``.
    """
    items = [i for i in value.split(",") if i.strip()] if isinstance(value, str) else \
        list(value) if isinstance(value, Iterable) else None
    if items is None or not all(isinstance(item, str) for item in items):
        raise ConfigError(f"`{flag}` should be {kind} names, as text (a,b) or a list of them. Got {value!r}")
    return items


def resolve_levels(value: Sequence[int] | int | str | None, default: tuple[int, ...], flag: str,
                   valid: tuple[int, ...]) -> tuple[int, ...]:
    """``--severities`` / ``--difficulties``: checked against ``valid``; default: the suite's. The
    library takes what the command line takes too: one level, or a comma list as text ("1,3").

    Raises:
        ConfigError: a level that is not an integer of ``valid``, or none.
    """
    if value is None:
        return default
    items = [i for i in value.split(",") if i.strip()] if isinstance(value, str) else \
        list(value) if isinstance(value, Iterable) else [value]  # one level: 3, numpy.int64(3), 3.0
    levels = []
    for item in items:
        level = item.strip() if isinstance(item, str) else item
        if isinstance(level, str) and level.lstrip("-").isdigit():
            level = int(level)
        elif not isinstance(level, (bool, str)):
            with contextlib.suppress(TypeError):
                level = operator.index(level)  # NumPy integers; not 3.0
        if isinstance(level, bool) or not isinstance(level, int) or level not in valid:
            raise ConfigError(f"`{flag}` should be {valid[0]}..{valid[-1]}. Got {level!r}")
        levels.append(level)
    if not levels:
        raise ConfigError(f"`{flag}` should name at least one level")
    return tuple(sorted(set(levels)))
