"""``gcp-robust bench attack``: the suite's PGD against a plain PyTorch PGD loop, side by side.

Parses the options, loads the model (:func:`robustbench_gcp.cli.options.bench_model`), measures
with :func:`robustbench_gcp.bench.attack_speed.pgd_speed` and prints the table.
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


@click.command("attack", short_help="PGD-Linf images/s: the suite against a plain torch loop.")
@bench_model_options
@click.option("--batch-size", type=COUNT, default=32, show_default=True,
              help="Images per attack batch (both paths).")
@click.option("--images", type=click.IntRange(min=1), default=64, show_default=True,
              help="Images attacked per path and round.")
@click.option("--steps", type=click.IntRange(min=1), default=10, show_default=True, help="PGD iterations.")
@click.option("--epsilon", default="2/255", show_default=True, help="Linf budget on the [0, 1] scale.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Alternating rounds; the best time of each is kept.")
@json_option
@computes
def bench_attack(config, model, checkpoint, random_weights, device, batch_size, images, steps, epsilon,
                 repeats, as_json) -> None:
    """Images per second of PGD-Linf through the suite (foolbox, with its bookkeeping:
    clean pass, seeded per-image random starts, projection, success pass) and through
    a plain PyTorch loop doing the same steps (clean pass, batch random start, sign
    steps, projection, success pass), on the same images and model; and their ratio.
    "fooled" counts correctly classified images whose prediction the attack changes.

    The images are the embedded demo's 100 validation photographs (generated in a
    temporary folder), resized and centre-cropped as the model's preprocessing says;
    more --images than 100 repeat them (each copy is attacked, and counted, again).

    \b
    Examples:
      gcp-robust bench attack                                   # demo-gap on the CPU, 64 images
      gcp-robust bench attack --model resnet50-isqrt --random-weights --device cuda --json
    """
    from robustbench_gcp.bench.attack_speed import pgd_speed
    from robustbench_gcp.cli.output import emit
    from robustbench_gcp.reports.tables import Column
    from robustbench_gcp.suites.attacks import check_epsilons, parse_epsilon

    eps = parse_epsilon(epsilon, "--epsilon")
    check_epsilons("pgd-linf", [eps], other_attacks=False, flag="--epsilon")
    net, dev, described = bench_model(config, model, checkpoint, random_weights, device)
    rows = pgd_speed(net, dev, images=images, batch_size=batch_size, steps=steps, epsilon=eps,
                     repeats=repeats)
    emit(rows, [Column("path", justify="left"), Column("images_per_s", "images/s", ".2f"),
                Column("seconds", "best s", ".2f"), Column("fooled"),
                Column("ratio", "suite / plain", ".2f")],
         fmt="json" if as_json else "table",
         title=f"PGD-Linf eps {epsilon}, {counted(steps, 'step')}, {counted(images, 'image')}, "
               f"batch {batch_size}, "
               f"{bench_model_words(described)}",
         json_obj={**described, "attack": "pgd-linf", "epsilon": epsilon, "steps": steps, "images": images,
                   "batch_size": batch_size, "repeats": repeats, "rows": rows})
