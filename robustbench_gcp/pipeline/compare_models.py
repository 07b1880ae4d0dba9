"""What a comparison runs: named models, a folder of checkpoints, matrix-function variants.

:func:`model_entries` turns ``compare``'s ``--model NAME[=CHECKPOINT]`` and
``--checkpoints DIR`` (or, with neither, benchmarks.yaml's models) into unique labelled
entries; :func:`matrix_variants` repeats each GCP model once per requested matrix square
root and Newton-Schulz iteration count; :func:`plan_comparison` plans every (model, suite)
job before any runs (:func:`robustbench_gcp.pipeline.execution.run_all` runs them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from robustbench_gcp.config import Config
from robustbench_gcp.errors import CheckpointError, ConfigError, counted, listed, real_path, suggest
from robustbench_gcp.pipeline.planning import Plan, plan_all

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".tar", ".bin", ".ckpt", ".pkl", ".safetensors")


@dataclass(frozen=True)
class CompareEntry:
    """One row of a comparison: its label, the model name, the checkpoint ("" for the model's
    own), the matrix-function overrides (None: the model's own), and what the choice of the
    model needs said ("": nothing; a file of ``--checkpoints`` that other models fit as well)."""

    label: str
    name: str
    checkpoint: str = ""
    sqrt: str | None = None
    ns_iters: int | None = None
    note: str = ""


def model_entries(models: tuple[str, ...], checkpoints_dir: str | None,
                  config: Config, *, random_weights: bool = False) -> list[CompareEntry]:
    """An entry for every model to compare, labels unique (the same model twice: ``NAME@FILE``,
    and ``NAME@own`` for its own weights, ``NAME@random`` with ``random_weights``).

    Raises:
        ConfigError: nothing to compare, or a folder without checkpoints.
        CheckpointError: a checkpoint of the folder fits no registered model, or benchmarks.yaml's
            models have missing local files (without ``random_weights``, which needs none).
    """
    entries: list[CompareEntry] = []
    for item in models:
        name, equals, checkpoint = item.partition("=")
        parts = [part.strip() for part in name.split(",") if part.strip()]  # (report's --models splits them)
        if not name or (equals and not checkpoint.strip()) or ("," in name and len(parts) < 2):
            raise ConfigError(f"`--model` should be NAME or NAME=CHECKPOINT. Got {item!r}")
        if "," in name:  # a model name holds none
            example = " ".join(f"--model {part}" for part in parts[:2])
            raise ConfigError(f"`--model` takes one model (NAME or NAME=CHECKPOINT): give it once for each "
                              f"({example}). Got {item!r}")
        entries.append(CompareEntry(name, name, checkpoint))
    if checkpoints_dir is not None:
        from robustbench_gcp.models import inspect_checkpoint

        folder = Path(checkpoints_dir)
        if not folder.is_dir():
            raise ConfigError(f"`--checkpoints {folder}` is not a folder")
        # hidden names skipped, as --data's (macOS's ._a.pth beside a.pth stopped the comparison)
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                       and p.name.lower().endswith(CHECKPOINT_SUFFIXES))
        if not files:
            nested = sorted(p for p in folder.glob("*/*") if p.name.lower().endswith(CHECKPOINT_SUFFIXES)
                            and not any(part.startswith(".") for part in p.relative_to(folder).parts))
            hint = (f"; its subfolders do (e.g. {nested[0].relative_to(folder)}), which --checkpoints does "
                    "not search: give them as --model NAME=FILE" if nested else "")
            raise ConfigError(f"folder {folder} holds no checkpoint files ({', '.join(CHECKPOINT_SUFFIXES)})"
                              f"{hint}")
        unique: dict[Path, Path] = {}  # a link to a file of the folder (latest.pth): compared once
        for path in files:
            unique.setdefault(real_path(path), path)
        files = list(unique.values())
        for path, label in zip(files, file_tags(files)):
            info = inspect_checkpoint(path)
            if not info.arch:
                # a file's problem, not the command's (exit status 1, as eval's for a checkpoint)
                raise CheckpointError(f"checkpoint {path} {_fits_no_model(info)}")
            entries.append(CompareEntry(label, info.arch, str(path), note=_also_fits_note(path, info)))
    if not entries:
        entries = [CompareEntry(spec.name, spec.name) for spec in config.models.values()]
        if not entries:  # a config of baselines alone: it compared nothing, said nothing, exited 0
            suites = "" if config.suites else ", nor suites to run them on (define some under `suites:`)"
            raise ConfigError(f"nothing to compare: {config.path} has no models{suites}; give --model "
                              "NAME[=CHECKPOINT] or --checkpoints DIR")
        missing = [spec for spec in config.models.values() if spec.checkpoint and not random_weights
                   and "://" not in spec.checkpoint and not Path(spec.checkpoint).is_file()]
        if missing:
            folders = {str(Path(s.checkpoint).parent) for s in missing}
            where = f" from {folders.pop()}" if len(folders) == 1 else ""
            raise CheckpointError(  # missing files: exit status 1, as eval's for a missing checkpoint
                f"comparing the models of benchmarks.yaml, but {len(missing)} of their checkpoints "
                f"{'is' if len(missing) == 1 else 'are'} missing{where}: " + listed([s.name for s in missing])
                + "; pick models with --model NAME[=CHECKPOINT] or --checkpoints DIR (or check the pipeline "
                "with --random-weights)"
            )
    groups: dict[str, list[CompareEntry]] = {}
    for entry in entries:
        groups.setdefault(entry.label, []).append(entry)
    # the same model twice: each label names its file (as far up its path as tells them apart),
    # else its own (benchmarks.yaml's or shipped) weights or, under --random-weights, seeded random ones
    tags: dict[int, str] = {}
    for label, group in groups.items():
        if len(group) == 1:
            continue
        files = [e for e in group if e.checkpoint]
        if len(group) - len(files) > 1:
            raise ConfigError(f"--model {label} is given twice with its own weights")
        named = file_tags([Path(e.checkpoint) for e in files])
        if named is None:
            same = Path(files[0].checkpoint)
            raise ConfigError(f"--model {label} is given twice with the same checkpoint ({same})")
        bare = {id(e): "random" if random_weights and _takes_random_weights(e) else "own"
                for e in group if not e.checkpoint}
        # a file named own.pth (random.pth) beside the model's own weights: its whole name
        tags.update({id(e): Path(e.checkpoint).name if tag in bare.values() else tag
                     for e, tag in zip(files, named)})
        tags.update(bare)
    return [dataclasses.replace(e, label=f"{e.label}@{tags[id(e)]}") if id(e) in tags else e for e in entries]


def _fits_no_model(info) -> str:
    """Why a file of ``--checkpoints`` is refused, as ``eval --checkpoint`` says it: the keys that
    differ from the closest registered model (it said only "does not fit any registered model",
    helper-234), or that it holds a module's own names (a model you brought)."""
    from robustbench_gcp.models.layouts import AS_SAVED

    if info.layout == AS_SAVED.name:
        return ("holds a module's own key names, of no registered model's layout: --checkpoints finds "
                "registered models; give a model you brought as --model package.module:callable=FILE")
    said = f"does not fit any registered model (layout {info.layout})"
    if info.closest is None:
        return said
    differ = "; ".join(f"{counted(len(keys), what, plural)} (first: {', '.join(keys[:3])})"
                       for keys, what, plural in ((info.missing, "missing key", "s"),
                                                  (info.unexpected, "unexpected key", "s"),
                                                  (info.mismatched, "shape mismatch", "es")) if keys)
    return f"{said}; the closest is '{info.closest}': {differ}"


def _also_fits_note(path: Path, info) -> str:
    """What a comparison says of a ``--checkpoints`` file that more than one registered model fits
    (a fast-MPN-COV training file: iSQRT-COV's or SVD-Pade's keys are the same): the one it was
    compared as, and how to choose another ("" where only one fits)."""
    if not info.also_fits:
        return ""
    from robustbench_gcp.models.loading import twins_differ

    return (f"{path} fits {info.arch} and {listed(info.also_fits)} alike (the same keys; "
            f"{twins_differ(info)}): compared as {info.arch}; for another, give --model "
            f"{info.also_fits[0]}={path}")


def file_tags(paths: list[Path]) -> list[str] | None:
    """A short name for each checkpoint file, unique among ``paths``: its name without the
    checkpoint suffixes (``model_best`` for ``model_best.pth.tar``), else the whole name, else with
    as many of its folders as tell them apart (``run1/model_best``, as fast-MPN-COV writes the best
    epoch of every run); None when two are the same file."""
    if len({real_path(path) for path in paths}) < len(paths):
        return None
    absolute = [path.absolute() for path in paths]  # a link is named as it is, not as its target

    def stem(name: str) -> str:
        while name.lower().endswith(CHECKPOINT_SUFFIXES) and "." in name[1:]:
            name = name[:name.rindex(".")]
        return name

    depth = max((len(path.parent.parts) for path in absolute), default=0)
    for level in range(depth + 1):
        for last in (stem, str):
            tags = ["/".join([*path.parent.parts[max(0, len(path.parent.parts) - level):], last(path.name)])
                    for path in absolute]
            if len(set(tags)) == len(tags):
                return tags
    return [str(path) for path in absolute]


def _reads_checkpoint(entry: CompareEntry, config: Config, random: bool) -> bool:
    """Whether ``entry`` is evaluated from a checkpoint file: its =CHECKPOINT, or benchmarks.yaml's
    without ``--random-weights`` (an entry whose name is wrong: True, its plan says what is)."""
    from robustbench_gcp.errors import GcpRobustError
    from robustbench_gcp.pipeline.weights import model_spec

    if entry.checkpoint:
        return True
    if random and _takes_random_weights(entry):
        return False
    try:
        return model_spec(config, entry.name).checkpoint is not None
    except GcpRobustError:
        return True


def _takes_random_weights(entry: CompareEntry) -> bool:
    """Whether ``--random-weights`` gives ``entry`` seeded random weights: no =CHECKPOINT, and not a
    package.module:callable (which comes with its own weights)."""
    from robustbench_gcp.models.external import TORCHVISION, is_external

    return not entry.checkpoint and (not is_external(entry.name) or entry.name.startswith(TORCHVISION))


def matrix_variants(entries: list[CompareEntry], sqrts: tuple[str, ...], ns_iters: tuple[int, ...],
                    config: Config) -> list[CompareEntry]:
    """Each entry once per requested matrix function.

    Models with a matrix square root (isqrt, mpncov, svdpade) get one entry per value of
    ``sqrts`` (their own root when empty) and, where that root is Newton-Schulz, per value of
    ``ns_iters``; the label says which (``resnet50-isqrt[sqrt=eig]``,
    ``resnet50-isqrt[ns-iters=3]``), and stays plain for the model's own function (the same
    stored run), which comes first among a model's entries (so the default reference, the first
    entry, is a model as trained). GAP and DropCov models are compared once, unchanged.

    Raises:
        ConfigError: roots (iteration counts) were asked for, but no compared model has a
            root (a Newton-Schulz root).
    """
    from robustbench_gcp.models import model_info
    from robustbench_gcp.models.heads import DEFAULT_NS_ITERS, HEADS, matrix_label

    if not sqrts and not ns_iters:
        return list(entries)
    from robustbench_gcp.models.external import is_external

    out = []
    for entry in entries:
        arch = config.models[entry.name].arch if entry.name in config.models else entry.name
        own = None if is_external(arch) else HEADS[model_info(arch).head].sqrt
        if own is None:
            out.append(entry)
            continue
        variants = []
        for sqrt in sqrts or (None,):
            root = sqrt or own
            for iters in (ns_iters or (None,)) if root == "newton-schulz" else (None,):
                # the model's own function keeps the plain label (it is the plain model's stored run)
                label = matrix_label(entry.label, {"sqrt": root if root != own else None,
                                                   "ns_iters": iters if iters != DEFAULT_NS_ITERS else None})
                # another root than the model's: what the file was compared as is the label's to say
                note = entry.note if root == own else ""
                variants.append(dataclasses.replace(entry, label=label, sqrt=sqrt, ns_iters=iters, note=note))
        out.extend(sorted(variants, key=lambda variant: variant.label != entry.label))  # stable
    if sqrts and all(e.sqrt is None for e in out):
        raise ConfigError("`--sqrt` applies to models with a matrix square root (isqrt, mpncov and "
                          "svdpade heads); none of the compared models has one")
    if ns_iters and all(e.ns_iters is None for e in out):
        raise ConfigError("`--ns-iters` applies to Newton-Schulz square roots (isqrt heads, or "
                          "--sqrt newton-schulz); none of the compared models uses one")
    return out


def plan_comparison(config: Config, *, models: tuple[str, ...] = (), checkpoints_dir: str | None = None,
                    suites: list[str], sqrts: tuple[str, ...] = (), ns_iters: tuple[int, ...] = (),
                    reference: str | None = None, **common) -> list[Plan]:
    """Plans of every (model entry, suite) of a comparison, suite by suite; nothing is computed.

    ``common`` holds the options every job shares (data, engine, selection flags, store,
    baseline ...); a selection flag goes to the suites that take it.

    Raises:
        ConfigError: ``reference`` is not a compared label, ``random_weights`` for models that
            all have their own weights, or any error of
            :func:`~robustbench_gcp.pipeline.planning.plan` for any job.
    """
    random = bool(common.get("random_weights"))
    entries = matrix_variants(model_entries(models, checkpoints_dir, config, random_weights=random),
                              sqrts, ns_iters, config)
    labels = [entry.label for entry in entries]
    if random and entries and not any(map(_takes_random_weights, entries)):
        raise ConfigError("`--random-weights` applies to models given without =CHECKPOINT, and every model "
                          "here comes with its own weights (=CHECKPOINT, --checkpoints or a package.module:"
                          "callable): leave it out")
    if reference is not None and reference not in labels:
        hint = suggest(reference, labels)
        raise ConfigError(f"`--reference {reference}` is not one of the models compared: "
                          f"{', '.join(labels)}.{hint if 'Did you mean' in hint else ''}")
    # --random-weights: for the models without a checkpoint of their own here (benchmarks.yaml's
    # files included, as in eval); a NAME=CHECKPOINT or --checkpoints file is loaded, and a
    # package.module:callable keeps the weights it comes with
    chosen = [entry for suite in suites for entry in entries]
    # --preprocess: for the models brought (torchvision:<name>, package.module:callable) alone
    from robustbench_gcp.models.external import is_external

    preprocess = common.pop("preprocess", None)
    if preprocess is not None and not any(is_external(entry.name) for entry in entries):
        raise ConfigError("`--preprocess` applies to models you bring (torchvision:<name>, package.module:"
                          "callable), and none is compared: the registry's have their own")
    # --no-ema: for the models that read a checkpoint (refused by eval for one that does not)
    ema = common.get("ema", True)
    reads = {id(entry): _reads_checkpoint(entry, config, random) for entry in entries}
    if not ema and entries and not any(reads.values()):
        raise ConfigError("`--no-ema` chooses checkpoints' raw weights over their EMA ones, and no model "
                          "here reads a checkpoint: leave it out")
    jobs = [(entry.name, {"suite": suite, "label": entry.label, "sqrt": entry.sqrt,
                          "ns_iters": entry.ns_iters, "checkpoint": entry.checkpoint or None,
                          "ema": ema or not reads[id(entry)],
                          "random_weights": random and _takes_random_weights(entry),
                          "preprocess": preprocess if is_external(entry.name) else None})
            for suite in suites for entry in entries]
    plans = plan_all(jobs, {**common, "config": config})
    return [dataclasses.replace(p, notes=(*p.notes, entry.note)) if entry.note else p
            for p, entry in zip(plans, chosen, strict=True)]
