"""``gcp-robust suites``: the evaluation suites of benchmarks.yaml."""

from __future__ import annotations

import click

from robustbench_gcp.cli.options import config_option, json_option


@click.command("suites")
@config_option
@json_option
def suites_cmd(config, as_json) -> None:
    """List the evaluation suites: kind, corruptions or perturbations, severities, attacks.

    Suites are defined in benchmarks.yaml; use one with `gcp-robust eval --suite NAME`.
    """
    from robustbench_gcp.cli.output import emit
    from robustbench_gcp.config import load_config
    from robustbench_gcp.reports.evaluation import format_epsilon
    from robustbench_gcp.reports.tables import Column

    cfg = load_config(config)
    rows = []
    for suite in cfg.suites.values():
        if suite.kind == "imagenet-c":
            contents = f"{len(suite.corruptions)} corruptions: {', '.join(suite.corruptions)}"
            levels = "severities " + ",".join(map(str, suite.severities))
            if suite.storage_roundtrip:
                levels += "; JPEG q85 round trip"
        elif suite.kind == "imagenet-p":
            contents = f"{len(suite.perturbations)} perturbations: {', '.join(suite.perturbations)}"
            levels = "difficulties " + ",".join(map(str, suite.difficulties))
        elif suite.kind == "adversarial":
            contents = ", ".join(a.attack for a in suite.attacks)
            levels = "; ".join(
                f"{a.attack} eps " + ",".join(format_epsilon(e, a.norm) for e in a.epsilons)
                for a in suite.attacks
            )
        else:
            contents, levels = "clean images", ""
        rows.append({"suite": suite.name, "kind": suite.kind, "contents": contents, "levels": levels})
    json_obj = [
        {"suite": s.name, "kind": s.kind, "corruptions": list(s.corruptions),
         "severities": list(s.severities), "storage_roundtrip": s.storage_roundtrip,
         "perturbations": list(s.perturbations), "difficulties": list(s.difficulties),
         "attacks": [{"attack": a.attack, "norm": a.norm, "epsilons": list(a.epsilons), **a.params}
                     for a in s.attacks]}
        for s in cfg.suites.values()
    ]
    emit(rows, [Column("suite", justify="left"), Column("kind", justify="left"),
                Column("contents", justify="left", wrap=True), Column("levels", justify="left", wrap=True)],
         fmt="json" if as_json else "table", title=f"Suites of {cfg.path}", json_obj=json_obj)
