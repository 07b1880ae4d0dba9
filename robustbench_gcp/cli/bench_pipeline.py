"""``gcp-robust bench pipeline``: ``gcp-robust eval`` end to end against the plain loop, as processes.

Parses the options, measures with :func:`robustbench_gcp.bench.pipeline_speed.pipeline_speed`
and prints the table.
"""

from __future__ import annotations

import click

from robustbench_gcp.cli.options import COUNT, WORKERS, NonEmptyPath, device_option, json_option, list_option
from robustbench_gcp.errors import counted


@click.command("pipeline", short_help="Wall time of `eval` against the plain loop a user writes.")
@click.option("--model", default="resnet18-gap", show_default=True,
              help="A registry model with a torchvision twin (resnet18/34/50/101-gap, mobilenetv2-gap, "
                   "shufflenetv2-gap): both paths load the same weights.")
@click.option("--checkpoint", default=None, type=NonEmptyPath(exists=True, dir_okay=False),
              help="torchvision-layout weights for it (default: seeded random weights, batch-norm "
                   "statistics from the images).")
@click.option("--images", type=click.IntRange(min=1), default=64, show_default=True,
              help="Photographs of varied sizes, generated in a temporary folder. Best a multiple of "
                   "--batch-size x --workers: the plain loop's DataLoader hands each worker whole "
                   "batches, so fewer leave workers idle.")
@list_option("--corruptions", default="benchmark",
             help="Corruptions: names or subsets (benchmark, extra, all, noise, blur, weather, digital).")
@list_option("--severities", default="3", help="Severities, comma-separated.")
@click.option("--batch-size", type=COUNT, default=32, show_default=True,
              help="Images per forward pass (both paths).")
@click.option("--workers", type=WORKERS, default=None,
              help="Data loader processes of both paths. Default: min(8, CPUs this process may use).")
@click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes per path and pass, in turns (the tool first, then the plain loop first, "
                   "...); the medians are compared. 3 or more on a shared machine.")
@device_option
@json_option
def bench_pipeline(model, checkpoint, images, corruptions, severities, batch_size, workers, repeats, device,
                   as_json) -> None:
    """Wall time of `gcp-robust eval` and of the plain loop a user would write (torchvision
    ImageFolder with imagecorruptions on the 224 px crop, uint8 + JPEG q85 through PIL as
    the released ImageNet-C files, a DataLoader per cell, the model), each as a whole
    process from launch to exit, start-up included, on the same images, weights,
    corruptions and severities; their ratio. A clean-only pass first, then the
    corrupted pass (the clean cell and every corruption and severity, on both paths).

    The photographs carry no ImageNet labels: each is filed under the class the model
    predicts for it clean, so a corrupted cell's top-1 error is the share of predictions
    the corruption changes, which both paths should give alike (not identically: their
    corruptions draw different random numbers, within the torch port's fidelity bounds).

    \b
    Examples:
      gcp-robust bench pipeline                                  # ResNet-18, 64 photographs
      gcp-robust bench pipeline --model resnet50-gap --device cuda --batch-size 8 --workers 8 --json
    """
    from robustbench_gcp.bench.pipeline_speed import pipeline_speed
    from robustbench_gcp.cli.options import default_workers
    from robustbench_gcp.cli.output import emit
    from robustbench_gcp.engine.device import resolve_device
    from robustbench_gcp.reports.tables import Column

    dev = resolve_device(device)
    workers = default_workers() if workers is None else workers
    rows = pipeline_speed(model, checkpoint=checkpoint, images=images, corruptions=corruptions,
                          severities=severities, batch_size=batch_size, workers=workers, device=str(dev),
                          repeats=repeats, log=lambda line: click.echo(line, err=True))
    settings = {"model": model, "checkpoint": checkpoint, "images": images, "corruptions": corruptions,
                "severities": severities, "batch_size": batch_size, "workers": workers, "device": str(dev),
                "repeats": repeats}
    emit(rows, [Column("pass", justify="left"), Column("path", justify="left"), Column("cells"),
                Column("seconds", "wall s" if repeats == 1 else "median wall s", ".1f"),
                Column("cell_images_per_s", "cell-images/s", ".1f"),
                Column("top1_error", "top-1 error", ".3f"), Column("ratio", "plain / tool", ".2f")],
         fmt="json" if as_json else "table", json_obj={**settings, "rows": rows},
         title=f"{model} ({'--checkpoint' if checkpoint else 'seeded random weights'}), "
               f"{counted(images, 'image')}, corruptions {corruptions}, severities {severities}, "
               f"batch {batch_size}, "
               f"{counted(workers, 'worker')}, on {dev}; processes timed from launch to exit")
