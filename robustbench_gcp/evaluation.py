"""``evaluate``: from a model name and a suite to stored counts and a report object.

Follows DESIGN.md's data flow: configuration and flags are validated first; the
plan (cells) is built; the store drops finished shards; the engine computes the
rest; the report object is computed from the stored counts alone.

Example:
    >>> report = evaluate("resnet50-gap", checkpoint="resnet50-0676ba61.pth",
    ...                   suite="imagenet-c", data="/data/imagenet/val", limit=1000)  # doctest: +SKIP
    >>> report["metrics"]["mCE"]                                                     # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from robustbench_gcp.config import PERTURBATION_SUBSETS, SEVERITIES, Config, ModelSpec, SuiteSpec, load_config
from robustbench_gcp.data.folders import (
    ImageList,
    corrupted_cell_dir,
    scan_folder,
    scan_imagenet_c,
    scan_videos,
)
from robustbench_gcp.engine.device import resolve_device
from robustbench_gcp.engine.distributed import Distributed, execute_distributed
from robustbench_gcp.engine.runner import (
    Classifier,
    Context,
    EngineOptions,
    ImageSource,
    ProgressHook,
    execute,
)
from robustbench_gcp.errors import ConfigError, DataError, UnknownNameError
from robustbench_gcp.fetch import resolve_checkpoint
from robustbench_gcp.reports.objects import check_p_baseline, sections, stored_p_baseline
from robustbench_gcp.store import DEFAULT_STORE, Store

IDENTITY_VERSION = 2  # 2: ImageNet-P random layers no longer depend on the difficulty


@dataclass
class EvalOptions:
    """Every option of an evaluation (the CLI flags of ``gcp-robust eval``)."""

    checkpoint: str | None = None
    sha256: str | None = None
    random_weights: bool = False  # allow a model without a checkpoint (seeded random weights)
    label: str | None = None  # name shown in reports (default: the model name)
    sqrt: str | None = None
    ns_iters: int | None = None
    suite: str = "clean"
    data: str | Path | None = None
    labels: str | Path | None = None
    corrupted_dir: str | Path | None = None
    corruptions: str | Sequence[str] | None = None
    severities: Sequence[int] | None = None
    backend: str = "torch"
    storage_roundtrip: bool | None = None
    attacks: str | Sequence[str] | None = None
    epsilons: str | Sequence[float] | None = None
    steps: int | None = None
    perturbations: str | Sequence[str] | None = None
    difficulties: Sequence[int] | None = None
    device: str = "auto"
    amp: bool = False
    channels_last: bool = False
    batch_size: int = 32
    workers: int = 0
    seed: int = 0
    limit: int | None = None
    shard_size: int = 500
    store: str | Path = DEFAULT_STORE
    config: str | Path | Config | None = None
    baseline: str = "alexnet"

    def validate(self) -> None:
        for name, low in (("batch_size", 1), ("workers", 0), ("shard_size", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                flag = name.replace("_", "-")
                raise ConfigError(f"`--{flag}` should be an integer >= {low}. Got {value!r}")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 1):
            raise ConfigError(f"`--limit` should be a positive integer. Got {self.limit!r}")
        from robustbench_gcp.suites.imagenet_c import BACKENDS

        if self.backend not in BACKENDS:
            raise UnknownNameError("backend", self.backend, BACKENDS)


def resolve_model(config: Config, name: str, checkpoint: str | None, sha256: str | None) -> ModelSpec:
    """A model of benchmarks.yaml by name, or a registry architecture; flags override."""
    from robustbench_gcp.models import list_models

    if name in config.models:
        spec = config.models[name]
    elif name in list_models():
        spec = ModelSpec(name=name, arch=name)
    else:
        raise UnknownNameError("model", name, sorted(set(config.models) | set(list_models())))
    if checkpoint is not None:
        spec = dataclasses.replace(spec, checkpoint=checkpoint, sha256=sha256, source=None)
    elif sha256 is not None:
        spec = dataclasses.replace(spec, sha256=sha256)
    return spec


def resolve_names(value: str | Sequence[str] | None, default: tuple[str, ...],
                  subsets: dict[str, tuple[str, ...]], kind: str, flag: str) -> tuple[str, ...]:
    """``--corruptions`` / ``--perturbations``: a comma list of names or subset names
    (``subsets["all"]`` holds every valid name), checked; default: the suite's."""
    if value is None:
        return default
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    names: list[str] = []
    for item in filter(None, items):
        if item in subsets:
            names.extend(subsets[item])
        elif item in subsets["all"]:
            names.append(item)
        else:
            raise UnknownNameError(kind, item, [*subsets["all"], *subsets])
    if not names:
        raise ConfigError(f"`{flag}` should name at least one {kind}")
    return tuple(dict.fromkeys(names))


