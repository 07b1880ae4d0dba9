"""``gcp-robust bench corruptions`` and ``gcp-robust bench fidelity``.

Thin wrappers over :mod:`robustbench_gcp.bench.corruption_speed` and
:mod:`robustbench_gcp.bench.corruption_fidelity`: parse, measure, render.
"""

from __future__ import annotations

import click

from robustbench_gcp.cli.bench import check_host_memory
from robustbench_gcp.cli.options import COUNT, device_option, json_option, list_option
from robustbench_gcp.errors import counted


def _corruption_names(value: str) -> list[str]:
    """``a,b`` of corruption names and/or subsets (all, benchmark, extra, noise ...), checked."""
    from corruptions import SUBSETS
    from robustbench_gcp.suites.flag_values import resolve_names

    return list(resolve_names(value, (), SUBSETS, "corruption", "--corruptions"))


def _severities(value: str) -> list[int]:
    """``1,3`` checked against the severities 1..5."""
    from corruptions import SEVERITIES
    from robustbench_gcp.suites.flag_values import resolve_levels

    return list(resolve_levels(value, (), "--severities", SEVERITIES))


corruptions_option = list_option(
    "--corruptions",
    "corruption_list",
    default="all",
    help="Comma-separated corruption names or subsets (all, benchmark, extra, noise, blur, "
    "weather, digital).",
)
severities_option = list_option(
    "--severities", default="1,2,3,4,5", help="Comma-separated severities."
)
preset_option = click.option(
    "--preset",
    type=click.Choice(["imagenet", "cifar", "tinyimagenet"]),
    default="imagenet",
    show_default=True,
    help="Corruption parameters: ImageNet-C's (224 px), CIFAR-10/100-C's (32 px) or "
    "Tiny-ImageNet-C's (64 px). The small presets' reference is the transcription of "
    "make_cifar_c.py / make_tinyimagenet_c.py (motion blur: imagecorruptions' NumPy port; "
    "wand not installable).",
)
size_option = click.option(
    "--size", default=None, type=click.IntRange(32),
    help="Image side in pixels.  [default: the preset's: 224, 32 or 64]",
)


def _size(size: int | None, preset: str) -> int:
    from corruptions import PRESET_SIZES

    return PRESET_SIZES[preset] if size is None else size


@click.command("corruptions", short_help="ms per image of each corruption, here and in the reference.")
@device_option
@click.option("--batch-size", default=32, show_default=True, type=COUNT,
              help="Images per corrupt() call.")
@size_option
@preset_option
@corruptions_option
@severities_option
@click.option("--reference-images", default=2, show_default=True, type=click.IntRange(1),
              help="Images the reference (imagecorruptions, CPU, one at a time, best of 2) is "
              "timed on, per severity, at most --batch-size; glass_blur always uses 1, once "
              "(about a second).")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(1),
              help="Timed calls per severity after the warm-up call; the best one counts.")
