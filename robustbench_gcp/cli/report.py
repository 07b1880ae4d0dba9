"""``gcp-robust report``: tables, CSV, JSON, Markdown and plots from the store alone."""

from __future__ import annotations

import click

from robustbench_gcp.cli.options import config_option, format_option, output_option, store_option


def statistics_options(func):
    func = click.option("--reference", default=None, metavar="MODEL",
                        help="Model the others are compared with (default: the first of each suite).")(func)
    func = click.option("--resamples", type=click.IntRange(min=100), default=1000, show_default=True,
                        help="Bootstrap resamples for the 95 % intervals.")(func)
    func = click.option("--plot", "plot_dir", type=click.Path(file_okay=False), default=None,
                        metavar="DIR", help="Also write PNG figures into DIR.")(func)
    return func


def emit_comparison(evaluated, comparisons, *, fmt: str, output: str | None, layout: str = "long",
                    plot_dir: str | None = None, title: str = "") -> None:
    """Print (report, cells) pairs and their comparisons in ``fmt``; write plots."""
    from robustbench_gcp.cli.output import write_output
    from robustbench_gcp.reports import evaluation, summary
    from robustbench_gcp.reports.tables import render_text, rich_table, to_csv, to_json, to_markdown

    reports = [report for report, _ in evaluated]
    if fmt == "json":
        text = to_json({"reports": reports, "comparisons": comparisons})
    elif fmt == "csv":
        if layout == "wide":
            rows = [row for c in comparisons for row in summary.comparison_csv_rows(c)] if comparisons \
                else summary.headline_rows(reports)
            text = to_csv(rows)
        else:
            text = evaluation.to_long_csv(reports)
    elif fmt == "markdown":
        parts = [f"## {title}\n"] if title else []
        for comparison in comparisons:
            rows, columns = summary.comparison_rows(comparison)
            heading = (f"{comparison['suite']}: {comparison.get('n_images')} images (reference "
                       f"{comparison['reference']}, 95 % intervals)")
            parts.append(to_markdown(rows, columns, title=heading))
            parts += [f"Note: {note}\n" for note in comparison.get("notes", [])]
        parts.append(summary.detail_markdown(reports))
        text = "\n".join(parts)
    else:
        from rich.console import Group
        from rich.text import Text

        from robustbench_gcp.reports.tables import stdout_console

        parts = []
        for comparison in comparisons:
            wide = len(comparison["models"][0]["metrics"]) > 4
            rows, columns = (summary.comparison_long_rows(comparison) if wide
                             else summary.comparison_rows(comparison, compact=True))
            n = comparison.get("n_images")
            caption = ("value and [95 % bootstrap interval over images]; Δ: paired difference to the "
                       "reference; McNemar p: exact test of the paired outcomes" if wide else
                       "value and [95 % bootstrap interval over images]; Δ: paired difference to the "
                       "reference; McNemar: outcomes (clean, corruptions, attacks) where the model "
                       "differs from the reference at p < 0.05")
            title = f"{comparison['suite']}: {n} images, reference {comparison['reference']}"
            parts.append(rich_table(rows, columns, title=title, caption=caption))
        if not comparisons:
            rows = summary.headline_rows(reports)
            parts.append(rich_table(rows, summary.headline_columns(rows), title=title or None))
        notes = sorted({note for r in reports for note in r.get("notes", [])}
                       | {note for c in comparisons for note in c.get("notes", [])})
        parts += [Text(f"note: {note}", style="yellow") for note in notes]
        renderable = Group(*parts)
        if output is None:
            stdout_console().print(renderable)
            text = None
        else:
            text = render_text(renderable)
    if text is not None:
        write_output(text, output)
    if plot_dir:
        from robustbench_gcp.reports.plots import write_plots

        for path in write_plots(reports, plot_dir):
            click.echo(f"wrote {path}", err=True)


@click.command("report")
@click.option("--models", default=None, metavar="A,B", help="Models to report (default: every model stored).")
@click.option("--suite", "suites", multiple=True, metavar="NAME",
              help="Suite kinds or suites of benchmarks.yaml to report (repeatable; default: all).")
@format_option
@output_option
@click.option("--layout", type=click.Choice(["long", "wide"]), default="long", show_default=True,
              help="CSV layout: long (a row per model, suite, item and level) or wide (a row per model).")
@click.option("--no-intervals", is_flag=True, help="Skip bootstrap intervals and paired tests.")
@statistics_options
@click.option("--baseline", default="alexnet", show_default=True,
              help="Normalizer: a baseline of benchmarks.yaml (ImageNet-C) or a stored one (ImageNet-P).")
@store_option
@config_option
def report_cmd(models, suites, fmt, output, layout, no_intervals, reference, resamples, plot_dir, baseline,
               store, config) -> None:
    """Report stored results: no model is run, nothing is computed but statistics.

    \b
    Examples:
      gcp-robust report                                  # every stored model and suite
      gcp-robust report --suite imagenet-c --format csv -o table.csv
      gcp-robust report --format csv --layout wide -o summary.csv
      gcp-robust report --models resnet50-gap,resnet50-isqrt --format markdown --plot figures/
    """
    from pathlib import Path

    from robustbench_gcp.compare import compare_reports
    from robustbench_gcp.config import SUITE_KINDS, load_config
    from robustbench_gcp.errors import ConfigError, StoreError
    from robustbench_gcp.reports.objects import check_p_baseline, collect, stored_p_baseline
    from robustbench_gcp.store import Store

    cfg = load_config(config)
    kinds = []
    for name in (s.strip() for item in suites for s in item.split(",") if s.strip()):
        kinds.append(name if name in SUITE_KINDS else cfg.suite(name).kind)
    names = [m.strip() for m in models.split(",")] if models else None
    if not Path(store).is_file():
        raise StoreError(f"store {store} does not exist: run `gcp-robust eval` (or compare) first")
    c_baseline = cfg.baselines.get(baseline)
    check_p_baseline(store, baseline, cfg.baselines)
    with Store(store) as db:
        stored = {run.model for run in db.runs()}
        for name in names or []:
            if name not in stored:
                from robustbench_gcp.errors import UnknownNameError

                raise UnknownNameError("stored model", name, stored)
        evaluations = collect(db, models=names, kinds=kinds or None)
        if not evaluations:
            raise ConfigError(f"store {store} holds no complete results for that selection")
        evaluated = []
        for e in evaluations:
            p = None
            if e.kind == "imagenet-p":
                p = stored_p_baseline(db, baseline, [r.key for r in e.results])
            evaluated.append((e.report(c_baseline, p), e.results))
        comparisons = [] if no_intervals else compare_reports(
            db, evaluated, reference=reference, baseline=c_baseline, p_baseline_name=baseline,
            resamples=resamples)
    emit_comparison(evaluated, comparisons, fmt=fmt, output=output, layout=layout, plot_dir=plot_dir,
                    title=f"Results in {store}")
