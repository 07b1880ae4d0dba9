"""``gcp-robust bench scaling``: throughput of one process against two under torchrun.

Parses the options, measures with :func:`robustbench_gcp.bench.process_scaling.scaling`
and prints the table.
"""

from __future__ import annotations

import click

from robustbench_gcp.cli.options import (
    COUNT,
    NonEmptyPath,
    bench_model_words,
    bench_weights_options,
    class_order_option,
    config_option,
    device_option,
    json_option,
    list_option,
)
from robustbench_gcp.cli.output import computes


@click.command("scaling", short_help="Images per second, 1 process against N under torchrun.")
@config_option
@click.option("--model", default="demo-gap", show_default=True, help="Model to evaluate.")
@bench_weights_options
@click.option("--data", type=NonEmptyPath(), default=None, metavar="DIR",
              help="Images (default: the embedded demo data, generated in a temporary folder).")
@class_order_option
@click.option("--suite", default="imagenet-c", show_default=True, help="Suite of benchmarks.yaml to run.")
@list_option("--corruptions", default=None,
             help="Corruptions (a suite with corruptions: imagenet-c, landscape ...; default: the suite's "
                  "own).")
@list_option("--severities", default=None,
             help="Severities of those corruptions (default: 3 alone, a bench's size).")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="Class-balanced subset of N images (default: all).")
@device_option
@click.option("--batch-size", type=COUNT, default=32, show_default=True,
              help="Images per forward pass.")
@click.option("--shard-size", type=COUNT, default=20, show_default=True,
              help="Images per shard (the unit the ranks share out).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Threads per process (OMP_NUM_THREADS).")
@click.option("--processes", type=click.IntRange(min=2), default=2, show_default=True,
              help="Processes of the parallel run.")
@click.option("--repeats", type=click.IntRange(min=1), default=2, show_default=True,
              help="Rounds of both runs, in turns (1 then N, N then 1, ...); the fastest of each is kept.")
@json_option
@computes  # a module you bring is built and probed here: what it prints goes to stderr, not the JSON
def bench_scaling(config, model, checkpoint, random_weights, data, class_order, suite, corruptions,
                  severities, limit, device, batch_size, shard_size, threads, processes, repeats,
                  as_json) -> None:
    """Images per second with 1 process and with N under torchrun (gloo, on GPUs too).

    Both runs evaluate the same plan (checked here first) from an empty store, with
    --threads threads per process, on the same device (auto resolved once, here; the
    title names it), and count only the engine's time (not start-up); they take turns
    for --repeats rounds, the fastest of each kept. The ratio is the speed-up of the
    run of --processes processes.

    \b
    Examples:
      gcp-robust bench scaling                                   # the demo, 1 process against 2
      gcp-robust bench scaling --data /data/imagenet/val --limit 512 --processes 4 --threads 2
    """
    from robustbench_gcp.bench.process_scaling import corruption_flags, scaling, takes_corruptions
    from robustbench_gcp.cli.options import weights_described
    from robustbench_gcp.cli.output import emit
    from robustbench_gcp.config import load_config
    from robustbench_gcp.engine.device import resolve_device
    from robustbench_gcp.errors import counted
    from robustbench_gcp.pipeline.weights import choose_model
    from robustbench_gcp.reports.tables import Column

    ctx = click.get_current_context()
    given = [f"--{name}" for name in ("corruptions", "severities")
             if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT]
    if given and not takes_corruptions(suite, config):
        verb = "do" if len(given) > 1 else "does"
        raise click.UsageError(f"{' and '.join(given)} {verb} not apply to suite '{suite}': it has no "
                               "corruptions")
    flags = corruption_flags(suite, config, corruptions, severities)  # as the runs take them
    device = resolve_device(device)  # the title names the device used, not "auto"
    # checked (a download fetched) once, here, before the runs; the title and JSON name the weights
    choice = choose_model(load_config(config), model, checkpoint=checkpoint, random_weights=random_weights)
    weights = weights_described(choice)
    rows = scaling(model, checkpoint=checkpoint, random_weights=random_weights, data=data,
                   class_order=class_order, suite=suite, corruptions=corruptions, severities=severities,
                   limit=limit, device=device, batch_size=batch_size, shard_size=shard_size, threads=threads,
                   processes=processes, config=config, repeats=repeats)
    emit(rows, [Column("processes"), Column("images", "cell-images"), Column("seconds", fmt=".2f"),
                Column("images_per_s", "cell-images/s", ".1f"), Column("ratio", "× 1 process", ".2f")],
         fmt="json" if as_json else "table",
         title=f"{bench_model_words({'model': model, 'weights': weights, 'device': str(device)})}, {suite}, "
               f"{counted(threads, 'thread')} per process, fastest of {counted(repeats, 'round')}",
         json_obj={"model": model, "weights": weights, "suite": suite,
                   "corruptions": flags.get("corruptions"), "severities": flags.get("severities"),
                   "limit": limit,
                   "device": str(device), "batch_size": batch_size, "shard_size": shard_size,
                   "threads": threads, "processes": processes, "repeats": repeats, "rows": rows})
