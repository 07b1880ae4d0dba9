"""Stored baseline runs as normalizers (``gcp-robust baseline``: ImageNet-P's FR and T5D, CE on
CIFAR and Tiny-ImageNet): whether one fits the run it normalizes, its per-image values for
comparisons that resample both together, and the checks of ``--baseline`` names."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robustbench_gcp.errors import UnknownNameError, counted
from robustbench_gcp.metrics import Baseline, baseline_names
from robustbench_gcp.store import CellKey
from robustbench_gcp.suites.base import CLEAN, classification_entry, per_image_errors, variant_of


def normalizer_for_run(normalizer: Any, run: Any) -> tuple[Any, list[str]]:
    """A normalizer as it serves the stored ``run``'s report, and notes. A stored baseline run
    (``normalizer.run``) normalizes the protocol's way only when it saw the same images with the
    same seed on the same device type (the same videos, the same random draws); otherwise its
    figures stay fixed in comparisons (its per-image ``samples`` are dropped) and a note says what
    differs."""
    stored = getattr(normalizer, "run", None)
    if stored is None:
        return normalizer, []
    if stored.key == run.key:  # the baseline run itself: its normalized figures are 100
        return dataclasses.replace(normalizer, own=True), []
    name = normalizer.name
    notes = []
    seed = getattr(stored, "random_weights_seed", None)
    if seed is not None:  # every report it normalizes says so, as the run's own reports do
        notes.append(f"baseline '{name}' has seeded random weights (--random-weights, seed {seed}): "
                     "figures normalized by it are a pipeline check, not a result")
    same_images = stored.identity.get("data") == run.identity.get("data")
    seeds = stored.identity.get("seed"), run.identity.get("seed")
    # the CPU's and CUDA's generators draw other numbers from the same seeds
    devices = stored.identity.get("device_type", "cpu"), run.identity.get("device_type", "cpu")
    if same_images and seeds[0] == seeds[1] and devices[0] == devices[1]:
        return normalizer, notes
    if not same_images:
        sizes = f" ({stored.n_images}, this run {run.n_images})" if stored.n_images != run.n_images else ""
        notes.append(f"baseline '{name}' was evaluated on other images{sizes}: its figures are means "
                     "over other images than this run's, which the protocol does not divide by; store "
                     "a baseline with this run's --data and --limit (gcp-robust baseline)")
    if seeds[0] != seeds[1]:
        notes.append(f"baseline '{name}' was evaluated with seed {seeds[0]} (this run {seeds[1]}): the "
                     "cells that draw random numbers (noise, random layers) differ between the two, so "
                     f"comparisons keep its figures fixed; store a baseline with --seed {seeds[1]} to "
                     "normalize on the same draws")
    if devices[0] != devices[1]:
        notes.append(f"baseline '{name}' was evaluated on {devices[0]} (this run on {devices[1]}): their "
                     "random numbers differ for the same seed, so comparisons keep its figures fixed; "
                     f"store a baseline with --device {devices[1]} to normalize on the same draws")
    return dataclasses.replace(normalizer, samples=None), notes


def normalizer_for_images(normalizer: Any, subset: dict) -> tuple[Any, list[str]]:
    """A stored baseline run's normalizer for a partial report on ``subset`` of the images (``images``
    of ``of_images``): the baseline's figures cover all of them, so they stay fixed in comparisons
    and a note says so."""
    if getattr(normalizer, "run", None) is None:
        return normalizer, []
    return dataclasses.replace(normalizer, samples=None), [
        f"baseline '{normalizer.name}' covers all {counted(subset['of_images'], 'image')}, this partial "
        f"report {subset['images']} of them: its figures are means over more images than these"]


#: a stored baseline is resampled only where each of its cells has at least this many images with an
#: error or flip: a resample then misses all of them (a ratio over 0) with a chance of about e^-8
MIN_EVENTS = 8


def add_joint_rows(rows: list[str], values: list, samples: Mapping[str, Any] | None, names: Sequence[str],
                   optional: Sequence[str] = (), notes: list[str] | None = None,
                   denominators: Mapping[str, Sequence[str]] | None = None) -> set[str]:
    """Append to a comparison design's ``rows`` and ``values`` (one per-image array each) the
    per-image values of a stored baseline run's cells ``names`` (from its ``samples``), as rows
    ``base <name>``, for the comparison to resample with the run's images (the baseline's figures
    are sample means of the same images): all of them, and those of ``optional`` it has.

    ``denominators`` names the sums of cells the figures divide by, where one is of several cells
    (ImageNet-C's CE: a corruption's errors summed over its severities); by default each cell
    divides alone (ImageNet-P's FR and T5D).

    Returns:
        The names added: none when one of ``names`` is missing or of another length than the run's
        values. A denominator with fewer than :data:`MIN_EVENTS` images that are not 0 in all of its
        cells (so many resamples would divide by 0 that no interval could be told) is not added:
        the baseline's figures of it stay fixed, and a line of ``notes`` says so. ``optional`` is
        added where any denominator is.
    """
    n = len(values[0]) if values else 0

    def fits(name: str) -> bool:
        return name in samples and len(samples[name]) == n

    if not samples or not n or not all(fits(name) for name in names):
        return set()
    groups = denominators or {name: [name] for name in names}
    # an image the resample leaves out takes all of its errors in the denominator's cells with it
    rare = [group for group, cells in groups.items()
            if np.count_nonzero(sum(np.asarray(samples[c], dtype=np.float64) for c in cells))
            < MIN_EVENTS]
    if rare and notes is not None:
        shown = f"{', '.join(rare[:4])}{' ...' if len(rare) > 4 else ''}"
        notes.append(
            f"the baseline's figures are fixed in these intervals (conditional on them): it has fewer than "
            f"{MIN_EVENTS} images with an error or flip in {shown}, too few to resample it with the images"
            if len(rare) == len(groups) else
            f"the baseline's figures of {shown} are fixed in these intervals (conditional on them): it has "
            f"fewer than {MIN_EVENTS} images with an error or flip in each, too few to resample them with "
            "the images (its others are)")
    if len(rare) == len(groups):
        return set()
    added = [name for group, cells in groups.items() if group not in rare for name in cells]
    added += [name for name in optional if fits(name)]
    for name in added:
        rows.append(f"base {name}")
        values.append(np.asarray(samples[name], dtype=np.float64))
    return set(added)


def hundred(m: Mapping[str, Any], row: str) -> Any:
    """100, as a float or an array shaped like the resamples of ``m[row]``: a comparison's figure
    of the stored baseline run itself (its CE, FR or T5D against itself), which no resample
    changes."""
    return np.full_like(np.asarray(m[row], dtype=np.float64), 100.0)


def percent_of(numerator: Any, denominator: Any) -> Any:
    """100 (numerator / denominator) for floats or arrays of bootstrap resamples, the ratio first as
    in the reports' formulas (:func:`~robustbench_gcp.metrics.ce`, ``relative_ce``, ``relative_rate``:
    comparisons give their figures to the bit). A zero denominator gives an infinite ratio (a resample
    in which the baseline never errs or flips while the model does; :func:`~robustbench_gcp.stats.
    percentile_bounds` counts it) or NaN for 0 / 0; a negative one (a baseline better under
    corruption than clean) gives NaN, undefined."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    positive = denominator > 0
    safe = np.where(positive, denominator, 1.0)
    value = 100.0 * (numerator / safe)
    at_zero = np.where(numerator == 0, np.nan, np.copysign(np.inf, numerator))
    return np.where(positive, value, np.where(denominator == 0, at_zero, np.nan))


