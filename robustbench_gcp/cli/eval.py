"""``gcp-robust eval``: evaluate one model on one suite."""

from __future__ import annotations

import click

from robustbench_gcp.cli.options import (
    MODEL_HELP,
    SuiteCommand,
    baseline_option,
    check_baseline_applies,
    check_output_not_store,
    config_option,
    data_options,
    default_workers,
    engine_options,
    format_option,
    model_options,
    output_option,
    suite_option,
)
from robustbench_gcp.cli.output import computes


@click.command("eval", cls=SuiteCommand, short_help="Evaluate a model on a suite and print its report.")
@click.option("--model", "-m", required=True, metavar="NAME", help=MODEL_HELP)
@model_options
@suite_option
@data_options
@engine_options
@baseline_option
@config_option
@format_option
@output_option
@computes
def eval_cmd(model, fmt, output, workers, **options) -> None:
    """Evaluate a model on a suite (clean, imagenet-c, imagenet-p, adversarial, landscape) and print
    its report.

    Images are decoded and preprocessed (the model's: resize 256, center crop 224
    for most) on CPU workers; corruptions run on the device; counts are committed to the store
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
      gcp-robust eval --model my_package.nets:gcp_resnet --checkpoint mine.pth \\
          --suite imagenet-c --data /data/imagenet/val
      gcp-robust eval --model torchvision:efficientnet_b0 --checkpoint effnet.pth \\
          --data /data/imagenet/val
    """
    from robustbench_gcp.cli.output import print_report
    from robustbench_gcp.cli.progress import progress_display
    from robustbench_gcp.pipeline import RankResult, plan, run

    check_output_not_store(output, options.get("store"))
    workers = default_workers() if workers is None else workers
    planned = plan(model, workers=workers, **options)
    check_baseline_applies(planned.suite)
    from robustbench_gcp.pipeline.execution import suite_name

    with progress_display(f"{model} {suite_name(planned)}") as progress:  # the report's (--dataset's)
        report = run(planned, progress)
    if not isinstance(report, RankResult):  # torchrun ranks other than 0 print nothing
        print_report(report, fmt, output)
