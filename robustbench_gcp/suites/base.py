"""The :class:`Suite` interface (the registry of suite kinds is :mod:`robustbench_gcp.suites.kinds`).

A suite kind (clean, imagenet-c, imagenet-p, adversarial, landscape) is one module of this package
holding one :class:`Suite` subclass, registered with
:func:`~robustbench_gcp.suites.kinds.register_suite`. The suite owns everything that differs
between kinds, from benchmarks.yaml to the plots:

================================  =============================================================
configuration                     :meth:`Suite.parse` (its keys of benchmarks.yaml),
                                  :meth:`Suite.describe` (``gcp-robust suites``)
command-line overrides            :attr:`Suite.flags`, :meth:`Suite.select`
checks before any compute         :meth:`Suite.check_inputs`, :meth:`Suite.check_baseline`,
                                  :meth:`Suite.image_list`, :meth:`Suite.check_model`
the cells handed to the engine    :meth:`Suite.tasks`
the report from stored counts     :meth:`Suite.sections`, :meth:`Suite.normalizer`
                                  (:attr:`Suite.uses_baseline`, :attr:`Suite.stored_baseline`),
                                  :meth:`Suite.source_fields`, :meth:`Suite.source_description`,
                                  :meth:`Suite.notes`
reading a store                   :meth:`Suite.owns`, :meth:`Suite.group`, :meth:`Suite.latest`
comparisons (bootstrap, tests)    :meth:`Suite.design`, :meth:`Suite.aligned_cells`,
                                  :meth:`Suite.alignment`, :meth:`Suite.alignment_text`
table / CSV / Markdown rows       :meth:`Suite.tables`, :meth:`Suite.summary_rows`,
                                  :meth:`Suite.long_rows`, :meth:`Suite.headline`,
                                  :meth:`Suite.display`, :meth:`Suite.detail_markdown`
plots                             :meth:`Suite.plots`
================================  =============================================================

Code outside this package asks the registry (:mod:`~robustbench_gcp.suites.kinds`) and
never compares kind names. Every suite also measures the clean images when it has them:
the clean cell (:data:`CLEAN`) belongs to the clean suite and joins every other suite's
report; the base class builds its section, rows and comparison outcome.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from robustbench_gcp.data.datasets import DatasetInfo, get_dataset, roundtrip_words
from robustbench_gcp.metrics import baseline_names, rate
from robustbench_gcp.reports.tables import Column
from robustbench_gcp.stats import Design
from robustbench_gcp.store import CellKey, CellResult, canonical_json
from robustbench_gcp.yaml_checks import Checker

if TYPE_CHECKING:
    from robustbench_gcp.data.folders import ImageList
    from robustbench_gcp.engine.runner import ImageSource, Task
    from robustbench_gcp.reports.report_type import Report

#: the clean cell: every suite's reference images, unmodified
CLEAN = CellKey("clean")


@dataclass(frozen=True)
class SuiteSpec:
    """A named suite of benchmarks.yaml; each kind adds its own fields.

    ``dataset``: the suite's ``dataset:`` (``cifar10`` ...; None: follow the data, ImageNet
    by default); a plan replaces it with the dataset it resolved (``--dataset``, the data).
    """

    name: str
    kind: str
    dataset: str | None = None


@dataclass(frozen=True)
class Selection:
    """What a suite evaluates after the command-line overrides, checked; kinds add fields.

    ``released`` is the folder of released files the cells are read from (``--corrupted-dir``;
    None: they are computed from the clean images).
    """

    spec: SuiteSpec
    released: Path | None = None

    @property
    def kind(self) -> str:
        return self.spec.kind


@dataclass(frozen=True)
class Flag:
    """A command-line override a suite takes (``--corruptions``), declared once.

    ``kind`` says how the command line spells values: ``text``, ``list`` (``fog,snow``),
    ``int`` (>= 1), ``int_list`` (``1,3,5``), ``choice`` (one of ``choices``), ``switch``
    (``--storage-roundtrip/--no-storage-roundtrip``) or ``path``. A list flag given twice adds
    to itself (``--corruptions fog --corruptions snow``). Unset flags are None.
    """

    name: str
    help: str
    metavar: str | None = None
    kind: str = "text"
    choices: tuple[str, ...] = ()

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class TaskInputs:
    """What a suite's tasks are made from besides its selection: the clean images (None when
    only released files are given) and the model's input facts.

    ``clean`` is preprocessed as the model's own evaluation does (the clean cell, attacks);
    ``protocol`` is the same images as ImageNet-C / -P make their base images (PIL bilinear
    resize), for the corruptions and perturbations generated from them. It is None (read:
    ``clean``) where the two agree, as for every CNN; :attr:`corruption_base` resolves it.
    """

    clean: ImageSource | None
    num_classes: int
    crop_size: int
    protocol: ImageSource | None = None

    @property
    def corruption_base(self) -> ImageSource | None:
        """The images corruptions and perturbations are generated from: ``protocol``, else
        ``clean``."""
        return self.protocol if self.protocol is not None else self.clean


@dataclass(frozen=True)
class Table:
    """Rows of one table of a report view, with their columns and title."""

    title: str
    rows: list[dict]
    columns: list[Column]


def pct(value: float | None) -> float | None:
    """A fraction as a percentage (None stays None)."""
    return None if value is None else 100.0 * value


#: how a report's note on what its means average begins (of which corruptions, :func:`coverage_note`;
#: of which severities, :func:`~robustbench_gcp.suites.severities.covered_severities`); a comparison of
#: several models says it of the cells it compares, which may be fewer
COVERAGE_NOTES = ("mCE averages ", "mFR averages ", "the means average ", "CE sums over severities ",
                  "the mean errors average severities ",
                  "the corruptions were stored at different severities ")


def coverage_note(metric: str | None, covered: int, of: str, missing: Sequence[str]) -> str:
    """``mCE averages 2 of the 15 benchmark corruptions; missing: ...`` (``metric`` None: the
    unnormalized means)."""
    what = f"{metric} averages" if metric else "the means average"
    return f"{what} {covered} of the {of}; missing: {', '.join(missing)}"


def classification_entry(result: CellResult) -> dict:
    """``n``, ``top1_error``, ``top5_error`` of a classification cell."""
    return {
        "n": result.n,
        "top1_error": rate(result.counts.get("top1_errors", 0), result.n),
        "top5_error": rate(result.counts.get("top5_errors", 0), result.n),
    }


def clean_results(results: Iterable[CellResult]) -> list[CellResult]:
    return [r for r in results if r.key == CLEAN]


def clean_entry(results: Iterable[CellResult]) -> dict | None:
    """The ``clean`` section: the clean cell's errors, or None without clean images."""
    found = clean_results(results)
    return classification_entry(found[0]) if found else None


