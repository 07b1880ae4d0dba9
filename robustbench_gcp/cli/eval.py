"""``gcp-robust eval``: evaluate one model on one suite."""

from __future__ import annotations

import os

import click

from robustbench_gcp.cli.options import (
    config_option,
    data_options,
    engine_options,
    format_option,
    model_options,
    output_option,
    suite_options,
)


def default_workers() -> int:
    return min(8, os.cpu_count() or 1)


@click.command("eval")
@click.option("--model", "-m", required=True, metavar="NAME",
              help="A model of benchmarks.yaml or a registry name (see `gcp-robust models`).")
@model_options
@suite_options
@data_options
@engine_options
@click.option("--baseline", default="alexnet", show_default=True,
              help="Normalizer: a baseline of benchmarks.yaml (ImageNet-C) or one stored with "
                   "`gcp-robust baseline` (ImageNet-P).")
@config_option
@format_option
@output_option
def eval_cmd(model, fmt, output, workers, **options) -> None:
    """Evaluate a model on a suite (clean, imagenet-c, imagenet-p, adversarial) and print its report.

    Images are decoded and preprocessed (resize 256, center crop 224) on CPU
    workers; corruptions run on the device; counts are committed to the store
    shard by shard, so an interrupted run resumes where it stopped and a
    repeated one computes nothing.

    \b
    Examples:
      gcp-robust eval --model resnet50-gap --checkpoint resnet50-0676ba61.pth \\
          --suite imagenet-c --data /data/imagenet/val --limit 5000
      gcp-robust eval --model resnet50-isqrt --suite imagenet-c \\
          --data /data/imagenet/val --corrupted-dir /data/ImageNet-C --format json
      gcp-robust eval --model resnet50-isqrt --suite adversarial --attacks pgd-linf \\
          --epsilons 1/255,2/255,4/255 --data /data/imagenet/val --limit 1000
    """
    from robustbench_gcp.cli.progress import progress_display
    from robustbench_gcp.evaluation import evaluate

    workers = default_workers() if workers is None else workers
    with progress_display(f"{model} {options['suite']}") as progress:
        report = evaluate(model, progress=progress, workers=workers, **options)
    if report is not None:  # None on torchrun ranks other than 0
        emit_report(report, fmt, output)


def emit_report(report: dict, fmt: str, output: str | None) -> None:
    """Print an evaluation report in ``fmt`` to stdout or ``output``."""
    from robustbench_gcp.cli.output import write_output
    from robustbench_gcp.reports import evaluation
    from robustbench_gcp.reports.tables import render_text, to_json

    if fmt == "table":
        renderable = evaluation.render_table(report)
        if output is None:
            from robustbench_gcp.reports.tables import stdout_console

            stdout_console().print(renderable)
            return
        text = render_text(renderable)
    elif fmt == "json":
        text = to_json(report)
    elif fmt == "csv":
        text = evaluation.to_long_csv(report)
    else:
        text = evaluation.to_report_markdown(report)
    write_output(text, output)
