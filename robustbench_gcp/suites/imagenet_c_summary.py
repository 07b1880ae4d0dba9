"""ImageNet-C's report sections from its stored cells: errors per cell, CE, mCE and relative mCE
(AlexNet = 100, or a stored baseline run), the notes that say what they cover, and the table of
errors by severity. :mod:`~robustbench_gcp.suites.imagenet_c` is the suite that uses them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from corruptions import list_corruptions
from robustbench_gcp.data.datasets import classes_mark, get_dataset
from robustbench_gcp.errors import listed
from robustbench_gcp.metrics import Baseline, corruption_errors, mean_corruption_error
from robustbench_gcp.reports.tables import Column
from robustbench_gcp.store import CellResult
from robustbench_gcp.suites.base import classification_entry, clean_entry, coverage_note, dataset_of, pct
from robustbench_gcp.suites.severities import covered_severities


def report_order(result: CellResult) -> tuple[int, int]:
    """A corruption cell's place in reports, however the cells were stored: corruptions in
    :func:`corruptions.list_corruptions` order (others after), then severity."""
    order = list_corruptions("all")
    name = result.key.name
    return order.index(name) if name in order else len(order), int(result.key.level)


def summarize(results: Sequence[CellResult], *, benchmark: Sequence[str],
              baseline: Baseline | None) -> tuple[dict, list[str]]:
    """The ``clean``, ``cells``, ``per_corruption`` and ``metrics`` sections, and notes.

    ``results`` are the stored cells of the plan (clean first if present); cells and corruptions
    come in report order (:func:`corruptions.list_corruptions`, then severity). CE is normalized by
    ``baseline`` (AlexNet's errors) for ImageNet-C only; CIFAR-10/100-C and Tiny-ImageNet-C
    report the unnormalized mean corruption error and accuracy, as RobustBench does.
    """
    dataset = dataset_of(results, "imagenet-c")
    clean = clean_entry(results)
    cells, errors = [], {}
    for result in sorted((r for r in results if r.key.kind == "imagenet-c"), key=report_order):
        entry = classification_entry(result)
        severity = int(result.key.level)
        cells.append({"corruption": result.key.name, "severity": severity, **entry})
        errors[(result.key.name, severity)] = entry["top1_error"]
    clean_error = clean["top1_error"] if clean else None
    have: dict[str, list[int]] = {}
    for cell in cells:
        have.setdefault(cell["corruption"], []).append(cell["severity"])
    # a mean over the corruptions' CE is one over the severities they all have
    # CE is there to speak of (an ImageNet report without a baseline has none, helper-227)
    kept, uneven, only = covered_severities(have, benchmark, normalized=baseline is not None)
    errors = {(c, s): e for (c, s), e in errors.items() if s in kept[c]}
    summaries = corruption_errors(errors, clean_error, baseline)
    metrics = mean_corruption_error(summaries, benchmark)
    notes = [uneven] if uneven else []
    if metrics["missing"] and metrics["corruptions"]:
        notes.append(coverage_note("mCE" if metrics.get("mCE") is not None else None,
                                   len(metrics["corruptions"]), f"{len(benchmark)} benchmark corruptions",
                                   metrics["missing"]))
    if cells and not metrics["corruptions"]:
        notes.append(f"the means (mCE, relative mCE, mean error) average the {len(benchmark)} benchmark "
                     "corruptions, and none was run: the extra corruptions get their own CE and mean "
                     "error only")
    if baseline is None and cells and dataset.alexnet_normalized:
        # the configuration may lack the default: it said "e.g. alexnet" and benchmarks.yaml (helper-227)
        notes.append("CE, mCE and relative mCE are empty: no baseline named (--baseline, default alexnet) "
                     "is among the configuration's `baselines:` (published ImageNet-C errors, which "
                     "ImageNet's CE divides by): give --baseline NAME of one, or add the shipped "
                     "benchmarks.yaml's alexnet entry back")
    raw = "the mean corruption error and accuracy are unnormalized"
    store = "a run stored with `gcp-robust baseline"
    # a stored baseline holding only another dataset's cells normalizes none of these
    foreign = baseline is not None and summaries and all(s.corruption in baseline.elsewhere
                                                         for s in summaries)
    normalized_what = "CE and mCE are" if metrics.get("mCE") is not None else "CE is"  # (no mCE: helper-230)
    stored = baseline and not foreign and (
        f"{normalized_what} normalized by the stored baseline '{baseline.name}' (the mean corruption error "
        "and accuracy beside them are not)" if any(s.CE is not None for s in summaries) else
        # a baseline run without cells of these corruptions: it said they were normalized (helper-231)
        f"the stored baseline '{baseline.name}' normalizes none of this run's corruptions (why below): {raw}")
    if dataset.classes is not None and cells:  # ImageNet images, the model's own classes
        notes.append(f"{dataset.released} on a model of {dataset.classes} classes: AlexNet's published "
                     "errors, made on ImageNet's 1000, normalize no error of another task; " + (
                         stored or f"{raw} ({store}` normalizes CE: --baseline alexnet,NAME)"))
    elif dataset.forced_preset is not None and get_dataset(dataset.name).alexnet_normalized and cells:
        notes.append(f"{dataset.title}: AlexNet's published errors were made with {dataset.released}'s own "
                     "parameters and normalize no other corruptions; " + (
                         stored or f"{raw} ({store} --preset {dataset.forced_preset}` normalizes CE)"))
    elif not dataset.alexnet_normalized and cells:
        notes.append(f"{dataset.released}: " + (stored or f"{raw} (over the corruptions and severities, as "
                                                          "RobustBench reports them)")
                     + "; AlexNet normalization is ImageNet-C's")
    empty = [s.corruption for s in summaries if s.CE is None and baseline is not None]

    def no_mean(names: list[str]) -> str:  # the mCE left empty with them went without a word (helper-230)
        return "; so there is no mCE (nor relative mCE)" if set(names) & set(metrics["corruptions"]) else ""

    if unlisted := [c for c in empty if not baseline.run and c not in baseline.imagenet_c]:
        notes.append(f"CE left empty for {', '.join(unlisted)}: baseline '{baseline.name}' (of "
                     "benchmarks.yaml or --config) has no errors for them (add them to its imagenet_c)"
                     + no_mean(unlisted))
    if zero := [c for c in empty if not baseline.run and c in baseline.imagenet_c]:  # a table's 0 errors
        notes.append(f"CE left empty for {', '.join(zero)}: baseline '{baseline.name}' made no error there "
                     "(a zero normalizer)" + no_mean(zero))
    lacking = [c for c in empty if baseline.run and c not in baseline.elsewhere]
    if elsewhere := [c for c in empty if baseline.run and c in baseline.elsewhere]:
        theirs = get_dataset(baseline.elsewhere[elsewhere[0]]).title
        notes.append(f"CE left empty for {', '.join(elsewhere)}: the stored baseline '{baseline.name}' holds "
                     f"them of {theirs} images, this run's are of {dataset.title} (a baseline normalizes "
                     "runs of its own dataset)" + no_mean(elsewhere))
    # a baseline's cells made another way, or of a model of other classes, grouped by how (one said
    # how one of them was made for all: helper-253)
    ways: dict[tuple[str, str, str], list[str]] = {}
    for c in lacking:
        if c in baseline.made_otherwise:
            ways.setdefault(baseline.made_otherwise[c][:3], []).append(c)
    for (why, theirs, ours), named in ways.items():
        held = listed([f"{c}/{s}" for c in named for s in baseline.made_otherwise[c][3]], 10)
        if why == "classes":
            notes.append(f"CE left empty for {', '.join(named)}: the stored baseline '{baseline.name}' holds "
                         f"{held} only of a model of {theirs} classes, this run's has {ours}; a baseline "
                         f"normalizes models of its own classes: store one of a {ours}-class model"
                         + no_mean(named))
        else:
            notes.append(f"CE left empty for {', '.join(named)}: the stored baseline '{baseline.name}' holds "
                         f"{held} only made another way ({theirs}) than this run's ({ours}); a baseline "
                         "normalizes cells made as its own: store one made this way (gcp-robust baseline "
                         "with this run's --corrupted-dir, --preset and --backend)" + no_mean(named))
    lacking = [c for c in lacking if c not in baseline.made_otherwise]
    for absent in (True, False):  # no cells stored, or no error made there (a zero normalizer)
        if named := [c for c in lacking if (c not in baseline.imagenet_c) == absent]:
            cells_missing = [f"{c}/{s}" for c in named for s in baseline.lacking.get(c, ())]
            why = (f"has no complete cells made as this run's of {listed(cells_missing, 10) or 'them'} (not "
                   "computed, or by an earlier version of gcp-robust); store it again (gcp-robust baseline) "
                   "to normalize them" if absent else "made no error there (a zero normalizer)")
            notes.append(f"CE left empty for {', '.join(named)}: the stored baseline '{baseline.name}' {why}"
                         + no_mean(named))
    undefined = [s.corruption for s in summaries if s.CE is not None and s.relative_CE is None
                 and clean_error is not None and baseline is not None and baseline.clean_error is not None]
    if undefined:
        notes.append(f"relative CE left empty for {', '.join(undefined)}: the baseline '{baseline.name}' "
                     "errs there no more than on the clean images (its sum of E(s, c) - E_clean is not "
                     "positive), so relative CE is undefined" + ("; so there is no relative mCE" if any(
                         c in benchmark for c in undefined) else ""))
    if baseline is not None and baseline.clean_error is None and any(s.CE is not None for s in summaries):
        # the key is optional in the configuration; relative mCE went missing without a word (helper-227)
        notes.append(f"relative CE and relative mCE are empty: the baseline '{baseline.name}' has no "
                     "clean_error (relative CE subtracts each model's clean error from its errors)")
    if clean_error is None and cells and dataset.alexnet_normalized:
        notes.append("relative mCE needs the clean error: give --data with the clean images (a run given "
                     "them that stopped before its clean cell was complete: run it again to finish it)")
    if only:
        notes.append(only)
    sections = {
        "clean": clean,
        "cells": cells,
        "per_corruption": [
            {"corruption": s.corruption, "severities": list(s.severities), "mean_error": s.mean_error,
             "CE": s.CE, "relative_CE": s.relative_CE}
            for s in summaries
        ],
        "metrics": {
            "mCE": metrics["mCE"],
            "relative_mCE": metrics["relative_mCE"],
            "mean_error": metrics["mean_error"],
            "mean_accuracy": None if metrics["mean_error"] is None else 1 - metrics["mean_error"],
            "dataset": dataset.name,
            **classes_mark(dataset),
            **({"preset": dataset.forced_preset} if dataset.forced_preset is not None else {}),
            "baseline": baseline.name if baseline else None,
            "corruptions": metrics["corruptions"],
            "missing": metrics["missing"],
        },
    }
    return sections, notes


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
