"""``gcp-robust baseline``: evaluate a baseline model and store its raw figures under a name."""

from __future__ import annotations

import click

from robustbench_gcp.cli.options import (
    SuiteCommand,
    config_option,
    data_options,
    engine_options,
    format_option,
    model_options,
    output_option,
)
from robustbench_gcp.cli.output import computes


def _normalized(suite) -> bool:
    """The suites a baseline can serve (whose flags and kinds ``--help`` shows)."""
    return suite.uses_baseline


@click.command("baseline", cls=SuiteCommand, suites=_normalized,
               short_help="Store a baseline model's figures: the normalizer of FR and CE.")
@click.option("--model", "-m", default=None, metavar="NAME",
              help="The baseline model (e.g. alexnet: torchvision's AlexNet, from a local file).")
@click.option("--name", default=None, help="Name to store the baseline under. Default: the model name.")
@click.option("--replace", is_flag=True,
              help="Let --name point to this run when a baseline of that name is another run.")
@click.option("--list", "list_only", is_flag=True, help="List the baselines stored in --store and exit.")
@model_options
@click.option("--suite", "-s", default="imagenet-p", show_default=True, metavar="NAME",
              help="A suite normalized by a stored run: ImageNet-P's (FR, T5D), or ImageNet-C's on "
                   "CIFAR-10/100, Tiny-ImageNet, or ImageNet images classified into other classes than "
                   "ImageNet's 1000 (CE; a 1000-class model's on ImageNet is AlexNet's published errors).")
@data_options
@engine_options
@config_option
@format_option
@output_option
@computes
def baseline_cmd(model, name, replace, list_only, fmt, output, workers, **options) -> None:
    """Run a baseline model and store its raw figures (flip probabilities, errors) by name.

    No table of AlexNet's ImageNet-P flip rates exists in a usable form, so FR,
    mFR, T5D and mT5D are normalized by a baseline that this tool computes and
    stores. Evaluate it once, on the same data as the models; later reports pick
    it with `--baseline NAME`. A name already given to another run is refused
    unless --replace is passed; re-running the same command resumes or reuses
    the stored run.

    \b
    Example:
      gcp-robust baseline --model alexnet --checkpoint alexnet-owt-7be5be79.pth \\
          --suite imagenet-p --data /data/imagenet/val
      gcp-robust eval --model resnet50-isqrt --suite imagenet-p --data /data/imagenet/val \\
          --baseline alexnet
    """
    from robustbench_gcp.cli.options import check_output_not_store
    from robustbench_gcp.store import Store

    check_output_not_store(output, options.get("store"))
    if list_only:
        import os
        from pathlib import Path

        from robustbench_gcp.cli.options import given_options

        ctx = click.get_current_context()
        unused = given_options(*(p.name for p in ctx.command.params
                         if p.name not in ("list_only", "store", "fmt", "output", "config")))
        if unused:
            raise click.UsageError(f"--list lists the baselines stored in --store; {', '.join(unused)} "
                                   "would run one: drop them or --list")
        if given_options("config"):  # taken (the other commands' habit), and read: a missing or broken
            from robustbench_gcp.config import load_config  # file was passed without a word (helper-227)

            load_config(options["config"])

        from robustbench_gcp.cli.output import emit
        from robustbench_gcp.errors import StoreError, absent
        from robustbench_gcp.reports.tables import Column

        rows = []
        if Path(options["store"]).is_file():  # listing must not create an empty store
            from robustbench_gcp.reports.stored import run_label, weights_label

            with Store(options["store"], read_only=True) as store:  # listing never writes
                rows = [{"name": n, "model": run_label(run), "checkpoint": run.checkpoint,
                         # which file it was: two baselines of one path (a file replaced) differ here
                         "weights": weights_label(run, short=fmt == "table"),
                         "images": run.n_images, "stored": stored}
                        for n, stored, run in store.baselines()]
        else:  # no store yet holds no baselines; a broken link or a folder is not that
            said = absent(options["store"])
            if os.path.lexists(options["store"]) or said != "does not exist":
                raise StoreError(f"store {options['store']} "
                                 + ("is not a file" if said == "does not exist" else said))
        if not rows and fmt == "table":  # an empty table says nothing; CSV and JSON stay parseable
            where = "" if Path(options["store"]).is_file() else " (it does not exist yet)"
            click.echo(f"no baselines stored in {options['store']}{where}: store one with `gcp-robust "
                       "baseline --model NAME --name NAME ...`", err=True)
            return
        emit(rows, [Column("name", justify="left"), Column("model", justify="left"),
                    Column("checkpoint", justify="left"), Column("weights", justify="left"), Column("images"),
                    Column("stored")],
             fmt=fmt, title=f"Baselines in {options['store']}", output=output)
        return
    if model is None:
        raise click.UsageError("give --model (or --list)")
    if name is not None and not name.strip():
        raise click.UsageError("--name is empty: give the name to store the baseline under")
    if name is not None and "," in name:  # --baseline a,b asks for two baselines: it was stored, never found
        raise click.UsageError(f"--name {name!r} holds a comma, which separates the names of --baseline: "
                               "give a name without one")
    if name is not None and name != name.strip():  # --baseline strips its names: stored, never found
        raise click.UsageError(f"--name {name!r} begins or ends with a space, which --baseline strips: "
                               "give the name without it")
    from robustbench_gcp.cli.options import default_workers
    from robustbench_gcp.cli.output import print_report
    from robustbench_gcp.cli.progress import progress_display
    from robustbench_gcp.config import load_config
    from robustbench_gcp.errors import ConfigError
    from robustbench_gcp.pipeline import RankResult, plan, run, store_baseline
    from robustbench_gcp.pipeline.execution import check_baseline_name
    from robustbench_gcp.suites import get_suite

    kind = get_suite(load_config(options["config"]).suite(options["suite"]).kind)
    if not _normalized(kind):  # before the model's own checks, whose advice would lead here
        raise ConfigError(f"`--suite {options['suite']}`: the {kind.kind} suite is normalized by no "
                          "baseline, so one would never be used; baselines serve imagenet-p (FR, T5D), and "
                          "imagenet-c on CIFAR-10/100, Tiny-ImageNet and ImageNet images classified into "
                          "other classes than ImageNet's 1000 (CE)")
    workers = default_workers() if workers is None else workers
    planned = plan(model, workers=workers, **options)
    name = name or planned.model.label
    check_baseline_name(planned, name, replace=replace)
    with progress_display(f"baseline {model} {options['suite']}") as progress:
        report = run(planned, progress)
    if isinstance(report, RankResult):  # torchrun ranks other than 0
        return
    store_baseline(report, name, replace=replace)
    report.notes = [n for n in report.notes if "unnormalized" not in n]
    report.notes.append(f"stored as baseline '{name}' in {options['store']}")
    from robustbench_gcp.metrics import DEFAULT_BASELINE

    if name == DEFAULT_BASELINE and planned.model.arch != DEFAULT_BASELINE:  # reports take it unasked
        report.notes.append(f"'{DEFAULT_BASELINE}' is the baseline reports use when none is named: they "
                            f"now normalize by this run of {planned.model.label}")
    print_report(report, fmt, output)