@json_option
def bench_corruptions(device, batch_size, size, preset, corruption_list, severities,
                      reference_images, repeats, as_json):
    """Speed of every corruption: ms per image here and in the reference, and the speed-up.

    Both run on the same real photographs (scikit-image's, resized and cropped to
    --size): this package on batches of --batch-size on --device, the reference
    backend (imagecorruptions; with --preset cifar / tinyimagenet the transcription
    of the preset's generation script) one image at a time on the CPU as a user calls
    it (a uint8 NumPy image in and out), on the first --reference-images images only.
    Each figure is the best of several runs
    (robust to other processes on a shared machine), averaged over the
    severities; the last row holds geometric means.

    \b
    Example:
      gcp-robust bench corruptions --device cpu --batch-size 32 --corruptions blur
      gcp-robust bench corruptions --preset cifar
    """
    from corruptions._graphs import graph_stats
    from robustbench_gcp.bench.corruption_speed import reference_description, speed, speed_summary
    from robustbench_gcp.cli.output import emit
    from robustbench_gcp.cli.progress import item_bar
    from robustbench_gcp.engine.device import cuda_graphs_on, resolve_device
    from robustbench_gcp.reports.tables import Column

    torch_device = resolve_device(device)
    graphs_on = torch_device.type == "cuda" and cuda_graphs_on()
    names = _corruption_names(corruption_list)
    severity_list = _severities(severities)
    size = _size(size, preset)
    check_host_memory("corruptions", batch_size, size, torch_device.type)
    with item_bar(len(names), "timing") as advance:
        rows = speed(names, device=torch_device, batch_size=batch_size, size=size,
                     severities=severity_list, reference_images=reference_images,
                     repeats=repeats, progress=advance, preset=preset)
    summary = speed_summary(rows)
    # with GCP_ROBUST_CUDA_GRAPHS=1 on CUDA: whether the draws were replayed as graphs (a failed
    # capture leaves the loop, whose figures would be taken for the graphs')
    graphs = graph_stats() if graphs_on else {}
    graphs_said = ""
    if graphs_on:
        graphs_said = (f"; CUDA graphs of the per-image draws: {counted(graphs['captured'], 'capture')}"
                       + (f", then the loop: {graphs['failed']}" if graphs["failed"] else ""))
    # as timed: the reference takes images of the batch (glass_blur one)
    reference_images = max((row["reference_images"] for row in rows), default=reference_images)
    columns = [
        Column("corruption", justify="left"),
        Column("ms_per_image", "ms/image", ".3f"),
        Column("images_per_second", "images/s", ".0f"),
        Column("reference_ms_per_image", "reference ms/image", ".2f"),
        Column("speedup", "speed-up", ".1f"),
    ]
    settings = {
        "device": str(torch_device), "batch_size": batch_size, "size": size,
        "severities": severity_list, "reference_images": reference_images, "repeats": repeats,
    }
    reference = reference_description(preset)
    emit(
        rows + [summary], columns, fmt="json" if as_json else "table",
        title=f"Corruption speed: {torch_device}, batch {batch_size}, {size} px, "
        f"preset {preset}, severities {','.join(map(str, severity_list))}",
        caption=f"reference: {reference}, {counted(reference_images, 'image')} per severity"
        + (" (glass_blur: 1)" if "glass_blur" in names and reference_images > 1 else "") + graphs_said,
        json_obj={"settings": settings, "preset": preset, "reference": reference, "rows": rows,
                  "geometric_mean": summary, **({"cuda_graphs": graphs} if graphs_on else {})},
    )


@click.command("fidelity", short_help="Distance to the reference per corruption and severity.")
@click.option("--images", default=4, show_default=True, type=click.IntRange(1),
              help="Real photographs (scikit-image's, resized and cropped to --size).")
@click.option("--seeds", default=3, show_default=True, type=click.IntRange(1),
              help="Independent draws per image for the PSNR / std statistics of random "
              "corruptions.")
@click.option("--glass-blur-images", default=1, show_default=True, type=click.IntRange(1),
              help="Images for glass_blur (its reference takes about a second per image).")
