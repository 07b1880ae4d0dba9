"""``gcp-robust compare``: several models and checkpoints side by side, with statistics."""

from __future__ import annotations

from pathlib import Path

import click

from robustbench_gcp.cli.options import (
    config_option,
    data_options,
    engine_options,
    format_option,
    output_option,
    selection_options,
)
from robustbench_gcp.cli.report import emit_comparison, statistics_options

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".tar", ".bin", ".ckpt", ".pkl")


def model_entries(models: tuple[str, ...], checkpoints_dir: str | None, config) -> list[tuple[str, str, str]]:
    """(label, model name, checkpoint or "") for every model to compare, labels unique.

    Raises:
        ConfigError: nothing to compare, or a folder without checkpoints.
    """
    from robustbench_gcp.errors import ConfigError

    entries: list[tuple[str, str, str]] = []
    for item in models:
        name, _, checkpoint = item.partition("=")
        if not name:
            raise ConfigError(f"`--model` should be NAME or NAME=CHECKPOINT. Got {item!r}")
        entries.append((name, name, checkpoint))
    if checkpoints_dir is not None:
        from robustbench_gcp.models import inspect_checkpoint

        folder = Path(checkpoints_dir)
        if not folder.is_dir():
            raise ConfigError(f"`--checkpoints {folder}` is not a folder")
        files = sorted(p for p in folder.iterdir()
                       if p.is_file() and p.name.lower().endswith(CHECKPOINT_SUFFIXES))
        if not files:
            raise ConfigError(f"folder {folder} holds no checkpoint files ({', '.join(CHECKPOINT_SUFFIXES)})")
        for path in files:
            info = inspect_checkpoint(path)
            if not info.arch:
                raise ConfigError(f"checkpoint {path} does not fit any registered model ({info.layout})")
            entries.append((path.name.split(".")[0], info.arch, str(path)))
    if not entries:
        entries = [(spec.name, spec.name, "") for spec in config.models.values()]
        missing = [spec for spec in config.models.values() if spec.checkpoint
                   and "://" not in spec.checkpoint and not Path(spec.checkpoint).is_file()]
        if missing:
            raise ConfigError(
                "comparing the models of benchmarks.yaml, but these checkpoints are missing: "
                + ", ".join(f"{s.name} ({s.checkpoint})" for s in missing)
                + "; pick models with --model NAME[=CHECKPOINT] or --checkpoints DIR"
            )
    counts: dict[str, int] = {}
    for label, _, _ in entries:
        counts[label] = counts.get(label, 0) + 1
    unique = []
    for label, name, checkpoint in entries:
        if counts[label] > 1:
            label = f"{label}@{Path(checkpoint).name.split('.')[0] or 'random'}"
        unique.append((label, name, checkpoint))
    if len({label for label, _, _ in unique}) != len(unique):
        raise ConfigError("two --model entries are the same model and checkpoint")
    return unique


@click.command("compare")
@click.option("--model", "-m", "models", multiple=True, metavar="NAME[=CHECKPOINT]",
              help="A model to compare (repeatable). Default: the models of benchmarks.yaml.")
@click.option("--checkpoints", "checkpoints_dir", type=click.Path(), default=None, metavar="DIR",
              help="Compare every checkpoint in DIR; each one's architecture is found by inspecting it.")
@click.option("--suite", "-s", "suites", multiple=True, metavar="NAME",
              help="Suites to run (repeatable or comma-separated). Default: clean.")
@selection_options
@data_options
@engine_options
@statistics_options
@click.option("--baseline", default="alexnet", show_default=True,
              help="Normalizer: a baseline of benchmarks.yaml (ImageNet-C) or a stored one (ImageNet-P).")
@config_option
@format_option
@output_option
@click.option("--layout", type=click.Choice(["long", "wide"]), default="wide", show_default=True,
              help="CSV layout: wide (metrics with intervals, a row per model) or long.")
def compare_cmd(models, checkpoints_dir, suites, reference, resamples, plot_dir, fmt, output, layout,
                workers, **options) -> None:
    """Evaluate several models on one or more suites and compare them.

    Stored results are reused and only what is missing is computed, under one
    progress display. The output has a row per model with the suite's headline
    metrics and 95 % bootstrap intervals over images, the paired difference to
    the reference model (--reference, default the first) with its interval, and
    McNemar tests on the same images (clean, each corruption, each attack and
    epsilon).

    \b
    Examples:
      gcp-robust compare --model resnet50-gap=r50.pth --model resnet50-isqrt=r50_isqrt.pth \\
          --suite imagenet-c --data /data/imagenet/val --limit 5000
      gcp-robust compare --checkpoints ckpt/ --suite clean,adversarial --data val/ --plot figures/
    """
    from robustbench_gcp.cli.eval import default_workers
    from robustbench_gcp.cli.progress import progress_display
    from robustbench_gcp.compare import compare_reports
    from robustbench_gcp.config import load_config
    from robustbench_gcp.evaluate import _KIND_FLAGS, run_evaluation
    from robustbench_gcp.store import Store

    cfg = load_config(options["config"])
    entries = model_entries(models, checkpoints_dir, cfg)
    suite_names = [s.strip() for item in (suites or ("clean",)) for s in item.split(",") if s.strip()]
    specs = [cfg.suite(name) for name in suite_names]
    workers = default_workers() if workers is None else workers
    evaluated = []
    jobs = [(entry, suite) for suite in specs for entry in entries]
    with progress_display("compare") as progress:
        for index, ((label, name, checkpoint), suite) in enumerate(jobs):
            progress.item(index, len(jobs), f"{label} {suite.name}")
            kind_options = {k: (v if k not in _KIND_FLAGS or suite.kind in _KIND_FLAGS[k][1] else None)
                            for k, v in options.items()}
            if checkpoint:
                kind_options["checkpoint"] = checkpoint
            evaluated.append(run_evaluation(name, progress=progress, workers=workers, suite=suite.name,
                                            label=label, **kind_options))
            progress.item_done(index)
    if evaluated and evaluated[0][0] is None:  # torchrun ranks other than 0: rank 0 reports
        return
    with Store(options["store"]) as store:
        comparisons = compare_reports(store, evaluated, reference=reference,
                                      baseline=cfg.baselines.get(options["baseline"]),
                                      p_baseline_name=options["baseline"], resamples=resamples,
                                      seed=options["seed"])
    emit_comparison(evaluated, comparisons, fmt=fmt, output=output, layout=layout, plot_dir=plot_dir,
                    title="Comparison")


__all__ = ["compare_cmd", "model_entries"]
