"""``gcp-robust eval``: evaluate one model on one suite."""

from __future__ import annotations

import os

import click

from robustbench_gcp.cli.options import (
    _int_list,
    config_option,
    data_options,
    engine_options,
    format_option,
    model_options,
    output_option,
)


def default_workers() -> int:
    return min(8, os.cpu_count() or 1)


@click.command("eval")
@click.option("--model", "-m", required=True, metavar="NAME",
              help="A model of benchmarks.yaml or a registry name (see `gcp-robust models`).")
@model_options
@click.option("--suite", "-s", default="clean", show_default=True, metavar="NAME",
              help="A suite of benchmarks.yaml (see `gcp-robust suites`).")
@data_options
@click.option("--corrupted-dir", type=click.Path(), default=None, metavar="DIR",
              help="Released ImageNet-C: <DIR>/<corruption>/<severity>/<wnid>/*.JPEG (read as is).")
@click.option("--corruptions", default=None, metavar="A,B",
              help="Corruptions to run (names or subsets: benchmark, extra, all, noise, blur, "
                   "weather, digital). Default: the suite's.")
@click.option("--severities", callback=_int_list, default=None, metavar="1,3",
              help="Severities to run (1..5). Default: the suite's.")
@click.option("--backend", type=click.Choice(["torch", "reference"]), default="torch", show_default=True,
              help="torch: corruptions computed on the device; reference: imagecorruptions on CPU.")
@click.option("--storage-roundtrip/--no-storage-roundtrip", default=None,
              help="uint8 truncation + JPEG q85 after corrupting, as the released files. "
                   "Default: the suite's (on).")
@click.option("--attacks", default=None, metavar="A,B",
              help="Attacks to run (fgsm, pgd-linf, pgd-l2, deepfool-linf, deepfool-l2, cw-l2). "
                   "Default: the adversarial suite's.")
@click.option("--epsilons", default=None, metavar="E1,E2",
              help="Budgets on the [0, 1] pixel scale, e.g. 1/255,2/255 (Linf) or 0.25,0.5 (L2).")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Iterations of iterative attacks.")
@engine_options
@click.option("--baseline", default="alexnet", show_default=True, help="Normalizer for CE / mCE.")
@config_option
@format_option
@output_option
def eval_cmd(model, fmt, output, workers, **options) -> None:
    """Evaluate a model on a suite (clean, imagenet-c, adversarial) and print its report.

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
    from robustbench_gcp.cli.progress import RichProgress
    from robustbench_gcp.evaluate import evaluate

    workers = default_workers() if workers is None else workers
    with RichProgress(title=f"{model} {options['suite']}") as progress:
        report = evaluate(model, progress=progress, workers=workers, **options)
    emit_report(report, fmt, output)


def emit_report(report: dict, fmt: str, output: str | None) -> None:
    """Print an evaluation report in ``fmt`` to stdout or ``output``."""
    from robustbench_gcp.reports import evaluation
    from robustbench_gcp.reports.tables import render_text, to_json

    if fmt == "table":
        renderable = evaluation.render_table(report)
        if output is None:
            from rich.console import Console

            Console(soft_wrap=True).print(renderable)
            return
        text = render_text(renderable)
    elif fmt == "json":
        text = to_json(report)
    elif fmt == "csv":
        text = evaluation.to_long_csv(report)
    else:
        text = evaluation.to_report_markdown(report)
    if output is None:
        click.echo(text, nl=False)
    else:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
        click.echo(f"wrote {output}", err=True)
