"""Side-by-side comparison of models on one suite, with intervals and paired tests.

For each model, each headline metric of the suite gets a 95 % bootstrap
interval over images (images are resampled jointly for all cells of a model, so
the interval of an mCE accounts for the same images appearing in every cell); a
proportion (clean error, robust accuracy) gets Wilson's interval. Against the
reference model, the difference of each metric gets a *paired* bootstrap interval
(the same resampled images for both models; Bonett and Price's interval for a
proportion), and per-image outcomes get McNemar's test (clean images, each attack
and epsilon; each corruption as a sign test on the images' numbers of correct
severities), per-image and per-video values (each landscape quantity of each cell; each
perturbation's flip probability and top-5 distance) the sign-flip permutation test of
their mean difference, with Holm's adjustment over the model's tests in the comparison (one
family per suite and image set: ``p_holm``). Bootstrap intervals
need :data:`~robustbench_gcp.stats.MIN_BOOTSTRAP_UNITS` images (videos): with fewer they are
left empty (null), with a note; Wilson's and Bonett and Price's intervals and the tests
stand. The intervals are each at their level, not adjusted for their number. A comparison
holds the models evaluated on the same images (same data fingerprint), so every pair in
it is paired; models on other images are compared apart, each group with its reference.

Headline metrics per suite kind:
- clean: clean top-1 error;
- imagenet-c: clean error, mean corruption error, mCE, relative mCE (percent, baseline = 100);
- imagenet-p: mFR and mT5D when a baseline is stored, else the mean flip
  probability and mean top-5 distance over the test perturbations;
- adversarial: clean accuracy and robust accuracy at every (attack, epsilon);
- landscape: clean error, and per landscape cell the means of the per-image loss, loss
  band, largest gradient change, beta-smoothness and gradient norm.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from robustbench_gcp.errors import ConfigError, counted, listed, suggest
from robustbench_gcp.reports.report_type import Report, experiments
from robustbench_gcp.stats import (
    DEFAULT_RESAMPLES,
    LEVEL,
    MIN_BOOTSTRAP_UNITS,
    Design,
    Interval,
    bootstrap,
    holm,
    mcnemar,
    paired_proportion_difference,
    resampled_means,
    sign_flip,
    wilson,
)
from robustbench_gcp.suites import get_suite

if TYPE_CHECKING:
    from robustbench_gcp.store import CellKey


def _statistic(d: Design, metric: str, offset: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    def apply(means: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):  # CE of +inf and -inf in one mean: undefined, NaN (a warning)
            return np.asarray(d.metrics[metric]({row: means[offset + i] for i, row in enumerate(d.rows)}))
    return apply


@dataclass
class ComparedModel:
    """One model in a comparison."""

    model: str
    values: dict[str, Interval]
    delta: dict[str, Interval] | None = None  # model minus reference, paired
    tests: dict[str, dict] | None = None  # paired tests against the reference (McNemar, sign flips)
    paired: bool = True


def compare_designs(
    names: Sequence[str],
    designs: Sequence[Design],
    fingerprints: Sequence[str],
    *,
    reference: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> list[ComparedModel]:
    """Intervals for every model and paired differences / tests against ``reference``."""
    ref = designs[reference]
    entries = []
    # every design's resampled row means, made once (one pass of weights per image count) and
    # shared by its metrics and by the paired differences: the draws bootstrap() makes
    by_n: dict[int, list[Design]] = {}
    for d in designs:
        if (d.values.ndim == 2 and d.values.shape[1] >= MIN_BOOTSTRAP_UNITS
                and any(m not in d.proportions for m in d.metrics)):
            by_n.setdefault(d.values.shape[1], []).append(d)
    means: dict[int, np.ndarray] = {}
    for group in by_n.values():
        unique = list({id(d): d for d in group}.values())
        for d, m in zip(unique, resampled_means([d.values for d in unique], resamples=resamples, seed=seed)):
            means[id(d)] = m

    def resampled(values, statistic, draws=None):
        if values.shape[1] < MIN_BOOTSTRAP_UNITS:  # an interval far narrower than its level: none
            estimate = float(statistic(values.mean(axis=1, keepdims=True))[0])
            return Interval(estimate, math.nan, math.nan, level)
        return bootstrap(values, statistic, resamples=resamples, seed=seed, level=level, means=draws)

    # every model has every model's metrics: one a model lacks (the stored baseline run's relative
    # mCE, where it does not degrade: 0 / 0) is undefined, null in JSON as another's undefined one
    every = list(dict.fromkeys(m for d in designs for m in d.metrics))
    undefined = Interval(math.nan, math.nan, math.nan, level)
    for i, (name, d) in enumerate(zip(names, designs)):
        values = {m: wilson(d.row(d.proportions[m]), level=level) if m in d.proportions else
                  resampled(d.values, _statistic(d, m), means.get(id(d))) if m in d.metrics else undefined
                  for m in every}
        entry = ComparedModel(name, values)
        if i != reference:
            paired = fingerprints[i] == fingerprints[reference] and d.values.shape[1:] == ref.values.shape[1:]
            entry.paired = paired
            if paired:
                stacked = np.concatenate([d.values, ref.values])
                joint = (np.concatenate([means[id(d)], means[id(ref)]])
                         if id(d) in means and id(ref) in means else None)
                entry.delta = {}
                for m in d.metrics:
                    if m not in ref.metrics:
                        continue
                    if m in d.proportions and m in ref.proportions:
                        entry.delta[m] = paired_proportion_difference(
                            d.row(d.proportions[m]), ref.row(ref.proportions[m]), level=level)
                        continue
                    own, other = _statistic(d, m), _statistic(ref, m, offset=len(d.rows))
                    entry.delta[m] = resampled(stacked, lambda x, own=own, other=other: own(x) - other(x),
                                               joint)
                entry.tests = {label: mcnemar(ref.tests[label], outcome).as_dict()
                               for label, outcome in d.tests.items() if label in ref.tests
                               and ref.tests[label].shape == outcome.shape}
                entry.tests.update({row: sign_flip(ref.row(row), d.row(row), seed=seed).as_dict()
                                    for row in d.mean_tests if row in ref.mean_tests})
                # the model's tests are one family: Holm's adjustment for their number
                for label, p_holm in holm({k: t["p_value"] for k, t in entry.tests.items()}).items():
                    entry.tests[label]["p_holm"] = p_holm
        entries.append(entry)
    return entries


def comparison_object(kind: str, suite: str, names: Sequence[str], entries: Sequence[ComparedModel],
                      reference: int, percent: set[str], level: float = LEVEL) -> dict:
    """The JSON form of a comparison."""
    return {
        "suite": suite,
        "kind": kind,
        "reference": names[reference],
        "level": level,
        "percent_metrics": sorted(percent),
        "models": [
            {
                "model": e.model,
                "metrics": {m: iv.as_dict() for m, iv in e.values.items()},
                "delta": None if e.delta is None else {m: iv.as_dict() for m, iv in e.delta.items()},
                "tests": e.tests,
                "paired": e.paired,
            }
            for e in entries
        ],
    }


def comparison_heading(comparison: dict) -> str:
    """A comparison's suite and the source of its cells, as report headings show them."""
    source = comparison.get("source")
    return f"{comparison['suite']} ({source})" if source else comparison["suite"]


