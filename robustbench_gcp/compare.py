"""Side-by-side comparison of models on one suite, with intervals and paired tests.

For each model, each headline metric of the suite gets a 95 % bootstrap
interval over images (images are resampled jointly for all cells of a model, so
the interval of an mCE accounts for the same images appearing in every cell).
Against the reference model, the difference of each metric gets a *paired*
bootstrap interval (the same resampled images for both models), and per-cell
outcomes get McNemar's test (clean images, each corruption pooled over its
severities, each attack and epsilon). Pairing needs both models evaluated on
the same images (same data fingerprint); otherwise only the intervals are given.

Headline metrics per suite kind:
- clean: clean top-1 error;
- imagenet-c: clean error, mCE, relative mCE (percent, baseline = 100);
- imagenet-p: mFR and mT5D when a baseline is stored, else the mean flip
  probability and mean top-5 distance over the test perturbations;
- adversarial: clean accuracy and robust accuracy at every (attack, epsilon).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from robustbench_gcp.config import ATTACKS, PERTURBATION_SUBSETS, Baseline
from robustbench_gcp.reports.evaluation import format_epsilon
from robustbench_gcp.stats import DEFAULT_RESAMPLES, LEVEL, Interval, bootstrap, mcnemar
from robustbench_gcp.store import CellResult

Statistic = Callable[[dict[str, np.ndarray]], np.ndarray]


@dataclass
class Design:
    """Per-image values of one evaluation and the metrics computed from their means.

    ``rows`` name the rows of ``values`` (cells x images); a metric maps the
    (resampled) row means, by row name, to its value. ``tests`` lists the
    boolean per-image outcomes compared with McNemar's test, by label.
    """

    rows: list[str]
    values: np.ndarray
    metrics: dict[str, Statistic]
    tests: dict[str, np.ndarray] = field(default_factory=dict)
    percent: set[str] = field(default_factory=set)  # metrics on the 0..100 scale


def _errors(result: CellResult) -> np.ndarray:
    if result.correct is None:
        raise ValueError(f"cell {result.key.label} has no per-image outcomes")
    return (~result.correct).astype(np.float64)


def imagenet_c_design(results: Sequence[CellResult], baseline: Baseline | None,
                      benchmark: Sequence[str]) -> Design:
    rows, values, tests = [], [], {}
    cells: dict[str, list[int]] = {}
    for r in results:
        if r.key.kind == "clean":
            rows.append("clean")
            tests["clean"] = r.correct
        elif r.key.kind == "imagenet-c":
            rows.append(f"{r.key.name}/{r.key.level}")
            cells.setdefault(r.key.name, []).append(int(r.key.level))
            tests[r.key.name] = np.concatenate([tests.get(r.key.name, np.zeros(0, bool)), r.correct])
        else:
            continue
        values.append(_errors(r))
    metrics: dict[str, Statistic] = {}
    if "clean" in rows:
        metrics["clean_error"] = lambda m: m["clean"]
    chosen = [c for c in benchmark if c in cells]
    if baseline is not None and chosen and all(c in baseline.imagenet_c for c in chosen):
        def ce(m, c, relative):
            sev = cells[c]
            base = [baseline.error(c, s) for s in sev]
            if relative:
                return 100 * sum(m[f"{c}/{s}"] - m["clean"] for s in sev) / sum(
                    b - baseline.clean_error for b in base)
            return 100 * sum(m[f"{c}/{s}"] for s in sev) / sum(base)

        metrics["mCE"] = lambda m: sum(ce(m, c, False) for c in chosen) / len(chosen)
        if "clean" in rows and baseline.clean_error is not None:
            metrics["relative_mCE"] = lambda m: sum(ce(m, c, True) for c in chosen) / len(chosen)
    return Design(rows, np.array(values), metrics, tests, percent={"mCE", "relative_mCE"})


def adversarial_design(results: Sequence[CellResult]) -> Design:
    from robustbench_gcp.suites.adversarial import budget_of, budget_tag

    rows, values, tests, metrics = [], [], {}, {}
    for r in results:
        if r.key.kind == "clean":
            rows.append("clean")
            values.append(r.correct.astype(np.float64))
            metrics["clean_accuracy"] = lambda m: m["clean"]
        elif r.key.kind == "adversarial":
            # a non-default budget is part of the label: other budgets are other metrics (no delta)
            tag = budget_tag(r.key.name, budget_of(r.key))
            label = f"{r.key.name} {format_epsilon(float(r.key.level), ATTACKS[r.key.name])}"
            label += f" ({tag})" if tag else ""
            rows.append(label)
            values.append(r.correct.astype(np.float64))
            metrics[f"robust {label}"] = lambda m, label=label: m[label]
            tests[label] = r.correct
    return Design(rows, np.array(values), metrics, tests)


def imagenet_p_design(results: Sequence[CellResult], figures: dict | None) -> Design:
    test = PERTURBATION_SUBSETS["test"]
    rows, values = [], []
    chosen: list[tuple[str, int]] = []
    for r in results:
        if r.key.kind != "imagenet-p" or r.extra is None:
            continue
        p, d = r.key.name, int(r.key.level)
        rows += [f"fp {p}/{d}", f"t5d {p}/{d}"]
        values += [r.extra[:, 0].astype(np.float64), r.extra[:, 1].astype(np.float64)]
        if p in test:
            chosen.append((p, d))
    difficulty = min((d for _, d in chosen), default=None)
    chosen = [(p, d) for p, d in chosen if d == difficulty]
    metrics: dict[str, Statistic] = {}
    percent = set()
    if chosen:
        normalized = figures is not None and all(
            (p, d) in figures and figures[(p, d)][0] > 0 and figures[(p, d)][1] > 0 for p, d in chosen)
        if normalized:
            metrics["mFR"] = lambda m: sum(100 * m[f"fp {p}/{d}"] / figures[(p, d)][0]
                                           for p, d in chosen) / len(chosen)
            metrics["mT5D"] = lambda m: sum(100 * m[f"t5d {p}/{d}"] / figures[(p, d)][1]
                                            for p, d in chosen) / len(chosen)
            percent = {"mFR", "mT5D"}
        else:
            def mean_of(prefix):
                return lambda m: sum(m[f"{prefix} {p}/{d}"] for p, d in chosen) / len(chosen)

            metrics["mean_flip_probability"] = mean_of("fp")
            metrics["mean_top5_distance"] = mean_of("t5d")
    return Design(rows, np.array(values) if values else np.zeros((0, 0)), metrics, percent=percent)


def design(kind: str, results: Sequence[CellResult], baseline: Baseline | None = None,
           p_figures: dict | None = None) -> Design:
    from corruptions import list_corruptions

    if kind == "adversarial":
        return adversarial_design(results)
    if kind == "imagenet-p":
        return imagenet_p_design(results, p_figures)
    return imagenet_c_design(results, baseline, list_corruptions("benchmark"))


def _statistic(d: Design, metric: str, offset: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    def apply(means: np.ndarray) -> np.ndarray:
        return np.asarray(d.metrics[metric]({row: means[offset + i] for i, row in enumerate(d.rows)}))
    return apply


@dataclass
class Entry:
    """One model in a comparison."""

    model: str
    values: dict[str, Interval]
    delta: dict[str, Interval] | None = None  # model minus reference, paired
    tests: dict[str, dict] | None = None  # McNemar results against the reference
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
) -> list[Entry]:
    """Intervals for every model and paired differences / tests against ``reference``."""
    ref = designs[reference]
    entries = []
    for i, (name, d) in enumerate(zip(names, designs)):
        values = {m: bootstrap(d.values, _statistic(d, m), resamples=resamples, seed=seed, level=level)
                  for m in d.metrics}
        entry = Entry(name, values)
        if i != reference:
            paired = fingerprints[i] == fingerprints[reference] and d.values.shape[1:] == ref.values.shape[1:]
            entry.paired = paired
            if paired:
                stacked = np.concatenate([d.values, ref.values])
                entry.delta = {}
                for m in d.metrics:
                    if m not in ref.metrics:
                        continue
                    own, other = _statistic(d, m), _statistic(ref, m, offset=len(d.rows))
                    entry.delta[m] = bootstrap(stacked, lambda x, own=own, other=other: own(x) - other(x),
                                               resamples=resamples, seed=seed, level=level)
                entry.tests = {label: mcnemar(ref.tests[label], outcome).as_dict()
                               for label, outcome in d.tests.items() if label in ref.tests
                               and ref.tests[label].shape == outcome.shape}
        entries.append(entry)
    return entries


def comparison_object(kind: str, suite: str, names: Sequence[str], entries: Sequence[Entry],
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


def compare_reports(
    store,
    evaluated: Sequence[tuple[dict, Sequence[CellResult]]],
    *,
    reference: str | None = None,
    baseline: Baseline | None = None,
    p_baseline_name: str | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> list[dict]:
    """Comparison objects, one per suite, for (report object, its stored cells) pairs.

    ``reference`` is a model name (default: the first model of each suite);
    ``store`` supplies stored ImageNet-P baselines.

    Raises:
        ConfigError: ``reference`` is not among the models of a suite.
    """
    from robustbench_gcp.errors import ConfigError
    from robustbench_gcp.reports.objects import stored_p_baseline

    every = {report["model"] for report, _ in evaluated}
    if reference is not None and reference not in every:
        raise ConfigError(f"`--reference {reference}` is not one of the models compared: "
                          + ", ".join(sorted(every)))
    comparisons = []
    # one comparison per suite and image set (a store may hold runs on different --limit subsets)
    for suite, images in dict.fromkeys((report["suite"], _images(report)) for report, _ in evaluated):
        group = [(report, results) for report, results in evaluated
                 if report["suite"] == suite and _images(report) == images]
        group, notes = _common_cells(group)
        names = [report["model"] for report, _ in group]
        ref = 0
        if reference in names:
            ref = names.index(reference)
        elif reference is not None:
            notes.append(f"{reference} has no results on these {group[0][0].get('n_images')} images: "
                         f"the reference here is {names[0]}")
        designs, fingerprints, percent = [], [], set()
        for report, results in group:
            figures = None
            if report["kind"] == "imagenet-p" and p_baseline_name:
                figures = stored_p_baseline(store, p_baseline_name, [r.key for r in results])[1]
            d = design(report["kind"], results, baseline, figures)
            designs.append(d)
            percent |= d.percent
            fingerprints.append(report.get("data_fingerprint") or report["run"])
        entries = compare_designs(names, designs, fingerprints, reference=ref, resamples=resamples,
                                  seed=seed, level=level)
        comparison = comparison_object(group[0][0]["kind"], suite, names, entries, ref, percent, level)
        comparison["n_images"] = group[0][0].get("n_images")
        comparison["notes"] = notes
        comparisons.append(comparison)
    return comparisons


def _images(report: dict) -> str:
    return report.get("data_fingerprint") or report["run"]


def _common_cells(group: list[tuple[dict, Sequence[CellResult]]]) -> tuple[list, list[str]]:
    """Restrict the ImageNet-C / ImageNet-P cells of each model to those every model has, so
    that mCE / mFR and their differences average the same cells; notes name what was left out."""
    kinds = ("imagenet-c", "imagenet-p")

    def cells(results):
        return {(r.key.kind, r.key.name, r.key.level) for r in results if r.key.kind in kinds}

    common = set.intersection(*(cells(results) for _, results in group))
    notes, out = [], []
    for report, results in group:
        extra = sorted(cells(results) - common)
        if extra:
            shown = ", ".join(f"{name}/{level}" for _, name, level in extra[:8])
            more = f" and {len(extra) - 8} more" if len(extra) > 8 else ""
            what = "1 cell that not every compared model has is" if len(extra) == 1 else \
                f"{len(extra)} cells that not every compared model has are"
            notes.append(f"{report['model']}: {what} left out of the comparison ({shown}{more})")
            results = [r for r in results if r.key.kind not in kinds
                       or (r.key.kind, r.key.name, r.key.level) in common]
        out.append((report, results))
    return out, notes