def check_stored_baseline(name: str, known: Iterable[str], store_path: Path) -> None:
    """``--baseline name`` must be one of ``known``, the default, or stored in the store file
    (``gcp-robust baseline``). Never creates the store file; torchrun ranks other than 0 may not see it, so
    rank 0 checks.

    Raises:
        UnknownNameError: ``name`` is none of these (the closest name suggested).
    """
    from robustbench_gcp.engine.ranks import is_main_process
    from robustbench_gcp.metrics import DEFAULT_BASELINE

    known = set(known)
    # the default may be missing from a configuration of your own (the reports say what is left
    # unnormalized); it was listed as a choice where the configuration had no such baseline
    if name in known or name == DEFAULT_BASELINE or not is_main_process():
        return
    stored: set[str] = set()
    if Path(store_path).is_file():
        from robustbench_gcp.store import Store

        with Store(store_path, read_only=True) as store:
            if store.baseline(name) is not None:
                return
            stored = {n for n, _, _ in store.baselines()}
    raise UnknownNameError("baseline", name, known | stored)


def check_stored_datasets(names: Sequence[str], known: Iterable[str], store_path: Path, suite: Any,
                          dataset: Any) -> None:
    """Refuse ``--baseline`` names that are all baselines stored of another dataset's images than
    ``dataset``'s: their cells normalize nothing here. A Tiny-ImageNet-C baseline given to a
    CIFAR-10-C run left every CE empty under "normalized by the stored baseline", with the advice
    to store it again.

    Raises:
        ConfigError: every name is such a baseline (named, with the dataset its cells are of).
    """
    from robustbench_gcp.data.datasets import DATASETS
    from robustbench_gcp.engine.ranks import is_main_process
    from robustbench_gcp.errors import ConfigError

    known = set(known)
    if not names or any(name in known for name in names) or not is_main_process() \
            or not Path(store_path).is_file():
        return
    from robustbench_gcp.store import Store

    ours = dataset.name
    theirs: dict[str, set[str]] = {}
    with Store(store_path, read_only=True) as store:
        for name in names:
            run = store.baseline(name)
            if run is None:
                return  # (refused as unknown elsewhere)
            marks = {variant_of(key).get("dataset", "imagenet") for _, key in store.cells(run.id)
                     if key != CLEAN and suite.owns(key)}
            if not marks or ours in marks:
                return
            theirs[name] = marks

    def title(mark: str) -> str:
        return DATASETS[mark].title if mark in DATASETS else mark

    told = "; ".join(f"'{name}' holds cells of {', '.join(sorted(map(title, marks)))} images"
                     for name, marks in theirs.items())
    raise ConfigError(f"`--baseline {','.join(names)}` cannot normalize this run of {title(ours)} images: "
                      f"{told} (a baseline normalizes runs of its own dataset: store one of {title(ours)} "
                      "with `gcp-robust baseline`)")