def comparison_images(comparison: dict, comparisons: Sequence[dict]) -> str:
    """``20 images``, and where another comparison of ``comparisons`` has the same heading and
    count, which images: ``20 images of data/c32`` (with the fingerprint's start when the
    folder is the same too); ``, bfloat16 (--amp)`` and ``, channels-last`` when every model ran so."""
    text = counted(comparison.get("n_images"), "image")
    alike = [c for c in comparisons if comparison_heading(c) == comparison_heading(comparison)
             and c.get("n_images") == comparison.get("n_images")]
    if len(alike) > 1:
        text += f" of {comparison.get('data') or 'the released files'}"
        if sum(c.get("data") == comparison.get("data") for c in alike) > 1:
            text += f" ({str(comparison.get('data_fingerprint'))[:8]})"
    precisions = {model.get("precision") for model in comparison.get("models", [])}
    if len(precisions) == 1 and precisions - {"float32", None}:  # --amp's, on every row (labels say a mix)
        text += f", {precisions.pop()} (--amp)"
    if {model.get("memory_format") for model in comparison.get("models", [])} == {"channels_last"}:
        text += ", channels-last"
    return text


def compare_reports(
    reports: Sequence[Report],
    *,
    reference: str | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
    reference_labels: Collection[str] = (),
) -> list[dict]:
    """Comparison objects, one per suite and image set, of reports (each with its stored cells
    and normalizer).

    ``reference`` is a model name (default: the first model of each suite); a plain name also
    names the one run of that model a comparison has under a label with settings
    (``demo-gap`` for ``demo-gap[seed=1]``). ``reference_labels`` are the labels of the runs
    it selects by their settings, as ``--models`` does (:func:`~robustbench_gcp.reports.stored.
    labels_named`: ``demo-gap[seed=1]`` for ``demo-gap[seed=1,shard-size=4]``).

    Raises:
        ConfigError: ``reference`` is not among the models compared, or names several runs of
            one comparison.
    """
    every = sorted({report.model for report in reports})
    if reference is not None and not _named(reference, every, reference_labels):
        hint = suggest(reference, every)
        raise ConfigError(f"`--reference {reference}` is not one of the models compared: "
                          f"{', '.join(every)}.{hint if 'Did you mean' in hint else ''}")
    comparisons = []
    # one comparison per experiment: suite, source and image set (a store may hold runs on
    # different --limit subsets, or cells made another way)
    grouped = experiments(reports)
    for experiment, group in grouped.items():
        cells, notes = _common_cells(group)
        notes += _apart(experiment, group, grouped)
        names = [report.model for report in group]
        ref = 0
        named = _named(reference, names, reference_labels) if reference is not None else []
        if len(named) > 1:
            raise ConfigError(f"`--reference {reference}` names several runs compared on "
                              f"{group[0].heading}: {', '.join(named)}; give one of these labels")
        if named:
            ref = names.index(named[0])
        elif reference is not None:
            # on the same images, made another way (another source, another dataset's labels), or not
            theirs = [r for r in reports if _named(reference, [r.model], reference_labels)
                      and r.experiment[1] == experiment[1]]
            # of this suite made another way, or of other suites only (its clean cells in its
            # ImageNet-C table are no cells of the clean suite made another way: helper-282)
            alike = sorted({r.heading for r in theirs if r.kind == group[0].kind})
            other = sorted({r.heading for r in theirs if r.kind != group[0].kind})
            suites = "another suite" if len(other) == 1 else "other suites"
            why = (f"its cells of these images were made another way: {', '.join(alike)}" if alike else
                   f"its results on these images are of {suites}: {', '.join(other)}" if other else
                   f"it has no results on these {counted(group[0].n_images, 'image')}")
            notes.append(f"{reference} is not in this comparison ({why}): the reference here is {names[0]}")
        notes += _other_draws(group, ref) + one_run_notes(group)
        designs = [get_suite(report.kind).design(results, _normalizer(report, results))
                   for report, results in zip(group, cells)]
        percent = set().union(*(d.percent for d in designs))
        fingerprints = [experiment[1]] * len(group)
        entries = compare_designs(names, designs, fingerprints, reference=ref, resamples=resamples,
                                  seed=seed, level=level)
        comparison = comparison_object(group[0].kind, group[0].suite, names, entries, ref, percent, level)
        comparison["source"] = group[0].source
        suite = get_suite(group[0].kind)
        comparison["tests_text"] = suite.tests_text
        for model, report, compared in zip(comparison["models"], group, cells):
            model["partial"] = report.partial is not None
            # its figures are not its report's: the cells its report's figures use that the
            # comparison's do not (not every model has them; severities not every corruption has)
            model["cells_left_out"] = len(cells_left_out(suite, report, compared))
            model["precision"], model["device"] = report.precision, report.device
            model["memory_format"] = report.memory_format
        comparison["n_images"] = group[0].n_images
        comparison["data"] = group[0].data
        comparison["data_fingerprint"] = group[0].data_fingerprint
        few = min(d.values.shape[1] for d in designs)
        if few < MIN_BOOTSTRAP_UNITS and any(m not in d.proportions for d in designs for m in d.metrics):
            notes.append(f"bootstrap intervals left empty: {counted(few, 'image')}, fewer than the "
                         f"{MIN_BOOTSTRAP_UNITS} they need to hold their level (Wilson's intervals of "
                         "proportions and the tests stand)")
        comparison["notes"] = notes + list(dict.fromkeys(n for d in designs for n in d.notes))
        comparisons.append(comparison)
    return comparisons


