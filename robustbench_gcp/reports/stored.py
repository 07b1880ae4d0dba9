"""Reports from stored cells: the one builder, and every report a store holds.

:func:`build_report` makes a :class:`~robustbench_gcp.reports.report_type.Report` from a run
and its stored cells; ``eval`` calls it right after computing, ``report`` (through
:func:`collect`) from the store alone, so both give the same object for the same cells, with
the same notes on the run (its weights, labels, preprocessing, the suite's); ``eval``'s adds those
on the command that made it (``--limit`` beyond the images, files found elsewhere than the store
recorded, released files read alone), which no later ``report`` can tell.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from robustbench_gcp.engine.runner import shard_ranges
from robustbench_gcp.reports.report_type import Report
from robustbench_gcp.store import CellKey, CellResult, RunInfo, Store
from robustbench_gcp.suites import CLEAN, Suite, all_suites, get_suite, suite_of_cell
from robustbench_gcp.suites.base import report_dataset, variant_of
from robustbench_gcp.suites.stored_baselines import normalizer_for_images, normalizer_for_run

#: :func:`build_report`'s default checkpoint: the stored run's file
STORED = object()


def build_report(
    suite: Suite,
    run: RunInfo,
    results: Sequence[CellResult],
    normalizer: object = None,
    *,
    suite_name: str | None = None,
    model: str | None = None,
    checkpoint: str | None | object = STORED,
    notes: Sequence[str] = (),
    data: str | None = None,
    corrupted_dir: str | None = None,
    device: str | None = None,
    store: str | None = None,
    computed: dict | None = None,
) -> Report:
    """The report of ``results`` (stored cells of ``run``, the clean cell first when there is one).

    The keyword arguments are what only the evaluating call knows (its label, the checkpoint
    file and folders given, the device, what it computed); without them the report is what the
    store alone says. ``checkpoint=None`` says the evaluation had no file (a module's own or
    random weights), where the store may name the file of an earlier run with the same weights.
    """
    # (a baseline that normalizes none of the cells: its notes would speak of figures it gave none of)
    normalizer, baseline_notes = normalizer_for_run(normalizer, run)
    if not suite.normalizes(normalizer):
        baseline_notes = []
    identity = run.identity
    weights = identity.get("weights")
    random = weights is None or run.random_weights_seed is not None
    sections, suite_notes = suite.sections(results, normalizer)
    groups = [suite.group(r.key) for r in results if r.key != CLEAN and suite.owns(r.key)]
    return Report(
        model=model or run_label(run),
        arch=run.arch,
        checkpoint=run.checkpoint if checkpoint is STORED else checkpoint,
        checkpoint_sha256=None if random else weights,
        suite=suite_name or suite.kind,
        kind=suite.kind,
        seed=identity.get("seed"),
        n_images=run.n_images,
        data=data,
        corrupted_dir=corrupted_dir,
        **suite.source_fields(results),
        device=device or identity.get("device_type"),
        precision=identity.get("precision"),
        memory_format=identity.get("memory_format", "contiguous"),
        sections=sections,
        notes=[*baseline_notes, *suite_notes, *notes],
        run=run.key,
        data_fingerprint=identity.get("data"),
        store=store,
        computed=computed,
        cells=list(results),
        normalizer=normalizer,
        source=(suite.source_label(groups[0]) if groups else "") or None,
    )


def run_label(run: RunInfo) -> str:
    """The name a stored run's reports show: its model's label, tagged with the matrix function
    it was evaluated with when that is not the model's own (``demo-isqrt[sqrt=eig]``), however the
    run was first labelled."""
    from robustbench_gcp.models.heads import matrix_label

    return matrix_label(run.model, run.identity)


def weights_label(run: RunInfo, short: bool = True) -> str | None:
    """A run's weights as its identity records them: the checkpoint's sha256 (its first 8 digits
    when ``short``, as run labels show it), a brought module's state-dict hash, or
    ``random-init-seed-N``."""
    weights = run.identity.get("weights")
    return _setting(weights, "weights") if short and weights is not None else weights


def _chosen(run: RunInfo, models: Sequence[str] | None, labels: Mapping[str, str] | None = None) -> bool:
    """Whether ``--models`` (the labels reports show) selects ``run``: ``demo-isqrt`` is the model as
    trained, not also a run with another root that an older version stored under that name; a
    label with settings (``demo-gap[seed=1]``) selects the runs that have them (labels grow with
    the runs beside: ``demo-gap[seed=1,shard-size=500]`` once a third differs in shard size), the
    plain one all its runs."""
    if not models or run_label(run) in models or (labels or {}).get(run.key) in models:
        return True
    exact = set((labels or {}).values())  # a run's own label selects that run alone
    return any(_has_settings(name, run) for name in models if name not in exact)


def _has_settings(name: str, run: RunInfo) -> bool:
    """Whether ``name`` is the run's label with some of its settings in label order:
    ``demo-gap[seed=1]`` for a run of demo-gap with seed 1 (a setting the run lacks is what that
    means, ``memory-format=contiguous``, else ``none``)."""
    prefix = run_label(run) + "["
    if not (name.startswith(prefix) and name.endswith("]")):
        return False
    # an unrecorded setting also as labels showed it before 0.7.15 (null)
    settings = [(_shown(key), key, run.identity.get(key)) for key in _setting_keys([run.identity])]
    tags = iter([{f"{shown}={_setting(value, key)}", *([f"{shown}=null"] if value is None else [])}
                 for shown, key, value in settings])
    wanted = split_labels(name[len(prefix):-1])
    return bool(wanted) and all(any(part in tag for tag in tags) for part in wanted)  # in order


def labels_named(path: str | Path, name: str) -> set[str]:
    """The labels reports show for the runs of the store at ``path`` that ``name`` selects as
    ``--models`` does (``demo-gap[seed=1]``: ``demo-gap[seed=1,shard-size=4]``), for
    ``--reference``."""
    with Store(path, read_only=True) as store:
        runs = store.runs()
    labels = run_labels(runs)
    return {labels[run.key] for run in runs if _chosen(run, [name], labels)}


def split_labels(text: str) -> list[str]:
    """``A,B`` as labels (or a label's settings): a comma inside ``[...]`` belongs to its label
    (``demo-gap[seed=1,shard-size=4],demo-isqrt``)."""
    names, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth = max(0, depth + {"[": 1, "]": -1}.get(char, 0))
        if char == "," and depth == 0:
            names.append(text[start:i])
            start = i + 1
    names.append(text[start:])
    return [name.strip() for name in names if name.strip()]


def collect(store: Store, *, models: Sequence[str] | None = None, kinds: Sequence[str] | None = None,
            baseline: str | None = None, baselines: Mapping | None = None) -> list[Report]:
    """Every report the store can make: per run, per suite kind and per group (source).

    A run's clean cell joins each of its groups (and is a report of its own when ``kinds`` asks
    for the clean suite or the run has nothing else to report). Of an unfinished group (a run
    stopped before its end), a report covers either its complete cells on every image or every
    cell on the images all of them have so far (:func:`reported_cells`). Each suite picks the
    cells it shows (for adversarial cells measured with several budgets, the latest one of each
    attack) and its normalizer (``baseline``: a name of ``baselines``, benchmarks.yaml's, or of a
    stored baseline run).
    """
    clean_suite = suite_of_cell(CLEAN)
    wanted = set(kinds or (suite.kind for suite in all_suites()))
    reports, untold = [], []  # untold: notes of runs with no report to carry them
    runs = store.runs()
    labels = run_labels(runs)
    runs = [run for run in runs if _chosen(run, models, labels)]
    if models:  # in the order --models names them, whose first is the comparisons' reference (helper-248:
        # the store's order made a random-weights check listed last the reference of every test)
        runs.sort(key=lambda run: next(i for i, name in enumerate(models) if _chosen(run, [name], labels)))
    of_runs = []
    for run in runs:
        every = store.results(run)
        of_runs.append((run, every, _grouped(every)))
    agreed = _agreed(of_runs)
    for run, every, stored in of_runs:
        clean_cells = [r for r in every if r.key == CLEAN]
        found, unreported = [], []
        for (kind, group), cells in stored.items():
            if kind in wanted:
                shared = agreed.get((kind, group, run.identity.get("data")))
                report = _group_report(get_suite(kind), store, run, labels[run.key], clean_cells, cells,
                                       baseline, baselines, shared, group=group)
                found += [report] if report is not None else []
                # no image in all its cells yet (a run with nothing stored has its own note, unless
                # --suite leaves that out)
                if report is None and (kinds is not None or any(r.shards for r in every)):
                    progress = run_progress(clean_cells + cells, run.n_shards)
                    unreported.append(f"{labels[run.key]}: {kind} not reported: {progress['shards']} of "
                                      f"{progress['of_shards']} shards stored, and no image is in all its "
                                      f"cells yet; {to_finish(store.computing(run.id))}")
        # a clean-only report when asked for, or when the run has nothing else to report
        if clean_cells and clean_suite.kind in wanted and (kinds is not None or not found):
            report = _group_report(clean_suite, store, run, labels[run.key], clean_cells, [], baseline,
                                   baselines)
            found = ([report] if report is not None else []) + found
        if not any(r.shards for r in every) and kinds is None:
            computing = store.computing(run.id)
            unreported.append(f"{labels[run.key]}: a run with nothing stored yet (" + (
                f"its first shard {to_finish(computing)})" if computing else
                "stopped before its first shard); re-run the command that made it"))
        if found:
            found[0].notes += unreported
        else:
            untold += unreported
        reports += found
    for report in reports:  # the store's notes: every report's, so that views show them once, unprefixed
        report.notes += untold
    return reports


def _grouped(every: Sequence[CellResult]) -> dict[tuple[str, str], list[CellResult]]:
    """A run's cells but the clean one, complete or not, per suite kind and group (the groups
    each suite merges, :meth:`~robustbench_gcp.suites.Suite.merged_groups`)."""
    by_kind: dict[str, dict[str, list[CellResult]]] = {}
    for result in every:
        if result.key != CLEAN:
            suite = suite_of_cell(result.key)
            by_kind.setdefault(suite.kind, {}).setdefault(suite.group(result.key), []).append(result)
    # the model's classes, where any cell names them (ImageNet-C's since 0.7.11): one run, one model
    named = {variant_of(r.key).get("classes") for r in every}
    named = {k for k in named if isinstance(k, int) and not isinstance(k, bool)}
    classes = named.pop() if len(named) == 1 else None

    def merged(kind: str, groups: dict[str, list[CellResult]]) -> dict[str, list[CellResult]]:
        suite = get_suite(kind)
        # (a suite of yours may override merged_groups(groups) as before classes existed: helper-278)
        if classes and "classes" in inspect.signature(suite.merged_groups).parameters:
            return suite.merged_groups(groups, classes=classes)
        return suite.merged_groups(groups)

    return {(kind, group): cells for kind, groups in by_kind.items()
            for group, cells in merged(kind, groups).items()}


def _agreed(of_runs: Sequence[tuple[RunInfo, list, dict]]) -> dict[tuple[str, str, str | None], Any]:
    """Per suite kind, group and image set, what its runs agree to show
    (:meth:`~robustbench_gcp.suites.Suite.agreed`; e.g. an attack's budget all of them have)."""
    runs_of: dict[tuple[str, str, str | None], list[list[CellResult]]] = {}
    for run, _, stored in of_runs:
        for (kind, group), cells in stored.items():
            runs_of.setdefault((kind, group, run.identity.get("data")), []).append(cells)
    return {key: get_suite(key[0]).agreed(cells) for key, cells in runs_of.items()}


#: identity fields that set runs of one model on one image set apart, as labels name them, in label
#: order; a field not named here (one a later version adds) is named by its key, after these
_SETTINGS = {"seed": "seed", "shard_size": "shard-size", "precision": "precision", "device_type": "device",
             "weights": "weights", "preprocess": "preprocess", "version": "identity-version",
             "last_stride": "layer4-stride", "arithmetic": "arithmetic", "classifier": "classifier",
             "covariance": "covariance", "memory_format": "memory-format", "read": "read",
             "transform_input": "transform-input", "draws": "draws", "corruption_base": "corruption-base",
             "arch": "arch"}
#: identity fields that are no settings: the images (runs are grouped by them) and the matrix
#: function (:func:`run_label` names it)
_NOT_SETTINGS = {"data", "sqrt", "ns_iters"}


def _setting_keys(identities: Sequence[Mapping]) -> list[str]:
    """The identity fields labels may name, in label order: :data:`_SETTINGS`'s, then any other
    field of ``identities`` (none of this version's) by its key."""
    return [*_SETTINGS, *sorted({k for i in identities for k in i} - set(_SETTINGS) - _NOT_SETTINGS)]


def _shown(key: str) -> str:
    """A setting's name in labels (``shard-size``)."""
    return _SETTINGS.get(key, key.replace("_", "-"))


def run_labels(runs: Sequence[RunInfo]) -> dict[str, str]:
    """The label of each run (by key) in reports: :func:`run_label`, and where several runs of one
    model on one image set differ in a setting that defines a run (seed, shard size, weights at the
    same path ...), those settings too: ``demo-gap[shard-size=4]``."""
    same: dict[tuple, list[RunInfo]] = {}
    for run in runs:
        same.setdefault((run_label(run), run.identity.get("data")), []).append(run)
    labels = {}
    for (label, _), group in same.items():
        identities = [run.identity for run in group]
        differ = [k for k in _setting_keys(identities)
                  if len({json.dumps(i.get(k), sort_keys=True) for i in identities}) > 1]
        differ = without_implied(differ)
        for run in group:
            tags = ",".join(f"{_shown(k)}={_setting(run.identity.get(k), k)}" for k in differ)
            labels[run.key] = f"{label}[{tags}]" if tags else label
    return labels


def without_implied(differ: list[str]) -> list[str]:
    """Identity fields that differ, less those another of them implies: an ``--amp`` run's
    ``classifier`` mark (float32 since 0.7.2) follows from its ``precision``."""
    return [k for k in differ if k != "classifier"] if "precision" in differ else differ


#: what a setting a run does not record means, as labels show it (JSON's null was shown)
_UNRECORDED = {"memory_format": "contiguous"}


def _setting(value, key: str = "") -> str:
    """A setting as a label shows it: a weights hash by its first 8 characters; one the run does
    not record as what that means, else "none"."""
    if value is None:
        return _UNRECORDED.get(key, "none")
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return re.sub(r"[0-9a-f]{64}", lambda m: m.group(0)[:8], text)


def _group_report(suite: Suite, store: Store, run: RunInfo, label: str, clean_cells: list[CellResult],
                  cells: list[CellResult], baseline: str | None, baselines: Mapping | None,
                  agreed: Any = None, group: str | None = None) -> Report | None:
    """The report of one group of a run's cells (the suite's :meth:`~Suite.latest` of them, with
    what the runs on its images ``agreed``) with its clean cell, marked partial where the run did
    not finish them (None: nothing to report yet). Its source is the ``group``'s, where given:
    that of the cells a suite merged into it (:meth:`~Suite.merged_groups`)."""
    notes = []
    if cells:
        # (a suite of yours may override latest(results, model) as before agreed existed)
        cells, notes = suite.latest(cells, label, agreed) if agreed else suite.latest(cells, label)
    chosen = reported_cells(store, run, clean_cells + cells)
    if chosen is None:
        return None
    results, subset = chosen
    report = _stored_report(suite, run, label, results, notes, store, baseline, baselines)
    if group is not None:  # (a landscape run's cells stored before they named the model's classes)
        report.source = suite.source_label(group) or None
    progress = run_progress(clean_cells + cells, run.n_shards)
    if progress["cells_complete"] < progress["cells"]:
        mark_partial(report, progress, subset, computing=store.computing(run.id))
    if subset is not None:
        report.normalizer, more = normalizer_for_images(report.normalizer, subset)
        report.notes += more if suite.normalizes(report.normalizer) else []  # (one that normalized nothing)
    return report


def reported_cells(store: Store, run: RunInfo, cells: list[CellResult]) -> tuple[list, dict | None] | None:
    """What a report of ``cells`` (of an unfinished run, perhaps; the clean cell among them)
    covers: every cell on the images of the shards they all have, when those are half the images
    or more (a run stopped mid-way: it computes its shards round by round across its cells, so in
    its last round some cells are complete and the others a shard short); otherwise its complete
    cells on every image, while any of the suite's own cells is complete (cells added to a run
    that had finished the others), else every cell on the images they all have. Returns the
    cells and, for the shared images, ``{"images", "of_images", "image_range"}``; None when there
    is nothing to report.
    """
    complete = [r for r in cells if r.complete]
    own = [r for r in cells if r.key != CLEAN]
    if complete and len(complete) == len(cells):
        return complete, None
    common = set.intersection(*(set(r.shards) for r in cells)) if cells else set()
    own_complete = any(r.key != CLEAN for r in complete) or bool(complete and not own)
    # (a run stopped in its last round reported one corruption's mean, 52.5 for a run of 36.25)
    if own_complete and 2 * len(common) < run.n_shards:
        return complete, None
    if not common:
        return None
    shared = store.results(run, keys=[r.key for r in cells], shards=common)
    return shared, {"images": shared[0].n, "of_images": run.n_images,
                    "image_range": image_ranges(common, run.shard_size, run.n_images)}


def image_ranges(shards: Iterable[int], shard_size: int, n_images: int) -> str:
    """The images of ``shards`` (as the engine splits a run: :func:`shard_ranges`) as index ranges,
    ``0-27,40-41`` (shards 0 to 13 and 20 of size 2)."""
    spans = shard_ranges(n_images, shard_size)
    parts: list[list[int]] = []  # [first, last] image of each run of adjacent shards
    for shard in sorted(shards):
        images = spans[shard]
        if parts and parts[-1][1] + 1 == images.start:
            parts[-1][1] = images.stop - 1
        else:
            parts.append([images.start, images.stop - 1])
    return ",".join(f"{first}-{last}" if last > first else str(first) for first, last in parts)


def run_progress(cells: Sequence[CellResult], n_shards: int) -> dict:
    """How far a run got on ``cells``: complete cells and stored shards, of all."""
    return {"cells_complete": sum(r.complete for r in cells), "cells": len(cells),
            "shards": sum(len(r.shards) for r in cells), "of_shards": len(cells) * n_shards}


def mark_partial(report: Report, progress: dict, subset: dict | None = None,
                 computing: Sequence[int] = ()) -> None:
    """Mark ``report`` as made from a partial run: its means cover its complete cells only, or
    (``subset``) every cell on the images they all have so far; ``computing``: the processes
    computing it now (a report taken mid-run told to re-run the command that was running)."""
    report.partial = {**progress, **(subset or {})}
    done = (f"partial run of {report.model}: {progress['cells_complete']} of {progress['cells']} cells "
            f"complete ({progress['shards']} of {progress['of_shards']} shards stored)")
    if subset is None:
        covered = "the means cover the complete cells only"
    else:
        report.n_images = subset["images"]
        covered = (f"the figures cover the {subset['images']} of {subset['of_images']} images that every "
                   f"cell has so far (images {subset['image_range']})")
    report.notes.insert(0, f"{done}; {covered}: {to_finish(computing)}")


def to_finish(computing: Sequence[int]) -> str:
    """What finishes a partial run: the processes ``computing`` it now, or a re-run."""
    if computing:
        pids = ", ".join(map(str, computing))
        return f"being computed now (process{'es' if len(computing) > 1 else ''} {pids})"
    return "re-run the command that made it to finish"


#: reports name the folders their released cells were read from (``--corrupted-dir``) thus
RELEASED_FILES = "released files read from "


def released_slot(key: CellKey) -> str:
    """Where a run's notes keep the folder a released cell was read from (the notes' kind column:
    one slot per cell, which no suite's notes share)."""
    return f"{RELEASED_FILES}{key.kind}/{key.name}/{key.level} {key.variant}"


def released_folders(stored: Mapping[str, list[str]], results: Iterable[CellResult]) -> list[str]:
    """The folders the released cells of ``results`` were read from, by the run's notes ``stored``
    (:meth:`Store.notes`), in first-seen order (none for cells stored before 0.7.3)."""
    return list(dict.fromkeys(folder for r in results for folder in stored.get(released_slot(r.key), [])))


def random_weights_note(seed) -> str:
    """Every report of a run with seeded random weights says so, whatever its label."""
    return f"weights: seeded random (--random-weights, seed {seed}): a pipeline check, not a result"


def _stored_report(suite: Suite, run: RunInfo, label: str, results: list[CellResult], notes: list[str],
                   store: Store, baseline: str | None, baselines: Mapping | None) -> Report:
    normalizer = None
    if baseline is not None:
        normalizer = suite.choose_normalizer(baseline, baselines or {}, store, [r.key for r in results])
    stored = store.notes(run.id)  # what the evaluation said: of the run (labels), of the suite
    kept = [*stored.get("", []), *stored.get(suite.kind, [])]
    seed = run.random_weights_seed
    if seed is not None and not any(n.startswith("weights: ") for n in kept):
        # a run stored before its note was kept (0.7.1 or earlier): the identity tells
        kept.insert(0, random_weights_note(seed))
    folders = released_folders(stored, results)
    kept += [RELEASED_FILES + folder for folder in folders]
    return build_report(suite, run, results, normalizer, model=label, notes=[*notes, *kept], data=run.data,
                        corrupted_dir=folders[0] if len(folders) == 1 else None)


def reports_from_store(path: str | Path, config, *, models: Sequence[str] | None = None,
                       suites: Sequence[str] = (), baseline: str) -> list[Report]:
    """The reports of ``gcp-robust report``: what the store at ``path`` holds for the chosen models
    and suites (kinds, or suites of ``config`` standing for their kind), normalized by ``baseline``.
    A ``models`` item is a label, or labels separated by commas (``A,B``) where it is not one.

    Raises:
        StoreError: no store at ``path`` (it is never created here).
        UnknownNameError: a suite, a stored model or a baseline that does not exist.
        StoreError: nothing to report for that selection yet.
    """
    from robustbench_gcp.errors import StoreError, UnknownNameError, absent
    from robustbench_gcp.suites.stored_baselines import check_any_baseline

    datasets = _suite_datasets(suites, config)  # by kind, each suite name resolved once
    kinds = list(datasets)
    if not Path(path).exists():
        said = absent(path)
        raise StoreError(f"store {path} {said}" + (": run `gcp-robust eval` (or compare) first"
                                                  if said == "does not exist" else ""))
    if not Path(path).is_file():
        raise StoreError(f"store {path} is not a file (a folder, a pipe ...): give the .db file of a store")
    check_any_baseline(baseline, config.baselines, Path(path))
    with Store(path, read_only=True) as store:  # report never writes: read-only media serve too
        runs = store.runs()
        stored = {run_label(run) for run in runs} | set(run_labels(runs).values())
        if models is not None:  # `A,B` is two labels, unless it is a stored label itself (a file name
            # with a comma, labelled by compare --checkpoints)
            models = [part for item in models
                      for part in ([item.strip()] if item.strip() in stored else split_labels(item))]
        for name in models or []:
            if name not in stored and not any(_has_settings(name, run) for run in runs):
                raise UnknownNameError("stored model", name, stored)
        reports = collect(store, models=models, kinds=kinds or None, baseline=baseline,
                          baselines=config.baselines)
        named = [_suite_named(r, config) for r in reports]
        reports = [r for r in named if _of_datasets(r, datasets.get(r.kind))]
        if not reports:  # the store's state, not a mistake on the command line: exit status 1
            elsewhere = sorted({r.suite for r in named})  # the same kind on another dataset
            if not elsewhere and kinds:  # or other suites, clean among them (a report of its own only
                # when asked: it went unnamed, helper-250)
                others = collect(store, models=models, kinds=[suite.kind for suite in all_suites()],
                                 baseline=baseline, baselines=config.baselines)
                shown = {_suite_named(r, config).suite: r.kind == CLEAN.kind for r in others}
                elsewhere = sorted(shown, key=lambda name: (shown[name], name))  # clean last
            hint = f" (it has {', '.join(elsewhere)}: --suite {elsewhere[0]})" if elsewhere else ""
            selection = " for that selection" if models or kinds or datasets else ""
            raise StoreError(f"store {path} holds no results to report{selection} yet"
                             f"{hint}{_partial_runs(store, models, kinds)}")
        unreported = _unreported(models, runs, reports)
    if unreported:  # a model named that is in the store, but not with these suites' results
        suites = ", ".join(sorted({r.suite for r in reports}))
        note = (f"--models {', '.join(unreported)}: no {suites} results stored for "
                f"{'it' if len(unreported) == 1 else 'them'}")
        reports = [dataclasses.replace(r, notes=[*r.notes, note]) for r in reports]
    return reports


def _unreported(models: Sequence[str] | None, runs: Sequence[RunInfo],
                reports: Sequence[Report]) -> list[str]:
    """The names of ``--models`` that select none of the runs ``reports`` are of."""
    keys = {r.run for r in reports}
    reported = [run for run in runs if run.key in keys]
    labels = run_labels(runs)
    return [name for name in models or [] if not any(_chosen(run, [name], labels) for run in reported)]


def _suite_datasets(suites: Sequence[str], config) -> dict[str, set[str] | None]:
    """The datasets that ``--suite`` names ask for, by kind: a suite of benchmarks.yaml with a
    ``dataset:`` (``cifar10-c``) stands for its kind on that dataset only; a kind, or a suite
    without one, for every dataset (None). Only reports that name their dataset (ImageNet-C,
    ImageNet-P) are filtered: :func:`_of_datasets`."""
    from robustbench_gcp.suites import suite_kinds

    asked: dict[str, set[str] | None] = {}
    for name in suites:
        spec = None if name in suite_kinds() else config.suite(name)
        kind = name if spec is None else spec.kind
        if spec is None or spec.dataset is None:
            asked[kind] = None
        elif kind not in asked or asked[kind] is not None:
            asked[kind] = {*(asked.get(kind) or ()), spec.dataset}
    return asked


def _suite_named(report: Report, config) -> Report:
    """``report`` under the name of benchmarks.yaml's suite of its kind on its dataset (a cifar10-c
    run is reported as ``cifar10-c``, as eval reported it, not as its kind); else as it is."""
    if (report.sections.get("metrics") or {}).get("dataset") is None:
        return report
    named = config.suite_on(report.kind, report_dataset(report).name)
    return report if named is None else dataclasses.replace(report, suite=named)


def _of_datasets(report: Report, datasets: set[str] | None) -> bool:
    """Whether ``report`` is on one of ``datasets`` (None: any). A report that names no dataset
    (a suite that does not record one: clean, adversarial, landscape) is kept."""
    named = (report.sections.get("metrics") or {}).get("dataset")
    return datasets is None or named is None or report_dataset(report).name in datasets


def _partial_runs(store: Store, models: Sequence[str] | None, kinds: Sequence[str]) -> str:
    """``; partial runs: m (imagenet-c: 9 of 63 shards stored) ...`` for the error of a store
    whose runs on the selection are all unfinished (empty when there are none). A run counts when
    a cell of the chosen kinds, or its clean cell (every suite's first pass), lacks shards: a
    finished run of other suites is not one to re-run."""
    found = []
    runs = store.runs()
    labels = run_labels(runs)
    for run in runs:
        if not _chosen(run, models, labels):
            continue
        cells = [r for r in store.results(run)
                 if (r.key == CLEAN and not r.complete)
                 or (r.key != CLEAN and (not kinds or suite_of_cell(r.key).kind in kinds))]
        progress = run_progress(cells, run.n_shards)
        if progress["shards"] < progress["of_shards"]:
            kinds_found = list(dict.fromkeys(suite_of_cell(r.key).kind for r in cells if r.key != CLEAN))
            suites = ", ".join(kinds_found or [suite_of_cell(CLEAN).kind])
            pids = store.computing(run.id)
            now = f", being computed now by process {', '.join(map(str, pids))}" if pids else ""
            found.append((f"{labels[run.key]} ({suites}: {progress['shards']} of "
                          f"{progress['of_shards']} shards stored{now})", bool(pids)))
    if not found:
        return ""
    runs = f"{len(found)} partial run{'s' if len(found) > 1 else ''}"
    said = f"; {runs}: {', '.join(text for text, _ in found)}"
    idle = sum(not computing for _, computing in found)
    if not idle:
        return f"{said}. Report again when {'they end' if len(found) > 1 else 'it ends'}"
    which = "the commands that made them" if idle > 1 else "the command that made it"
    return f"{said}. Re-run {which} to finish"