def resolve_corruptions(value: str | Sequence[str] | None, suite: SuiteSpec) -> tuple[str, ...]:
    from corruptions import SUBSETS

    return resolve_names(value, suite.corruptions, SUBSETS, "corruption", "--corruptions")


def resolve_levels(value: Sequence[int] | None, default: tuple[int, ...], flag: str,
                   valid: tuple[int, ...]) -> tuple[int, ...]:
    """``--severities`` / ``--difficulties``: checked against ``valid``; default: the suite's."""
    if value is None:
        return default
    for level in value:
        if level not in valid:
            raise ConfigError(f"`{flag}` should be {valid[0]}..{valid[-1]}. Got {level}")
    if not value:
        raise ConfigError(f"`{flag}` should name at least one level")
    return tuple(sorted(set(value)))


def resolve_severities(value: Sequence[int] | None, suite: SuiteSpec) -> tuple[int, ...]:
    return resolve_levels(value, suite.severities, "--severities", SEVERITIES)


def resolve_perturbations(value: str | Sequence[str] | None, suite: SuiteSpec) -> tuple[str, ...]:
    return resolve_names(value, suite.perturbations, PERTURBATION_SUBSETS, "perturbation",
                         "--perturbations")


@dataclass(frozen=True)
class Selection:
    """What a suite evaluates, after command-line overrides, validated."""

    suite: SuiteSpec
    corruptions: tuple[str, ...] = ()
    severities: tuple[int, ...] = ()
    roundtrip: bool = True
    attacks: tuple = ()
    perturbations: tuple[str, ...] = ()
    difficulties: tuple[int, ...] = ()

    @property
    def kind(self) -> str:
        return self.suite.kind


# flags that only some suite kinds take: option name -> (flag, kinds)
_KIND_FLAGS = {
    "corruptions": ("--corruptions", ("imagenet-c",)),
    "severities": ("--severities", ("imagenet-c",)),
    "corrupted_dir": ("--corrupted-dir", ("imagenet-c", "imagenet-p")),
    "perturbations": ("--perturbations", ("imagenet-p",)),
    "difficulties": ("--difficulties", ("imagenet-p",)),
    "storage_roundtrip": ("--storage-roundtrip", ("imagenet-c",)),
    "attacks": ("--attacks", ("adversarial",)),
    "epsilons": ("--epsilons", ("adversarial",)),
    "steps": ("--steps", ("adversarial",)),
}


def select(suite: SuiteSpec, options: EvalOptions) -> Selection:
    """Apply and check the command-line overrides of ``suite``."""
    for name, (flag, kinds) in _KIND_FLAGS.items():
        if getattr(options, name) is not None and suite.kind not in kinds:
            raise ConfigError(f"`{flag}` applies to the {'/'.join(kinds)} suite, not to '{suite.name}'")
    if suite.kind == "imagenet-c":
        roundtrip = options.storage_roundtrip
        if roundtrip is None:
            roundtrip = suite.storage_roundtrip
        return Selection(suite, resolve_corruptions(options.corruptions, suite),
                         resolve_severities(options.severities, suite), roundtrip)
    if suite.kind == "adversarial":
        from robustbench_gcp.suites.adversarial import parse_epsilon, select_attacks

        names = options.attacks.split(",") if isinstance(options.attacks, str) else options.attacks
        epsilons = options.epsilons
        if isinstance(epsilons, str):
            epsilons = [parse_epsilon(e.strip()) for e in epsilons.split(",") if e.strip()]
        elif epsilons is not None:
            epsilons = [parse_epsilon(str(e)) for e in epsilons]
        attacks = select_attacks(suite.attacks, [n.strip() for n in names] if names else None,
                                 epsilons, options.steps)
        return Selection(suite, attacks=attacks)
    if suite.kind == "imagenet-p":
        return Selection(suite, perturbations=resolve_perturbations(options.perturbations, suite),
                         difficulties=resolve_levels(options.difficulties, suite.difficulties,
                                                     "--difficulties", (1, 2, 3)))
    return Selection(suite)