def exact_root_note(model: Any, consequence: str) -> list[str]:
    """The note of a gradient-based suite on a model whose matrix square root is exact (eig,
    SVD): its gradient is ill-conditioned; ``consequence`` says what that does to the suite."""
    from robustbench_gcp.models.matrix import EXACT_SQRT_METHODS

    root = model.root()
    if root not in EXACT_SQRT_METHODS:
        return []
    return [f"this model's matrix square root is exact ({root}): its gradient has 1/(s_i + s_j) terms "
            f"that are ill-conditioned for small or repeated eigenvalues (clamped here), {consequence}"]


def per_image_errors(result: CellResult) -> Any:
    """1.0 where the image was misclassified (top-1), per image, as float64."""
    if result.correct is None:
        raise ValueError(f"cell {result.key.label} has no per-image outcomes")
    return (~result.correct).astype(np.float64)


class Suite:
    """One kind of evaluation. Subclasses set :attr:`kind` and override what they need.

    The base class is the clean suite's behaviour: only the clean cell, its error, its row.
    """

    #: the kind name: the ``kind:`` of benchmarks.yaml and the kind of the suite's cells
    kind: ClassVar[str] = ""
    #: what the kind measures, in a few words (``gcp-robust eval --help`` lists the kinds)
    summary: ClassVar[str] = ""
    #: the paired tests of :meth:`design`, for the captions of comparisons
    tests_text: ClassVar[str] = "McNemar's test on the clean images"
    #: the command-line overrides this kind takes
    flags: ClassVar[tuple[Flag, ...]] = ()
    #: what the suite needs when no images are given (``--data DIR`` ...)
    needs: ClassVar[str] = "--data DIR"
    #: whether ``--baseline`` names a normalizer this kind uses
    uses_baseline: ClassVar[bool] = False
    #: whether its measurements differentiate the model with respect to its input (attacks, the
    #: landscape): float16 autocast would round small gradients to 0
    gradients: ClassVar[bool] = False
    #: whether ``--amp`` may run it at all: not where differences of gradients at small steps are the
    #: measurement (the landscape), which bfloat16's rounding swamps as well
    allows_amp: ClassVar[bool] = True
    #: whether the normalizer is a stored run of the same suite (``gcp-robust baseline``), not a
    #: table of benchmarks.yaml
    stored_baseline: ClassVar[bool] = False
    #: whether its cells may draw random numbers from ``--seed`` (corruptions, sequences, random
    #: starts): runs of other seeds then saw other inputs, which comparisons say
    draws: ClassVar[bool] = True
    #: the datasets (``data.datasets.DATASETS`` keys) the suite can run on (None: any)
    datasets: ClassVar[tuple[str, ...] | None] = None
    #: keys of the ``metrics`` section renamed when one object merges every suite's sections
    #: (the demo's JSON), where two suites use the same key for different things
    merged_metric_names: ClassVar[dict[str, str]] = {}
    #: the measured columns of the long CSV this kind fills (besides the clean cell's)
    long_columns: ClassVar[tuple[str, ...]] = ()
    #: whether released files read alone (no --data) are scored against their labels
    released_labels: ClassVar[bool] = True
    source_word: ClassVar[str] = "corruptions"  # how report headers name where cells came from

    # -- configuration ------------------------------------------------------------------
    def config_keys(self) -> set[str]:
        """The keys of a suite entry of this kind in benchmarks.yaml, ``kind`` included."""
        return {"kind"}

    def parse(self, check: Checker, name: str, value: Mapping, where: str) -> SuiteSpec:
        """The spec of a benchmarks.yaml entry (keys already checked against :meth:`config_keys`)."""
        return SuiteSpec(name, self.kind)

    def describe(self, spec: SuiteSpec) -> tuple[str, str]:
        """(contents, levels) of a suite, for ``gcp-robust suites``."""
        return "clean images", ""

    def spec_json(self, spec: SuiteSpec) -> dict:
        """The JSON of a suite for ``gcp-robust suites --json`` (kind-specific fields)."""
        return {}

    # -- plan: selection and checks (no compute) -----------------------------------------
    def select(self, spec: SuiteSpec, flags: Mapping[str, Any]) -> Selection:
        """Apply and check the command-line overrides (``flags``: set flags of this kind only)."""
        return Selection(spec)

    def check_baseline(self, name: str, baselines: Iterable[str], store_path: Path) -> None:
        """Raise if ``--baseline name`` cannot normalize this suite (before any compute)."""

    def corrupts(self, selection: Selection) -> bool:
        """Whether ``selection`` applies corruption parameters made for one image size (ImageNet-C's
        on 64 px images are refused unless ``--preset`` forces them); released files (a selection's
        ``released``) are read as they are."""
        return getattr(selection, "released", None) is None

    def check_normalizers(self, names: Sequence[str], baselines: Iterable[str], selection: Selection,
                          store_path: Path, own_classes: bool) -> None:
        """Raise if none of the ``--baseline`` names normalizes ``selection`` (before any compute):
        ``baselines`` are benchmarks.yaml's, ``store_path`` holds the stored ones, ``own_classes``:
        the model classifies the dataset's own classes (not a task of other classes)."""

    def check_inputs(self, selection: Selection) -> None:
        """Raise if the selection's released files cannot feed it (folders missing ...)."""

    def image_list(self, selection: Selection) -> ImageList | None:
        """The images of a run given only released files (None: the suite needs ``--data``)."""
        return None

    def check_data(self, selection: Selection, images: ImageList) -> None:
        """Raise if the images of ``--data`` cannot stand beside the selection's released files
        (files read by row must be those rows' images), before any compute."""

    def check_files(self, selection: Selection, images: ImageList, *, data: bool, whole: bool) -> None:
        """Raise if a released folder lacks a file the run reads for ``images`` (``--data``'s when
        ``data``, else its first released folder's; after ``--limit``), or (``whole``: the run takes
        every image of that first folder) holds one it lacks, before any compute."""

    def check_model(self, selection: Selection, model: Any) -> Selection:
        """The selection as it applies to ``model`` (the chosen model,
        :class:`~robustbench_gcp.pipeline.weights.ModelChoice`, not loaded): unchanged, or with the
        defaults of the model's family (the landscape suite's steps); before any compute.

        Raises:
            ConfigError: the selection cannot measure ``model``.
        """
        return selection

    def notes(self, selection: Selection, model: Any) -> list[str]:
        """Notes every report of this selection carries; ``model`` is the chosen model
        (:class:`~robustbench_gcp.pipeline.weights.ModelChoice`: ``label``, ``arch``, ``root()``)."""
        return []

    def source_description(self, report: Report) -> str | None:
        """How the report's cells were made, for its header (None: nothing to say)."""
        return None

    # -- run -------------------------------------------------------------------------------
    def tasks(self, selection: Selection, inputs: TaskInputs) -> list[Task]:
        """The tasks (cells) of a plan, in report order; the clean cell first when there is one."""
        from robustbench_gcp.suites.tasks import ClassifyTask

        return [ClassifyTask(CLEAN, inputs.clean)] if inputs.clean is not None else []

    # -- reports from stored counts --------------------------------------------------------
    def owns(self, key: CellKey) -> bool:
        """Whether a stored cell belongs to this kind."""
        return key.kind == self.kind

    def group(self, key: CellKey) -> str:
        """Stored cells of one run are reported in groups: this kind's cells with the same
        group (e.g. the same generation source) form one report."""
        return ""

    def source_label(self, group: str) -> str:
        """How the cells of a group were made, for people ("torch, JPEG round trip")."""
        return ""

    def agreed(self, runs: Sequence[list[CellResult]]) -> Any:
        """What the runs of one image set agree to show, handed to each one's :meth:`latest` (the
        adversarial suite: per attack, a budget every run has complete); None: each its own."""
        return None

    def latest(self, results: list[CellResult], model: str,
               agreed: Any = None) -> tuple[list[CellResult], list[str]]:
        """The stored cells a report shows (e.g. the latest attack budget), with notes on the rest;
        ``agreed``: :meth:`agreed` of the runs on the same images."""
        return results, []

    def source_fields(self, results: Sequence[CellResult]) -> dict:
        """``backend`` and ``storage_roundtrip`` of a report, from its cells' variants."""
        return {"backend": None, "storage_roundtrip": None}

    def normalizer(self, name: str, baselines: Mapping[str, Any], store: Any,
                   keys: Sequence[CellKey]) -> Any:
        """The normalizer ``--baseline name`` gives this suite's metrics (None: unnormalized)."""
        return None

    def merged_groups(self, groups: dict[str, list[CellResult]],
                      classes: int | None = None) -> dict[str, list[CellResult]]:
        """One run's cells by :meth:`group`, with groups that are other versions of one another's
        cells merged (ImageNet-P's before its cells named the model's classes); as they are here.
        ``classes``: those of the run's model where any of its cells (of any suite) name them, a
        model of other classes than ImageNet's 1000 on its images (given only then)."""
        return groups

    def normalizes(self, normalizer: Any) -> bool:
        """Whether a :meth:`normalizer` result normalizes anything (not None)."""
        return normalizer is not None

    def choose_normalizer(self, names: str, baselines: Mapping[str, Any], store: Any,
                          keys: Sequence[CellKey]) -> Any:
        """The normalizer of the first of ``names`` (``--baseline``, comma-separated) that normalizes
        this suite's cells, else the first name's (whose report then says why it is unnormalized):
        ``alexnet,demo-gap`` gives ImageNet-C AlexNet's published errors and ImageNet-P the run
        stored as demo-gap. Where none normalizes every cell, a stored run named is preferred to a
        published table (``alexnet,gb`` on a 10-class model: gb's report says which of its cells
        are missing; AlexNet's only that it normalizes no other task)."""
        found = [self.normalizer(name, baselines, store, keys) for name in baseline_names(names)]
        stored = (n for n in found if getattr(n, "run", None) is not None)
        return next((n for n in found if self.normalizes(n)), next(stored, found[0]))

    def normalized_by_stored_run(self, dataset: DatasetInfo) -> bool:
        """Whether a run stored with ``gcp-robust baseline`` normalizes this suite's metrics on
        ``dataset`` (what a baseline of this suite is for)."""
        return self.stored_baseline

    def sections(self, results: Sequence[CellResult], normalizer: Any) -> tuple[dict, list[str]]:
        """The suite's own report sections from its stored cells (clean included), and notes."""
        return {"clean": clean_entry(results)}, []

    # -- comparisons -----------------------------------------------------------------------
    def design(self, results: Sequence[CellResult], normalizer: Any) -> Design:
        """Per-image values and headline metric functions for the bootstrap and paired tests."""
        rows, values, tests, metrics = [], [], {}, {}
        for r in clean_results(results):
            rows.append("clean")
            values.append(per_image_errors(r))
            tests["clean"] = r.correct
            metrics["clean_error"] = lambda m: m["clean"]
        return Design.of(rows, values, metrics, tests, proportions={m: "clean" for m in metrics})

    def unused_cells(self, results: Sequence[CellResult]) -> set[CellKey]:
        """The cells of ``results`` the suite's figures leave out (none unless a suite says so)."""
        return set()

    def aligned_cells(self, results: Sequence[CellResult]) -> set[tuple[str, ...]] | None:
        """Cells whose set must be the same for every compared model (averaged or paired by row), as
        their :meth:`alignment`; None when the suite's metrics neither average nor pair cells."""
        return None

    def alignment(self, key: CellKey) -> tuple[str, ...]:
        """What two models' cells must share to be compared: (name, level) unless a suite says more."""
        return key.name, key.level

    def alignment_text(self, alignment: tuple[str, ...]) -> str:
        """An :meth:`alignment` for the note on cells left out of a comparison (``fog/3``)."""
        return f"{alignment[0]}/{alignment[1]}"

    # -- views -----------------------------------------------------------------------------
    def tables(self, report: Report) -> list[Table]:
        """The tables of one report besides the summary (per corruption, per attack ...)."""
        return []

    def summary_rows(self, report: Report) -> list[dict]:
        """{metric, value} rows of the summary table (percentages and CE-type figures)."""
        clean = report.sections.get("clean")
        if not clean:
            return []
        return [{"metric": "clean top-1 error (%)", "value": pct(clean["top1_error"])},
                {"metric": "clean top-5 error (%)", "value": pct(clean["top5_error"])}]

    def long_rows(self, report: Report) -> list[dict]:
        """Long CSV rows (``item``, ``level`` and the measured columns)."""
        clean = report.sections.get("clean")
        return [{"item": "clean", "level": "", **clean}] if clean else []

    def headline(self, report: Report) -> dict:
        """The headline numbers, flat (fractions as fractions, CE-type as percent)."""
        clean = report.sections.get("clean")
        return {"clean_error": clean["top1_error"]} if clean else {}  # the comparisons' name

    def headlines(self, reports: Sequence[Report]) -> list[dict]:
        """Each report's :meth:`headline` as a table of them all names its columns: a suite whose
        figures of one name were measured differently across the reports names them apart."""
        return [self.headline(report) for report in reports]

    def detail_markdown(self, reports: Sequence[Report]) -> str | None:
        """A paper-style table across models (None: nothing beyond the comparison)."""
        return None

    #: headline metric -> (header, display scale, format) in comparison tables
    metric_display: ClassVar[dict[str, tuple[str, float, str]]] = {
        "clean_error": ("clean err %", 100.0, ".2f"),
    }

    def display(self, metric: str) -> tuple[str, float, str] | None:
        """How a headline metric of this suite is shown (None: not this suite's)."""
        return self.metric_display.get(metric)

    def plots(self) -> dict[str, Callable[..., Path | None]]:
        """Figure name -> ``draw(reports, path, heading=None)``, drawing a PNG (None: nothing)."""
        return {}