def stored_names(names: Iterable[str], store_path: Path) -> set[str] | None:
    """Those of ``names`` stored as baseline runs in the store file (none where it does not exist);
    None on a torchrun rank other than 0, which may not see it (rank 0 checks)."""
    from robustbench_gcp.engine.ranks import is_main_process

    if not is_main_process():
        return None
    if not Path(store_path).is_file():
        return set()
    from robustbench_gcp.store import Store

    with Store(store_path, read_only=True) as store:
        return {name for name in names if store.baseline(name) is not None}


def check_any_baseline(names: str, baselines: Iterable[str], store_path: Path) -> None:
    """``--baseline`` of a command reporting every suite: some suite must know each of its names.

    Raises:
        UnknownNameError: no suite that uses baselines knows a name (every choice listed).
    """
    from robustbench_gcp.suites.kinds import all_suites

    for name in baseline_names(names):
        choices: set[str] = set()
        refused = False
        for suite in all_suites():
            if not suite.uses_baseline:
                continue
            try:
                suite.check_baseline(name, baselines, store_path)
                break
            except UnknownNameError as error:
                refused = True
                choices |= set(error.choices)
        else:
            if refused:  # with no choice at all too (it was taken without a word)
                raise UnknownNameError("baseline", name, choices)


def stored_baseline(store: Any, name: str, keys: Sequence[CellKey]) -> Baseline | None:
    """The errors of the run stored as baseline ``name`` on the cells ``keys`` (and its clean
    error), as a :class:`Baseline` holding the corruptions whose every asked severity it has."""
    run = store.baseline(name)
    if run is None:
        return None
    cells = {key: cid for cid, key in store.cells(run.id)}
    errors: dict[str, dict[int, float]] = {}
    samples: dict[str, np.ndarray] = {}
    clean_error = None
    for key in [*keys, CLEAN]:
        if key not in cells:
            continue
        result = store.cell_result(cells[key], key, run.n_shards)
        if not result.complete:
            continue
        error = classification_entry(result)["top1_error"]
        if result.correct is not None:
            samples["clean" if key == CLEAN else f"{key.name}/{key.level}"] = per_image_errors(result)
        if key == CLEAN:
            clean_error = error
        else:
            errors.setdefault(key.name, {})[int(key.level)] = error
    from robustbench_gcp.models.heads import matrix_label

    return Baseline(name, f"stored baseline run of {matrix_label(run.model, run.identity)}", clean_error,
                    run=run, samples=samples, cell_errors=errors,
                    elsewhere=_of_other_datasets(cells, keys),
                    made_otherwise=_made_otherwise(cells, keys)).for_cells(keys)


