"""benchmarks.yaml -> typed, validated objects.

The file is read as ``yaml.safe_load`` does (a key given twice in one mapping is an error,
where PyYAML keeps the last) and checked completely before any
compute: an unknown key, a wrong type or an unknown name raises
:class:`ConfigError` naming the file and the key path (``suites.imagenet-c.severities[2]``)
and, for names, the closest valid one.

Example:
    >>> cfg = load_config()                      # the shipped benchmarks.yaml
    >>> cfg.suite("imagenet-c").severities
    (1, 2, 3, 4, 5)
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from corruptions import SEVERITIES
from robustbench_gcp.errors import ConfigError, UnknownNameError, check_path, not_utf8, real_path, suggest
from robustbench_gcp.fetch import unsupported_scheme
from robustbench_gcp.metrics import Baseline
from robustbench_gcp.suites import SuiteSpec, get_suite, suite_kinds
from robustbench_gcp.yaml_checks import Checker, join_key, key_lines

_SHA256 = re.compile(r"^[0-9a-f]{8,64}$")


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


#: the environment variable that overrides ``datasets.root`` of benchmarks.yaml
DATA_VARIABLE = "GCP_ROBUST_DATA"
#: what a dataset entry of benchmarks.yaml may locate: clean images, released -C and -P files
DATA_KINDS = ("clean", "corrupted", "perturbed")


@dataclass(frozen=True)
class DataPaths:
    """Where the data lives, said once (``datasets:`` of benchmarks.yaml).

    ``root``: the folder relative paths are under (``$GCP_ROBUST_DATA`` when set, else
    ``datasets.root``); ``entries``: dataset -> {clean | corrupted | perturbed: path}.
    """

    root: Path | None
    root_from: str
    entries: dict[str, dict[str, str]] = field(default_factory=dict)

    def path(self, dataset: str, kind: str = "clean") -> Path | None:
        """The path of ``datasets.<dataset>.<kind>`` (None: not configured).

        Raises:
            ConfigError: the configured path does not exist (the key and the variable named).
        """
        path, missing = self.locate(dataset, kind)
        if missing is None:
            return path
        raise self.refusal([(path, missing)])

    def refusal(self, located: list[tuple[Path | None, str]]) -> ConfigError:
        """The error for keys that cannot serve, each as :meth:`locate` said why, the remedy once."""
        said = "; and ".join(missing for _, missing in located)
        if any(path is None for path, _ in located):  # a relative path without a root
            return ConfigError(f"{said}: set {DATA_VARIABLE} or datasets.root")
        if self.root is None:  # absolute paths
            return ConfigError(f"{said} (set {DATA_VARIABLE} to where your data lives, or give --data)")
        return ConfigError(f"{said} (relative paths are under the data root {self.root}, from "
                           f"{self.root_from}; set {DATA_VARIABLE} to where your data lives, or give --data)")

    def locate(self, dataset: str, kind: str = "clean") -> tuple[Path | None, str | None]:
        """Where ``datasets.<dataset>.<kind>`` points (None: not configured, or relative without a
        root), and why it cannot be used, in a few words (None: it can, or it is not configured)."""
        value = self.entries.get(dataset, {}).get(kind)
        if value is None:
            return None, None
        path = Path(value).expanduser()
        if not path.is_absolute():
            if self.root is None:
                return None, (f"datasets.{dataset}.{kind} is the relative path {value}, but no data root "
                              "is set")
            path = self.root / path
        if (shown := not_utf8(path)) is not None:  # $GCP_ROBUST_DATA, HOME: the store cannot hold it
            return None, f"datasets.{dataset}.{kind}: {shown} has a name that is not UTF-8 (rename it)"
        if path.exists():
            return path, None
        variables = (f" (environment variables are not expanded: {DATA_VARIABLE} sets the data root)"
                     if "$" in str(path) else "")
        return path, f"datasets.{dataset}.{kind}: {path} does not exist{variables}"


@dataclass(frozen=True)
class Config:
    """A validated benchmarks.yaml: models, suites (each of its kind's spec type), baselines,
    and where the datasets live."""

    path: Path
    models: dict[str, ModelSpec]
    suites: dict[str, SuiteSpec]
    baselines: dict[str, Baseline]
    data: DataPaths = field(default_factory=lambda: DataPaths(None, "nothing"))

    def model(self, name: str) -> ModelSpec:
        return self._entry("model", name, self.models)

    def suite(self, name: str) -> SuiteSpec:
        return self._entry("suite", name, self.suites)

    def baseline(self, name: str) -> Baseline:
        return self._entry("baseline", name, self.baselines)

    def suite_on(self, kind: str, dataset: str) -> str | None:
        """The name of the suite of ``kind`` declared on ``dataset`` (``tinyimagenet-c`` for an
        imagenet-c run on Tiny-ImageNet), the name eval and report give such a run; None if none."""
        return next((spec.name for spec in self.suites.values()
                     if spec.kind == kind and spec.dataset == dataset), None)

    def _entry(self, kind: str, name: str, entries: dict):
        if name not in entries:
            if not entries:
                raise ConfigError(f"unknown {kind} '{name}': the configuration {self.path} defines "
                                  f"no {kind}s (add a '{kind}s:' section, or use the shipped one)")
            raise UnknownNameError(kind, name, entries)
        return entries[name]


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate a benchmarks.yaml (the shipped one when ``path`` is None).

    Raises:
        ConfigError: the file is missing, not YAML, or does not validate.
    """
    if path is not None:
        check_path(path, "a benchmarks.yaml")
    path = Path(path) if path is not None else default_config_path()
    try:
        with open(path, "rb") as file:  # bounded: /dev/zero was read until memory ran out
            raw = file.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except OSError as error:
        raise ConfigError(f"cannot read configuration file {path}: {error.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"configuration file {path} is over {MAX_CONFIG_BYTES >> 20} MiB: not a "
                          "benchmarks.yaml (the shipped one is a few KiB)")
    text = _decode(raw, path)
    loader = None
    try:
        loader = _UniqueKeyLoader(text)  # yaml.load's steps, keeping the composed node for its lines
        node = loader.get_single_node()
        _refuse_cycles(node, path)
        data = loader.construct_document(node) if node is not None else None
        return parse_config(data, path, key_lines(node) if node is not None else None)
    except DuplicateKey as error:
        raise ConfigError(f"{path}: {error.where} (line {error.line}): {error.message}") from None
    except yaml.YAMLError as error:  # (the reader refuses control characters as the loader is made)
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    except RecursionError:  # PyYAML's composer, and the checks, recurse once per level
        raise ConfigError(f"{path}: malformed YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


#: the largest configuration file read (the shipped benchmarks.yaml is a few KiB)
MAX_CONFIG_BYTES = 16 << 20


def _refuse_cycles(node: Any, path: Path) -> None:
    """A node that holds itself through an alias (``a: &x {b: *x}``) is refused: the checks walked
    it forever (a RecursionError traceback). Each node is walked once, however many aliases name
    it (a file of aliases of aliases stays linear)."""
    if node is None:
        return
    state: dict[int, bool] = {}  # id -> True while its children are walked, False once done
    stack = [(node, False)]
    while stack:  # depth first, iteratively: a deep file is the composer's to refuse
        item, done = stack.pop()
        if done:
            state[id(item)] = False
            continue
        seen = state.get(id(item))
        if seen:
            raise ConfigError(f"{path}: malformed YAML (line {item.start_mark.line + 1}): an alias refers "
                              "to a node that holds it (a recursive anchor)")
        if seen is False or not isinstance(item, (yaml.MappingNode, yaml.SequenceNode)):
            continue
        state[id(item)] = True
        stack.append((item, True))
        pairs = item.value if isinstance(item, yaml.MappingNode) else [(child,) for child in item.value]
        stack.extend((child, False) for pair in pairs for child in pair)


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load``, except that a key given twice in one mapping is an error (PyYAML
    keeps the last one silently: a repeated ``severities:`` would pass unnoticed), two spellings
    of one value too (``1`` and ``01``). Checked as the file is composed, before merge keys
    (``<<: *anchor``, whose keys may be overridden) are expanded."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._where: list[str] = []  # the key path of the node being composed, as Checker names it

    def compose_node(self, parent, index):
        # PyYAML composes a mapping's value with its key node as the index, a list's item with its number
        step = f"[{index}]" if isinstance(parent, yaml.SequenceNode) and isinstance(index, int) else \
            index.value if isinstance(parent, yaml.MappingNode) and isinstance(index, yaml.ScalarNode) \
            and index.tag != "tag:yaml.org,2002:merge" else ""  # a merged mapping's keys are its own
        self._where.append(step)
        try:
            return super().compose_node(parent, index)
        finally:
            self._where.pop()

    def compose_mapping_node(self, anchor):
        node = super().compose_mapping_node(anchor)
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            # the key as the mapping will hold it: 1, 01, 0x1, 1.0 and true are one key, '1' another
            key = self.construct_object(key_node)
            if not isinstance(key, Hashable):
                continue  # the constructor says what is wrong with it
            if key in seen:
                where = ""
                for step in filter(None, [*self._where, key_node.value]):
                    where = where + step if step.startswith("[") else join_key(where, step)
                raise DuplicateKey(where, key_node.start_mark.line + 1, f"'{key_node.value}' is given twice "
                                   f"in one mapping (first on line {seen[key]})")
            seen[key] = key_node.start_mark.line + 1
        return node


class DuplicateKey(Exception):
    """A key given twice in one mapping, at key path ``where`` (helper-262: "malformed YAML"
    named its line only)."""

    def __init__(self, where: str, line: int, message: str) -> None:
        super().__init__(message)
        self.where, self.line, self.message = where, line, message


def _decode(raw: bytes, path: Path) -> str:
    """The text of a configuration file: UTF-8 (a byte-order mark is allowed), else a
    ConfigError that says what the file is instead."""
    head = raw[:64]
    no_bom_utf16 = len(head) >= 8 and (not any(head[1::2]) or not any(head[0::2]))
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or no_bom_utf16:
        raise ConfigError(f"configuration file {path} is UTF-16 encoded; save it as UTF-8 "
                          "(e.g. iconv -f UTF-16 -t UTF-8)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        if b"\x00" in raw or sum(b < 9 or 13 < b < 32 for b in raw[:4096]) > 8:
            raise ConfigError(f"configuration file {path} is not a text file (binary data); "
                              "expected a YAML file such as benchmarks.yaml") from None
        line = raw[:error.start].count(b"\n") + 1
        raise ConfigError(f"configuration file {path} is not UTF-8: byte 0x{raw[error.start]:02x} "
                          f"on line {line} (Latin-1 or another encoding?); save it as UTF-8") from None


def parse_config(data: Any, path: Path, lines: dict[str, int] | None = None) -> Config:
    """Validate the mapping read from ``path`` (``lines``: its key paths' lines, which errors
    name); see :func:`load_config`."""
    check = Checker(path, lines)
    if data is None or data == {}:
        raise ConfigError(f"configuration file {path} is empty: it holds no models or suites "
                          "(see the shipped benchmarks.yaml for the format)")
    top = check.mapping(data, "", {"models", "suites", "baselines", "datasets"})
    models = {
        name: _model(check, name, value)
        for name, value in check.entries(top.get("models"), "models").items()
    }
    suites = {
        name: _suite(check, name, value)
        for name, value in check.entries(top.get("suites"), "suites").items()
    }
    baselines = {
        name: _baseline(check, name, value)
        for name, value in check.entries(top.get("baselines"), "baselines").items()
    }
    return Config(path=real_path(path), models=models, suites=suites, baselines=baselines,
                  data=_datasets(check, top.get("datasets"), path))


def _datasets(check: Checker, value: Any, path: Path) -> DataPaths:
    """The ``datasets:`` section: ``root`` and one entry per dataset of
    :data:`~robustbench_gcp.data.datasets.DATASETS` with some of :data:`DATA_KINDS`."""
    from robustbench_gcp.data.datasets import DATASETS

    section = check.optional_mapping(value, "datasets", {"root", *DATASETS})
    entries = {}
    for name, entry in section.items():
        if name == "root":
            continue
        entry = check.optional_mapping(entry, f"datasets.{name}", set(DATA_KINDS))
        entries[name] = {kind: check.string(v, f"datasets.{name}.{kind}") for kind, v in entry.items()}
    environment = os.environ.get(DATA_VARIABLE)
    if environment:
        return DataPaths(Path(environment).expanduser(), f"${DATA_VARIABLE}", entries)
    if "root" in section:
        root = Path(check.string(section["root"], "datasets.root")).expanduser()
        if not root.is_absolute():
            root = real_path(path).parent / root
        return DataPaths(root, f"datasets.root of {path}", entries)
    return DataPaths(None, "nothing", entries)


_PERCENTS = {"top1", "top5", "clean_error"}  # published figures that cannot pass 100 (mCE can)


def _model(check: Checker, name: str, value: Any) -> ModelSpec:
    where = f"models.{name}"
    value = check.optional_mapping(value, where, {"arch", "checkpoint", "sha256", "source", "published"})
    arch = check.string(value.get("arch", name), f"{where}.arch")
    from robustbench_gcp.models import list_models

    if arch not in list_models():
        given = "" if "arch" in value else " (no arch: given, so the entry's name is taken as one)"
        check.fail(f"{where}.arch", f"unknown architecture '{arch}'{given}.{suggest(arch, list_models())}")
    checkpoint = value.get("checkpoint")
    if checkpoint is not None:
        checkpoint = check.string(checkpoint, f"{where}.checkpoint")
        if checkpoint.startswith("package:"):
            checkpoint = str(package_resource(checkpoint.removeprefix("package:")))
        elif "://" not in checkpoint:
            checkpoint = str(real_path(real_path(check.path).parent / Path(checkpoint).expanduser()))
        elif (problem := unsupported_scheme(checkpoint)) is not None:
            check.fail(f"{where}.checkpoint", problem)
    sha256 = value.get("sha256")
    if isinstance(sha256, (int, float)) and not isinstance(sha256, bool):  # a prefix of digits alone
        # (what a prefix needs too, said at once: helper-262; the digits as read may be an octal's)
        check.fail(f"{where}.sha256", f"YAML reads {sha256!r} as a number, not hex digits: quote it "
                   "(sha256: \"15991845\"); a prefix needs 8 or more hex digits")
    if sha256 is not None:
        given = check.string(sha256, f"{where}.sha256")
        # read as --sha256 is: spaces around it were refused here alone (helper-227)
        sha256 = given.strip().lower().removeprefix("sha256:")
        if not _SHA256.match(sha256):  # a prefix as torch.hub file names carry it (resnet18-f37072fd)
            check.fail(f"{where}.sha256",
                       f"expected 8 to 64 hexadecimal digits (a full SHA-256 or its prefix), got {given!r}")
        if checkpoint is None:  # never used: --checkpoint replaces it, and without one nothing is read
            check.fail(f"{where}.sha256", "checks the entry's checkpoint file, and it gives none: add "
                       "`checkpoint:` or drop sha256")
    source = value.get("source")
    if source is not None:
        source = check.string(source, f"{where}.source")
    published_keys = {"top1", "top5", "mCE", "relative_mCE", "mFR", "mT5D", "clean_error"}
    published = check.optional_mapping(value.get("published"), f"{where}.published", published_keys)
    published = {k: check.number(v, f"{where}.published.{k}", 0.0, 100.0 if k in _PERCENTS else None)
                 for k, v in published.items()}
    for key, number in published.items():  # the papers print percentages: 0.7613 is a fraction
        if key != "clean_error" and 0 < number <= 1:  # (a clean error may be below 1 %)
            check.fail(f"{where}.published.{key}", f"published figures are percentages (76.13, not "
                       f"0.7613), got {number:g}")
    both = {"top1", "clean_error"} <= published.keys()  # each rounded to a tenth at least
    if both and abs(published["top1"] + published["clean_error"] - 100) > 0.1:
        check.fail(f"{where}.published.clean_error", f"top1 {published['top1']:g} and clean_error "
                   f"{published['clean_error']:g} disagree (the clean error is 100 - top1): give one")
    return ModelSpec(name, arch, checkpoint, sha256, source, published)


def _foreign_keys(check: Checker, value: Mapping, where: str, kind: str) -> None:
    """Fail on a key of another suite kind or a command-line option only, saying so (spelling
    alone suggested `attacks` -> 'dataset', `corrupted_dir` -> 'corruptions': helper-262)."""
    from robustbench_gcp.suites import all_flags

    own = get_suite(kind).config_keys() | {"dataset"}
    for key in value:
        if not isinstance(key, str) or key in own:
            continue
        kinds = [k for k in suite_kinds() if key in get_suite(k).config_keys()]
        # (corrupted-dir: the option's spelling, suggested 'corruptions' too: helper-265)
        flag = next((f for f in all_flags() if f.name == key.replace("-", "_").removeprefix("__")), None)
        if kinds or flag is not None:
            what = f"a key of {'/'.join(kinds)} suites" if kinds else \
                f"no suite key but a command-line option ({flag.option})"
            check.fail(join_key(where, key), f"'{key}' is {what}; this suite is of kind {kind}, whose keys "
                       f"are {', '.join(sorted(own))}")


def _suite(check: Checker, name: str, value: Any) -> SuiteSpec:
    """A suite entry: its kind's module checks and reads its keys."""
    where = f"suites.{name}"
    value = check.optional_mapping(value, where)
    kind = check.string(value.get("kind", name), f"{where}.kind")
    if kind not in suite_kinds():
        given = "" if "kind" in value else " (no kind: given, so the entry's name is taken as one)"
        check.fail(f"{where}.kind", f"unknown suite kind '{kind}'{given}.{suggest(kind, suite_kinds())}")
    if name in suite_kinds() and kind != name:  # eval ran the entry, report showed the kind (helper-227)
        check.fail(f"{where}.kind", f"a suite named '{name}' is of kind {name}: the name stands for that "
                   f"kind in `report` and the suite flags; give this {kind} suite another name")
    suite = get_suite(kind)
    _foreign_keys(check, value, where, kind)
    check.mapping(value, where, suite.config_keys() | {"dataset"})
    spec = suite.parse(check, name, value, where)
    if "dataset" in value:
        from robustbench_gcp.data.datasets import DATASETS

        dataset = check.string(value["dataset"], f"{where}.dataset")
        if dataset not in DATASETS:
            check.fail(f"{where}.dataset", f"unknown dataset '{dataset}'.{suggest(dataset, DATASETS)}")
        spec = dataclasses.replace(spec, dataset=dataset)
    return spec


def _baseline(check: Checker, name: str, value: Any) -> Baseline:
    where = f"baselines.{name}"
    value = check.optional_mapping(value, where, {"description", "clean_error", "imagenet_c"})
    description = value.get("description", "")
    if description:
        description = check.string(description, f"{where}.description")
    clean = value.get("clean_error")
    if clean is not None:
        clean = check.number(clean, f"{where}.clean_error", 0.0, 1.0)
    from corruptions import list_corruptions

    valid = list_corruptions("all")
    table = {}
    for corruption, errors in check.optional_mapping(value.get("imagenet_c"), f"{where}.imagenet_c").items():
        key = f"{where}.imagenet_c.{corruption}"
        if corruption not in valid:
            check.fail(key, f"unknown corruption '{corruption}'.{suggest(corruption, valid)}")
        errors = check.sequence(errors, key)
        if len(errors) != len(SEVERITIES):
            check.fail(key, f"expected {len(SEVERITIES)} errors (severities 1..5), got {len(errors)}")
        table[corruption] = tuple(check.number(e, f"{key}[{i}]", 0.0, 1.0) for i, e in enumerate(errors))
    return Baseline(name, description, clean, table)
