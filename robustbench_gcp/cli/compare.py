"""``gcp-robust compare``: several models and checkpoints side by side, with statistics."""

from __future__ import annotations

import click

from robustbench_gcp.cli.options import (
    NonEmptyPath,
    SuiteCommand,
    baseline_option,
    check_baseline_applies,
    config_option,
    data_options,
    engine_options,
    format_option,
    int_list,
    list_option,
    output_option,
    preprocess_option,
    statistics_options,
)
from robustbench_gcp.cli.output import computes
from robustbench_gcp.engine.limits import MAX_NS_ITERS


def _sqrt_list(ctx, param, value):
    if value is None:
        return ()
    from robustbench_gcp.models.matrix import SQRT_METHODS

    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:  # `--sqrt ""` read as not given
        raise click.BadParameter("names no square root")
    for item in items:
        if item not in SQRT_METHODS:
            from robustbench_gcp.errors import suggest

            raise click.BadParameter(f"unknown square root {item!r}.{suggest(item, SQRT_METHODS)}")
    return tuple(dict.fromkeys(items))


def _iters_list(ctx, param, value):
    if value is not None and not value.replace(",", "").strip():  # `--ns-iters ""` read as not given
        raise click.BadParameter("names no iteration count")
    return tuple(dict.fromkeys(int_list(ctx, param, value, bounds=(1, MAX_NS_ITERS)) or ()))


@click.command("compare", cls=SuiteCommand, flags_after="suites")
@click.option("--model", "-m", "models", multiple=True, metavar="NAME[=CHECKPOINT]",
              help="A model to compare (repeatable): a name of benchmarks.yaml or the registry, "
                   "torchvision:<name> or package.module:callable, each optionally =CHECKPOINT. "
                   "Default: the models of benchmarks.yaml.")
@click.option("--checkpoints", "checkpoints_dir", type=NonEmptyPath(), default=None, metavar="DIR",
              help="Compare every checkpoint file in DIR (its subfolders' are not searched); each one's "
                   "architecture is found by inspecting it. "
                   "With --model, those models are compared too (beside DIR's).")
@click.option("--suite", "-s", "suites", multiple=True, metavar="NAME",
              help="Suites to run (repeatable or comma-separated). Default: clean.")
@data_options
@engine_options
@statistics_options
@click.option("--no-intervals", is_flag=True,
              help="Skip the intervals and paired tests: each run's own figures, one table per experiment.")
@list_option("--sqrt", "sqrts", callback=_sqrt_list, metavar="ROOT[,ROOT...]",
             help="Evaluate each GCP model with each of these matrix square roots (newton-schulz, "
                  "eig, svd), one row each: the effect of the matrix function on the same weights. "
                  "GAP and DropCov models are compared once. Default: each model's own root.")
@list_option("--ns-iters", "ns_iters", callback=_iters_list, metavar="K[,K...]",
             help=f"Newton-Schulz iterations to compare (one row per value, 1 to {MAX_NS_ITERS}) for "
                  "models whose root is Newton-Schulz. Default: 5, as trained.")
@click.option("--random-weights", is_flag=True,
              help="Seeded random weights for the models given without =CHECKPOINT (instead of "
                   "benchmarks.yaml's files too): a pipeline check, not a result. Models given with "
                   "=CHECKPOINT or by --checkpoints load their file; a package.module:callable keeps "
                   "the weights it comes with.")
@click.option("--ema/--no-ema", default=True, show_default=True,
              help="Evaluate the EMA weights of training files that have them (--no-ema: the raw ones).")
@preprocess_option
@baseline_option
@config_option
@format_option
@output_option
@click.option("--layout", type=click.Choice(["long", "wide"]), default="wide", show_default=True,
              help="CSV layout: wide (metrics with intervals, a row per model and suite) or long.")
@computes
def compare_cmd(models, checkpoints_dir, suites, reference, resamples, plot_dir, fmt, output, layout,
                workers, sqrts, ns_iters, no_intervals, **options) -> None:
    """Evaluate several models on one or more suites and compare them.

    Stored results are reused and only what is missing is computed, under one
    progress display. The output has a row per model with the suite's headline
    metrics and 95 % intervals over images (bootstrap; Wilson's for a proportion
    such as an error rate), the paired difference to the reference model
    (--reference, default the first) with its interval, and paired tests on the
    same images (McNemar's on clean images and each attack and epsilon; a sign
    test over images for each corruption; the sign-flip test of the mean for each
    landscape quantity and each perturbation's flip figures), counted after Holm's
    adjustment.

    \b
    Examples:
      gcp-robust compare --model resnet50-gap=r50.pth --model resnet50-isqrt=r50_isqrt.pth \\
          --suite imagenet-c --data /data/imagenet/val --limit 5000
      gcp-robust compare --checkpoints ckpt/ --suite clean,adversarial --data val/ --plot figures/
      gcp-robust compare --model resnet50-isqrt --sqrt newton-schulz,eig --ns-iters 3,5 \\
          --suite imagenet-c --data /data/imagenet/val --limit 5000
    """
    from robustbench_gcp.cli.options import (
        check_layout,
        check_no_intervals,
        check_output_not_store,
        default_workers,
    )
    from robustbench_gcp.cli.output import print_comparison
    from robustbench_gcp.cli.progress import progress_display
    from robustbench_gcp.config import load_config
    from robustbench_gcp.errors import ConfigError
    from robustbench_gcp.pipeline import run_all
    from robustbench_gcp.pipeline.compare_models import plan_comparison
    from robustbench_gcp.pipeline.weights import MissingCheckpointError
    from robustbench_gcp.reports.comparison import compare_reports

    check_layout(fmt)
    check_no_intervals(no_intervals)
    check_output_not_store(output, options.get("store"))

    # each suite once (`--suite clean,clean` compared every model with its own copy as well)
    suite_names = list(dict.fromkeys(s.strip() for item in (suites or ("clean",)) for s in item.split(",")
                                     if s.strip()))
    if not suite_names:  # `--suite ""` ran nothing and exited 0
        raise ConfigError(f"`--suite {','.join(suites)!r}` names no suite (leave it out for clean)")
    workers = default_workers() if workers is None else workers
    try:
        plans = plan_comparison(load_config(options.pop("config")), models=models,
                                checkpoints_dir=checkpoints_dir, suites=suite_names, sqrts=sqrts,
                                ns_iters=ns_iters, reference=reference, workers=workers, **options)
    except MissingCheckpointError as error:  # said in compare's own terms
        raise ConfigError(f"model '{error.label}' has no checkpoint: give one as --model {error.name}="
                          "CHECKPOINT, or --random-weights for seeded random weights (a pipeline check)") \
            from None
    check_baseline_applies(*(plan.suite for plan in plans))
    with progress_display("compare") as progress:
        reports = run_all(plans, progress)
    if reports is None:  # torchrun ranks other than 0: rank 0 reports
        return
    # the bootstrap's own seed, not --seed (the corruptions'): `report` on the store gives these intervals
    comparisons = [] if no_intervals else compare_reports(reports, reference=reference, resamples=resamples)
    print_comparison(reports, comparisons, fmt=fmt, output=output, layout=layout, plot_dir=plot_dir,
                     title="Comparison")


__all__ = ["compare_cmd"]