def _made_otherwise(cells: Iterable[CellKey],
                    keys: Sequence[CellKey]) -> dict[str, tuple[str, str, str, tuple[int, ...]]]:
    """The corruptions of ``keys`` whose cells a baseline's ``cells`` lack but hold of the same dataset's
    images made another way (same corruption and severity; released files for generated ones, another
    preset ...) or of a model of other classes: corruption -> (``"made"`` or ``"classes"``, how its
    cells are, how the asked ones are, the severities). It said they were not computed, or by an
    earlier version, and to store it again, which changed nothing (helper-252)."""
    from robustbench_gcp.suites.kinds import get_suite

    held: dict[tuple[str, str, str], list[CellKey]] = {}
    for key in cells:
        held.setdefault((key.kind, key.name, key.level), []).append(key)
    found: dict[str, tuple[str, str, str, list[int]]] = {}
    for key in keys:
        if key == CLEAN or key in cells:
            continue
        ours = variant_of(key)
        suite = get_suite(key.kind)
        for other in held.get((key.kind, key.name, key.level), ()):
            theirs = variant_of(other)
            if theirs.get("dataset", "imagenet") != ours.get("dataset", "imagenet"):
                continue  # another dataset's: _of_other_datasets
            if theirs.get("classes") != ours.get("classes"):  # a model of another label space
                why = ("classes", str(theirs.get("classes") or 1000), str(ours.get("classes") or 1000))
            else:
                why = ("made", suite.source_label(suite.group(other)), suite.source_label(suite.group(key)))
                if not why[1] or why[1] == why[2]:
                    continue
            entry = found.setdefault(key.name, (*why, []))
            if entry[:3] == why:
                entry[3].append(int(key.level))
            break
    return {name: (*why, tuple(sorted(levels))) for name, (*why, levels) in found.items()}


def _of_other_datasets(cells: Iterable[CellKey], keys: Sequence[CellKey]) -> dict[str, str]:
    """The corruptions of ``keys`` a baseline's ``cells`` lack but hold of another dataset's
    images (same corruption and severity), with that dataset's name."""
    held = {(key.kind, key.name, key.level): variant_of(key).get("dataset", "imagenet") for key in cells}
    return {key.name: theirs for key in keys if key != CLEAN and key not in cells
            and (theirs := held.get((key.kind, key.name, key.level))) is not None
            and theirs != variant_of(key).get("dataset", "imagenet")}
