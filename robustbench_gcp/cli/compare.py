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


SQRT_CHOICES = ("newton-schulz", "eig", "svd")


def _sqrt_list(ctx, param, value):
    if value is None:
        return ()
    items = [v.strip() for v in value.split(",") if v.strip()]
    for item in items:
        if item not in SQRT_CHOICES:
            from robustbench_gcp.errors import suggest

            raise click.BadParameter(f"unknown square root {item!r}.{suggest(item, SQRT_CHOICES)} "
                                     f"Choose from {', '.join(SQRT_CHOICES)}")
    return tuple(dict.fromkeys(items))


def _iters_list(ctx, param, value):
    if value is None:
        return ()
    try:
        items = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers such as 3,5. Got {value!r}") from None
    if any(not 1 <= k <= 100 for k in items):
        raise click.BadParameter(f"iterations should be 1..100. Got {value!r}")
    return tuple(dict.fromkeys(items))


def matrix_variants(entries: list[tuple[str, str, str]], sqrts: tuple[str, ...], ns_iters: tuple[int, ...],
                    config) -> list[tuple[str, str, str, str | None, int | None]]:
    """Each entry once per requested matrix function: (label, name, checkpoint, sqrt, ns_iters).

    Models with a matrix square root (isqrt, mpncov, svdpade) get one entry per value of
    ``sqrts`` (their own root when empty) and, where that root is Newton-Schulz, per value of
    ``ns_iters``; the label says which (``resnet50-isqrt[sqrt=eig]``,
    ``resnet50-isqrt[ns-iters=3]``), and stays plain for the model's own function (the same
    stored run). GAP and DropCov models are compared once, unchanged.

    Raises:
        ConfigError: roots (iteration counts) were asked for, but no compared model has a
            root (a Newton-Schulz root).
    """
    from robustbench_gcp.errors import ConfigError
    from robustbench_gcp.models import model_info
    from robustbench_gcp.models.heads import DEFAULT_NS_ITERS, HEADS

    if not sqrts and not ns_iters:
        return [(label, name, checkpoint, None, None) for label, name, checkpoint in entries]
    out = []
    for label, name, checkpoint in entries:
        arch = config.models[name].arch if name in config.models else name
        own = HEADS[model_info(arch).head].sqrt
        if own is None:
            out.append((label, name, checkpoint, None, None))
            continue
        for sqrt in sqrts or (None,):
            root = sqrt or own
            for iters in (ns_iters or (None,)) if root == "newton-schulz" else (None,):
                # the model's own function keeps the plain label (it is the plain model's stored run)
                tags = [f"sqrt={root}"] if root != own else []
                if iters is not None and iters != DEFAULT_NS_ITERS:
                    tags.append(f"ns-iters={iters}")
                tag = ",".join(tags)
                out.append((f"{label}[{tag}]" if tag else label, name, checkpoint, sqrt, iters))
    if sqrts and all(sqrt is None for *_, sqrt, _ in out):
        raise ConfigError("`--sqrt` applies to models with a matrix square root (isqrt, mpncov and "
                          "svdpade heads); none of the compared models has one")
    if ns_iters and all(iters is None for *_, iters in out):
        raise ConfigError("`--ns-iters` applies to Newton-Schulz square roots (isqrt heads, or "
                          "--sqrt newton-schulz); none of the compared models uses one")
    return out


def _check_before_compute(entries, specs, cfg, options) -> None:
    """What would otherwise stop a compare half-way, after hours of work: checked first."""
    from robustbench_gcp.errors import ConfigError
    from robustbench_gcp.reports.objects import check_p_baseline

    if not options.get("random_weights"):
        for label, name, checkpoint, *_ in entries:
            if not checkpoint and not (name in cfg.models and cfg.models[name].checkpoint):
                raise ConfigError(f"model '{label}' has no checkpoint: give one as --model "
                                  f"{name}=CHECKPOINT, or --random-weights for seeded random weights "
                                  "(a pipeline check)")
    kinds = {spec.kind for spec in specs}
    if "imagenet-c" in kinds:
        cfg.baseline(options["baseline"])  # the mCE normalizer: benchmarks.yaml's
    if "imagenet-p" in kinds:
        check_p_baseline(options["store"], options["baseline"], cfg.baselines)


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
@click.option("--sqrt", "sqrts", callback=_sqrt_list, default=None, metavar="ROOT[,ROOT...]",
              help="Evaluate each GCP model with each of these matrix square roots (newton-schulz, "
                   "eig, svd), one row each: the effect of the matrix function on the same weights. "
                   "GAP and DropCov models are compared once. Default: each model's own root.")
@click.option("--ns-iters", "ns_iters", callback=_iters_list, default=None, metavar="K[,K...]",
              help="Newton-Schulz iterations to compare (one row per value) for models whose root "
                   "is Newton-Schulz. Default: 5, as trained.")
@click.option("--random-weights", is_flag=True,
              help="Allow models without a checkpoint (seeded random weights: a pipeline check).")
@click.option("--baseline", default="alexnet", show_default=True,
              help="Normalizer: a baseline of benchmarks.yaml (ImageNet-C) or a stored one (ImageNet-P).")
@config_option
@format_option
@output_option
@click.option("--layout", type=click.Choice(["long", "wide"]), default="wide", show_default=True,
              help="CSV layout: wide (metrics with intervals, a row per model) or long.")
def compare_cmd(models, checkpoints_dir, suites, reference, resamples, plot_dir, fmt, output, layout,
                workers, sqrts, ns_iters, **options) -> None:
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
      gcp-robust compare --model resnet50-isqrt --sqrt newton-schulz,eig --ns-iters 3,5 \\
          --suite imagenet-c --data /data/imagenet/val --limit 5000
    """
    from robustbench_gcp.cli.eval import default_workers
    from robustbench_gcp.cli.progress import progress_display
    from robustbench_gcp.compare import compare_reports
    from robustbench_gcp.config import load_config
    from robustbench_gcp.evaluation import _KIND_FLAGS, run_evaluation
    from robustbench_gcp.store import Store

    cfg = load_config(options["config"])
    entries = matrix_variants(model_entries(models, checkpoints_dir, cfg), sqrts, ns_iters, cfg)
    labels = [label for label, *_ in entries]
    if reference is not None and reference not in labels:  # before any compute
        from robustbench_gcp.errors import ConfigError, suggest

        hint = suggest(reference, labels)
        raise ConfigError(f"`--reference {reference}` is not one of the models compared: "
                          f"{', '.join(labels)}.{hint if 'Did you mean' in hint else ''}")
    suite_names = [s.strip() for item in (suites or ("clean",)) for s in item.split(",") if s.strip()]
    specs = [cfg.suite(name) for name in suite_names]
    _check_before_compute(entries, specs, cfg, options)
    workers = default_workers() if workers is None else workers
    evaluated = []
    jobs = [(entry, suite) for suite in specs for entry in entries]
    with progress_display("compare") as progress:
        for index, ((label, name, checkpoint, sqrt, iters), suite) in enumerate(jobs):
            progress.item(index, len(jobs), f"{label} {suite.name}")
            kind_options = {k: (v if k not in _KIND_FLAGS or suite.kind in _KIND_FLAGS[k][1] else None)
                            for k, v in options.items()}
            if checkpoint:
                kind_options["checkpoint"] = checkpoint
            evaluated.append(run_evaluation(name, progress=progress, workers=workers, suite=suite.name,
                                            label=label, sqrt=sqrt, ns_iters=iters, **kind_options))
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


__all__ = ["compare_cmd", "matrix_variants", "model_entries"]
