"""``gcp-robust report``: tables, CSV, JSON, Markdown and plots from the store alone."""

from __future__ import annotations

import click

from robustbench_gcp.cli.options import (
    baseline_option,
    check_baseline_applies,
    check_layout,
    check_no_intervals,
    config_option,
    format_option,
    output_option,
    report_store_option,
    statistics_options,
)


@click.command("report", short_help="Report stored results; no model is run.")
@click.option("--models", "--model", "-m", "models", multiple=True, metavar="A,B",
              help="Models to report, as reports label them (demo-gap, or demo-gap[seed=1] for one of "
                   "its runs; comma-separated or repeated, a stored label holding a comma taken whole; "
                   "default: every model stored).")
@click.option("--suite", "-s", "suites", multiple=True, metavar="NAME",
              help="Suite kinds or suites of benchmarks.yaml to report (repeatable; default: all). A "
                   "suite stands for its kind and dataset: every stored cell of that kind is reported, "
                   "not only its entry's corruptions or settings; one with a dataset (cifar10-c) reports "
                   "ImageNet-C / -P runs on that dataset only.")
@format_option
@output_option
@click.option("--layout", type=click.Choice(["long", "wide"]), default="long", show_default=True,
              help="CSV layout: long (a row per model, suite, item and level) or wide (a row per model "
                   "and suite).")
@click.option("--no-intervals", is_flag=True, help="Skip the intervals and paired tests.")
@statistics_options
@baseline_option
@report_store_option
@config_option
def report_cmd(models, suites, fmt, output, layout, no_intervals, reference, resamples, plot_dir, baseline,
               store, config) -> None:
    """Report stored results: no model is run, nothing is computed but statistics.

    A run stopped before its end is reported as partial: on its complete cells,
    or, when none of the suite's own cells is complete yet, on the images that
    every cell has so far. Runs of one model on the same images that differ in a
    setting (seed, shard size, weights) are labelled apart: demo-gap[seed=1].

    \b
    Examples:
      gcp-robust report                                  # every stored model and suite
      gcp-robust report --suite imagenet-c --format csv -o table.csv
      gcp-robust report --format csv --layout wide -o summary.csv
      gcp-robust report --models resnet50-gap,resnet50-isqrt --format markdown --plot figures/
    """
    from robustbench_gcp.cli.output import print_comparison
    from robustbench_gcp.config import load_config
    from robustbench_gcp.errors import ConfigError
    from robustbench_gcp.reports.comparison import compare_reports
    from robustbench_gcp.reports.stored import labels_named, reports_from_store, split_labels

    check_layout(fmt)
    check_no_intervals(no_intervals)

    names = list(models) if models else None  # split where an item is no stored label (a file
    # name compare --checkpoints took as a label may hold a comma)
    chosen = [s.strip() for item in suites for s in item.split(",") if s.strip()]
    no_names = bool(models) and not any(split_labels(item) for item in models)
    if no_names or (suites and not chosen):  # `--models ,` reported every model
        flag, value = ("--models", ",".join(models)) if no_names else ("--suite", ",".join(suites))
        raise ConfigError(f"`{flag} {value!r}` names none (leave it out for all)")
    reports = reports_from_store(store, load_config(config), models=names, suites=chosen, baseline=baseline)
    if reports:  # as eval and compare (report took it, and normalized nothing, in silence: helper-289)
        from robustbench_gcp.suites import get_suite

        check_baseline_applies(*(get_suite(report.kind) for report in reports))
    selected = labels_named(store, reference) if reference is not None else ()  # as --models selects
    comparisons = [] if no_intervals else compare_reports(reports, reference=reference, resamples=resamples,
                                                          reference_labels=selected)
    print_comparison(reports, comparisons, fmt=fmt, output=output, layout=layout, plot_dir=plot_dir,
                     title=f"Results in {store}")
