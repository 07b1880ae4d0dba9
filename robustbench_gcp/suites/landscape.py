"""The landscape suite: loss Lipschitzness, gradient predictiveness and effective
beta-smoothness at the stem (or the pixels) of a trained checkpoint, per image.

GCP's claim (Wang et al., CVPR 2020; TPAMI 2023) is that covariance pooling makes the loss
landscape smoother and the gradients more predictive. The measurements and their
definitions are in :mod:`robustbench_gcp.suites.landscape_measure`; this module is the suite:
its configuration and flags, the checks before compute, its cells (clean, and ImageNet-C
corruptions computed on the fly), the report, the comparison design and the plots.

Cells: ``landscape/clean`` and ``landscape/<corruption>/<severity>``; the variant holds the
measurement point, the direction and the steps (``[a, b, K]``), and for corrupted cells how
they were made, so that different settings are different cells. Stored cells are grouped into
reports by their settings.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from corruptions import SEVERITIES, SUBSETS
from robustbench_gcp.data.datasets import classes_mark, dataset_mark, get_dataset, label_space
from robustbench_gcp.errors import ConfigError
from robustbench_gcp.reports.tables import Column, to_markdown
from robustbench_gcp.stats import Design
from robustbench_gcp.store import CellKey, CellResult, canonical_json
from robustbench_gcp.suites.base import (
    Flag,
    Selection,
    Suite,
    SuiteSpec,
    Table,
    TaskInputs,
    exact_root_note,
    variant_of,
)
from robustbench_gcp.suites.flag_values import resolve_levels, resolve_names
from robustbench_gcp.suites.imagenet_c import Corrupt, ImageNetCSuite
from robustbench_gcp.suites.imagenet_c import cell_key as imagenet_c_key
from robustbench_gcp.suites.kinds import register_suite
from robustbench_gcp.suites.landscape_measure import (
    DEFAULT_ETAS,
    DIRECTIONS,
    LANDSCAPE_AT,
    PRECISIONS,
    STEM_ETAS,
    Etas,
    LandscapeSettings,
    LandscapeTask,
    parse_etas,
    summaries,
)
from robustbench_gcp.suites.revisions import newest, revision_mark

if TYPE_CHECKING:
    from robustbench_gcp.reports.report_type import Report
    from robustbench_gcp.yaml_checks import Checker

KIND = "landscape"
#: the per-image quantities compared between models: key -> (header, meaning)
STATS = {
    "loss": ("loss", "mean L(X), the clean loss at X"),
    "loss_band": ("loss band", "mean of max_k loss_k - min_k loss_k (loss Lipschitzness)"),
    "grad_change_max": ("max grad change", "mean of max_k ||grad L(X_k) - g|| (smaller: more predictive)"),
    "beta_smoothness": ("beta-smoothness", "mean of max_k change_k / (eta_k ||g||)"),
    "grad_norm": ("grad norm", "mean ||g|| = ||grad_X L(X)||"),
}
#: the note of a report of float32 cells (--landscape-precision float32, or stored before 0.7.30)
FLOAT32_NOTE = ("measured in the run's precision, not float64 (--landscape-precision float32, or stored "
                "before 0.7.30, when float64 was no choice): its rounding can make the gradient changes at "
                "small steps, and the beta-smoothness taken there (20x float64's with an exact square root, "
                "in a test); float64 is the default")
#: ImageNet-C's flags the landscape suite takes too (declared once, there)
SHARED_FLAGS = ("corruptions", "severities", "storage_roundtrip")


@dataclass(frozen=True)
class LandscapeSpec(SuiteSpec):
    at: str = "stem"
    direction: str = "ascent"
    etas: Etas | None = None  # None: the default of `at`
    precision: str = "float64"
    corruptions: tuple[str, ...] = ()
    severities: tuple[int, ...] = SEVERITIES
    storage_roundtrip: bool = True


@dataclass(frozen=True)
class LandscapeSelection(Selection):
    settings: LandscapeSettings = LandscapeSettings()
    corruptions: tuple[str, ...] = ()
    severities: tuple[int, ...] = ()
    roundtrip: bool = True
    #: the steps are the measurement point's default (the model's family may have its own)
    default_etas: bool = False


def cell_key(name: str, level: str, variant: dict) -> CellKey:
    return CellKey(KIND, name, level, canonical_json(variant))


def settings_of(key: CellKey) -> LandscapeSettings:
    return LandscapeSettings.of_variant(variant_of(key))


def settings_group(key: CellKey) -> str:
    """The report group of a landscape cell: its settings (measurement point, direction, steps),
    and the classes of a model of other classes than ImageNet's 1000 on its images (a 10-class
    model's losses are of another task, log 10 where chance is: compared apart, as in ImageNet-C)."""
    return canonical_json({**settings_of(key).variant(), **_classes(variant_of(key))})


