"""The ImageNet-C suite: cells (corruption, severity), computed on the fly or read from the
released files, summarized as errors, CE, mCE and relative mCE (AlexNet = 100)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from corruptions import SEVERITIES, SUBSETS, list_corruptions
from robustbench_gcp.data.folders import corrupted_cell_dir
from robustbench_gcp.engine.runner import ImageSource
from robustbench_gcp.errors import ConfigError, UnknownNameError
from robustbench_gcp.metrics import Baseline, ce, corruption_errors, mean_corruption_error, relative_ce
from robustbench_gcp.reports.tables import Column, to_markdown
from robustbench_gcp.stats import Design
from robustbench_gcp.store import CellKey, CellResult, canonical_json
from robustbench_gcp.suites.base import (
    CLEAN,
    Flag,
    LevelledSuite,
    Selection,
    Suite,
    SuiteSpec,
    Table,
    TaskInputs,
    check_released,
    classification_entry,
    clean_entry,
    pct,
    per_image_errors,
    register_suite,
    resolve_levels,
    resolve_names,
)
from robustbench_gcp.suites.tasks import ClassifyTask

if TYPE_CHECKING:
    from robustbench_gcp.data.folders import ImageList
    from robustbench_gcp.reports.report_type import Report
    from robustbench_gcp.yaml_checks import Checker

BACKENDS = ("torch", "reference")


@dataclass(frozen=True)
class ImageNetCSpec(SuiteSpec):
    corruptions: tuple[str, ...] = ()
    severities: tuple[int, ...] = ()
    storage_roundtrip: bool = True


@dataclass(frozen=True)
class ImageNetCSelection(Selection):
    corruptions: tuple[str, ...] = ()
    severities: tuple[int, ...] = ()
    roundtrip: bool = True
    backend: str = BACKENDS[0]


@dataclass(frozen=True)
class Corrupt:
    """The transform of an on-the-fly ImageNet-C cell.

    ``backend="torch"`` runs :func:`corruptions.corrupt` on the device;
    ``"reference"`` runs imagecorruptions on CPU (slow; for validation).
    ``roundtrip`` adds what the released files went through: uint8 truncation
    and a JPEG quality-85 round trip.
    """

    corruption: str
    severity: int
    backend: str = "torch"
    roundtrip: bool = True

    def __call__(self, images: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        if self.backend == "reference":
            from corruptions.reference import corrupt_reference as apply
        else:
            from corruptions import corrupt as apply
        out = apply(images, self.corruption, self.severity, seed=list(seeds))
        if self.roundtrip:
            from corruptions import storage_roundtrip

            out = storage_roundtrip(out)
        return out


def cell_key(corruption: str, severity: int, variant: dict) -> CellKey:
    return CellKey("imagenet-c", corruption, str(severity), canonical_json(variant))


def summarize(results: Sequence[CellResult], *, benchmark: Sequence[str],
              baseline: Baseline | None) -> tuple[dict, list[str]]:
    """The ``clean``, ``cells``, ``per_corruption`` and ``metrics`` sections, and notes.

    ``results`` are the stored cells of the plan (clean first if present).
    """
    clean = clean_entry(results)
    cells, errors = [], {}
    for result in results:
        if result.key.kind != "imagenet-c":
            continue
        entry = classification_entry(result)
        severity = int(result.key.level)
        cells.append({"corruption": result.key.name, "severity": severity, **entry})
        errors[(result.key.name, severity)] = entry["top1_error"]
    clean_error = clean["top1_error"] if clean else None
    summaries = corruption_errors(errors, clean_error, baseline)
    metrics = mean_corruption_error(summaries, benchmark)
    notes = []
    if metrics["missing"] and metrics["corruptions"]:
        notes.append(
            f"mCE averages {len(metrics['corruptions'])} of the {len(benchmark)} benchmark "
            f"corruptions; missing: {', '.join(metrics['missing'])}"
        )
    if baseline is None and cells:
        notes.append("CE, mCE and relative mCE are empty: the baseline named is not an ImageNet-C "
                     "baseline of benchmarks.yaml (choose one with --baseline, e.g. alexnet)")
    if clean_error is None and cells:
        notes.append("relative mCE needs the clean error: give --data with the clean images")
    severities = sorted({c["severity"] for c in cells})
    if cells and severities != list(SEVERITIES):
        notes.append(
            "CE sums over severities " + ",".join(map(str, severities))
            + " only, in both the model's errors and the baseline's"
        )
    sections = {
        "clean": clean,
        "cells": cells,
        "per_corruption": [
            {
                "corruption": s.corruption,
                "severities": list(s.severities),
                "mean_error": s.mean_error,
                "CE": s.CE,
                "relative_CE": s.relative_CE,
            }
            for s in summaries
        ],
        "metrics": {
            "mCE": metrics["mCE"],
            "relative_mCE": metrics["relative_mCE"],
            "mean_error": metrics["mean_error"],
            "baseline": baseline.name if baseline else None,
            "corruptions": metrics["corruptions"],
            "missing": metrics["missing"],
        },
    }
    return sections, notes


@register_suite
class ImageNetCSuite(LevelledSuite):
    """ImageNet-C: top-1 error per (corruption, severity), CE and mCE."""

    kind = "imagenet-c"
    released_name = "ImageNet-C"
    summary = "corruptions x severities: errors, CE, mCE, relative mCE"
    long_columns = ("CE", "relative_CE")
    metric_display = {**Suite.metric_display, "mCE": ("mCE", 1.0, ".1f"),
                      "relative_mCE": ("rel. mCE", 1.0, ".1f"), "mean_error": ("mean err %", 100.0, ".2f")}
    flags = (
        *LevelledSuite.flags,
        Flag("corruptions", "Corruptions to run (names or subsets: benchmark, extra, all, noise, "
             "blur, weather, digital). Default: the suite's.", metavar="A,B"),
        Flag("severities", "Severities to run (1..5). Default: the suite's.", metavar="1,3",
             kind="int_list"),
        Flag("backend", "torch: corruptions computed on the device (default); reference: "
             "imagecorruptions on CPU.", kind="choice", choices=BACKENDS),
        Flag("storage_roundtrip", "uint8 truncation + JPEG q85 after corrupting, as the released "
             "files. Default: the suite's (on).", kind="switch"),
    )

    # -- configuration
    def config_keys(self) -> set[str]:
        return {"kind", "corruptions", "severities", "storage_roundtrip"}

    def parse(self, check: Checker, name: str, value: Mapping, where: str) -> ImageNetCSpec:
        return ImageNetCSpec(
            name,
            self.kind,
            corruptions=check.names(value.get("corruptions", "benchmark"), f"{where}.corruptions",
                                    SUBSETS, "corruption"),
            severities=check.levels(value.get("severities", list(SEVERITIES)), f"{where}.severities",
                                    SEVERITIES, "severity"),
            storage_roundtrip=check.boolean(value.get("storage_roundtrip", True),
                                            f"{where}.storage_roundtrip"),
        )

    def describe(self, spec: ImageNetCSpec) -> tuple[str, str]:
        levels = "severities " + ",".join(map(str, spec.severities))
        if spec.storage_roundtrip:
            levels += "; JPEG q85 round trip"
        return f"{len(spec.corruptions)} corruptions: {', '.join(spec.corruptions)}", levels

    def spec_json(self, spec: ImageNetCSpec) -> dict:
        return {"corruptions": list(spec.corruptions), "severities": list(spec.severities),
                "storage_roundtrip": spec.storage_roundtrip}

    # -- plan
    def select(self, spec: ImageNetCSpec, flags: Mapping[str, Any]) -> ImageNetCSelection:
        roundtrip = flags.get("storage_roundtrip")
        backend = flags.get("backend") or BACKENDS[0]
        if backend not in BACKENDS:
            raise UnknownNameError("backend", backend, BACKENDS)
        released = self.released(flags)
        if released is not None and (flags.get("backend") or roundtrip is not None):
            flag = "--backend" if flags.get("backend") else "--storage-roundtrip"
            raise ConfigError(f"`{flag}` applies to corruptions computed on the fly, not to the released "
                              f"files of --corrupted-dir {released}")
        return ImageNetCSelection(
            spec,
            released=released,
            corruptions=resolve_names(flags.get("corruptions"), spec.corruptions, SUBSETS, "corruption",
                                      "--corruptions"),
            severities=resolve_levels(flags.get("severities"), spec.severities, "--severities", SEVERITIES),
            roundtrip=spec.storage_roundtrip if roundtrip is None else roundtrip,
            backend=backend,
        )

    def check_baseline(self, name: str, baselines, store_path: Path) -> None:
        if name not in baselines:  # the mCE normalizer: benchmarks.yaml's
            raise UnknownNameError("baseline", name, baselines)

    def check_inputs(self, selection: ImageNetCSelection) -> None:
        root = selection.released
        if root is not None:
            check_released(root, [corrupted_cell_dir(root, c, s)
                                  for c in selection.corruptions for s in selection.severities],
                           "--corruptions / --severities")

    def image_list(self, selection: ImageNetCSelection) -> ImageList | None:
        from robustbench_gcp.data.folders import scan_imagenet_c

        if selection.released is None:
            return None
        return scan_imagenet_c(selection.released, selection.corruptions[0], selection.severities[0])

    # -- run
    def tasks(self, selection: ImageNetCSelection, inputs: TaskInputs) -> list[ClassifyTask]:
        """The clean cell (when clean data is given), then every (corruption, severity) in
        report order; generated corruptions start from the protocol's base images
        (``inputs.corruption_base``), the clean cell from the model's own preprocessing."""
        tasks = super().tasks(selection, inputs)
        for corruption in selection.corruptions:
            for severity in selection.severities:
                if selection.released is not None:
                    source = ImageSource(corrupted_cell_dir(selection.released, corruption, severity),
                                         resize_size=None, released=True)
                    tasks.append(ClassifyTask(cell_key(corruption, severity, {"source": "released"}),
                                              source))
                else:
                    variant = {"source": selection.backend, "roundtrip": selection.roundtrip}
                    tasks.append(ClassifyTask(
                        cell_key(corruption, severity, variant), inputs.corruption_base,
                        Corrupt(corruption, severity, selection.backend, selection.roundtrip)))
        return tasks

    # -- reports
    def normalizer(self, name: str, baselines: Mapping[str, Baseline], store: Any,
                   keys: Sequence[CellKey]) -> Baseline | None:
        return baselines.get(name)

    def sections(self, results: Sequence[CellResult], normalizer: Baseline | None) -> tuple[dict, list[str]]:
        return summarize(results, benchmark=list_corruptions("benchmark"), baseline=normalizer)

    # -- comparisons
    def design(self, results: Sequence[CellResult], normalizer: Baseline | None) -> Design:
        rows, values, tests = [], [], {}
        cells: dict[str, list[int]] = {}
        for r in results:
            if r.key == CLEAN:
                rows.append("clean")
                tests["clean"] = r.correct
            elif self.owns(r.key):
                rows.append(f"{r.key.name}/{r.key.level}")
                cells.setdefault(r.key.name, []).append(int(r.key.level))
                tests[r.key.name] = np.concatenate([tests.get(r.key.name, np.zeros(0, bool)), r.correct])
            else:
                continue
            values.append(per_image_errors(r))
        metrics = {}
        if "clean" in rows:
            metrics["clean_error"] = lambda m: m["clean"]
        baseline = normalizer
        chosen = [c for c in list_corruptions("benchmark") if c in cells]
        if baseline is not None and chosen and all(c in baseline.imagenet_c for c in chosen):
            def base(c):
                return [baseline.error(c, s) for s in cells[c]]

            def errors(m, c):
                return [m[f"{c}/{s}"] for s in cells[c]]

            metrics["mCE"] = lambda m: sum(_nan(ce(errors(m, c), base(c))) for c in chosen) / len(chosen)
            if "clean" in rows and baseline.clean_error is not None:
                metrics["relative_mCE"] = lambda m: sum(
                    _nan(relative_ce(errors(m, c), m["clean"], base(c), baseline.clean_error))
                    for c in chosen) / len(chosen)
        return Design.of(rows, values, metrics, tests, percent={"mCE", "relative_mCE"})

    # -- views
    def tables(self, report: Report) -> list[Table]:
        if not report.sections.get("cells"):
            return []
        rows, columns = corruption_rows(report.sections)
        return [Table("ImageNet-C: top-1 error by severity", rows, columns)]

    def summary_rows(self, report: Report) -> list[dict]:
        rows = super().summary_rows(report)
        if report.sections.get("cells"):
            metrics = report.sections.get("metrics") or {}
            base = metrics.get("baseline") or "none"
            rows.append({"metric": f"mCE (%, {base} = 100)", "value": metrics.get("mCE")})
            rows.append({"metric": f"relative mCE (%, {base} = 100)", "value": metrics.get("relative_mCE")})
            rows.append({"metric": "mean corruption error, unnormalized (%)",
                         "value": pct(metrics.get("mean_error"))})
        return rows

    def long_rows(self, report: Report) -> list[dict]:
        rows = super().long_rows(report)
        sections = report.sections
        for cell in sections.get("cells", []):
            rows.append({"item": cell["corruption"], "level": cell["severity"], "n": cell["n"],
                         "top1_error": cell["top1_error"], "top5_error": cell["top5_error"]})
        for entry in sections.get("per_corruption", []):
            rows.append({"item": entry["corruption"], "level": "all", "top1_error": entry["mean_error"],
                         "CE": entry["CE"], "relative_CE": entry["relative_CE"]})
        if sections.get("cells"):
            metrics = sections.get("metrics") or {}
            rows.append({"item": "mean (benchmark)", "level": "all", "top1_error": metrics.get("mean_error"),
                         "CE": metrics.get("mCE"), "relative_CE": metrics.get("relative_mCE")})
        return rows

    def headline(self, report: Report) -> dict:
        out = super().headline(report)
        if report.sections.get("cells"):
            metrics = report.sections.get("metrics") or {}
            out.update({k: metrics.get(k) for k in ("mCE", "relative_mCE", "mean_error")})
        return out

    def detail_markdown(self, reports: Sequence[Report]) -> str | None:
        """CE per corruption across models, as in the papers' tables (AlexNet = 100)."""
        reports = [r for r in reports if r.sections.get("per_corruption")]
        if not reports:
            return None
        corruptions = [e["corruption"] for e in reports[0].sections["per_corruption"]]
        rows = []
        for r in reports:
            ce_of = {e["corruption"]: e["CE"] for e in r.sections["per_corruption"]}
            rows.append({"model": r.model, "mCE": r.sections["metrics"].get("mCE"),
                         **{c: ce_of.get(c) for c in corruptions}})
        columns = [Column("model", justify="left"), Column("mCE", fmt=".1f")]
        columns += [Column(c, c.replace("_", " "), ".1f") for c in corruptions]
        return to_markdown(rows, columns, title=f"{reports[0].suite}: CE per corruption (AlexNet = 100)")

    def plots(self):
        return {"error_vs_severity": error_vs_severity, "ce_per_corruption": ce_bars}