class LevelledSuite(Suite):
    """A suite whose cells are (name, level) pairs, generated on the fly or read from released
    files (``--corrupted-dir``), whose metrics average those cells and are normalized by a
    baseline: ImageNet-C (corruption, severity) and ImageNet-P (perturbation, difficulty).

    Stored cells are grouped by how they were made (their variant: backend and storage round
    trip, or released files); compared models must share the averaged cells.
    """

    uses_baseline = True
    needs = "--data DIR (clean images) or --corrupted-dir DIR (released files)"
    #: the key of a ``datasets:`` entry of benchmarks.yaml that locates this suite's released files
    released_data: ClassVar[str] = "corrupted"
    #: variant fields that set cells apart but not their reports: a corruption's revision (cells
    #: an earlier version made, :mod:`~robustbench_gcp.suites.revisions`) reports with the rest
    unmarked: ClassVar[tuple[str, ...]] = ("revision",)
    flags: ClassVar[tuple[Flag, ...]] = (
        Flag("corrupted_dir", "Released files, read as they are (each of the benchmark's size: "
             "224 px, 64 px for Tiny-ImageNet, 32 px for CIFAR; another is refused): ImageNet-C / "
             "Tiny-ImageNet-C <DIR>/<corruption>/<severity>/<wnid>/*.JPEG, CIFAR-10/100-C "
             "<DIR>/<corruption>.npy + labels.npy, ImageNet-P / Tiny-ImageNet-P "
             "<DIR>/<perturbation>[_2|_3]/<wnid>/*.mp4, CIFAR-10/100-P <DIR>/<perturbation>[_2|_3].npy.",
             metavar="DIR", kind="path"),
    )

    def released(self, flags: Mapping[str, Any], dataset: DatasetInfo) -> Path | None:
        """The ``--corrupted-dir`` folder of ``flags``, checked to exist (None: not given).

        Raises:
            DataError: the folder does not exist.
        """
        from robustbench_gcp.errors import DataError

        value = flags.get("corrupted_dir")
        if value is None:
            return None
        folder = Path(value).expanduser()
        if not folder.is_dir():  # the benchmark of the suite's dataset (CIFAR-10-C), not ImageNet-C
            state = "is not a folder" if folder.exists() else "does not exist"
            raise DataError(f"{self.benchmark_name(dataset)} folder {folder} (--corrupted-dir) {state}")
        return folder

    def group(self, key: CellKey) -> str:
        """The cell's variant without the marks of :attr:`unmarked`."""
        variant = json.loads(key.variant)
        for mark in self.unmarked:
            variant.pop(mark, None)
        return canonical_json(variant)

    def benchmark_name(self, dataset: DatasetInfo) -> str:
        """The benchmark this suite makes of ``dataset`` (CIFAR-10-C ...), for reports."""
        return dataset.released

    def released_size_note(self, dataset: DatasetInfo, input_size: int, clean: bool) -> str:
        """The note on ``dataset``'s released files (``released_size`` px) read for a model of
        ``input_size`` px: given to it as they are, while its ``clean`` images (from ``--data``)
        take its own preprocessing."""
        said = (f"the model's inputs are {input_size} px, but the released {self.benchmark_name(dataset)} "
                f"images are {dataset.released_size} px: they are given to it as they are")
        return f"{said}, and its clean figures are of {input_size} px images" if clean else said

    def source_description(self, report: Report) -> str | None:
        if report.corrupted_dir:
            return f"released files in {report.corrupted_dir}"
        if report.backend:
            trip = f", {roundtrip_words(report_dataset(report))[1]}" if report.storage_roundtrip else ""
            presets = {variant_of(r.key).get("preset") for r in report.cells if self.owns(r.key)}
            forced = "".join(f", {_preset_words(p)}" for p in sorted(presets - {None}))
            return f"generated on the fly ({report.backend} backend{trip}{forced})"
        return None

    def source_label(self, group: str) -> str:
        variant = json.loads(group)
        dataset = get_dataset(variant.get("dataset"))
        label = variant.get("source", "")
        if variant.get("roundtrip"):
            label += f", {roundtrip_words(dataset)[0]}"
        if variant.get("preset"):
            label += f", {_preset_words(variant['preset'])}"
        if variant.get("classes"):  # a model's own label space on ImageNet's images
            label += f", {variant['classes']} classes"
        return label if dataset.name == "imagenet" else f"{self.benchmark_name(dataset)}, {label}"

    def source_fields(self, results: Sequence[CellResult]) -> dict:
        variants = [variant_of(r.key) for r in results if self.owns(r.key)]
        source = variants[0].get("source") if variants else None
        generated = source is not None and source != "released"
        return {"backend": source if generated else None,
                "storage_roundtrip": variants[0].get("roundtrip") if generated else None}

    def aligned_cells(self, results: Sequence[CellResult]) -> set[tuple[str, ...]]:
        return {self.alignment(r.key) for r in results if self.owns(r.key)}