@size_option
@preset_option
@corruptions_option
@severities_option
@json_option
def bench_fidelity(images, seeds, glass_blur_images, size, preset, corruption_list, severities,
                   as_json):
    """Distance to the reference per corruption and severity (CPU, float64).

    MAD: mean absolute difference in 1/255 units (max: the largest one, same
    units and format); for random corruptions both are paired: this package fed
    with the reference's own random draws. PSNR (dB, to the clean image) and
    std (of corrupted - clean, 1/255 units): means over --images x --seeds
    independent draws on each side, with the standard error of the PSNR
    difference. The reference is imagecorruptions, or the original
    ImageNet-C algorithm where imagecorruptions departs from it (pixelate,
    elastic_transform, frost, snow); with --preset cifar / tinyimagenet, the
    transcription of make_cifar_c.py / make_tinyimagenet_c.py. A row agrees
    where its MAD is below 0.01/255 (float error only) and its constants
    are the original script's; the command exits with status 1 when one
    does not, or when nothing could be compared.

    \b
    Example:
      gcp-robust bench fidelity --images 8 --seeds 4 --corruptions fog,frost --json
      gcp-robust bench fidelity --preset cifar --images 8 --seeds 8
    """
    from robustbench_gcp.bench.corruption_fidelity import AGREEMENT, AT_224_ONLY, fidelity
    from robustbench_gcp.bench.corruption_speed import reference_description
    from robustbench_gcp.cli.output import emit
    from robustbench_gcp.cli.progress import item_bar
    from robustbench_gcp.reports.tables import Column

    names = _corruption_names(corruption_list)
    severity_list = _severities(severities)
    source = click.get_current_context().get_parameter_source("glass_blur_images")
    if "glass_blur" not in names and source is not click.core.ParameterSource.DEFAULT:  # taken in silence
        raise click.UsageError("--glass-blur-images sets glass_blur's photographs, and --corruptions does "
                               "not name glass_blur")
    size = _size(size, preset)
    check_host_memory("fidelity", max(images, glass_blur_images), size)
    with item_bar(len(names) * len(severity_list), "fidelity") as advance:
        rows = fidelity(names, images=images, seeds=seeds, severities=severity_list,
                        glass_blur_images=glass_blur_images, progress=advance, preset=preset,
                        size=size)
    columns = [
        Column("corruption", justify="left"),
        Column("severity", "sev"),
        Column("reference", justify="left"),
        # the same significant-figure format for both: a tiny max next to its mean must not
        # round to 0.00 and look smaller than the mean
        Column("mad", "MAD /255", ".2e"),
        Column("max_abs", "max /255", ".2e"),
        Column("psnr", "PSNR", ".2f"),
        Column("psnr_reference", "PSNR ref", ".2f"),
        Column("psnr_diff", "dPSNR", "+.2f"),
        Column("psnr_diff_se", "+-SE", ".2f"),
        Column("std", "std /255", ".2f"),
        Column("std_reference", "std ref", ".2f"),
        Column("std_diff", "dstd", "+.2f"),
        Column("verdict", justify="left"),
    ]
    shown = [{**row, "verdict": _verdict(row)} for row in rows]
    reference = ("imagecorruptions (the original ImageNet-C algorithm for pixelate, "
                 "elastic_transform, frost, snow)" if preset == "imagenet"
                 else reference_description(preset).replace(" on the CPU", ""))
    emit(
        shown, columns, fmt="json" if as_json else "table",
        title=f"Corruption fidelity: {counted(images, 'image')} x {counted(seeds, 'seed')}, {size} px, "
              f"preset {preset}",
        caption=f"reference: {reference}. MAD is paired (same random draws) for random "
        f"corruptions; a row agrees where it is below {AGREEMENT}/255 and its constants are the original "
        "script's (table). PSNR/std over independent draws (they test the random draws, the MAD the rest)",
        json_obj={"settings": {"images": images, "seeds": seeds,
                               "glass_blur_images": glass_blur_images,
                               "severities": severity_list, "size": size},
                  "preset": preset, "reference": reference, "rows": rows},
    )
    # a script's check: a wrong constant or algorithm is not a table to read by eye
    differing = [f"{row['corruption']} {row['severity']} ({', '.join(_causes(row))})"
                 for row in rows if row["agrees"] is False]
    checked = sum(row["agrees"] is not None for row in rows)
    if differing:
        verb = "differs" if len(differing) == 1 else "differ"
        raise click.ClickException(
            f"{counted(len(differing), 'row')} of the {checked} checked {verb} from the reference (MAD "
            f"{AGREEMENT}/255 or more, or constants not the original script's): {', '.join(differing)}")
    if not checked:  # a pass where nothing was compared (frost alone at 64 px: helper-249)
        asked = [name for name in AT_224_ONLY if any(row["corruption"] == name for row in rows)]
        many = len(asked) != 1
        raise click.ClickException(f"nothing was compared: {' and '.join(asked or AT_224_ONLY)} "
                                   f"{'are' if many else 'is'} measured at 224 px only with the ImageNet "
                                   "preset (--size 224)")


def _verdict(row: dict) -> str:
    """A fidelity row's verdict: agrees, DIFFERS (what: table, MAD), or - (not measured)."""
    if row["agrees"] is None:
        return "-"
    return "agrees" if row["agrees"] else f"DIFFERS ({', '.join(_causes(row))})"


def _causes(row: dict) -> list[str]:
    """Why a fidelity row differs: ``table`` (its constants are not the original script's), ``MAD``."""
    from robustbench_gcp.bench.corruption_fidelity import AGREEMENT

    return [w for w, bad in (("table", not row["table"]),
                             ("MAD", row["mad"] is not None and row["mad"] >= AGREEMENT)) if bad]