def _classes(variant: Mapping) -> dict:
    """A landscape cell's ``{"classes": K}`` (those of a model of other classes, since 0.7.30), or
    nothing."""
    return {"classes": variant["classes"]} if "classes" in variant else {}


def cell_label(key: CellKey) -> str:
    """``clean`` or ``<corruption>/<severity>``."""
    return key.name if not key.level else f"{key.name}/{key.level}"


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def landscape_entry(result: CellResult, settings: LandscapeSettings, per: dict[str, np.ndarray]) -> dict:
    """The JSON object of one landscape cell, from its per-image quantities ``per``
    (:func:`~robustbench_gcp.suites.landscape_measure.summaries` of its stored values)."""
    mean = {name: _number(float(np.mean(per[name]))) for name in STATS}
    per_eta = [{"eta": float(eta), "mean_loss": _number(float(np.mean(per["losses"][:, k]))),
                "mean_grad_change": _number(float(np.mean(per["changes"][:, k])))}
               for k, eta in enumerate(settings.etas.values())]
    return {"at": settings.at, "direction": settings.direction, "precision": settings.precision,
            "n": result.n, "per_eta": per_eta, **mean}


def _unmoved_note(result: CellResult, settings: LandscapeSettings, per: dict[str, np.ndarray]) -> list[str]:
    """A note where some images' steps changed neither their loss nor their gradient at all, their
    gradient not 0: in the cell's precision no step moved X (``--etas 1e-12:2e-12:2`` in float32),
    so their loss band, gradient change and beta-smoothness are 0 by rounding, not a smooth
    landscape."""
    moved = settings.etas.values() > 0
    losses, changes = per["losses"][:, moved], per["changes"][:, moved]
    same_loss = (per["grad_norm"] > 0) & (losses == per["loss"][:, None]).all(axis=1)
    still = same_loss & (changes == 0).all(axis=1)
    if not moved.any() or not same_loss.any():
        return []
    cell = "clean" if not result.key.level else f"{result.key.name}/{result.key.level}"
    # float64's losses are compared as stored, in float32
    where = ("in float32" if settings.precision == "float32" else
             "in float64 (the losses as stored, in float32)")
    notes = [f"landscape {cell}: for {int(still.sum())} of {len(still)} images no step (up to eta = "
             f"{settings.etas.high:g}) changed the loss or the gradient {where}: their loss band, "
             "gradient change and beta-smoothness are 0 by rounding, not smoothness; raise the steps "
             "(--etas)"]
    loss_only = same_loss & ~still  # (a random-weight MobileNetV2's gradient of norm 6e-10)
    notes += [f"landscape {cell}: for {int(loss_only.sum())} of {len(still)} images no step (up to eta = "
              f"{settings.etas.high:g}) changed the loss {where} (their loss band is 0): steps this small "
              "measure rounding more than the landscape, their gradient change and beta-smoothness too; "
              "raise the steps (--etas)"]
    return [note for note, count in zip(notes, (still.sum(), loss_only.sum())) if count]


