"""Typed checks of values read from YAML, with errors that name the file and the key path.

Used by :mod:`robustbench_gcp.config` for models, baselines and datasets, and by each suite
(:mod:`robustbench_gcp.suites`) for its own section, so a suite's configuration keys are
validated in the suite's module.

Example:
    >>> check = Checker(Path("benchmarks.yaml"))
    >>> check.integer(3, "suites.imagenet-c.severities[0]", 1, 5)
    3
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from robustbench_gcp.errors import ConfigError, suggest


class Checker:
    """Type checks of YAML values that raise :class:`ConfigError` naming the file and key path,
    and the key's line where ``lines`` (:func:`key_lines`) has it or the closest key above it."""

    def __init__(self, path: Path, lines: dict[str, int] | None = None):
        self.path = path
        self.lines = lines or {}

    def fail(self, where: str, message: str) -> None:
        if not where:
            raise ConfigError(f"{self.path}: {message}")
        line = self.line(where)
        at = f" (line {line})" if line is not None else ""
        raise ConfigError(f"{self.path}: {where}{at}: {message}")

    def line(self, where: str) -> int | None:
        """The line of the key path ``where``, or of the closest key above it that the file has
        (a missing ``arch:``: its model's line)."""
        while where:
            if where in self.lines:
                return self.lines[where]
            above = re.sub(r"(\[\d+\]|\.[^.\[]*)$", "", where)
            where = "" if above == where else above  # a name such as 'r[x' ends the walk
        return None

    def mapping(self, value: Any, where: str, allowed: set[str] | None = None) -> dict:
        if not isinstance(value, dict):
            self.fail(where or "top level", f"expected a mapping, got {describe_value(value)}")
        for key in value:
            if not isinstance(key, str):
                self.fail(where, f"keys must be strings, got {key!r}")
            if allowed is not None and key not in allowed:
                self.fail(join_key(where, key), f"unknown key '{key}'.{suggest(key, sorted(allowed))}")
        return value

    def optional_mapping(self, value: Any, where: str, allowed: set[str] | None = None) -> dict:
        """:meth:`mapping`, empty when null (a key written with nothing after it); ``false``, ``[]``
        or ``0`` is no mapping (``models: {m: false}`` was read as an entry of no keys)."""
        return self.mapping({} if value is None else value, where, allowed)

    def entries(self, value: Any, where: str) -> dict:
        """A section of entries by name (``models:``; empty when null, but ``[]`` or ``0`` is no
        mapping), every name one that commands can take: not empty, no whitespace, and none of
        ``, = [ ]`` (lists, ``--model NAME=CHECKPOINT`` and run labels ``NAME[seed=1]`` use them:
        ``a,b`` was listed but could not be asked for)."""
        section = {} if value is None else self.mapping(value, where)
        for name in section:
            if not name or any(c.isspace() or c in ",=[]" for c in name):
                self.fail(join_key(where, name), f"the name {name!r} cannot be given on the command line: "
                          "use letters, digits and - _ . : / (no spaces, commas, '=' or brackets)")
        return section

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value:
            self.fail(where, f"expected a non-empty string, got {describe_value(value)}")
        return value

    def boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            self.fail(where, f"expected true or false, got {describe_value(value)}")
        return value

    def integer(self, value: Any, where: str, low: int | None = None, high: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(where, f"expected an integer, got {describe_value(value)}{_text_number(value, True)}")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"{low}..{high}" if high is not None else f">= {low}"
            self.fail(where, f"should be {bounds}, got {value}")
        return value

    def number(self, value: Any, where: str, low: float | None = None, high: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(where, f"expected a number, got {describe_value(value)}{_text_number(value)}")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
            self.fail(where, f"should be {bounds}, got {value}")
        return float(value)

    def sequence(self, value: Any, where: str) -> list:
        if not isinstance(value, list):
            self.fail(where, f"expected a list, got {describe_value(value)}")
        return value

    def names(
        self, value: Any, where: str, subsets: dict[str, tuple[str, ...]], kind: str
    ) -> tuple[str, ...]:
        """A subset name or a list of names, each checked against ``subsets['all']``."""
        valid = subsets["all"]
        if isinstance(value, str):
            if value in subsets:
                return tuple(subsets[value])
            if "," in value:  # the command line's comma list, where YAML takes a list
                self.fail(where, f"{value!r} is one string: write a list, [{value.replace(',', ', ')}]")
            if value not in valid:  # a misspelt subset as likely as a misspelt name
                self.fail(where, f"unknown {kind} or subset '{value}'.{suggest(value, [*valid, *subsets])}")
            value = [value]
        names = []
        for i, name in enumerate(self.sequence(value, where)):
            name = self.string(name, f"{where}[{i}]")
            if name not in valid:
                self.fail(f"{where}[{i}]", f"unknown {kind} '{name}'.{suggest(name, valid)}")
            names.append(name)
        if not names:
            self.fail(where, f"expected at least one {kind}")
        if len(set(names)) != len(names):
            self.fail(where, f"a {kind} is listed twice")
        return tuple(names)

    def levels(self, value: Any, where: str, valid: tuple[int, ...], kind: str) -> tuple[int, ...]:
        levels = tuple(
            self.integer(v, f"{where}[{i}]", valid[0], valid[-1])
            for i, v in enumerate(self.sequence(value, where))
        )
        if not levels:
            self.fail(where, f"expected at least one {kind}")
        if len(set(levels)) != len(levels):
            self.fail(where, f"a {kind} is listed twice")
        return tuple(sorted(levels))


def _text_number(value: Any, integer: bool = False) -> str:
    """Why a number came as text, and how to write it: YAML 1.1, which PyYAML reads, takes an
    exponent for a number only after a dot and with its sign (``1.0e-3``, ``1.0e+3``)."""
    if not isinstance(value, str) or not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value):
        return ""
    if integer and float(value).is_integer():
        return f" (YAML reads {value} as text: write {int(float(value))})"
    mantissa, exponent = value.lower().split("e")
    mantissa += "" if "." in mantissa else ".0"
    return f" (YAML reads {value} as text: write {mantissa}e{'' if exponent[0] in '+-' else '+'}{exponent})"


#: the most key paths :func:`key_lines` records: a few hundred in a real file; aliases of aliases
#: (``a: &a [*b, *b, ...]``, eight levels in 100 bytes) make 10**8 paths, which took gigabytes
MAX_KEY_PATHS = 100_000


def key_lines(node: Any, where: str = "", lines: dict[str, int] | None = None,
              budget: list[int] | None = None) -> dict[str, int]:
    """The line of every key path of a composed YAML document (``yaml.compose``'s node):
    ``models.r50.checkpoint`` and ``suites.imagenet-c.severities[0]``, as :class:`Checker` names
    them; keys a merge (``<<: *anchor``) brings in have the anchor's lines, unless given here.
    At most :data:`MAX_KEY_PATHS` paths (``budget``: how many are left): a key beyond them has
    the line of the closest one above it (:meth:`Checker.line`), or none."""
    import yaml

    lines = {} if lines is None else lines
    budget = [MAX_KEY_PATHS] if budget is None else budget
    if isinstance(node, yaml.MappingNode):
        merged = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                merged.append(value_node)
            elif isinstance(key_node, yaml.ScalarNode) and budget[0] > 0:
                budget[0] -= 1
                path = join_key(where, key_node.value)
                lines[path] = key_node.start_mark.line + 1
                key_lines(value_node, path, lines, budget)
        for value_node in merged:  # a mapping, or a list of them; the keys given here win
            for source in value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]:
                key_lines(source, where, found := {}, budget)
                for path, line in found.items():
                    lines.setdefault(path, line)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            if budget[0] <= 0:
                break
            budget[0] -= 1
            lines[f"{where}[{i}]"] = item.start_mark.line + 1
            key_lines(item, f"{where}[{i}]", lines, budget)
    return lines


def join_key(where: str, key: str) -> str:
    """``suites.imagenet-c`` + ``severities`` -> ``suites.imagenet-c.severities``."""
    return f"{where}.{key}" if where else key


def describe_value(value: Any) -> str:
    """A value as error messages name it: ``int 3``, ``list``, ``nothing (null)``."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, (dict, list)):
        return type(value).__name__
    text = repr(value)
    if len(text) > 80:  # a whole file read as one text (a CSV file given as --config): its start
        size = f" ({len(value)} characters)" if isinstance(value, str) else ""
        text = f"{text[:60]}...{size}"
    return f"{type(value).__name__} {text}"
