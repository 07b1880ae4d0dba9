"""benchmarks.yaml -> typed, validated objects.

The file is read with ``yaml.safe_load`` and checked completely before any
compute: an unknown key, a wrong type or an unknown name raises
:class:`ConfigError` naming the file and the key path (``suites.imagenet-c.severities[2]``)
and, for names, the closest valid one.

Example:
    >>> cfg = load_config()                      # the shipped benchmarks.yaml
    >>> cfg.suite("imagenet-c").severities
    (1, 2, 3, 4, 5)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from corruptions.perturbations import PERTURBATION_SUBSETS  # ImageNet-P: test, validation, all
from robustbench_gcp.errors import ConfigError, UnknownNameError, suggest

SUITE_KINDS = ("clean", "imagenet-c", "imagenet-p", "adversarial")

# Attack name -> norm, and the budget keys each one accepts.
ATTACKS = {
    "fgsm": "linf",
    "pgd-linf": "linf",
    "pgd-l2": "l2",
    "deepfool-linf": "linf",
    "deepfool-l2": "l2",
    "cw-l2": "l2",
}
ATTACK_KEYS = {
    "fgsm": ("epsilons", "random_start"),
    "pgd-linf": ("epsilons", "steps", "rel_stepsize", "random_start"),
    "pgd-l2": ("epsilons", "steps", "rel_stepsize", "random_start"),
    "deepfool-linf": ("epsilons", "steps", "candidates", "overshoot"),
    "deepfool-l2": ("epsilons", "steps", "candidates", "overshoot"),
    "cw-l2": ("epsilons", "steps", "binary_search_steps", "stepsize", "confidence",
              "initial_const"),
}

SEVERITIES = (1, 2, 3, 4, 5)
DIFFICULTIES = (1, 2, 3)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def default_config_path() -> Path:
    """The shipped benchmarks.yaml (in a source checkout, the repository's top-level file)."""
    return (Path(__file__).resolve().parent / "resources" / "benchmarks.yaml").resolve()


def package_resource(relative: str) -> Path:
    """A file shipped in the package's resources folder (``package:demo/demo-gap.pth``)."""
    return Path(__file__).resolve().parent / "resources" / relative


@dataclass(frozen=True)
class ModelSpec:
    """A model of the configuration: an architecture and the weights to load."""

    name: str
    arch: str
    checkpoint: str | None = None  # absolute path or URL
    sha256: str | None = None
    source: str | None = None
    published: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AttackSpec:
    attack: str
    epsilons: tuple[float, ...]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def norm(self) -> str:
        return ATTACKS[self.attack]


@dataclass(frozen=True)
class SuiteSpec:
    """A named evaluation suite."""

    name: str
    kind: str
    corruptions: tuple[str, ...] = ()
    severities: tuple[int, ...] = ()
    storage_roundtrip: bool = True
    perturbations: tuple[str, ...] = ()
    difficulties: tuple[int, ...] = ()
    attacks: tuple[AttackSpec, ...] = ()


@dataclass(frozen=True)
class Baseline:
    """Normalizers: per-corruption top-1 errors at severities 1..5, clean error."""

    name: str
    description: str = ""
    clean_error: float | None = None
    imagenet_c: dict[str, tuple[float, ...]] = field(default_factory=dict)

    def error(self, corruption: str, severity: int) -> float:
        return self.imagenet_c[corruption][severity - 1]


@dataclass(frozen=True)
class Config:
    path: Path
    models: dict[str, ModelSpec]
    suites: dict[str, SuiteSpec]
    baselines: dict[str, Baseline]

    def model(self, name: str) -> ModelSpec:
        if name not in self.models:
            raise UnknownNameError("model", name, self.models)
        return self.models[name]

    def suite(self, name: str) -> SuiteSpec:
        if name not in self.suites:
            raise UnknownNameError("suite", name, self.suites)
        return self.suites[name]

    def baseline(self, name: str) -> Baseline:
        if name not in self.baselines:
            raise UnknownNameError("baseline", name, self.baselines)
        return self.baselines[name]


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate a benchmarks.yaml (the shipped one when ``path`` is None).

    Raises:
        ConfigError: the file is missing, not YAML, or does not validate.
    """
    path = Path(path) if path is not None else default_config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except OSError as error:
        raise ConfigError(f"cannot read configuration file {path}: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    return parse_config(data, path)


def parse_config(data: Any, path: Path) -> Config:
    """Validate the mapping read from ``path``; see :func:`load_config`."""
    check = _Checker(path)
    data = {} if data is None else data
    top = check.mapping(data, "", {"models", "suites", "baselines"})
    models = {
        name: _model(check, name, value)
        for name, value in check.mapping(top.get("models") or {}, "models").items()
    }
    suites = {
        name: _suite(check, name, value)
        for name, value in check.mapping(top.get("suites") or {}, "suites").items()
    }
    baselines = {
        name: _baseline(check, name, value)
        for name, value in check.mapping(top.get("baselines") or {}, "baselines").items()
    }
    return Config(path=path.resolve(), models=models, suites=suites, baselines=baselines)


class _Checker:
    """Type checks that raise ConfigError with the file and key path."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, where: str, message: str) -> None:
        raise ConfigError(f"{self.path}: {where}: {message}" if where else f"{self.path}: {message}")

    def mapping(self, value: Any, where: str, allowed: set[str] | None = None) -> dict:
        if not isinstance(value, dict):
            self.fail(where or "top level", f"expected a mapping, got {_kind(value)}")
        for key in value:
            if not isinstance(key, str):
                self.fail(where, f"keys must be strings, got {key!r}")
            if allowed is not None and key not in allowed:
                self.fail(_join(where, key), f"unknown key '{key}'.{suggest(key, sorted(allowed))}")
        return value

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value:
            self.fail(where, f"expected a non-empty string, got {_kind(value)}")
        return value

    def boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            self.fail(where, f"expected true or false, got {_kind(value)}")
        return value

    def integer(self, value: Any, where: str, low: int | None = None, high: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(where, f"expected an integer, got {_kind(value)}")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"{low}..{high}" if high is not None else f">= {low}"
            self.fail(where, f"should be {bounds}, got {value}")
        return value

    def number(self, value: Any, where: str, low: float | None = None, high: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(where, f"expected a number, got {_kind(value)}")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
            self.fail(where, f"should be {bounds}, got {value}")
        return float(value)

    def sequence(self, value: Any, where: str) -> list:
        if not isinstance(value, list):
            self.fail(where, f"expected a list, got {_kind(value)}")
        return value

    def names(
        self, value: Any, where: str, subsets: dict[str, tuple[str, ...]], kind: str
    ) -> tuple[str, ...]:
        """A subset name or a list of names, each checked against ``subsets['all']``."""
        valid = subsets["all"]
        if isinstance(value, str):
            if value in subsets:
                return tuple(subsets[value])
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


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, (dict, list)):
        return type(value).__name__
    return f"{type(value).__name__} {value!r}"


def _model(check: _Checker, name: str, value: Any) -> ModelSpec:
    where = f"models.{name}"
    value = check.mapping(value or {}, where, {"arch", "checkpoint", "sha256", "source", "published"})
    arch = check.string(value.get("arch", name), f"{where}.arch")
    from robustbench_gcp.models import list_models

    if arch not in list_models():
        check.fail(f"{where}.arch", f"unknown architecture '{arch}'.{suggest(arch, list_models())}")
    checkpoint = value.get("checkpoint")
    if checkpoint is not None:
        checkpoint = check.string(checkpoint, f"{where}.checkpoint")
        if checkpoint.startswith("package:"):
            checkpoint = str(package_resource(checkpoint.removeprefix("package:")))
        elif "://" not in checkpoint:
            checkpoint = str((check.path.parent / Path(checkpoint).expanduser()).resolve())
    sha256 = value.get("sha256")
    if sha256 is not None:
        sha256 = check.string(sha256, f"{where}.sha256").lower()
        if not _SHA256.match(sha256):
            check.fail(f"{where}.sha256", "expected 64 hexadecimal digits")
    source = value.get("source")
    if source is not None:
        source = check.string(source, f"{where}.source")
    published_keys = {"top1", "top5", "mCE", "relative_mCE", "mFR", "mT5D", "clean_error"}
    published = check.mapping(value.get("published") or {}, f"{where}.published", published_keys)
    published = {k: check.number(v, f"{where}.published.{k}", 0.0) for k, v in published.items()}
    return ModelSpec(name, arch, checkpoint, sha256, source, published)


def _suite(check: _Checker, name: str, value: Any) -> SuiteSpec:
    where = f"suites.{name}"
    value = check.mapping(value or {}, where)
    kind = check.string(value.get("kind", name), f"{where}.kind")
    if kind not in SUITE_KINDS:
        check.fail(f"{where}.kind", f"unknown suite kind '{kind}'.{suggest(kind, SUITE_KINDS)}")
    allowed = {
        "clean": {"kind"},
        "imagenet-c": {"kind", "corruptions", "severities", "storage_roundtrip"},
        "imagenet-p": {"kind", "perturbations", "difficulties"},
        "adversarial": {"kind", "attacks"},
    }[kind]
    check.mapping(value, where, allowed)
    if kind == "clean":
        return SuiteSpec(name, kind)
    if kind == "imagenet-c":
        from corruptions import SUBSETS as subsets
        return SuiteSpec(
            name,
            kind,
            corruptions=check.names(value.get("corruptions", "benchmark"), f"{where}.corruptions",
                                    subsets, "corruption"),
            severities=check.levels(value.get("severities", list(SEVERITIES)), f"{where}.severities",
                                    SEVERITIES, "severity"),
            storage_roundtrip=check.boolean(value.get("storage_roundtrip", True),
                                            f"{where}.storage_roundtrip"),
        )
    if kind == "imagenet-p":
        return SuiteSpec(
            name,
            kind,
            perturbations=check.names(value.get("perturbations", "test"), f"{where}.perturbations",
                                      PERTURBATION_SUBSETS, "perturbation"),
            difficulties=check.levels(value.get("difficulties", [1]), f"{where}.difficulties",
                                      DIFFICULTIES, "difficulty"),
        )
    attacks = tuple(
        _attack(check, f"{where}.attacks[{i}]", item)
        for i, item in enumerate(check.sequence(value.get("attacks", []), f"{where}.attacks"))
    )
    if not attacks:
        check.fail(f"{where}.attacks", "expected at least one attack")
    return SuiteSpec(name, kind, attacks=attacks)


def _attack(check: _Checker, where: str, value: Any) -> AttackSpec:
    value = check.mapping(value, where)
    attack = check.string(value.get("attack"), f"{where}.attack")
    if attack not in ATTACKS:
        check.fail(f"{where}.attack", f"unknown attack '{attack}'.{suggest(attack, ATTACKS)}")
    check.mapping(value, where, {"attack", *ATTACK_KEYS[attack]})
    epsilons = tuple(
        check.number(e, f"{where}.epsilons[{i}]", 0.0)
        for i, e in enumerate(check.sequence(value.get("epsilons"), f"{where}.epsilons"))
    )
    if not epsilons:
        check.fail(f"{where}.epsilons", "expected at least one epsilon")
    params: dict[str, Any] = {}
    for key in ATTACK_KEYS[attack]:
        if key == "epsilons" or key not in value:
            continue
        if key in ("steps", "binary_search_steps", "candidates"):
            params[key] = check.integer(value[key], f"{where}.{key}", 1)
        elif key == "random_start":
            params[key] = check.boolean(value[key], f"{where}.{key}")
        else:
            params[key] = check.number(value[key], f"{where}.{key}", 0.0)
    return AttackSpec(attack, tuple(sorted(epsilons)), params)


def _baseline(check: _Checker, name: str, value: Any) -> Baseline:
    where = f"baselines.{name}"
    value = check.mapping(value or {}, where, {"description", "clean_error", "imagenet_c"})
    description = value.get("description", "")
    if description:
        description = check.string(description, f"{where}.description")
    clean = value.get("clean_error")
    if clean is not None:
        clean = check.number(clean, f"{where}.clean_error", 0.0, 1.0)
    from corruptions import list_corruptions

    valid = list_corruptions("all")
    table = {}
    for corruption, errors in check.mapping(value.get("imagenet_c") or {}, f"{where}.imagenet_c").items():
        key = f"{where}.imagenet_c.{corruption}"
        if corruption not in valid:
            check.fail(key, f"unknown corruption '{corruption}'.{suggest(corruption, valid)}")
        errors = check.sequence(errors, key)
        if len(errors) != len(SEVERITIES):
            check.fail(key, f"expected {len(SEVERITIES)} errors (severities 1..5), got {len(errors)}")
        table[corruption] = tuple(check.number(e, f"{key}[{i}]", 0.0, 1.0) for i, e in enumerate(errors))
    return Baseline(name, description, clean, table)
