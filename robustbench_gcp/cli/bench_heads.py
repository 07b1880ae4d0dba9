"""``gcp-robust bench heads``: how long the pooling heads take."""

from __future__ import annotations

import click

from robustbench_gcp.cli.options import COUNT, device_option, json_option, list_option
from robustbench_gcp.errors import counted


@click.command("heads", short_help="Time the heads: GAP, Newton-Schulz, eigh, SVD, DropCov.")
@device_option
@click.option("--batch-size", type=COUNT, default=32, show_default=True,
              help="Feature maps per batch.")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True,
              help="Timed runs per measurement (the fastest is reported, as by the other benches).")
@click.option("--pool-only", is_flag=True,
              help="Time the pooling alone (GCP: covariance + root + triangle of reduced "
                   "256x14x14 maps; svdpade and isqrt-relu6: 256x7x7, as their networks give) instead "
                   "of reduction + pooling + "
                   "classifier.")
@list_option("--heads", default="all", metavar="NAMES",
             help="Comma-separated heads to time, of: gap, isqrt, mpncov, svdpade, dropcov, "
                  "isqrt-relu6 (GAP is always timed: the ratios are to it).")
@json_option
def bench_heads(device: str, batch_size: int, repeats: int, pool_only: bool, heads: str,
                as_json: bool) -> None:
    """Time the pooling heads: GAP, Newton-Schulz, eigh, SVD and DropCov's covariance.

    Inputs (the table's "input" column) are random feature maps of the real
    backbone shapes: ResNet-50's 2048x7x7 for GAP and SVD-Pade and 2048x14x14
    for the other GCP heads (layer4 at stride 1); the isqrt-relu6 row is the MobileNetV2 /
    ShuffleNetV2 GCP head (ReLU6 reduction) on MobileNetV2's 1280x7x7
    (ShuffleNetV2's map has 1024 channels). By default each head is timed from
    the backbone's output to the logits: the 1x1 reduction to 256 channels + BN +
    ReLU (ReLU6), covariance, square root, upper triangle and the 1000-way
    classifier for GCP; average and classifier for GAP. Forward runs
    without gradients; forward+backward computes the gradient with respect to
    the features (what attacks need). Ratios are to GAP in the same run.

    \b
    Example:
      gcp-robust bench heads --device cuda --batch-size 32 --repeats 10
    """
    from robustbench_gcp.bench.head_speed import bench_heads as measure
    from robustbench_gcp.bench.head_speed import check_heads
    from robustbench_gcp.cli.output import emit
    from robustbench_gcp.engine.device import resolve_device
    from robustbench_gcp.reports.tables import Column

    names = [n.strip() for n in heads.split(",") if n.strip()]
    chosen = None if names == ["all"] else names
    check_heads(chosen, "--heads")  # before the device is set up
    resolved = resolve_device(device)
    scope = "pool" if pool_only else "head"
    rows = measure(resolved, batch_size=batch_size, repeats=repeats, scope=scope, heads=chosen)
    what = ("pooling only" if pool_only
            else "reduction + pooling + classifier (GAP: pooling + classifier)")
    columns = [
        Column("head", justify="left"),
        Column("matrix_function", "matrix function", justify="left"),
        Column("input", justify="left"),
        Column("forward_ms", "forward ms", ".1f"),
        Column("forward_vs_gap", "x GAP", ".1f"),
        Column("forward_backward_ms", "fwd+bwd ms", ".1f"),
        Column("forward_backward_vs_gap", "x GAP", ".1f"),
    ]
    document = {"device": str(resolved), "batch_size": batch_size, "repeats": repeats,
                "scope": scope, "timed": what, "rows": rows}
    emit(rows, columns, fmt="json" if as_json else "table",
         title=f"Pooling heads on {resolved}, batch {batch_size}: {what}",
         caption=f"fastest of {counted(repeats, 'run')}; fwd+bwd = gradient w.r.t. the input features",
         json_obj=document)
