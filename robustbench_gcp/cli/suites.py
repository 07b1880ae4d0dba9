"""``gcp-robust suites``: the evaluation suites of benchmarks.yaml."""

from __future__ import annotations

import click

from robustbench_gcp.cli.options import config_option, json_option


@click.command("suites", short_help="List the suites of benchmarks.yaml and what each measures.")
@config_option
@json_option
def suites_cmd(config, as_json) -> None:
    """List the evaluation suites: kind, corruptions or perturbations, severities, attacks.

    Suites are defined in benchmarks.yaml; use one with `gcp-robust eval --suite NAME`.
    """
    from robustbench_gcp.cli.output import emit
    from robustbench_gcp.config import load_config
    from robustbench_gcp.reports.tables import Column
    from robustbench_gcp.suites import get_suite

    cfg = load_config(config)
    rows, json_obj = [], []
    for spec in cfg.suites.values():
        suite = get_suite(spec.kind)
        contents, levels = suite.describe(spec)
        dataset = spec.dataset or "(the data's)"
        rows.append({"suite": spec.name, "kind": spec.kind, "dataset": dataset, "contents": contents,
                     "levels": levels})
        json_obj.append({"suite": spec.name, "kind": spec.kind, "dataset": spec.dataset,
                         **suite.spec_json(spec)})
    emit(rows, [Column("suite", justify="left"), Column("kind", justify="left"),
                Column("dataset", justify="left"),
                Column("contents", justify="left", wrap=True), Column("levels", justify="left", wrap=True)],
         fmt="json" if as_json else "table", title=f"Suites of {cfg.path}", json_obj=json_obj,
         caption=None if rows else "no suites: the file has no `suites:` section, from which eval --suite "
         "takes its names (the shipped benchmarks.yaml has one to copy)")
