"""``gcp-robust bench perturbations``: ImageNet-P generation speed next to the model's.

A thin wrapper over :func:`robustbench_gcp.bench.perturbation_speed.measure`.
"""

from __future__ import annotations

import click

from robustbench_gcp.cli.bench import check_host_memory
from robustbench_gcp.cli.options import COUNT, device_option, json_option, list_option
from robustbench_gcp.errors import counted


def _perturbation_names(value: str) -> list[str]:
    """``a,b`` of perturbation names and/or subsets (test, validation, all ...), checked as the
    suite's ``--perturbations`` (one line, the closest name suggested)."""
    from corruptions.perturbations import PERTURBATION_SUBSETS
    from robustbench_gcp.suites.flag_values import resolve_names

    return list(resolve_names(value, (), PERTURBATION_SUBSETS, "perturbation", "--perturbations"))


@click.command("perturbations", short_help="Frames per second of each ImageNet-P sequence and the model.")
@device_option
@click.option("--model", default="resnet50-gap", show_default=True,
              help="Registered model (random weights) whose frames/s is shown alongside; it also "
              "sets the default --size (its resize size: 256 for ResNets, 73 for demo-gap).")
@click.option("--batch-size", default=8, show_default=True, type=COUNT,
              help="Images per perturbation_sequence() call (each gives 31 or 41 frames).")
@click.option("--size", default=None, type=click.IntRange(32),
              help="Side S of the square input images. Default: the model's resize size.")
@click.option("--crop-size", default=None, type=click.IntRange(1),
              help="Frame side. Default: the model's input size (round(S * 224 / 256) for "
              "another --size).")
@click.option("--model-batch-size", default=32, show_default=True, type=COUNT,
              help="Frames per forward pass of the model.")
@list_option("--perturbations", "perturbation_list", default="all",
             help="Comma-separated perturbation names or subsets (test, validation, all).")
@click.option("--difficulty", default=1, show_default=True, type=click.IntRange(1, 3),
              help="Difficulty (only the noise perturbations depend on it).")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(1),
              help="Timed calls after a warm-up call; the fastest counts.")
@json_option
def bench_perturbations(device, model, batch_size, size, crop_size, model_batch_size,
                        perturbation_list, difficulty, repeats, as_json):
    """Frames per second of every ImageNet-P sequence, next to the model's frames per second.

    Sequences are generated from real photographs (scikit-image's, resized and
    centre-cropped to --size) by batches of --batch-size images, seeded per
    image, frames quantized to uint8 as the released videos; the model
    classifies random frames of the same size in batches of
    --model-batch-size. "x model" is the ratio of the two rates, each row's
    against the model timed in turns with it (the model row shows the best
    of those): above 1, generating the frames on the fly costs less than
    classifying them.

    \b
    Example:
      gcp-robust bench perturbations --device cpu --batch-size 8 --perturbations test
      gcp-robust bench perturbations --model demo-gap --json
    """
    from robustbench_gcp.bench.perturbation_speed import frame_sizes, measure
    from robustbench_gcp.cli.output import emit
    from robustbench_gcp.cli.progress import item_bar
    from robustbench_gcp.errors import UnknownNameError
    from robustbench_gcp.models import list_models
    from robustbench_gcp.reports.tables import Column

    names = _perturbation_names(perturbation_list)
    if model not in list_models():
        raise UnknownNameError("model", model, list_models(), listing="`gcp-robust models` lists them")
    if size is not None and crop_size is not None and crop_size > size:
        raise click.BadParameter(f"should be at most --size ({size}). Got {crop_size}",
                                 param_hint="--crop-size")
    # a sequence holds at most 41 frames of the crop size (3.4 GB at 8 x 31 x 672 px); at the
    # model's sizes where none is given (a --batch-size of 30000 grew to 5 GB before an allocation failed)
    import torch

    from robustbench_gcp.engine.device import resolve_device
    from robustbench_gcp.models import create_model

    with torch.device("meta"):  # its sizes, no weights allocated
        config = create_model(model).pretrained_cfg
    _, frame = frame_sizes(config, size, crop_size)
    check_host_memory("perturbations", batch_size, frame, resolve_device(device).type, frames=41,
                      working_set=3)
    with item_bar(len(names) + 1, "timing") as advance:
        report = measure(names, device=device, model=model, batch_size=batch_size, size=size,
                         crop_size=crop_size, model_batch_size=model_batch_size,
                         difficulty=difficulty, repeats=repeats, progress=advance)
    settings, net = report["settings"], report["model"]
    rows = report["rows"] + [{
        "perturbation": f"model {net['name']}", "frames": net["batch_size"],
        "seconds": net["seconds"], "frames_per_second": net["frames_per_second"],
        "videos_per_second": None, "model_frames_per_second": net["frames_per_second"], "vs_model": 1.0,
    }]
    columns = [
        Column("perturbation", justify="left"),
        Column("frames"),
        Column("seconds", "s/call", ".3f"),
        Column("frames_per_second", "frames/s", ".0f"),
        Column("videos_per_second", "videos/s", ".1f"),
        Column("model_frames_per_second", "model frames/s", ".0f"),
        Column("vs_model", "x model", ".1f"),
    ]
    emit(
        rows, columns, fmt="json" if as_json else "table",
        title=f"ImageNet-P generation speed: {settings['device']}, batch {settings['batch_size']}, "
        f"{settings['size']} -> {settings['crop_size']} px, difficulty {settings['difficulty']}",
        caption=f"best of {counted(settings['repeats'], 'call')} after a warm-up; model {net['name']} "
        f"(random weights) on batches of {counted(net['batch_size'], 'frame')}; "
        f"{counted(settings['threads'], 'thread')}; x model: "
        "frames/s over the model frames/s timed in turns with that row (the model's row: the best of those)",
        json_obj=report,
    )