def _flat_note(result: CellResult, settings: LandscapeSettings, per: dict[str, np.ndarray]) -> list[str]:
    """A note where some images' input gradient is exactly 0: the loss saturated in the cell's
    precision (a logit margin over about 100 in float32) or the model masks its gradient (input
    rounding). Their quantities are 0 by definition, not a smooth landscape: a cell of confident
    images read as the smoothest, unsaid (helper-257)."""
    flat = int((per["grad_norm"] == 0).sum())
    if not flat:
        return []
    cell = "clean" if not result.key.level else f"{result.key.name}/{result.key.level}"
    return [f"landscape {cell}: {flat} of {len(per['grad_norm'])} images have an input gradient of exactly 0 "
            f"in {settings.precision} (the loss saturated, or the model masks its gradient): no step moves "
            "them, and their loss band, gradient change and beta-smoothness are 0 by definition, not "
            "smoothness; the cell's means count them"]


def _entries(report: Report) -> list[tuple[str, dict]]:
    """(cell label, landscape object) of a report: the clean images', then every corruption's."""
    sections = report.sections
    out = [("clean", sections["landscape"])] if sections.get("landscape") else []
    out += [(f"{e['corruption']}/{e['severity']}", e) for e in sections.get("landscape_cells") or []]
    return out