def _check_released(root: Path, selection: Selection) -> None:
    """Every released folder of the selection exists under ``--corrupted-dir``, before any compute."""
    if selection.kind == "imagenet-c":
        folders = [corrupted_cell_dir(root, c, s)
                   for c in selection.corruptions for s in selection.severities]
        flags = "--corruptions / --severities"
    elif selection.kind == "imagenet-p":
        from robustbench_gcp.suites.imagenet_p import released_folder

        folders = [released_folder(root, p, d)
                   for p in selection.perturbations for d in selection.difficulties]
        flags = "--perturbations / --difficulties"
    else:
        return
    missing = [str(f.relative_to(root)) for f in dict.fromkeys(folders) if not f.is_dir()]
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise DataError(f"{root} lacks {len(missing)} of the selected folders ({shown}); pick the ones "
                        f"you have with {flags}")


def _image_list(options: EvalOptions, selection: Selection) -> ImageList:
    if options.data is not None:
        return scan_folder(options.data, options.labels)
    if options.corrupted_dir is not None and selection.kind == "imagenet-c":
        return scan_imagenet_c(options.corrupted_dir, selection.corruptions[0], selection.severities[0])
    if options.corrupted_dir is not None and selection.kind == "imagenet-p":
        from robustbench_gcp.suites.imagenet_p import released_folder

        folder = released_folder(Path(options.corrupted_dir), selection.perturbations[0],
                                 selection.difficulties[0])
        return scan_videos(folder)
    kind = selection.kind
    needs = "--data DIR" if kind == "clean" or kind == "adversarial" else \
        "--data DIR (clean images) or --corrupted-dir DIR (released files)"
    raise ConfigError(f"the {kind} suite needs {needs}")


def _tasks(selection: Selection, clean_source: ImageSource | None, corrupted_dir: Path | None,
           options: EvalOptions, num_classes: int, crop_size: int) -> list:
    from robustbench_gcp.suites.clean import clean_task

    if selection.kind == "imagenet-c":
        from robustbench_gcp.suites.imagenet_c import build_tasks

        return build_tasks(selection.corruptions, selection.severities, clean_source=clean_source,
                           corrupted_dir=corrupted_dir, backend=options.backend,
                           roundtrip=selection.roundtrip)
    if selection.kind == "imagenet-p":
        from robustbench_gcp.suites.imagenet_p import build_tasks as build_p_tasks

        square = None if clean_source is None else ImageSource(
            clean_source.root, resize_size=clean_source.resize_size, crop_size=clean_source.resize_size)
        p_tasks = build_p_tasks(selection.perturbations, selection.difficulties, clean_source=square,
                                crop_size=crop_size, corrupted_dir=corrupted_dir)
        return ([clean_task(clean_source)] if clean_source is not None else []) + p_tasks
    tasks = [clean_task(clean_source)]
    if selection.kind == "adversarial":
        from robustbench_gcp.suites.adversarial import AttackTask

        tasks += [AttackTask(spec, clean_source, num_classes) for spec in selection.attacks]
    return tasks