def _apart(experiment: tuple[str, str], group: Sequence[Report],
           grouped: Mapping[tuple[str, str], Sequence[Report]]) -> list[str]:
    """A note naming the models of the same suite measured on the same images another way (another
    source or settings: a MobileNetV2's landscape at its authors' steps beside ResNets at theirs),
    which are compared in a table of their own (two tables of one model each said nothing)."""
    others = [(heading, [r.model for r in reports]) for (heading, images), reports in grouped.items()
              if images == experiment[1] and heading != experiment[0] and reports[0].suite == group[0].suite]
    if not others:
        return []
    told = "; ".join(f"{', '.join(models)} ({heading})" for heading, models in others)
    return [f"{', '.join(r.model for r in group)} ({experiment[0]}) {'is' if len(group) == 1 else 'are'} "
            f"compared apart from {told}: measured on the same images another way"]


def _normalizer(report: Report, results: Sequence) -> object:
    """The report's normalizer as it serves the cells it is compared on (``results``, those every
    model has): a stored baseline run that lacked some of the report's own cells may have all of
    these (``Baseline.for_cells``)."""
    narrowed = getattr(report.normalizer, "for_cells", None)
    if narrowed is None or len(results) == len(report.cells):
        return report.normalizer
    return narrowed([result.key for result in results])