def _g(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


@register_suite
class LandscapeSuite(Suite):
    """Loss landscape at the stem or the pixels: loss band, gradient change, beta-smoothness."""

    kind = KIND
    gradients = True
    allows_amp = False  # bfloat16 made beta-smoothness 660x float32's on demo-isqrt
    summary = "loss landscape at the stem or the pixels: loss band, gradient change, beta-smoothness"
    tests_text = ("McNemar's test on the clean images; per cell, the sign-flip test of each quantity's "
                  "mean over the images")
    long_columns = ("eta", "mean_loss", "mean_grad_change", *STATS)
    flags = (
        Flag("landscape_at", "Where the landscape is measured: stem (the stem's output, as the GCP "
             "authors; default) or pixels (the [0, 1] image).", kind="choice", choices=LANDSCAPE_AT),
        Flag("direction", "Steps along the gradient: ascent (X + eta g, the GCP authors'; default) or "
             "descent (X - eta g, Santurkar et al.).", kind="choice", choices=DIRECTIONS),
        Flag("etas", "Per-image step sizes A:B:K (K steps from A to B). Default: 0.1/256:75/256:50 at "
             "the stem (the paper's batch-mean steps over its batch of 256; a MobileNetV2's stem: "
             "0.045/96:1.5/96:50, its authors'), 0.01:1:50 at the pixels.",
             metavar="A:B:K"),
        Flag("landscape_precision", "What the model computes the landscape in: float64 (default; a "
             "float64 copy of the model) or float32 (the authors' code; 2.4-2.8x faster on a CPU, but at "
             "small steps its rounding is most of the gradient changes: beta-smoothness 20x float64's "
             "with an exact square root).", kind="choice", choices=tuple(PRECISIONS)),
        *(flag for flag in ImageNetCSuite.flags if flag.name in SHARED_FLAGS),
    )

    # -- configuration
    def config_keys(self) -> set[str]:
        return {"kind", "at", "direction", "etas", "precision", "corruptions", "severities",
                "storage_roundtrip"}

    def parse(self, check: Checker, name: str, value: Mapping, where: str) -> LandscapeSpec:
        at = check.string(value.get("at", "stem"), f"{where}.at")
        if at not in LANDSCAPE_AT:
            check.fail(f"{where}.at", f"should be one of {', '.join(LANDSCAPE_AT)}, got '{at}'")
        direction = check.string(value.get("direction", "ascent"), f"{where}.direction")
        if direction not in DIRECTIONS:
            check.fail(f"{where}.direction", f"should be one of {', '.join(DIRECTIONS)}, got '{direction}'")
        precision = check.string(value.get("precision", "float64"), f"{where}.precision")
        if precision not in PRECISIONS:
            check.fail(f"{where}.precision", f"should be one of {', '.join(PRECISIONS)}, got '{precision}'")
        etas = None
        if value.get("etas") is not None:
            try:
                etas = parse_etas(value["etas"], "etas")
            except ConfigError as error:
                check.fail(f"{where}.etas", str(error))
        corruptions = ()
        if value.get("corruptions") is not None:
            corruptions = check.names(value["corruptions"], f"{where}.corruptions", SUBSETS, "corruption")
        elif value.get("severities") is not None:  # as --severities without --corruptions
            check.fail(f"{where}.severities", "applies to corrupted images: give `corruptions` too")
        return LandscapeSpec(
            name, self.kind, at=at, direction=direction, etas=etas, precision=precision,
            corruptions=corruptions,
            severities=check.levels(value.get("severities", list(SEVERITIES)), f"{where}.severities",
                                    SEVERITIES, "severity"),
            storage_roundtrip=check.boolean(value.get("storage_roundtrip", True),
                                            f"{where}.storage_roundtrip"),
        )

    def describe(self, spec: LandscapeSpec) -> tuple[str, str]:
        etas = spec.etas or DEFAULT_ETAS[spec.at]
        steps = f"{etas.count} steps {_eta_text(etas.low)} to {_eta_text(etas.high)}"
        contents = f"at the {spec.at}, {spec.direction}, {steps}, {spec.precision}"
        if spec.etas is None and spec.at == "stem":
            contents += " (MobileNetV2: its authors' 0.045/96 to 1.5/96)"
        if not spec.corruptions:
            return contents + "; clean images", ""
        levels = "severities " + ",".join(map(str, spec.severities))
        return contents + f"; clean and {len(spec.corruptions)} corruptions", levels

    def spec_json(self, spec: LandscapeSpec) -> dict:
        etas = spec.etas or DEFAULT_ETAS[spec.at]
        return {"at": spec.at, "direction": spec.direction, "etas": etas.as_list(),
                "precision": spec.precision,
                "corruptions": list(spec.corruptions), "severities": list(spec.severities),
                "storage_roundtrip": spec.storage_roundtrip}

    # -- plan
    def corrupts(self, selection: LandscapeSelection) -> bool:
        return bool(selection.corruptions)

    def select(self, spec: LandscapeSpec, flags: Mapping[str, Any]) -> LandscapeSelection:
        at = flags.get("landscape_at") or spec.at
        direction = flags.get("direction") or spec.direction
        if flags.get("etas") is not None:
            etas = parse_etas(flags["etas"])
        else:  # the suite's own steps are for its own measurement point
            etas = spec.etas if spec.etas is not None and at == spec.at else None
        default = etas is None
        etas = etas or DEFAULT_ETAS.get(at)
        precision = flags.get("landscape_precision") or spec.precision
        settings = LandscapeSettings(at, direction, etas or DEFAULT_ETAS["stem"], precision)
        corruptions = resolve_names(flags.get("corruptions"), spec.corruptions, SUBSETS, "corruption",
                                    "--corruptions")
        if flags.get("severities") is not None and not corruptions:
            raise ConfigError("`--severities` chooses the severities of corrupted landscape cells: "
                              "name the corruptions with --corruptions")
        severities = resolve_levels(flags.get("severities"), spec.severities, "--severities", SEVERITIES)
        roundtrip = flags.get("storage_roundtrip")
        if roundtrip is not None and not corruptions:
            raise ConfigError(f"`--{'' if roundtrip else 'no-'}storage-roundtrip` applies to corrupted "
                              "landscape cells: name the corruptions with --corruptions")
        return LandscapeSelection(spec, settings=settings, corruptions=corruptions,
                                  severities=severities if corruptions else (),
                                  roundtrip=spec.storage_roundtrip if roundtrip is None else roundtrip,
                                  default_etas=default)

    def check_model(self, selection: LandscapeSelection, model: Any) -> LandscapeSelection:
        """``--landscape-at stem`` needs a model whose stem is known (checked on the meta device);
        without steps given, a MobileNetV2's are its authors' (:data:`STEM_ETAS`)."""
        if selection.settings.at != "stem":
            return selection
        from robustbench_gcp.models.stems import no_stem_reason, stem_family

        architecture = _architecture(model)
        family = stem_family(architecture)
        if family is None:
            raise ConfigError(f"`--landscape-at stem`: model '{model.label}' ({model.arch}) "
                              f"{no_stem_reason(architecture)}. Use --landscape-at pixels for any model")
        if selection.default_etas and family in STEM_ETAS:
            settings = dataclasses.replace(selection.settings, etas=STEM_ETAS[family])
            return dataclasses.replace(selection, settings=settings)
        return selection

    def notes(self, selection: LandscapeSelection, model: Any) -> list[str]:
        # (float32's rounding is said by the report, per its cells: a run's notes are those of the
        # command that ran last, helper-236)
        return exact_root_note(model, "which the gradient changes and beta-smoothness measure "
                                      "along with the landscape")

    # -- run
    def tasks(self, selection: LandscapeSelection, inputs: TaskInputs) -> list:
        tasks = super().tasks(selection, inputs)
        settings = selection.settings
        # a model of other classes than ImageNet's 1000 on its images: its cells say so (as
        # ImageNet-C's): its losses are of another task, not paired with a 1000-class model's
        dataset = label_space(get_dataset(selection.spec.dataset), inputs.num_classes)
        if inputs.clean is not None:
            variant = {**settings.variant(), **classes_mark(dataset)}
            tasks.append(LandscapeTask(cell_key("clean", "", variant), inputs.clean, settings))
        for corruption in selection.corruptions:
            for severity in selection.severities:
                made = {"source": "torch", "roundtrip": selection.roundtrip, **dataset_mark(dataset),
                        **revision_mark(corruption, "torch")}
                # seeded as the ImageNet-C cell: the same corrupted images that suite classifies
                token = imagenet_c_key(corruption, severity, made).label
                key = cell_key(corruption, str(severity), {**settings.variant(), **made})
                transform = Corrupt(corruption, severity, "torch", selection.roundtrip, dataset.preset,
                                    dataset.preset)
                tasks.append(LandscapeTask(key, inputs.corruption_base, settings, transform, token))
        return tasks

    # -- reports from the store
    def group(self, key: CellKey) -> str:
        return settings_group(key)

    def source_label(self, group: str) -> str:
        variant = json.loads(group)
        settings = LandscapeSettings.of_variant(variant)
        etas = settings.etas
        classes = f", {variant['classes']} classes" if "classes" in variant else ""
        return (f"{settings.at}, {settings.direction}, {etas.count} etas {_eta_text(etas.low)} to "
                f"{_eta_text(etas.high)}, {settings.precision}{classes}")

    def merged_groups(self, groups: dict[str, list[CellResult]],
                      classes: int | None = None) -> dict[str, list[CellResult]]:
        """A run's groups of cells stored before its cells named the model's classes (0.7.30), of
        any settings, in the group of those settings that names them, where the run's cells say
        its classes (these, or another suite's: ImageNet-C's since 0.7.11): one run is one
        model's (their numbers are the same; :meth:`latest` shows one of each)."""
        variants = {group: json.loads(group) for group in groups}
        named = {variant["classes"] for variant in variants.values() if "classes" in variant}
        named |= {classes} if classes else set()
        if len(named) != 1:  # (none: a model of ImageNet's 1000 classes, or one stored before both)
            return groups
        classes = named.pop()
        merged: dict[str, list[CellResult]] = {}
        for group, cells in groups.items():
            merged.setdefault(canonical_json({"classes": classes, **variants[group]}), []).extend(cells)
        return merged

    def latest(self, results: list[CellResult], model: str,
               agreed: Any = None) -> tuple[list[CellResult], list[str]]:
        """Per (corruption, severity), the cell stored last (never two ways of making it), of
        the newest revision of its corruption; of a cell stored before it named the model's
        classes and its marked version (:meth:`merged_groups`), one."""
        # the cells in the order they came first (the clean columns first), whichever twin is kept
        first: dict[tuple[str, str], int] = {}
        for r in results:
            first.setdefault((r.key.name, r.key.level), len(first))
        results = _one_of_twins(results)
        results, notes = newest(results, model)
        chosen: dict[tuple[str, str], CellResult] = {}
        left: list[str] = []
        for r in results:
            where = (r.key.name, r.key.level)
            if where in chosen:
                left.append(cell_label(chosen[where].key))
            chosen[where] = r
        notes += [f"{model}: landscape cells made in several ways ({', '.join(sorted(set(left)))}): only "
                  "the one stored last is shown"] if left else []
        return sorted(chosen.values(), key=lambda r: first[(r.key.name, r.key.level)]), notes

    def source_fields(self, results: Sequence[CellResult]) -> dict:
        made = [variant_of(r.key) for r in results if self.owns(r.key) and r.key.level]
        if not made:
            return {"backend": None, "storage_roundtrip": None}
        return {"backend": made[0].get("source"), "storage_roundtrip": made[0].get("roundtrip")}

    def source_description(self, report: Report) -> str | None:
        if not report.backend:  # clean images only
            return None
        trip = ", uint8 + JPEG q85 round trip" if report.storage_roundtrip else ""
        return f"generated on the fly ({report.backend} backend{trip})"

    def sections(self, results: Sequence[CellResult], normalizer: Any) -> tuple[dict, list[str]]:
        sections, notes = super().sections(results, normalizer)
        clean, cells = None, []
        for r in results:
            if not self.owns(r.key) or r.extra is None:
                continue
            settings = settings_of(r.key)
            per = summaries(r.extra, settings)  # once for the entry and the note
            notes += _unmoved_note(r, settings, per) + _flat_note(r, settings, per)
            if settings.precision == "float32" and FLOAT32_NOTE not in notes:
                notes.append(FLOAT32_NOTE)
            entry = landscape_entry(r, settings, per)
            if r.key.level:
                cells.append({"corruption": r.key.name, "severity": int(r.key.level), **entry})
            else:
                clean = entry
        return {**sections, "landscape": clean, "landscape_cells": cells}, notes

    # -- comparisons
    def aligned_cells(self, results: Sequence[CellResult]) -> set[tuple[str, ...]]:
        """Landscape cells pair by row (``loss_band fog/3``): two models' fog/3 are compared only
        when made alike (storage round trip, dataset preset, corruption revision)."""
        return {self.alignment(r.key) for r in results if self.owns(r.key)}

    def alignment(self, key: CellKey) -> tuple[str, ...]:
        # (the model's classes are in the group: a 10-class model is compared apart)
        made = {k: v for k, v in variant_of(key).items()
                if k not in settings_of(key).variant() and k != "classes"}
        return key.name, key.level, canonical_json(made)

    def alignment_text(self, alignment: tuple[str, ...]) -> str:
        name, level, made = alignment
        marks = json.loads(made)
        trip = marks.pop("roundtrip", None)
        marks.pop("source", None)  # always torch
        ways = [] if trip is None else ["with the storage round trip" if trip else "without the round trip"]
        ways += [f"{mark} {value}" for mark, value in sorted(marks.items())]  # dataset preset, revision
        return " ".join([f"{name}/{level}" if level else name, " and ".join(ways)]).strip()

    def design(self, results: Sequence[CellResult], normalizer: Any) -> Design:
        """Clean error, and per landscape cell the per-image quantities of :data:`STATS`, whose
        means are the metrics (``loss_band``; ``loss_band fog/3`` for a corrupted cell)."""
        base = super().design(results, normalizer)
        rows, values, metrics = list(base.rows), list(base.values), dict(base.metrics)
        for r in results:
            if not self.owns(r.key) or r.extra is None:
                continue
            per = summaries(r.extra, settings_of(r.key))
            suffix = "" if not r.key.level else " " + cell_label(r.key)
            for name in STATS:
                row = name + suffix
                rows.append(row)
                values.append(per[name])
                metrics[row] = lambda m, row=row: m[row]
        # each quantity's mean difference is tested (sign flips), images as units
        mean_tests = [row for row in metrics if row.partition(" ")[0] in STATS]
        return Design.of(rows, values, metrics, base.tests, proportions=base.proportions,
                         mean_tests=mean_tests)

    # -- views
    def display(self, metric: str) -> tuple[str, float, str] | None:
        stat, _, cell = metric.partition(" ")
        if stat in STATS:
            return (STATS[stat][0] + (f" {cell}" if cell else ""), 1.0, ".4g")
        return super().display(metric)

    def tables(self, report: Report) -> list[Table]:
        entries = _entries(report)
        if not entries:
            return []
        rows = [{"cell": label, "n": e["n"], **{name: e[name] for name in STATS}} for label, e in entries]
        columns = [Column("cell", justify="left"), Column("n")]
        columns += [Column(name, STATS[name][0], ".4g") for name in STATS]
        first = entries[0][1]
        steps = []
        for label, e in entries:
            for i, step in enumerate(e["per_eta"]):
                steps.append({"cell": label if i == 0 else "", "eta": step["eta"],
                              "mean_loss": step["mean_loss"], "mean_grad_change": step["mean_grad_change"]})
        step_columns = [Column("cell", justify="left"), Column("eta", "eta", ".4g"),
                        Column("mean_loss", "mean loss", ".4g"),
                        Column("mean_grad_change", "mean grad change", ".4g")]
        # how its cells were made, their precision beside the run's in the header (float32: the
        # classifier's, the clean error's), the steps and another label space's classes
        source = report.source or next((self.source_label(self.group(r.key)) for r in report.cells
                                        if self.owns(r.key)), None)
        title = (f"Loss landscape ({source})" if source else
                 f"Loss landscape at the {first['at']} ({first['direction']}, {first['precision']})")
        return [Table(f"{title}: per-image means", rows, columns),
                Table("Loss landscape: mean loss and gradient change at each step", steps, step_columns)]

    def summary_rows(self, report: Report) -> list[dict]:
        rows = super().summary_rows(report)
        entries = _entries(report)
        if entries:  # values of any size: 4 significant digits, as text
            e = entries[0][1]
            rows += [{"metric": f"landscape ({entries[0][0]}): {STATS[name][1]}", "value": _g(e[name])}
                     for name in STATS]
        return rows

    def long_rows(self, report: Report) -> list[dict]:
        rows = super().long_rows(report)
        for label, e in _entries(report):
            item = "landscape" if label == "clean" else f"landscape {label}"
            rows.append({"item": item, "level": "all", "n": e["n"], **{name: e[name] for name in STATS}})
            rows += [{"item": item, "level": "eta", "n": e["n"], **step} for step in e["per_eta"]]
        return rows

    def headline(self, report: Report) -> dict:
        out = super().headline(report)
        for label, e in _entries(report):
            suffix = "" if label == "clean" else f" {label}"
            out.update({name + suffix: e[name] for name in STATS})
        return out

    def detail_markdown(self, reports: Sequence[Report]) -> str | None:
        """The landscape figures across models: the clean images' and each corruption's (a run
        with --corruptions had its corrupted cells in the headline table only)."""
        rows = [{"model": r.model, "images": label, **{name: e[name] for name in STATS}}
                for r in reports for label, e in _entries(r)]
        if not rows:
            return None
        columns = [Column("model", justify="left"), Column("images", justify="left")] + [
            Column(n, STATS[n][0], ".4g") for n in STATS]
        return to_markdown(rows, columns, title="Loss landscape (per-image means)")

    def plots(self):
        return {"loss_vs_eta": loss_vs_eta, "grad_change_vs_eta": grad_change_vs_eta}


def _one_of_twins(results: Sequence[CellResult]) -> list[CellResult]:
    """``results`` with one of each cell stored both before it named the model's classes (0.7.30)
    and since, whose numbers are the same: the complete one (a run again may have stopped mid-way),
    else the one with more shards, else the marked one."""
    def twin(r: CellResult) -> tuple[str, ...]:
        made = {k: v for k, v in variant_of(r.key).items() if k != "classes"}
        return r.key.name, r.key.level, canonical_json(made)

    def rank(r: CellResult) -> tuple[bool, int, bool]:
        return r.complete, len(r.shards), "classes" in variant_of(r.key)

    twins = [twin(r) for r in results]
    best: dict[tuple[str, ...], CellResult] = {}
    for r, key in zip(results, twins):
        if key not in best or rank(r) > rank(best[key]):
            best[key] = r
    return [r for r, key in zip(results, twins) if best[key] is r]


def _eta_text(eta: float) -> str:
    """A step size as people give it: ``0.05``, or in 1/256 units where that is shorter (the
    stem's defaults, ``0.1/256`` to ``75/256``), or a fraction (``1/3``), else 12 significant
    digits: experiments are told apart by this text (6 digits joined 1/3 and 0.333333, 3 digits
    0.29312 and 0.29314; steps that differ past 12 digits would still be joined)."""
    text = f"{eta:g}"
    if abs(eta - round(eta, 4)) < 1e-12 and float(text) == eta:
        return text
    levels = f"{round(eta * 256, 2):g}"
    if float(levels) / 256 == eta:
        return f"{levels}/256"
    fraction = Fraction(eta).limit_denominator(1000)  # 1/3 as given
    if float(fraction) == eta:
        return f"{fraction.numerator}/{fraction.denominator}"
    return f"{eta:.12g}"  # 0.03/1000 is 3e-05, not 2.9999999999999997e-05


def _architecture(model: Any):
    """The chosen model's module without its weights: the registry's on the meta device, or a
    model you bring as built by its source (never on meta: a builder may keep what it returns,
    and the run would then get a module without values)."""
    import torch

    if model.external is not None:
        return model.external.build()
    from robustbench_gcp.models import create_model

    with torch.device("meta"):
        return create_model(model.arch)


def _curves(report: Report, column: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per landscape cell of a report: etas, mean, 10th and 90th percentile over images of the
    stored ``losses`` or ``changes``."""
    out = {}
    for r in report.cells:
        if r.key.kind != KIND or r.extra is None:
            continue
        settings = settings_of(r.key)
        values = summaries(r.extra, settings)[column]
        low, high = np.percentile(values, [10, 90], axis=0)
        out[cell_label(r.key)] = (settings.etas.values(), values.mean(axis=0), low, high)
    return out


def _against_eta(reports: Sequence[Report], path: Path, column: str, ylabel: str, title: str,
                 heading: str | None) -> Path | None:
    from robustbench_gcp.reports import figures

    curves = [(r, _curves(r, column)) for r in reports]
    curves = [(r, c) for r, c in curves if c]
    if not curves:
        return None
    first = next(e for _, e in _entries(curves[0][0]))
    if first["direction"] == "descent":  # X - eta g: steps against the gradient
        ylabel, title = ylabel.replace("+", "-"), title.replace("along", "against")
    plt = figures.pyplot()
    cells = list(dict.fromkeys(label for _, c in curves for label in c))
    cols = min(4, len(cells))
    rows = math.ceil(len(cells) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols + 0.6, 3.4 * rows + 0.6), squeeze=False)
    for ax, cell in zip(axes.flat, cells):
        for i, (_, c) in enumerate(curves):  # a model keeps its colour in every panel
            if cell not in c:
                continue
            etas, mean, low, high = c[cell]
            color = figures.model_color(i, len(curves))
            ax.plot(etas, mean, marker=figures.model_marker(i), markersize=2.5, color=color)
            ax.fill_between(etas, low, high, color=color, alpha=0.2, linewidth=0)
        ax.set_title(cell.replace("_", " "), fontsize=10)
        ax.set_xlabel("step size eta (per image)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(cells):]:
        ax.set_visible(False)
    heading = heading or curves[0][0].heading
    where = f" (at the {first['at']}, {first['direction']})"
    said = f"({first['at']}, {first['direction']}" in heading  # the run's heading says where already
    figures.title_and_layout(fig, f"{heading}: {title}{'' if said else where}")
    # one legend beside the panels (a legend in each covered its lines and bands, and with long
    # names ran over the next panel); labels given: matplotlib leaves out one starting with "_"
    figures.legend_beside(fig, figures.model_handles(len(curves)), [r.model for r, _ in curves],
                  title="model (band: 10-90 % of images)", title_fontsize=8)
    return figures.save(fig, path)


def loss_vs_eta(reports: Sequence[Report], path: Path, heading: str | None = None) -> Path | None:
    """Mean loss L(X + eta g) against eta, a line per model, the 10-90 % band over images shaded."""
    return _against_eta(reports, path, "losses", "loss L(X + eta g)", "loss along the gradient", heading)


def grad_change_vs_eta(reports: Sequence[Report], path: Path, heading: str | None = None) -> Path | None:
    """Mean gradient change ||grad L(X + eta g) - g|| against eta, with the 10-90 % band."""
    return _against_eta(reports, path, "changes", "||grad L(X + eta g) - g||",
                        "gradient change along the gradient", heading)
