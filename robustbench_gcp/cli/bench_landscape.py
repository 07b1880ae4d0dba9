"""``gcp-robust bench landscape``: the landscape suite against the naive loop, side by side.

Parses the options, loads the model (:func:`robustbench_gcp.cli.options.bench_model`), measures
with :func:`robustbench_gcp.bench.landscape_speed.landscape_speed` and prints the table.
"""

from __future__ import annotations

import click

from robustbench_gcp.cli.options import (
    COUNT,
    bench_model,
    bench_model_options,
    bench_model_words,
    json_option,
)
from robustbench_gcp.cli.output import computes
from robustbench_gcp.errors import counted


@click.command("landscape", short_help="Landscape images/s: the suite against the naive loop.")
@bench_model_options
@click.option("--batch-size", type=COUNT, default=32, show_default=True,
              help="Images per batch handed to the suite (each image's perturbed copies go through "
                   "the model in passes of their own, at most 32 copies each).")
@click.option("--images", type=click.IntRange(min=1), default=32, show_default=True,
              help="Images measured per path and round.")
@click.option("--landscape-at", "at", type=click.Choice(["stem", "pixels"]), default="stem",
              show_default=True, help="Where the landscape is measured.")
@click.option("--etas", default=None, metavar="A:B:K",
              help="Per-image steps (default: the suite's for --landscape-at).")
@click.option("--landscape-precision", "precision", type=click.Choice(["float64", "float32"]),
              default="float64", show_default=True,
              help="What the model computes in (both paths), as the suite's.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Alternating rounds; the best time of each is kept.")
@json_option
@computes
def bench_landscape(config, model, checkpoint, random_weights, device, batch_size, images, at, etas,
                    precision, repeats, as_json) -> None:
    """Images per second of the landscape suite (stem computed once per image, the K perturbed
    copies of each image stacked along the batch dimension, weights frozen) and of the naive
    loop (for each step, the full model forward from the image and backward with weight
    gradients, one step at a time), on the same images and model; their ratio, and the
    largest relative difference of their values (they compute the same numbers). The naive
    loop makes K + 1 forward + backward passes per image (one for g, one per step); the suite
    one for g, then one per 31 steps (each with X itself as a row): "passes / image" and
    "rows / image" say so.

    The images are the embedded demo's 100 validation photographs (generated in a temporary
    folder), resized and centre-cropped as the model's preprocessing says; more --images than
    100 repeat them.

    \b
    Examples:
      gcp-robust bench landscape                                # demo-gap at its stem, K = 50
      gcp-robust bench landscape --model resnet18-isqrt --random-weights --images 4 --etas 0.01:0.3:8
    """
    from robustbench_gcp.bench.landscape_speed import landscape_speed
    from robustbench_gcp.cli.output import emit
    from robustbench_gcp.reports.tables import Column
    from robustbench_gcp.suites.landscape_measure import DEFAULT_ETAS, LandscapeSettings, parse_etas

    steps = parse_etas(etas) if etas is not None else DEFAULT_ETAS[at]
    net, dev, described = bench_model(config, model, checkpoint, random_weights, device)
    if at == "stem":
        from robustbench_gcp.models.stems import split_at_stem, stem_family
        from robustbench_gcp.suites.landscape_measure import STEM_ETAS

        split_at_stem(net)  # a model without a known stem: one line, before any compute
        if etas is None:  # the suite's default for this family (a MobileNetV2's authors' steps)
            steps = STEM_ETAS.get(stem_family(net), steps)
    settings = LandscapeSettings(at, "ascent", steps, precision)
    rows = landscape_speed(net, dev, settings=settings, images=images, batch_size=batch_size, repeats=repeats)
    emit(rows, [Column("path", justify="left"), Column("passes", "passes / image"),
                Column("rows", "rows / image"), Column("images_per_s", "images/s", ".2f"),
                Column("seconds", "best s", ".2f"),
                Column("ratio", "suite / naive", ".2f"), Column("max_rel_diff", "max rel. diff", ".1e")],
         fmt="json" if as_json else "table",
         title=f"landscape at the {at}, K = {steps.count} steps {steps.low:g} to {steps.high:g}, "
               f"{precision}, {counted(images, 'image')}, batch {batch_size}, {bench_model_words(described)}",
         json_obj={**described, "landscape_at": at, "landscape_precision": precision,
                   "etas": f"{steps.low!r}:{steps.high!r}:{steps.count}",  # as --etas takes them back
                   "images": images, "batch_size": batch_size, "repeats": repeats, "rows": rows})
