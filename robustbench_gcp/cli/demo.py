"""``gcp-robust demo``: every suite on two tiny trained models, offline, in a few minutes."""

from __future__ import annotations

import time

import click

from robustbench_gcp.cli.options import (
    COUNT,
    WORKERS,
    NonEmptyPath,
    config_option,
    device_option,
    output_option,
)


@click.command("demo", short_help="Run the embedded demo: every suite, nothing to download.")
@click.option("--out", type=NonEmptyPath(file_okay=False), default="gcp-robust-demo", show_default=True,
              help="Folder for the generated data, the store (demo.db) and the plots.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table",
              show_default=True, help="table/markdown: the comparison; json: one object per demo model.")
@output_option
@device_option
@click.option("--batch-size", type=COUNT, default=64, show_default=True,
              help="Images per forward pass.")
@click.option("--workers", type=WORKERS, default=0, show_default=True,
              help="Data loader processes (the demo images are tiny: 0 is fastest).")
@click.option("--limit", type=click.IntRange(min=10), default=None,
              help="Evaluate a class-balanced subset of N of the 100 validation images (a quicker look).")
@config_option
def demo_cmd(out, fmt, output, device, batch_size, workers, limit, config) -> None:
    """Run the embedded demo: nothing to download, every suite, a comparison and plots.

    Builds a small dataset from the photographs that ship with scikit-image,
    evaluates the two demo models (GAP and iSQRT-COV ResNets trained on it,
    shipped in the package) on clean images, ImageNet-C (15 corruptions x 5
    severities), ImageNet-P (10 perturbations), FGSM / PGD-Linf attacks and
    the loss landscape at the stem (5 steps), prints the comparison with 95 %
    intervals and paired tests, and writes the plots to OUT/plots. A second
    run reuses the stored results.
    """
    from pathlib import Path

    from robustbench_gcp.cli.options import check_output_not_store
    from robustbench_gcp.cli.output import print_comparison, write_output
    from robustbench_gcp.cli.progress import progress_display
    from robustbench_gcp.pipeline.demo_run import merged_reports, run_demo
    from robustbench_gcp.reports.tables import to_json

    check_output_not_store(output, Path(out) / "demo.db")
    started = time.perf_counter()
    with progress_display("demo") as progress:
        reports, comparisons = run_demo(out, progress=progress, config=config, device=device,
                                        batch_size=batch_size, workers=workers, shard_size=256, limit=limit)
    if not reports:  # torchrun ranks other than 0: rank 0 prints
        return
    plots = Path(out) / "plots"
    if fmt == "json":
        write_output(to_json(merged_reports(reports)), output)
        from robustbench_gcp.reports.plots import write_plots

        write_plots(reports, plots)
    else:
        print_comparison(reports, comparisons, fmt=fmt, output=output, plot_dir=str(plots),
                        title="Demo: GAP vs iSQRT-COV")
    store = Path(out) / "demo.db"
    click.echo(f"demo finished in {time.perf_counter() - started:.0f} s; store {store}, plots in {plots}; "
               f"`gcp-robust report --store {store} --baseline alexnet,demo-gap` reports them again "
               "(the clean table: --suite clean)",
               err=True)
