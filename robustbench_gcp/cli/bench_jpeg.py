"""``gcp-robust bench jpeg``: how long the JPEG round trips take, and how close they are."""

from __future__ import annotations

import click

from robustbench_gcp.cli.bench import check_host_memory
from robustbench_gcp.cli.options import COUNT, device_option, int_list, json_option, list_option


def _qualities(ctx, param, value: str) -> list[int]:
    qualities = int_list(ctx, param, value, bounds=(1, 100))
    if not qualities:
        raise click.BadParameter(f"should name at least one quality 1..100. Got {value!r}")
    return list(dict.fromkeys(qualities))  # a quality given twice is measured once, as --corruptions


@click.command("jpeg", short_help="Time the JPEG round trips: CPU libjpeg, device, nvJPEG.")
@device_option
@click.option("--batch-size", type=COUNT, default=32, show_default=True,
              help="Images per call.")
@click.option("--size", type=click.IntRange(min=1), default=224, show_default=True,
              help="Side of the square photographs, in pixels.")
@list_option("--qualities", default="85,25,7", callback=_qualities,
             help="Comma-separated JPEG qualities (85: the released files' storage; 25 and 7: "
                  "jpeg_compression at severities 1 and 5).")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Timed rounds after a warm-up round (the best counts).")
@json_option
def bench_jpeg(device: str, batch_size: int, size: int, qualities: list[int], repeats: int,
               as_json: bool) -> None:
    """Time the JPEG round trips on the same photographs, from images on the device
    back to images on it: libjpeg-turbo on the CPU (the protocol's codec, PIL's), the
    same arithmetic in integer tensors on the device (what gcp-robust uses on
    CUDA), and on CUDA torchvision's nvJPEG (not used: 4:4:4 chroma). Each row also
    gives the mean difference from libjpeg's pixels, in uint8 levels.

    \b
    Example:
      gcp-robust bench jpeg --device cuda --batch-size 256
    """
    from robustbench_gcp.bench.jpeg_speed import bench_jpeg as measure
    from robustbench_gcp.cli.output import emit
    from robustbench_gcp.engine.device import resolve_device
    from robustbench_gcp.reports.tables import Column

    resolved = resolve_device(device)
    check_host_memory("jpeg", batch_size, size, resolved.type)
    rows = measure(resolved, batch_size=batch_size, size=size, qualities=qualities, repeats=repeats)
    columns = [
        Column("codec", justify="left"),
        Column("quality", "quality", "d"),
        Column("ms_per_image", "ms/image", ".3f"),
        Column("images_per_second", "images/s", ",.0f"),
        Column("vs_libjpeg", "x libjpeg", ".2f"),
        Column("mad_levels", "MAD levels", ".4f"),
        Column("identical", "identical", justify="left"),
    ]
    document = {"device": str(resolved), "batch_size": batch_size, "size": size,
                "repeats": repeats, "rows": rows}
    emit(rows, columns, fmt="json" if as_json else "table",
         title=f"JPEG round trips on {resolved}, batch {batch_size} at {size} px",
         caption="best of the rounds; x libjpeg above 1 is faster; MAD = mean absolute "
                 "difference from libjpeg's pixels",
         json_obj=document)