def _nan(value):
    """None (an undefined relative CE) as NaN, so the bootstrap drops such draws."""
    return math.nan if value is None else value


def corruption_rows(sections: Mapping) -> tuple[list[dict], list[Column]]:
    """One row per corruption: top-1 error (%) per severity, mean, CE, relative CE."""
    severities = sorted({c["severity"] for c in sections["cells"]})
    by_cell = {(c["corruption"], c["severity"]): c for c in sections["cells"]}
    rows = []
    for entry in sections["per_corruption"]:
        row = {"corruption": entry["corruption"]}
        for s in severities:
            cell = by_cell.get((entry["corruption"], s))
            row[f"s{s}"] = pct(cell["top1_error"]) if cell else None
        row["mean"] = pct(entry["mean_error"])
        row["CE"] = entry["CE"]
        row["relative_CE"] = entry["relative_CE"]
        rows.append(row)
    columns = [Column("corruption", justify="left")]
    columns += [Column(f"s{s}", f"err s{s} %", ".1f") for s in severities]
    columns += [Column("mean", "mean err %", ".2f"), Column("CE", "CE", ".1f"),
                Column("relative_CE", "rel. CE", ".1f")]
    return rows, columns


def error_vs_severity(reports: Sequence[Report], path: Path) -> Path | None:
    """One panel per corruption: top-1 error (%) against severity, a line per model."""
    from robustbench_gcp.reports.figures import pyplot, save

    reports = [r for r in reports if r.sections.get("cells")]
    if not reports:
        return None
    plt = pyplot()
    corruptions = list(dict.fromkeys(c["corruption"] for r in reports for c in r.sections["cells"]))
    cols = min(5, len(corruptions))
    rows = math.ceil(len(corruptions) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 2.6 * rows + 0.8), squeeze=False,
                             sharey=True)
    for index, (ax, corruption) in enumerate(zip(axes.flat, corruptions)):
        for i, r in enumerate(reports):
            cells = sorted((c["severity"], c["top1_error"]) for c in r.sections["cells"]
                           if c["corruption"] == corruption)
            clean = r.sections["clean"]["top1_error"] if r.sections.get("clean") else None
            xs = ([0] if clean is not None else []) + [s for s, _ in cells]
            ys = ([clean] if clean is not None else []) + [e for _, e in cells]
            ax.plot(xs, [100 * y for y in ys], marker="o", markersize=3, label=r.model, color=f"C{i % 10}")
        ax.set_title(corruption.replace("_", " "), fontsize=9)
        if index >= len(corruptions) - cols:  # bottom row of each column
            ax.set_xlabel("severity (0 = clean)", fontsize=8)
        if index % cols == 0:
            ax.set_ylabel("top-1 error (%)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(corruptions):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=8, title="model")
    fig.suptitle(f"{reports[0].suite}: top-1 error against severity")
    fig.tight_layout(rect=(0, 0, 0.92, 0.95))
    return save(fig, path)


def ce_bars(reports: Sequence[Report], path: Path) -> Path | None:
    """CE per corruption as grouped bars, a bar per model (AlexNet = 100)."""
    from robustbench_gcp.reports.figures import grouped_bars, pyplot, save

    reports = [r for r in reports if r.sections.get("per_corruption")
               and any(e["CE"] is not None for e in r.sections["per_corruption"])]
    if not reports:
        return None
    plt = pyplot()
    corruptions = list(dict.fromkeys(e["corruption"] for r in reports for e in r.sections["per_corruption"]))
    series = {}
    for r in reports:
        ce_of = {e["corruption"]: e["CE"] for e in r.sections["per_corruption"]}
        mce = r.sections["metrics"].get("mCE")
        label = r.model + (f" (mCE {mce:.1f})" if mce is not None else "")
        series[label] = [ce_of.get(c) for c in corruptions]
    fig, ax = plt.subplots(figsize=(max(7, 0.6 * len(corruptions) * max(1, len(series)) / 1.5), 4.5))
    grouped_bars(ax, corruptions, series)
    ax.axhline(100, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel("corruption")
    ax.set_ylabel(f"CE (%, {reports[0].sections['metrics'].get('baseline') or 'baseline'} = 100)")
    ax.set_title(f"{reports[0].suite}: corruption error per corruption")
    fig.tight_layout()
    return save(fig, path)