def evaluate(model: str, *, progress: ProgressHook | None = None, **kwargs) -> dict:
    """Evaluate ``model`` on a suite; finished shards in the store are reused.

    Args:
        model: a model of benchmarks.yaml or a registry architecture name.
        progress: receives progress events (the CLI draws bars from them).
        **kwargs: the fields of :class:`EvalOptions`.

    Returns:
        The report object (see the README's JSON schema).

    Raises:
        ConfigError, DataError, CheckpointError, StoreError: with a message for the user.
    """
    return run_evaluation(model, progress=progress, **kwargs)[0]


def _matrix_identity(arch: str, sqrt: str | None, ns_iters: int | None) -> dict:
    """The ``sqrt`` / ``ns_iters`` of a run's identity: None where they equal the model's own."""
    from robustbench_gcp.models import model_info
    from robustbench_gcp.models.heads import DEFAULT_NS_ITERS, HEADS

    own = HEADS[model_info(arch).head].sqrt
    if sqrt == own:
        sqrt = None
    if ns_iters == DEFAULT_NS_ITERS and (sqrt or own) == "newton-schulz":
        ns_iters = None
    return {"sqrt": sqrt, "ns_iters": ns_iters}


def run_evaluation(model: str, *, progress: ProgressHook | None = None, **kwargs) -> tuple[dict, list]:
    """:func:`evaluate`, also returning the stored cells (CellResult) the report was made from.

    Under torchrun, ranks other than 0 compute their share and return ``(None, [])``.
    """
    options = EvalOptions(**kwargs)
    options.validate()
    config = options.config if isinstance(options.config, Config) else load_config(options.config)
    spec = resolve_model(config, model, options.checkpoint, options.sha256)
    if options.label:
        spec = dataclasses.replace(spec, name=options.label)
    suite = config.suite(options.suite)
    selection = select(suite, options)
    baseline = None
    if selection.kind == "imagenet-c" or options.baseline in config.baselines:
        baseline = config.baseline(options.baseline)
    corrupted_dir = Path(options.corrupted_dir).expanduser() if options.corrupted_dir else None
    if corrupted_dir is not None and not corrupted_dir.is_dir():
        raise DataError(f"ImageNet-C folder {corrupted_dir} does not exist")
    if corrupted_dir is not None:
        _check_released(corrupted_dir, selection)

    # Data: the full folder, then the class-balanced subset.
    everything = _image_list(options, selection)
    images = everything.limit(options.limit)

    # Model.
    device = resolve_device(options.device)
    job = Distributed.get(device)  # None unless launched by torchrun
    if job is not None:
        device = job.device(device)
    if selection.kind == "imagenet-p" and (job is None or job.is_main):  # only rank 0 reads the store
        check_p_baseline(options.store, options.baseline, config.baselines)  # misspelt: before any compute
    checkpoint_path = None
    if options.random_weights:
        if options.checkpoint is not None:
            raise ConfigError("`--random-weights` and `--checkpoint` exclude each other: pick one")
        spec = dataclasses.replace(spec, checkpoint=None, sha256=None)  # also over benchmarks.yaml's file
    if spec.checkpoint is None and not options.random_weights:
        raise ConfigError(
            f"model '{spec.name}' has no checkpoint: pass --checkpoint FILE, or --random-weights to "
            "evaluate the architecture with seeded random weights (a pipeline check, not a result)"
        )
    if spec.checkpoint is not None:
        checkpoint_path = resolve_checkpoint(spec.checkpoint, sha256=spec.sha256, source=spec.source,
                                             configured=options.checkpoint is None)
    from robustbench_gcp.models import load_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)  # random-weight models (no checkpoint) are reproducible
        net = load_model(spec.arch, checkpoint_path, device=device, sha256=spec.sha256,
                         sqrt=options.sqrt, ns_iters=options.ns_iters)
    top_label = max(images.labels)
    if top_label >= net.num_classes:
        raise DataError(
            f"the data has class index {top_label} ({images.classes[top_label]}) but model "
            f"'{spec.name}' has {net.num_classes} classes"
        )
    cfg = net.pretrained_cfg
    classifier = Classifier(net, device, mean=cfg.mean, std=cfg.std, amp=options.amp,
                            channels_last=options.channels_last)

    # The plan.
    clean_source = None
    if options.data is not None:
        clean_source = ImageSource(images.root, resize_size=cfg.resize_size, crop_size=cfg.input_size)
    tasks = _tasks(selection, clean_source, corrupted_dir, options, net.num_classes, cfg.input_size)
    identity = {
        "version": IDENTITY_VERSION,
        "arch": spec.arch,
        "weights": net.checkpoint_sha256 if checkpoint_path else f"random-init-seed-{options.seed}",
        # an override equal to the model's own matrix function is the same run as none
        **_matrix_identity(spec.arch, options.sqrt, options.ns_iters),
        "preprocess": [cfg.resize_size, cfg.input_size, list(cfg.mean), list(cfg.std)],
        "data": images.fingerprint(),
        "seed": options.seed,
        "precision": classifier.precision,
        "device_type": device.type,
        "shard_size": options.shard_size,
    }
    ctx = Context(classifier, options.seed, options.batch_size)
    engine = EngineOptions(options.batch_size, options.workers, options.shard_size)
    if job is not None and not job.is_main:  # only rank 0 opens the store
        execute_distributed(tasks, images, None, None, ctx, engine, None, job)
        return None, []
    with Store(options.store) as store:
        run = store.run(identity, model=spec.name, arch=spec.arch,
                        checkpoint=str(checkpoint_path) if checkpoint_path else None,
                        data=images.source, n_images=len(images), shard_size=options.shard_size)
        if job is None:
            stats = execute(tasks, images, store, run, ctx, engine, progress)
        else:
            stats = execute_distributed(tasks, images, store, run, ctx, engine, progress, job)
        cell_ids = {key: cid for cid, key in store.cells(run.id)}
        results = [store.cell_result(cell_ids[key], key, run.n_shards) for t in tasks for key in t.keys]
        p_baseline = None
        if selection.kind == "imagenet-p":
            p_baseline = stored_p_baseline(store, options.baseline, [k for t in tasks for k in t.keys])

    report_sections = sections(selection.kind, results, baseline, p_baseline)
    generated = selection.kind in ("imagenet-c", "imagenet-p") and corrupted_dir is None
    report = {
        "model": spec.name,
        "arch": spec.arch,
        "checkpoint": str(checkpoint_path) if checkpoint_path else None,
        "checkpoint_sha256": identity["weights"] if checkpoint_path else None,
        "suite": suite.name,
        "kind": suite.kind,
        "seed": options.seed,
        "n_images": len(images),
        "data": str(images.root) if options.data is not None else None,
        "corrupted_dir": str(corrupted_dir) if corrupted_dir else None,
        "backend": options.backend if generated else None,
        "storage_roundtrip": selection.roundtrip if generated and selection.kind == "imagenet-c" else None,
        "device": str(device) if job is None else f"{device.type} x {job.world_size} ranks",
        "precision": classifier.precision,
        **report_sections,
        "store": str(Path(options.store)),
        "run": run.key,
        "data_fingerprint": identity["data"],
        "computed": {
            "units": stats.units_total,
            "reused": stats.units_skipped,
            "computed": stats.units_computed,
            "images": stats.images_computed,
            "seconds": round(stats.seconds, 3),
        },
    }
    if options.limit is not None and options.limit > len(everything):
        report["notes"].append(f"--limit {options.limit} is more than the {len(everything)} images: "
                               "all of them were used")
    if selection.kind == "adversarial":
        from robustbench_gcp.models import model_info

        root = options.sqrt or {"mpncov": "eig", "svdpade": "svd"}.get(model_info(spec.arch).head)
        if root in ("eig", "svd"):
            report["notes"].append(
                f"this model's matrix square root is exact ({root}): its gradient has 1/(s_i + s_j) terms "
                "that are ill-conditioned for small or repeated eigenvalues (clamped here), so gradient "
                "attacks through it can be unstable and weaker than through Newton-Schulz"
            )
    return report, results
