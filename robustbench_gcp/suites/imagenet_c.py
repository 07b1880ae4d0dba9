"""The ImageNet-C suite: cells (corruption, severity), computed on the fly or read from the
released files, summarized as errors, CE, mCE and relative mCE (AlexNet = 100)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from corruptions import PRESETS, SEVERITIES, SUBSETS, list_corruptions
from robustbench_gcp.data.datasets import (
    DatasetInfo,
    check_released_size,
    classes_mark,
    dataset_mark,
    get_dataset,
    label_space,
)
from robustbench_gcp.data.folders import check_released, corrupted_cell_dir
from robustbench_gcp.engine.runner import ImageSource, check_released_sources
from robustbench_gcp.errors import ConfigError, UnknownNameError
from robustbench_gcp.metrics import DEFAULT_BASELINE, Baseline
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
    column_names,
    coverage_note,
    dataset_of,
    pct,
    per_image_errors,
    report_dataset,
    variant_dataset,
    variant_of,
)
from robustbench_gcp.suites.flag_values import resolve_levels, resolve_names
from robustbench_gcp.suites.imagenet_c_summary import corruption_rows, report_order, summarize
from robustbench_gcp.suites.kinds import register_suite
from robustbench_gcp.suites.revisions import newest, revision_mark
from robustbench_gcp.suites.severities import covered_severities
from robustbench_gcp.suites.stored_baselines import (
    add_joint_rows,
    check_stored_baseline,
    hundred,
    percent_of,
    stored_baseline,
    stored_names,
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
    preset: str = "imagenet"

    @property
    def dataset(self) -> DatasetInfo:
        return get_dataset(self.spec.dataset)

    def variant(self) -> dict:
        """What a cell's variant adds for another dataset than ImageNet (nothing for ImageNet,
        so stores made before datasets existed keep their cells): the dataset, and the preset
        when it was forced to another one than the dataset's."""
        extra = dataset_mark(self.dataset)
        if self.preset != self.dataset.preset:
            extra["preset"] = self.preset
        return extra


