"""``gcp-robust models``: the registry architectures and the models of benchmarks.yaml."""

from __future__ import annotations

import click

from robustbench_gcp.cli.options import config_option, json_option


@click.command("models")
@config_option
@json_option
def models_cmd(config, as_json) -> None:
    """List model architectures and the configured models.

    The first table lists every registry name (usable with --model directly):
    head, parameter count at the model's default size (d = 256 and 1000 classes;
    the demo models: d = 32 and 10 classes) and input size. The second lists the
    models of benchmarks.yaml with the published numbers quoted there (percent)
    and their checkpoints; where some paper gives robustness numbers but no
    top-1, a caption names those models.
    """
    from robustbench_gcp.cli.output import emit
    from robustbench_gcp.config import load_config
    from robustbench_gcp.models import list_models, model_info
    from robustbench_gcp.reports.tables import Column, rich_table

    cfg = load_config(config)
    top1 = {}
    for spec in cfg.models.values():
        if "top1" in spec.published and spec.arch == spec.name:
            top1[spec.arch] = spec.published["top1"]
    arch_rows = []
    for name in list_models():
        info = model_info(name)
        arch_rows.append({"name": name, "head": info.head, "params": info.num_params,
                          "input": f"{info.input_size}px", "published_top1": top1.get(name),
                          "pooling": info.pooling})  # a DeiT's "gap" is its class token, said here
    model_rows = [
        {"name": spec.name, "arch": spec.arch, "checkpoint": spec.checkpoint, "sha256": spec.sha256,
         **{k: spec.published.get(k) for k in PUBLISHED}}
        for spec in cfg.models.values()
    ]
    if as_json:
        emit([], fmt="json", json_obj={"architectures": arch_rows, "models": model_rows})
        return
    from rich.console import Group

    from robustbench_gcp.cli.output import print_renderable

    architectures = rich_table(arch_rows, [
        Column("name", justify="left"), Column("head", justify="left"), Column("params", fmt=","),
        Column("input"), Column("published_top1", "published top-1 %", ".2f")],
        title="Architectures (registry names)")
    figures = [Column("top1", "top-1", ".2f"), Column("top5", "top-5", ".2f"),
               Column("clean_error", "clean err", ".2f"), Column("mCE", fmt=".1f"),
               Column("relative_mCE", "rel. mCE", ".1f"), Column("mFR", fmt=".1f"), Column("mT5D", fmt=".1f")]
    optional = {"top5", "clean_error"}  # shown where some model quotes them
    configured = rich_table(model_rows, [  # the checkpoint (a long URL) last: the terminal wraps it
        Column("name", justify="left"), Column("arch", justify="left"),
        *[c for c in figures if c.key not in optional or any(row[c.key] is not None for row in model_rows)],
        Column("checkpoint", justify="left", wrap=True)],
        title=f"Models of {cfg.path} (published numbers, %)",
        caption=no_top1_note(cfg.models.values()) if model_rows else
        "no models: the file has no `models:` entries (eval --model takes the registry's names above, "
        "torchvision:<name> or package.module:callable)")
    print_renderable(Group(architectures, configured), None)


def no_top1_note(specs) -> str | None:
    """Why a model's top-1 is "-" next to published robustness numbers: the results quoted for
    it (the ImageNet-C / -P tables of the GCP papers) give none, so none is made up; None when
    every model with published numbers has its top-1."""
    lacking = [spec for spec in specs if spec.published and "top1" not in spec.published]
    if not lacking:
        return None
    given = [key for key in PUBLISHED if any(key in spec.published for spec in lacking)]
    return (f"top-1 -: the published results quoted for {', '.join(spec.name for spec in lacking)} give "
            f"{', '.join(PUBLISHED[key] for key in given)} but no ImageNet top-1")


#: benchmarks.yaml's published figures, as the note names them
PUBLISHED = {"top1": "top-1", "top5": "top-5", "clean_error": "the clean error", "mCE": "mCE",
             "relative_mCE": "relative mCE", "mFR": "mFR", "mT5D": "mT5D"}
