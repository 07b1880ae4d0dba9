"""The ImageNet-P suite: perturbation sequences -> flip probability and top-5 distance.

Cells are (perturbation, difficulty). Sequences are generated on the device by
:func:`corruptions.perturbation_sequence` from the resized (not yet cropped) images, or decoded from
the released MP4 files (``--corrupted-dir``). As in the original, the geometric perturbations
(translate, rotate, tilt, scale, shear) and zoom_blur transform the whole resized image (e.g.
341 x 256), then crop: their base images are windows of side
:func:`~corruptions.perturbations.window_size` centred on it (zero outside it, its size recorded by
the loader: ``Preprocess(window=True)``); the other perturbations only see the centre crop and get
the S x S square around it. (zoom_blur had the square before 0.7.30: where the image's excess over
the square is odd, as a 4:3 photograph's 341 x 256, the square's centre is half a pixel off the
image's, and its zooms were a mean 0.14 levels off the original's per frame, helper-240.)

Difficulty follows the original ``test.py``: for the noise perturbations it selects the noise level
(the ``_2`` / ``_3`` folders) and every frame is compared with the clean frame 0; for the others the
frames are those of difficulty 1 and consecutive frames are compared at a stride of ``difficulty``.

The store keeps, per shard, the number of videos, the number of frame pairs, the integer totals of
flips and top-5 distances (every video of a cell compares as many pairs, so FP and T5D are divisions
of integers, the same bits for any sharding: ``metrics.rate_counts``), and each video's two values
(for paired statistics). FR and T5D are normalized at report time by a stored baseline run
(``gcp-robust baseline``), as percentages (baseline = 100).

CIFAR-10-P and Tiny-ImageNet-P follow the suite's dataset (``dataset:`` / ``--dataset``): sequences
generated with the dataset's preset (``perturbation_sequence(preset=...)``) from the 32 / 64 px
images as they are (no resize, no window), cells marked with the dataset (ImageNet's cells carry no
mark, as before datasets); released Tiny-ImageNet-P is MP4 videos in ImageNet-P's layout (64 px),
released CIFAR-10-P is ``<root>/<p>[_2|_3].npy`` arrays, uint8 (N, F, 32, 32, 3), one sequence per
test image in test order.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corruptions import DIFFICULTIES, NOISE_PERTURBATIONS, PERTURBATION_SUBSETS, frame_count
from robustbench_gcp.data.array_files import check_released_sequences
from robustbench_gcp.data.datasets import DatasetInfo, get_dataset
from robustbench_gcp.data.folders import check_released, perturbed_dir, perturbed_npy
from robustbench_gcp.engine.runner import ImageSource, check_released_sources
from robustbench_gcp.errors import DataError, counted
from robustbench_gcp.reports.tables import Column, decimal_format, to_markdown
from robustbench_gcp.stats import Design
from robustbench_gcp.store import CellKey, CellResult, Store
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
    variant_of,
)
from robustbench_gcp.suites.flag_values import resolve_levels, resolve_names
from robustbench_gcp.suites.imagenet_p_summary import (
    FlipBaseline,
    averaged_perturbations,
    baseline_figures,
    dataset_subsets,
    geometry_rank,
    perturbed_name,
    report_order,
    summarize,
)
from robustbench_gcp.suites.kinds import register_suite
from robustbench_gcp.suites.revisions import newest
from robustbench_gcp.suites.sequence_tasks import (
    WINDOWED,
    PerturbationTask,
    mean_raw,
    mean_relative,
    pairs_of,
    per_video,
    window_side,
)
from robustbench_gcp.suites.stored_baselines import add_joint_rows, check_stored_baseline, hundred

if TYPE_CHECKING:
    from robustbench_gcp.data.folders import ImageList
    from robustbench_gcp.reports.report_type import Report
    from robustbench_gcp.yaml_checks import Checker


def _lateness(key: CellKey) -> tuple[int, bool]:
    """How late the version that made a cell is, of those :meth:`ImageNetPSuite.latest` tells
    apart: its geometry (:func:`geometry_rank`), then whether it names the model's classes (those
    of a model of other classes than ImageNet's 1000 do since 0.7.30; one run's cells all have
    the same model)."""
    variant = variant_of(key)
    return geometry_rank(variant), "classes" in variant


def _squared(key: CellKey) -> bool:
    """Whether ``key`` is a generated ImageNet cell of a perturbation the suite now makes from
    windows of the whole image (:data:`WINDOWED`), made from the square by an earlier version."""
    variant = variant_of(key)
    return (key.kind == "imagenet-p" and key.name in WINDOWED and variant.get("source") == "torch"
            and "dataset" not in variant and geometry_rank(variant) < 2)


@dataclass(frozen=True)
class ImageNetPSpec(SuiteSpec):
    perturbations: tuple[str, ...] = ()
    difficulties: tuple[int, ...] = ()
    #: ``test`` or ``validation`` when the entry named that subset (or none: ``test``), which
    #: then means its dataset's (:func:`dataset_subsets`); ``perturbations`` holds ImageNet-P's
    subset: str | None = None


@dataclass(frozen=True)
class ImageNetPSelection(Selection):
    perturbations: tuple[str, ...] = ()
    difficulties: tuple[int, ...] = ()

    @property
    def dataset(self) -> DatasetInfo:
        return get_dataset(self.spec.dataset)

    @property
    def preset(self) -> str:
        """The sequences' parameters: the dataset's (:data:`corruptions.PRESETS`)."""
        return self.dataset.preset


def _default_perturbations(spec: ImageNetPSpec) -> tuple[str, ...]:
    """A suite entry's perturbations on its dataset (its subset's there, if it named one)."""
    return dataset_subsets(get_dataset(spec.dataset))[spec.subset] if spec.subset else spec.perturbations


@register_suite
class ImageNetPSuite(LevelledSuite):
    """ImageNet-P: flip probability and top-5 distance per (perturbation, difficulty), mFR, mT5D."""

    kind = "imagenet-p"
    released_data = "perturbed"  # datasets.<name>.perturbed of benchmarks.yaml
    # whole-image geometric cells (0.4+) report with the centre-square ones of older stores; a model's
    # cells that name its classes (0.7.30+) with those of before through merged_groups (the mark
    # stays in the group: a 10-class model is compared apart from a 1000-class one, as in ImageNet-C)
    unmarked = ("revision", "geometry")
    stored_baseline = True
    released_labels = False  # flips need no label: released files read alone need no class check
    source_word = "perturbations"
    datasets = None  # ImageNet-P, CIFAR-10-P (CIFAR-100: its parameters), Tiny-ImageNet-P
    merged_metric_names = {"baseline": "flip_baseline"}
    summary = "perturbation sequences: flip probability, top-5 distance, mFR, mT5D"
    tests_text = ("per perturbation and difficulty, the sign-flip test of the mean flip probability and of "
                  "the mean top-5 distance over the videos")
    long_columns = ("flip_probability", "top5_distance", "FR", "T5D")
    metric_display = {**Suite.metric_display, "mFR": ("mFR", 1.0, ".1f"), "mT5D": ("mT5D", 1.0, ".1f"),
                      "mean_flip_probability": ("mean FP %", 100.0, ".2f"),
                      "mean_top5_distance": ("mean T5D", 1.0, ".3f")}
    flags = (
        *LevelledSuite.flags,
        Flag("perturbations", "ImageNet-P perturbations (names or test, validation, all; cifar-test, "
             "cifar-validation: CIFAR-10-P's). Default: the suite's.", metavar="A,B", kind="list"),
        Flag("difficulties", "ImageNet-P difficulties (1..3). Default: the suite's.", metavar="1,2",
             kind="int_list"),
    )

    # -- configuration
    def config_keys(self) -> set[str]:
        return {"kind", "perturbations", "difficulties"}

    def parse(self, check: Checker, name: str, value: Mapping, where: str) -> ImageNetPSpec:
        named = value.get("perturbations", "test")
        return ImageNetPSpec(
            name,
            self.kind,
            perturbations=check.names(named, f"{where}.perturbations", PERTURBATION_SUBSETS, "perturbation"),
            subset=named if named in ("test", "validation") else None,
            difficulties=check.levels(value.get("difficulties", [1]), f"{where}.difficulties",
                                      DIFFICULTIES, "difficulty"),
        )

    def describe(self, spec: ImageNetPSpec) -> tuple[str, str]:
        names = _default_perturbations(spec)
        return (f"{len(names)} perturbations: {', '.join(names)}",
                "difficulties " + ",".join(map(str, spec.difficulties)))

    def spec_json(self, spec: ImageNetPSpec) -> dict:
        return {"perturbations": list(_default_perturbations(spec)), "difficulties": list(spec.difficulties)}

    # -- plan
    def select(self, spec: ImageNetPSpec, flags: Mapping[str, Any]) -> ImageNetPSelection:
        dataset = get_dataset(spec.dataset)
        return ImageNetPSelection(
            spec,
            released=self.released(flags, dataset),
            perturbations=resolve_names(flags.get("perturbations"), _default_perturbations(spec),
                                        dataset_subsets(dataset), "perturbation", "--perturbations"),
            difficulties=resolve_levels(flags.get("difficulties"), spec.difficulties, "--difficulties",
                                        DIFFICULTIES),
        )

    def check_baseline(self, name: str, baselines: Iterable[str], store_path: Path) -> None:
        """A baseline asked for by name must exist: stored (in the store file) or in ``baselines``
        (benchmarks.yaml's). The default may be missing: reports then say that they are
        unnormalized. Never creates the store file.

        Raises:
            UnknownNameError: ``name`` is none of these (the closest name suggested).
        """
        check_stored_baseline(name, baselines, store_path)

    def check_inputs(self, selection: ImageNetPSelection) -> None:
        root = selection.released
        if root is None:
            return
        if selection.preset == "cifar":  # CIFAR-10-P: <root>/<p>[_d].npy, checked from the headers
            self._check_arrays(selection)
            return
        folders = {perturbed_dir(root, p, d): p for p in selection.perturbations
                   for d in selection.difficulties}
        check_released(root, list(folders), "--perturbations / --difficulties", (".mp4",))
        from robustbench_gcp.data.video import check_frame_size

        for folder, name in folders.items():  # each one's first video, its header alone, before any compute
            check_frame_size(folder, selection.dataset.released_size, perturbed_name(selection.dataset),
                             frame_count(name, preset=selection.preset))

    def _check_arrays(self, selection: ImageNetPSelection, first_only: bool = False) -> int:
        """N of the selection's released CIFAR-10-P files (all checked, or the first)."""
        files = [(perturbed_npy(selection.released, p, d), frame_count(p, preset=selection.preset))
                 for p in selection.perturbations for d in selection.difficulties]
        return check_released_sequences(files[:1] if first_only else files,
                                        selection.dataset.image_size or 32, perturbed_name(selection.dataset))

    def image_list(self, selection: ImageNetPSelection) -> ImageList | None:
        """Released files alone: ImageNet-P's videos (ImageNet class order), Tiny-ImageNet-P's
        (sorted wnid folders), or CIFAR-10-P's N sequences (the files hold no labels: all 0,
        which flip rates do not use; give --data with the test set for a clean cell)."""
        from robustbench_gcp.data.folders import ImageList, scan_folder, scan_videos

        root = selection.released
        if root is None:
            return None
        first = (root, selection.perturbations[0], selection.difficulties[0])
        if selection.preset == "cifar":
            n = self._check_arrays(selection, first_only=True)
            return ImageList(root=perturbed_npy(*first), names=tuple(f"{i:05d}" for i in range(n)),
                             labels=(0,) * n, indices=tuple(range(n)), classes=("unlabelled",),
                             labelling="none", source=str(root), reader="npy-sequences")
        if selection.dataset.name == "imagenet":
            return scan_videos(perturbed_dir(*first))
        folder = perturbed_dir(*first)
        if not folder.is_dir():
            raise DataError(f"{perturbed_name(selection.dataset)} folder {folder} does not exist: expected "
                            "the released layout <root>/<perturbation>[_2|_3]/<wnid>/<image>.mp4")
        return scan_folder(folder, extensions=(".mp4",), class_order=selection.dataset.class_order)

    def check_data(self, selection: ImageNetPSelection, images: ImageList) -> None:
        """CIFAR-10-P rows are the test set's, in its order: ``--data`` must be that test set.

        Raises:
            DataError: a folder of images, or another number of images than the files' sequences.
        """
        if selection.released is None or selection.preset != "cifar":
            return
        from robustbench_gcp.data.array_files import check_test_set

        sequences = self._check_arrays(selection, first_only=True)
        check_test_set(images, perturbed_name(selection.dataset), sequences, "sequences")

    # -- run
    def tasks(self, selection: ImageNetPSelection, inputs: TaskInputs) -> list:
        """The clean cell (with clean data), then per noise perturbation one task per
        difficulty and per other perturbation one for all difficulties, in report order.

        Generated sequences take the images resized (shorter side) and center-cropped to a
        square of that size, or for the geometric perturbations and zoom_blur (:data:`WINDOWED`) a
        window centred on the whole resized image (:func:`window_side`); CIFAR and Tiny-ImageNet
        images as they are (their frames are the whole image). Released ones read
        ``<corrupted_dir>/<p>[_d]/<wnid>/<stem>.mp4``, or CIFAR-10-P's ``<corrupted_dir>/<p>[_d].npy``.
        """
        tasks = super().tasks(selection, inputs)
        square = window = None
        dataset = selection.dataset
        crop = dataset.image_size or inputs.crop_size
        base = inputs.corruption_base  # the protocol's PIL bilinear resize, whatever the model's
        if base is not None and dataset.image_size is not None:  # small images: whole, as they are
            square = window = base
        elif base is not None:
            square = ImageSource(base.root, resize_size=base.resize_size, crop_size=base.resize_size,
                                 interpolation=base.interpolation, centred_on=inputs.crop_size)
            window = square if base.resize_size is None else ImageSource(
                base.root, resize_size=base.resize_size, interpolation=base.interpolation,
                crop_size=window_side(base.resize_size, inputs.crop_size,
                                      [p for p in selection.perturbations if p in WINDOWED]), window=True)
        for perturbation in selection.perturbations:
            groups = ([(d,) for d in selection.difficulties] if perturbation in NOISE_PERTURBATIONS
                      else [tuple(selection.difficulties)])
            for group in groups:
                if selection.released is not None:  # frames as they are, whatever the model's size
                    source = self._released_source(selection, perturbation, group[0], dataset.released_size)
                else:
                    source = window if perturbation in WINDOWED else square
                tasks.append(PerturbationTask(perturbation, group, source, crop, dataset.name,
                                              inputs.num_classes))
        return tasks

    def check_files(self, selection: ImageNetPSelection, images: ImageList, *, data: bool,
                    whole: bool) -> None:
        if selection.released is not None and selection.preset != "cifar":
            check_released_sources([self._released_source(selection, p, d, 0)
                                    for p in selection.perturbations for d in selection.difficulties],
                                   images, data=data, whole=whole)

    def _released_source(self, selection: ImageNetPSelection, perturbation: str, difficulty: int,
                         crop: int) -> ImageSource:
        """A released sequence's frames: MP4 videos of ``crop`` px, or CIFAR-10-P .npy rows."""
        frames = frame_count(perturbation, preset=selection.preset)
        if selection.preset == "cifar":
            return ImageSource(perturbed_npy(selection.released, perturbation, difficulty), resize_size=None,
                               crop_size=crop, released=True, reader="npy-sequences", video_frames=frames)
        return ImageSource(perturbed_dir(selection.released, perturbation, difficulty), resize_size=None,
                           crop_size=crop, released=True, video_frames=frames)

    # -- reports
    # -- reading a store
    def benchmark_name(self, dataset: DatasetInfo) -> str:
        return perturbed_name(dataset)

    def released_size_note(self, dataset: DatasetInfo, input_size: int, clean: bool) -> str:  # no clean
        return (f"the model's inputs are {input_size} px, but the released {perturbed_name(dataset)} frames "
                f"are {dataset.released_size} px: they are given to it as they are")

    def merged_groups(self, groups: dict[str, list[CellResult]],
                      classes: int | None = None) -> dict[str, list[CellResult]]:
        """A run's groups of cells with those stored before its cells named the model's classes
        (0.7.30) in the group of the same cells that do: one run is one model's, so they are its
        (:meth:`latest` then keeps the marked ones)."""
        named = [group for group in groups if "classes" in json.loads(group)]
        if not named:
            return groups
        merged = {group: list(groups[group]) for group in named}
        for group, cells in groups.items():
            if group in merged:
                continue
            # its marked twin; one of no twin (another source, round trip) is the same model's from
            # before too, which a baseline of ImageNet's classes would normalize (helper-245): into a
            # marked group, where latest() leaves it out, saying eval computes it anew
            variant = json.loads(group)
            twins = (other for other in named
                     if {k: v for k, v in json.loads(other).items() if k != "classes"} == variant)
            twin = next(twins, named[0])
            merged[twin] += cells
        return merged

    def latest(self, results: list[CellResult], model: str,
               agreed: Any = None) -> tuple[list[CellResult], list[str]]:
        """One cell per (perturbation, difficulty): the current one where a store also holds one
        an earlier version made (geometric ones from the centre square, gcp-robust 0.3, zoom_blur
        before 0.7.30; others a pixel off the image's centre crop, before 0.7.5, at sizes such as
        the demo models'; of a perturbation's earlier revision:
        :func:`~robustbench_gcp.suites.revisions.newest`; of a model of other classes than
        ImageNet's 1000, before its cells said so, 0.7.30)."""
        # the geometry first (every revision of the kept one), then the newest revision of it: the
        # revisions' notes then speak of the cells shown only
        best: dict[tuple[str, str], tuple[int, bool]] = {}
        for r in results:
            cell = (r.key.name, r.key.level)
            best[cell] = max(best.get(cell, (0, False)), _lateness(r.key))
        kept = [r for r in results if _lateness(r.key) == best[(r.key.name, r.key.level)]]
        left = len(results) - len(kept)
        notes = [f"{model}: {counted(left, 'cell')} an earlier version of gcp-robust "
                 "computed (from the centre square, a pixel off the centre crop, or not marked with the "
                 f"model's classes) {'is' if left == 1 else 'are'} left out; "
                 f"{'its current version is' if left == 1 else 'their current versions are'} shown"
                 ] if left else []
        # beside cells that name the model's classes, those of before name none: a baseline of other
        # classes would normalize them (helper-243); left out, with what computes them anew
        if any("classes" in variant_of(r.key) for r in kept):
            unnamed = [r for r in kept if r.key.kind == self.kind and "classes" not in variant_of(r.key)]
            if unnamed:
                kept = [r for r in kept if r not in unnamed]
                cells = ", ".join(f"{r.key.name}/{r.key.level}" for r in unnamed)
                one = len(unnamed) == 1
                notes.append(f"{model}: {cells} {'was' if one else 'were'} computed before cells named the "
                             f"model's classes (gcp-robust 0.7.30) and {'is' if one else 'are'} left out: "
                             f"an `eval` that asks for {'it' if one else 'them'} computes "
                             f"{'it' if one else 'them'} anew")
        # shown as stored, no current version beside them: said (a report of an older store)
        squared = list(dict.fromkeys(r.key.name for r in kept if _squared(r.key)))
        if squared:
            notes.append(f"{model}: {', '.join(squared)} {'was' if len(squared) == 1 else 'were'} generated "
                         "from the image's centre square by an earlier version of gcp-robust (the current "
                         "one transforms the whole resized image, as the original: `gcp-robust eval` "
                         "again computes them so)")
        kept, revised = newest(kept, model)
        return kept, revised + notes

    def normalizer(self, name: str, baselines: Mapping, store: Store | None,
                   keys: Sequence[CellKey]) -> FlipBaseline | None:
        return baseline_figures(store, name, keys) if store is not None else None

    def normalizes(self, normalizer: FlipBaseline | None) -> bool:
        """A stored run's figures of these cells that divide (a name with none stored gives none, a
        baseline that never flips nor moves its top-5 there, as a random-weights one, none either)."""
        return normalizer is not None and any(fp > 0 or t5d > 0 for fp, t5d, _ in (normalizer.figures or
                                                                                    {}).values())

    def sections(self, results: Sequence[CellResult],
                 normalizer: FlipBaseline | None) -> tuple[dict, list[str]]:
        return summarize(results, baseline=normalizer.figures if normalizer else None,
                         baseline_name=normalizer.name if normalizer else None,
                         baseline_revised=normalizer.revised if normalizer else None)

    # -- comparisons
    def design(self, results: Sequence[CellResult], normalizer: FlipBaseline | None) -> Design:
        figures = normalizer.figures if normalizer else None
        test = averaged_perturbations(dataset_of(results, self.kind))
        rows, values = [], []
        chosen: list[tuple[str, int]] = []
        pairs: dict[tuple[str, int], int] = {}
        order = report_order(test)  # the rows and tests (the wide CSV's p-columns) so, however stored
        clean = next((r for r in results if r.key == CLEAN and r.correct is not None), None)
        for r in sorted(results, key=lambda r: (order.get(r.key.name, len(order)), r.key.level)):
            if not self.owns(r.key) or r.extra is None:
                continue
            p, d = r.key.name, int(r.key.level)
            rows += [f"fp {p}/{d}", f"t5d {p}/{d}"]
            values += list(per_video(r))
            pairs[(p, d)] = pairs_of(r)
            if p in test:
                chosen.append((p, d))
        difficulty = min((d for _, d in chosen), default=None)
        # in the report's order: the means then add the same numbers in the same order (the bits)
        chosen = sorted(((p, d) for p, d in chosen if d == difficulty), key=lambda cell: test.index(cell[0]))
        metrics, proportions, percent, notes = {}, {}, set(), []
        # the clean error, with its interval and difference as the table without them shows it; no
        # test (the Holm family stays the flip figures'). Resampled with the videos where as many
        if clean is not None and values and len(values[0]) != clean.n:  # (released videos, --data)
            notes.append(f"the clean error is left out: its {counted(clean.n, 'image')} are not the "
                         f"{len(values[0])} videos' (the sequences come from other images)")
        elif clean is not None:
            rows.append("clean")
            values.append(per_image_errors(clean))
            metrics["clean_error"], proportions["clean_error"] = (lambda m: m["clean"]), "clean"
        if difficulty not in (None, 1):  # the papers' is 1; a model's own report may be at another
            notes.append(f"mFR and mT5D (or the mean flip figures) at difficulty {difficulty}, the "
                         "smallest every compared model has")
        # each of mFR and mT5D where the baseline normalizes every chosen cell (as the reports:
        # a baseline that never flips on a cell leaves its FR empty, not its T5D); else the mean
        for column, (prefix, metric, mean) in enumerate((("fp", "mFR", "mean_flip_probability"),
                                                         ("t5d", "mT5D", "mean_top5_distance"))):
            if not chosen:
                break
            if figures is not None and all(figures.get(cell, (0, 0))[column] > 0 for cell in chosen):
                # a baseline run on the same videos is resampled with them (its figures are means of
                # the same videos); one on other videos stays fixed (build_report notes it)
                percent.add(metric)
                if normalizer.own:  # the baseline's own figures: 100 in every resample
                    metrics[metric] = functools.partial(hundred, row=f"{prefix} {chosen[0][0]}/{difficulty}")
                    continue
                joint = add_joint_rows(rows, values, normalizer.samples,
                                       [f"{prefix} {p}/{d}" for p, d in chosen], notes=notes)
                metrics[metric] = mean_relative(chosen, prefix, figures, column, pairs, normalizer.pairs,
                                                 joint)
            else:
                metrics[mean] = mean_raw(chosen, prefix, pairs)
        # each cell's flip probability and top-5 distance: a sign-flip test over its videos
        mean_tests = [row for row in rows if row.startswith(("fp ", "t5d "))]
        if 0 < len(chosen) < len(test):  # of the cells compared (a model's report may have more)
            notes.append(coverage_note("mFR" if "mFR" in metrics else None, len(chosen), f"{len(test)} test "
                                       "perturbations", [p for p in test if p not in dict(chosen)]))
        return Design.of(rows, values, metrics, percent=percent, notes=notes, mean_tests=mean_tests,
                         proportions=proportions)

    # -- views
    def tables(self, report: Report) -> list[Table]:
        entries = report.sections.get("perturbations")
        if not entries:
            return []
        rows = [{"perturbation": e["perturbation"], "difficulty": e["difficulty"], "videos": e["n_videos"],
                 "fp": pct(e["flip_probability"]), "t5d": e["top5_distance"], "FR": e["FR"], "T5D": e["T5D"]}
                for e in entries]
        columns = [Column("perturbation", justify="left"), Column("difficulty"), Column("videos"),
                   Column("fp", "flip prob. %", ".2f"), Column("t5d", "top-5 dist.", ".3f"),
                   Column("FR", "FR", ".1f"), Column("T5D", "T5D", ".1f")]
        title = f"{perturbed_name(report_dataset(report))}: flip probability and top-5 distance"
        return [Table(title, rows, columns)]

    def summary_rows(self, report: Report) -> list[dict]:
        rows = super().summary_rows(report)
        if report.sections.get("perturbations"):
            metrics = report.sections.get("metrics") or {}
            base, d = metrics.get("baseline"), metrics.get("difficulty")
            scale = f"%, {base} = 100" if base else "no baseline"
            rows.append({"metric": f"mFR ({scale}, difficulty {d})", "value": metrics.get("mFR")})
            rows.append({"metric": f"mT5D ({scale}, difficulty {d})", "value": metrics.get("mT5D")})
            if metrics.get("mFR") is None or metrics.get("mT5D") is None:  # the raw means stand in
                means = self.headline(report)  # (cifar-p-eval.py prints the mean flip probability)
                fp = means.get("mean_flip_probability")
                rows.append({"metric": f"mean flip probability (%, difficulty {d})",
                             "value": None if fp is None else 100 * fp})
                t5d = means.get("mean_top5_distance")  # three decimals, as its columns (small figures)
                rows.append({"metric": f"mean top-5 distance (difficulty {d})",
                             "value": None if t5d is None else decimal_format(t5d, ".3f")})
        return rows

    def long_rows(self, report: Report) -> list[dict]:
        rows = super().long_rows(report)
        entries = report.sections.get("perturbations") or []
        for e in entries:
            rows.append({"item": e["perturbation"], "level": e["difficulty"], "n": e["n_videos"],
                         "flip_probability": e["flip_probability"], "top5_distance": e["top5_distance"],
                         "FR": e["FR"], "T5D": e["T5D"]})
        if entries:
            metrics = report.sections.get("metrics") or {}
            means = self.headline(report)  # the raw means too: the headline where nothing normalizes
            rows.append({"item": "mean (test)", "level": metrics.get("difficulty"),
                         "flip_probability": means.get("mean_flip_probability"),
                         "top5_distance": means.get("mean_top5_distance"),
                         "FR": metrics.get("mFR"), "T5D": metrics.get("mT5D")})
        return rows

    def headline(self, report: Report) -> dict:
        out = super().headline(report)
        if report.sections.get("perturbations"):
            metrics = report.sections.get("metrics") or {}
            # the raw means over the cells mFR and mT5D average (the comparisons' fallback), as
            # summarize gave them for the headline difficulty; each beside its normalized mean, in
            # the comparisons' order (flips, then top-5 distances)
            at = (metrics.get("by_difficulty") or {}).get(str(metrics.get("difficulty"))) or {}
            for normalized, raw in (("mFR", "mean_flip_probability"), ("mT5D", "mean_top5_distance")):
                out[normalized] = metrics.get(normalized)
                if at.get("perturbations"):
                    out[raw] = at[raw]
        return out

    def detail_markdown(self, reports: Sequence[Report]) -> str | None:
        """FR per perturbation across models (flip probability when unnormalized), at the smallest
        difficulty, the one mFR and its mean column are of."""
        reports = [r for r in reports if r.sections.get("perturbations")]
        if not reports:
            return None
        every = [e for r in reports for e in r.sections["perturbations"]]
        test = averaged_perturbations(report_dataset(reports[0]))
        # the comparisons': the smallest every model has of the test perturbations (the smallest
        # any had showed a model measured at 2 alone as dashes, beside its mean at 2 above)
        held = [{e["difficulty"] for e in r.sections["perturbations"] if e["perturbation"] in test}
                or {e["difficulty"] for e in r.sections["perturbations"]} for r in reports]
        difficulty = min(set.intersection(*held) or set.union(*held))
        names = column_names(reports, "perturbations", "perturbation", tuple(report_order(test)))
        shown = [e for e in every if e["difficulty"] == difficulty]
        names = [p for p in names if any(e["perturbation"] == p for e in shown)]
        normalized = all(e["FR"] is not None for e in shown)
        key, label = ("FR", "FR") if normalized else ("flip_probability", "flip probability")
        scale = 1.0 if normalized else 100.0
        mean, header = ("mFR", "mFR") if normalized else ("mean_flip_probability", "mean FP")
        if any(p not in test for p in names):  # validation columns beside a mean of the test ones
            header += " (test)"
        rows = []
        for r in reports:
            values = {e["perturbation"]: e[key] for e in r.sections["perturbations"]
                      if e["difficulty"] == difficulty}
            at_difficulty = (r.sections["metrics"].get("by_difficulty") or {}).get(str(difficulty)) or {}
            overall = at_difficulty.get(mean)
            rows.append({"model": r.model, mean: None if overall is None else overall * scale,
                         **{p: None if values.get(p) is None else values[p] * scale for p in names}})
        columns = [Column("model", justify="left"), Column(mean, header, ".1f" if normalized else ".2f")]
        columns += [Column(p, p.replace("_", " "), ".1f" if normalized else ".2f") for p in names]
        unit = "baseline = 100" if normalized else "%, unnormalized"
        several = len({e["difficulty"] for e in every}) > 1
        at = f", difficulty {difficulty}" if difficulty != 1 or several else ""
        return to_markdown(rows, columns,
                           title=f"{reports[0].heading}: {label} per perturbation ({unit}{at})")

    def plots(self):
        from robustbench_gcp.suites.charts import flip_probability

        return {"flip_probability": flip_probability}