@dataclass(frozen=True)
class Corrupt:
    """The transform of an on-the-fly ImageNet-C cell.

    ``backend="torch"`` runs :func:`corruptions.corrupt` on the device;
    ``"reference"`` runs imagecorruptions on CPU (slow; for validation), the original
    ImageNet-C code where imagecorruptions departs from it.
    ``roundtrip`` adds what the released files went through: uint8 truncation
    and, for ImageNet-C and Tiny-ImageNet-C, a JPEG quality-85 round trip
    (``storage``: the dataset's preset). ``preset``: whose corruption parameters.
    """

    corruption: str
    severity: int
    backend: str = "torch"
    roundtrip: bool = True
    preset: str = "imagenet"
    storage: str = "imagenet"

    def __call__(self, images: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        if self.backend == "reference":  # the original algorithms where imagecorruptions differs
            from corruptions.reference import corrupt_reference

            out = corrupt_reference(images, self.corruption, self.severity, seed=list(seeds),
                                    preset=self.preset, follow_original=True)
        else:
            from corruptions import corrupt

            out = corrupt(images, self.corruption, self.severity, seed=list(seeds), preset=self.preset,
                          check_values=False)  # decoded uint8 / 255: no device sync per batch
        if self.roundtrip:
            from corruptions import storage_roundtrip
            from corruptions.storage import STORAGE_QUALITY

            out = storage_roundtrip(out, quality=STORAGE_QUALITY[self.storage], check_values=False)
        return out


def cell_key(corruption: str, severity: int, variant: dict) -> CellKey:
    return CellKey("imagenet-c", corruption, str(severity), canonical_json(variant))


@register_suite
class ImageNetCSuite(LevelledSuite):
    """ImageNet-C: top-1 error per (corruption, severity), CE and mCE."""

    kind = "imagenet-c"
    summary = "corruptions x severities: errors, CE, mCE, relative mCE"
    tests_text = ("McNemar's test on the clean images; per corruption, the sign test on the images' "
                  "numbers of correct severities")
    # severities: what a mean row ("all") covers, space-separated, where the store holds other
    # severities too (uneven ones are cut to those every benchmark corruption has)
    long_columns = ("CE", "relative_CE", "severities")
    metric_display = {**Suite.metric_display, "mCE": ("mCE", 1.0, ".1f"),
                      "relative_mCE": ("rel. mCE", 1.0, ".1f"), "mean_error": ("mean err %", 100.0, ".2f"),
                      "mean_accuracy": ("mean acc %", 100.0, ".2f")}
    flags = (
        *LevelledSuite.flags,
        Flag("corruptions", "Corruptions to run (names or subsets: benchmark, extra, all, noise, "
             "blur, weather, digital). Default: the suite's.", metavar="A,B", kind="list"),
        Flag("severities", "Severities to run (1..5). Default: the suite's.", metavar="1,3",
             kind="int_list"),
        Flag("backend", "torch: corruptions computed on the device (default); reference: "
             "imagecorruptions on CPU (the original code for elastic_transform, frost, pixelate, snow).",
             kind="choice", choices=BACKENDS),
        Flag("storage_roundtrip", "uint8 truncation (+ JPEG q85 for ImageNet-C, Tiny-ImageNet-C) after "
             "corrupting, as the released files. Default: the suite's (on).", kind="switch"),
        Flag("preset", "Corruption parameters to use whatever the dataset: imagenet (224 px), cifar "
             "(32 px), tinyimagenet (64 px). Default: the dataset's.", kind="choice", choices=PRESETS),
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
        from corruptions.storage import STORAGE_QUALITY

        levels = "severities " + ",".join(map(str, spec.severities))
        if spec.storage_roundtrip:
            quality = STORAGE_QUALITY[get_dataset(spec.dataset).preset]
            levels += f"; JPEG q{quality} round trip" if quality else "; uint8 round trip"
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
        dataset = get_dataset(spec.dataset)
        released = self.released(flags, dataset)
        if released is not None and (flags.get("backend") or roundtrip is not None):
            flag = ("--backend" if flags.get("backend") else
                    "--storage-roundtrip" if roundtrip else "--no-storage-roundtrip")
            raise ConfigError(f"`{flag}` applies to corruptions computed on the fly, not to the released "
                              f"files of --corrupted-dir {released}")
        if released is not None and flags.get("preset"):
            raise ConfigError(f"`--preset` applies to corruptions computed on the fly, not to the released "
                              f"files of --corrupted-dir {released}")
        return ImageNetCSelection(
            spec,
            preset=flags.get("preset") or dataset.preset,
            released=released,
            corruptions=resolve_names(flags.get("corruptions"), spec.corruptions, SUBSETS, "corruption",
                                      "--corruptions"),
            severities=resolve_levels(flags.get("severities"), spec.severities, "--severities", SEVERITIES),
            roundtrip=spec.storage_roundtrip if roundtrip is None else roundtrip,
            backend=backend,
        )

    def check_baseline(self, name: str, baselines, store_path: Path) -> None:
        """benchmarks.yaml's (ImageNet), or stored with ``gcp-robust baseline`` (the others'). The
        default may be missing from a config of your own: models of other classes and the small
        datasets do without it, and ImageNet's 1000 classes say so (:meth:`check_normalizers`)."""
        check_stored_baseline(name, baselines, store_path)

    def check_normalizers(self, names, baselines, selection: ImageNetCSelection, store_path,
                          own_classes: bool) -> None:
        """ImageNet's CE divides by benchmarks.yaml's errors: without one, the mCE came out empty.
        Elsewhere (CIFAR, Tiny-ImageNet, a model of other classes) only a stored run normalizes: a
        name of benchmarks.yaml's alone was dropped without a word (the default aside)."""
        corrupted = get_dataset(selection.dataset.name, preset=selection.preset)  # its title names a preset
        if not (own_classes and corrupted.alexnet_normalized):
            tables = [name for name in names if name in baselines]
            if len(tables) == len(names) and names != [DEFAULT_BASELINE] \
                    and stored_names(names, store_path) == set():
                task = ("a model of other classes than ImageNet's 1000" if not own_classes
                        else f"{corrupted.title} images")
                raise ConfigError(f"`--baseline {','.join(names)}`: {' and '.join(tables)} "
                                  f"{'is a table' if len(tables) == 1 else 'are tables'} of published "
                                  f"ImageNet-C errors (the configuration's `baselines:`), which normalize "
                                  f"no error of {task}: "
                                  "store a baseline of this task with `gcp-robust baseline --name NAME`, "
                                  "then --baseline NAME")
            return
        if not set(names) & set(baselines):
            if DEFAULT_BASELINE in names and DEFAULT_BASELINE not in baselines:
                raise ConfigError(f"`--baseline {DEFAULT_BASELINE}` (the default) is not among this config's "
                                  "baselines, and ImageNet-C on ImageNet images needs published errors to "
                                  "divide by: add its baselines entry back (the shipped benchmarks.yaml's), "
                                  "or give --baseline NAME of one it has")
            raise ConfigError(f"`--baseline {','.join(names)}` cannot normalize ImageNet-C on ImageNet "
                              "images: benchmarks.yaml's published errors do (e.g. alexnet); a baseline "
                              "stored with `gcp-robust baseline` normalizes CIFAR-C, Tiny-ImageNet-C and "
                              "models of other classes than ImageNet's 1000")

    def check_inputs(self, selection: ImageNetCSelection) -> None:
        root = selection.released
        if root is None:
            return
        if selection.dataset.preset == "cifar":  # CIFAR-10/100-C: <root>/<corruption>.npy
            from robustbench_gcp.data.array_files import check_released_npy

            check_released_npy(root, selection.corruptions, selection.dataset.released,
                               selection.dataset.image_size)
            return
        check_released(root, [corrupted_cell_dir(root, c, s)
                              for c in selection.corruptions for s in selection.severities],
                       "--corruptions / --severities")
        check_released_size(corrupted_cell_dir(root, selection.corruptions[0], selection.severities[0]),
                             selection.dataset)

    def image_list(self, selection: ImageNetCSelection) -> ImageList | None:
        from robustbench_gcp.data.folders import scan_imagenet_c

        if selection.released is None:
            return None
        first = (selection.released, selection.corruptions[0], selection.severities[0])
        if selection.dataset.preset == "cifar":
            from robustbench_gcp.data.array_files import scan_cifar_c

            return scan_cifar_c(selection.released, selection.corruptions[0], selection.dataset.name)
        if selection.dataset.name == "tinyimagenet":
            from robustbench_gcp.data.tiny_imagenet import scan_tiny_imagenet_c

            return scan_tiny_imagenet_c(*first)
        return scan_imagenet_c(*first)

    def check_data(self, selection: ImageNetCSelection, images: ImageList) -> None:
        """CIFAR-10/100-C rows are the test set's, in its order: ``--data`` must be that test set
        (its python batches, its labels those of labels.npy), or a row would be another image's,
        or another severity's.

        Raises:
            DataError: a folder of images, or another number of images or other labels.
        """
        if selection.released is None or selection.dataset.preset != "cifar":
            return
        from robustbench_gcp.data.array_files import check_test_set, scan_cifar_c
        from robustbench_gcp.errors import DataError

        name = selection.dataset.released
        rows = scan_cifar_c(selection.released)
        check_test_set(images, name, len(rows), "per severity (labels.npy)")
        differ = next((i for i, (a, b) in enumerate(zip(images.labels, rows.labels)) if a != b), None)
        if differ is not None:
            raise DataError(f"--data's labels differ from {name}'s labels.npy (first at image {differ}: "
                            f"{images.labels[differ]} and {rows.labels[differ]}): another test set?")

    def check_files(self, selection: ImageNetCSelection, images: ImageList, *, data: bool,
                    whole: bool) -> None:
        if selection.released is not None and selection.dataset.preset != "cifar":
            check_released_sources([self._released_source(selection, c, s, 0) for c in selection.corruptions
                                    for s in selection.severities], images, data=data, whole=whole)

    def _released_source(self, selection: ImageNetCSelection, corruption: str, severity: int,
                         n_images: int) -> ImageSource:
        """Where a released cell's images are: a CIFAR-C .npy file's severity rows (``n_images``
        per severity), or a folder."""
        size = selection.dataset.image_size
        if selection.dataset.preset == "cifar":
            from robustbench_gcp.data.array_files import released_npy, severity_rows

            return ImageSource(released_npy(selection.released, corruption), resize_size=None,
                               crop_size=size, released=True, reader="npy",
                               row_offset=severity_rows(n_images, severity).start)
        return ImageSource(corrupted_cell_dir(selection.released, corruption, severity),
                           resize_size=None, crop_size=selection.dataset.released_size, released=True,
                           exact=True)  # the released files are all 224 (64) px: another is no such file

    # -- run
    def tasks(self, selection: ImageNetCSelection, inputs: TaskInputs) -> list[ClassifyTask]:
        """The clean cell (when clean data is given), then every (corruption, severity) in
        report order; generated corruptions start from the protocol's base images
        (``inputs.corruption_base``), the clean cell from the model's own preprocessing."""
        tasks = super().tasks(selection, inputs)
        n_images = 0  # images per severity of the released CIFAR-C files, from their headers
        if selection.released is not None and selection.dataset.preset == "cifar":
            from robustbench_gcp.data.array_files import check_released_npy

            n_images = check_released_npy(selection.released, selection.corruptions)
        # a model of other classes than ImageNet's 1000 on its images: its cells say so (AlexNet's
        # errors normalize none of them: reports read the label space back from the cells)
        classes = classes_mark(label_space(selection.dataset, inputs.num_classes))
        for corruption in selection.corruptions:
            for severity in selection.severities:
                if selection.released is not None:
                    source = self._released_source(selection, corruption, severity, n_images)
                    variant = {"source": "released", **selection.variant(), **classes}
                    tasks.append(ClassifyTask(cell_key(corruption, severity, variant), source))
                else:
                    variant = {"source": selection.backend, "roundtrip": selection.roundtrip,
                               **selection.variant(), **classes,
                               **revision_mark(corruption, selection.backend)}
                    tasks.append(ClassifyTask(
                        cell_key(corruption, severity, variant), inputs.corruption_base,
                        Corrupt(corruption, severity, selection.backend, selection.roundtrip,
                                selection.preset, selection.dataset.preset)))
        return tasks

    # -- reports
    def latest(self, results: list[CellResult], model: str,
               agreed: Any = None) -> tuple[list[CellResult], list[str]]:
        """Of a cell stored in several revisions of its corruption, the newest."""
        return newest(results, model)

    def normalizer(self, name: str, baselines: Mapping[str, Baseline], store: Any,
                   keys: Sequence[CellKey]) -> Baseline | None:
        """ImageNet-C: benchmarks.yaml's baseline ``name`` (AlexNet's published errors). Other
        datasets: the run stored as baseline ``name`` (``gcp-robust baseline``), its errors on
        the same cells, when the store has it (None: their errors stay unnormalized)."""
        ours = [k for k in keys if k.kind == self.kind]
        if variant_dataset(variant_of(ours[0]) if ours else {}).alexnet_normalized:
            return baselines.get(name)
        return stored_baseline(store, name, ours) if store is not None else None

    def normalizes(self, normalizer: Baseline | None) -> bool:
        """Errors of these cells' corruptions (a run stored under the name for another suite or
        dataset gives none)."""
        return normalizer is not None and bool(normalizer.imagenet_c)

    def normalized_by_stored_run(self, dataset) -> bool:
        """ImageNet's CE is AlexNet's published errors (benchmarks.yaml); the other datasets'
        is a stored run's."""
        return not dataset.alexnet_normalized

    def sections(self, results: Sequence[CellResult], normalizer: Baseline | None) -> tuple[dict, list[str]]:
        return summarize(results, benchmark=list_corruptions("benchmark"), baseline=normalizer)

    # -- comparisons
    def unused_cells(self, results: Sequence[CellResult]) -> set[CellKey]:
        """The cells of ``results`` CE and the means leave out: severities not every benchmark
        corruption has (:func:`~robustbench_gcp.suites.severities.covered_severities`)."""
        have: dict[str, list[int]] = {}
        for r in results:
            if self.owns(r.key):
                have.setdefault(r.key.name, []).append(int(r.key.level))
        kept, _, _ = covered_severities(have, list_corruptions("benchmark"), normalized=False)
        return {r.key for r in results if self.owns(r.key) and int(r.key.level) not in kept[r.key.name]}

    def design(self, results: Sequence[CellResult], normalizer: Baseline | None) -> Design:
        rows, values, tests, notes = [], [], {}, []
        cells: dict[str, list[int]] = {}
        correct: dict[tuple[str, int], np.ndarray] = {}
        # in report order, however stored: the rows, and the tests (the wide CSV's p-columns)
        for r in sorted(results, key=lambda r: (r.key != CLEAN, report_order(r) if self.owns(r.key) else ())):
            if r.key == CLEAN:
                rows.append("clean")
                tests["clean"] = r.correct
            elif self.owns(r.key):
                rows.append(f"{r.key.name}/{r.key.level}")
                cells.setdefault(r.key.name, []).append(int(r.key.level))
                correct[(r.key.name, int(r.key.level))] = r.correct
            else:
                continue
            values.append(per_image_errors(r))
        metrics = {}
        if "clean" in rows:
            metrics["clean_error"] = lambda m: m["clean"]
        baseline = normalizer
        benchmark = list_corruptions("benchmark")
        # as the reports, of the cells compared: the severities every corruption has, if any
        kept, uneven, only = covered_severities(cells, benchmark, normalized=baseline is not None)
        cells = kept
        notes += [note for note in (uneven, only) if note]
        for c, levels in cells.items():  # per image, its correct severities (of those CE covers): the
            tests[c] = sum(correct[(c, s)].astype(np.int64) for s in levels)  # image is the test's unit
        chosen = [c for c in benchmark if cells.get(c)]

        def mean_error(m):  # as the reports: the mean over corruptions of each one's mean over its severities
            return sum(sum(m[f"{c}/{s}"] for s in cells[c]) / len(cells[c]) for c in chosen) / len(chosen)

        if chosen and not dataset_of(results, self.kind).alexnet_normalized:
            metrics["mean_error"] = mean_error  # and its complement, as the headline without intervals
            metrics["mean_accuracy"] = lambda m: 1 - mean_error(m)
        own = baseline is not None and chosen and baseline.own and all(
            c in baseline.imagenet_c and sum(baseline.error(c, s) for s in cells[c]) > 0 for c in chosen)
        if own:  # the baseline run's own CE (where it errs at all): 100
            metrics["mCE"] = functools.partial(hundred, row=f"{chosen[0]}/{cells[chosen[0]][0]}")
            degrades = baseline.clean_error is not None and all(
                sum(baseline.error(c, s) for s in cells[c]) > len(cells[c]) * baseline.clean_error
                for c in chosen)
            if "clean" in rows and degrades:  # its relative CE, where defined
                metrics["relative_mCE"] = metrics["mCE"]
        elif baseline is not None and chosen and not baseline.own and all(
                c in baseline.imagenet_c and sum(baseline.error(c, s) for s in cells[c]) > 0 for c in chosen):
            # a stored baseline run on the same images is resampled with them (its errors are
            # sample means too); published errors are constants. One with no error on a corruption
            # gives no mCE (the reports leave that CE empty): the mean error stands in, as for mFR
            # a corruption's CE divides by its errors summed over its severities
            sums = {c: [f"{c}/{s}" for s in cells[c]] for c in chosen}
            joint = add_joint_rows(rows, values, baseline.samples, [name for c in chosen for name in sums[c]],
                                   optional=["clean"], notes=notes, denominators=sums)

            def base(m, c):  # resampled, or fixed where the baseline rarely errs (add_joint_rows)
                return [m[f"base {c}/{s}"] if f"{c}/{s}" in joint else baseline.error(c, s) for s in cells[c]]

            def base_clean(m, c):  # with its corruption's
                return m["base clean"] if {"clean", sums[c][0]} <= joint else baseline.clean_error

            def errors(m, c):
                return [m[f"{c}/{s}"] for s in cells[c]]

            metrics["mCE"] = lambda m: sum(_ce(errors(m, c), base(m, c)) for c in chosen) / len(chosen)
            if "clean" in rows and baseline.clean_error is not None:
                metrics["relative_mCE"] = lambda m: sum(
                    _relative_ce(errors(m, c), m["clean"], base(m, c), base_clean(m, c))
                    for c in chosen) / len(chosen)
        if chosen and "mean_error" not in metrics:  # the unnormalized mean beside mCE, as in the reports
            metrics["mean_error"] = mean_error
        if 0 < len(chosen) < len(benchmark):  # of the cells compared (a model's report may have more)
            notes.append(coverage_note("mCE" if "mCE" in metrics else None, len(chosen), f"{len(benchmark)} "
                                       "benchmark corruptions", [c for c in benchmark if c not in chosen]))
        return Design.of(rows, values, metrics, tests, percent={"mCE", "relative_mCE"} & set(metrics),
                         proportions={"clean_error": "clean"} if "clean_error" in metrics else {},
                         notes=notes)

    # -- views
    def tables(self, report: Report) -> list[Table]:
        if not report.sections.get("cells"):
            return []
        rows, columns = corruption_rows(report.sections)
        metrics = report.sections.get("metrics") or {}
        dataset = report_dataset(report)
        if not dataset.alexnet_normalized and metrics.get("baseline") is None:  # no CE columns
            columns = [c for c in columns if c.key not in ("CE", "relative_CE")]
        return [Table(f"{dataset.released}: top-1 error by severity", rows, columns)]

    def summary_rows(self, report: Report) -> list[dict]:
        rows = super().summary_rows(report)
        metrics = report.sections.get("metrics") or {}
        dataset = report_dataset(report)
        if report.sections.get("cells") and not dataset.alexnet_normalized:
            released = dataset.released
            rows.append({"metric": f"{released} mean corruption error (%)",
                         "value": pct(metrics.get("mean_error"))})
            rows.append({"metric": f"{released} mean corruption accuracy (%)",
                         "value": pct(metrics.get("mean_accuracy"))})
            if metrics.get("baseline") is not None:
                base = metrics["baseline"]
                rows.append({"metric": f"mCE (%, stored baseline {base} = 100)", "value": metrics.get("mCE")})
                rows.append({"metric": f"relative mCE (%, stored baseline {base} = 100)",
                             "value": metrics.get("relative_mCE")})
        elif report.sections.get("cells"):
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
        averaged = set((sections.get("metrics") or {}).get("corruptions") or ())
        covered = set()  # the mean row's: the severities its corruptions' means cover, where alike
        for entry in sections.get("per_corruption", []):
            severities = " ".join(map(str, entry.get("severities") or ()))
            rows.append({"item": entry["corruption"], "level": "all", "top1_error": entry["mean_error"],
                         "CE": entry["CE"], "relative_CE": entry["relative_CE"], "severities": severities})
            if entry["corruption"] in averaged:
                covered.add(severities)
        if sections.get("cells"):
            metrics = sections.get("metrics") or {}
            rows.append({"item": "mean (benchmark)", "level": "all", "top1_error": metrics.get("mean_error"),
                         "CE": metrics.get("mCE"), "relative_CE": metrics.get("relative_mCE"),
                         "severities": covered.pop() if len(covered) == 1 else None})
        return rows

    def headline(self, report: Report) -> dict:
        out = super().headline(report)
        if report.sections.get("cells"):
            metrics = report.sections.get("metrics") or {}
            keys = ("mCE", "relative_mCE", "mean_error")
            if not report_dataset(report).alexnet_normalized:
                keys = ("mean_error", "mean_accuracy", *(keys[:2] if metrics.get("baseline") else ()))
            out.update({k: metrics.get(k) for k in keys})
        return out

    def detail_markdown(self, reports: Sequence[Report]) -> str | None:
        """CE per corruption across models, as in the papers' tables (the baseline's = 100); the mean
        error per corruption where nothing normalizes it."""
        reports = [r for r in reports if r.sections.get("per_corruption")]
        if not reports:
            return None
        corruptions = column_names(reports, "per_corruption", "corruption", list_corruptions("all"))
        normalized = any(e["CE"] is not None for r in reports for e in r.sections["per_corruption"])
        key, mean, scale, fmt = (("CE", "mCE", 1, ".1f") if normalized  # the terminal table's digits
                                 else ("mean_error", "mean_error", 100, ".2f"))

        def scaled(value):
            return None if value is None else value * scale

        from robustbench_gcp.suites.charts import mean_scope_texts

        # each model's own report's figures: where their means average other corruptions or severities,
        # a column says which (an mCE of 4 corruptions sat beside one of 3 and above a headline's of
        # the 3 all have, without a word: helper-248; unnormalized means too: helper-249)
        scopes = mean_scope_texts(reports, mean)
        rows = []
        for r, scope in zip(reports, scopes):
            value_of = {e["corruption"]: e[key] for e in r.sections["per_corruption"]}
            rows.append({"model": r.model, mean: scaled(r.sections["metrics"].get(mean)),
                         "scope": scope.removeprefix("over ") or None,
                         **{c: scaled(value_of.get(c)) for c in corruptions}})
        columns = [Column("model", justify="left"), Column(mean, "mCE" if normalized else "mean", fmt=fmt)]
        if any(scopes):
            columns.append(Column("scope", "mCE of" if normalized else "mean of", justify="left"))
        columns += [Column(c, c.replace("_", " "), fmt) for c in corruptions]
        what = (f"CE per corruption ({reports[0].sections['metrics'].get('baseline') or 'baseline'} = 100)"
                if normalized else "error per corruption (%, unnormalized)")
        return to_markdown(rows, columns, title=f"{reports[0].heading}: {what}")

    def plots(self):
        from robustbench_gcp.suites.charts import ce_bars, error_vs_severity

        return {"error_vs_severity": error_vs_severity, "ce_per_corruption": ce_bars}


def _ce(errors: Sequence, baseline_errors: Sequence):
    """:func:`~robustbench_gcp.metrics.ce` of resampled means, the baseline's resampled too or
    fixed (:func:`~robustbench_gcp.suites.stored_baselines.percent_of`: infinite or undefined
    where its errors sum to 0)."""
    return percent_of(sum(errors), sum(baseline_errors))


def _relative_ce(errors: Sequence, clean_error, baseline_errors: Sequence, baseline_clean_error):
    """:func:`~robustbench_gcp.metrics.relative_ce` as :func:`_ce` computes CE."""
    return percent_of(sum(e - clean_error for e in errors),
                      sum(b - baseline_clean_error for b in baseline_errors))