def _other_draws(group: Sequence[Report], ref: int) -> list[str]:
    """Notes on the models whose run drew its random numbers from another seed than the
    reference's: the same images, but other inputs where a cell draws (a noise corruption), so
    their pairs there hold no common draw."""
    if not get_suite(group[0].kind).draws:
        return []
    seed = group[ref].seed
    return [f"{report.model} was evaluated with seed {report.seed}, the reference {group[ref].model} with "
            f"seed {seed}: where a cell draws random numbers (noise, glass_blur's shuffles, random starts) "
            "their inputs differ, so the paired differences and tests there compare each image under "
            "other draws; evaluate with one --seed to compare on the same inputs"
            for report in group if report.seed != seed]


def one_run_notes(group: Sequence[Report], *, compared: bool = True) -> list[str]:
    """Notes on labels of one experiment that are one stored run (a file and its byte-identical
    copy): their differences (``compared``; else their figures, shown without intervals) are 0 by
    construction, not a finding."""
    labels: dict[str, list[str]] = {}
    for report in group:
        labels.setdefault(report.run, []).append(report.model)
    same_by = "their differences are 0" if compared else "their figures are the same"
    return [f"{', '.join(same[:-1])} and {same[-1]} are one stored run (the same weights and settings): "
            f"{same_by} by construction" for same in labels.values() if len(same) > 1]


def _named(reference: str, names: Sequence[str], selected: Collection[str] = ()) -> list[str]:
    """The labels of ``names`` that ``reference`` gives: itself, else every label with settings
    of that name (``demo-gap`` for ``demo-gap[seed=1]``; report labels runs apart this way), or
    one of ``selected`` (the labels of the runs it selects by their settings)."""
    if reference in names:
        return [reference]
    return [name for name in names if name.startswith(f"{reference}[") or name in selected]


#: the end of the note on cells left out: the comparison's figures are not the report's own
ALIGNED = (": the comparison covers what every compared model has (averages such as mCE over those "
           "cells, an attack at the budgets all were measured with), its own report (the per-model "
           "tables, CSV) all its cells; --models compares the models measured alike")


def _common_cells(group: Sequence[Report]) -> tuple[list[list], list[str]]:
    """Each report's cells, restricted, for suites whose metrics average cells (mCE, mFR), to
    those every model has, so that the metrics and their differences average the same cells;
    notes name what was left out."""
    suite = get_suite(group[0].kind)
    aligned = [suite.aligned_cells(report.cells) for report in group]
    if any(cells is None for cells in aligned):
        return [list(report.cells) for report in group], []
    common = set.intersection(*aligned)
    notes, out = [], []
    for report, cells in zip(group, aligned):
        extra = cells - common
        results = [r for r in report.cells if not suite.owns(r.key) or suite.alignment(r.key) not in extra]
        if left_out := {suite.alignment(key) for key in cells_left_out(suite, report, results)}:
            notes.append(_left_out_note(report.model, suite, left_out & extra, left_out - extra))
        out.append(results)
    return out, notes


def cells_left_out(suite, report: Report, compared: Sequence) -> set[CellKey]:
    """The cells that ``report``'s own figures use and the comparison's, made of ``compared``, do
    not: those not every compared model has, and those its means then leave out (ImageNet-C: a
    severity that, without them, not every compared corruption has)."""
    used = {r.key for r in report.cells} - suite.unused_cells(report.cells)
    return used - ({r.key for r in compared} - suite.unused_cells(compared))


def _left_out_note(model: str, suite, extra: set, besides: set) -> str:
    """The note on a model's cells left out of a comparison (as alignments): ``extra``, which not
    every compared model has, and ``besides``, which its means leave out then; together its
    ``cells_left_out`` (the note named the first alone: 1 cell beside a count of 3, helper-248)."""
    def shown(cells) -> str:
        return listed([suite.alignment_text(cell) for cell in sorted(cells)], 8)

    if not besides:
        what = "1 cell that not every compared model has is" if len(extra) == 1 else \
            f"{len(extra)} cells that not every compared model has are"
        return f"{model}: {what} left out of the comparison ({shown(extra)}){ALIGNED}"
    at = "a severity" if len({cell[1] for cell in besides}) == 1 else "severities"
    return (f"{model}: {counted(len(extra | besides), 'cell')} left out of the comparison: "
            f"{len(extra)} that not every compared model has ({shown(extra)}), and {len(besides)} that its "
            f"means leave out then, at {at} not every compared corruption has ({shown(besides)}){ALIGNED}")