def dataset_of(results: Iterable[CellResult], kind: str) -> DatasetInfo:
    """The dataset of a report's stored cells of ``kind`` (their variants name it, and the classes of
    another label space; ImageNet when none does, or when they disagree)."""
    datasets = {variant_dataset(variant_of(r.key)) for r in results if r.key.kind == kind}
    return datasets.pop() if len(datasets) == 1 else get_dataset(None)


def variant_dataset(variant: Mapping[str, Any]) -> DatasetInfo:
    """The dataset a cell's variant names, in the label space of its ``classes``, corrupted with its
    forced ``preset`` (ImageNet when it names none)."""
    return get_dataset(variant.get("dataset"), variant.get("classes"), variant.get("preset"))


def column_names(reports: Sequence[Report], section: str, field: str, order: Sequence[str]) -> list[str]:
    """The names that any of ``reports`` has in ``sections[section]`` (entries' ``field``), in
    ``order`` (the registry's; names it lacks last): the columns of a table across models."""
    names = dict.fromkeys(e[field] for r in reports for e in r.sections.get(section) or ())
    rank = {name: i for i, name in enumerate(order)}
    return sorted(names, key=lambda name: rank.get(name, len(rank)))


def _preset_words(preset: str) -> str:
    """``--preset`` forced on another dataset, for reports: ``cifar parameters``."""
    return f"{preset} parameters"


def report_dataset(report: Report) -> DatasetInfo:
    """The dataset a report's metrics name, in the label space of their ``classes``, with their
    forced ``preset`` (ImageNet when they name none)."""
    metrics = report.sections.get("metrics") or {}
    return get_dataset(metrics.get("dataset"), metrics.get("classes"), metrics.get("preset"))


def variant_of(key: CellKey) -> dict:
    """A cell's settings (its variant JSON) as a dict."""
    return json.loads(key.variant)
