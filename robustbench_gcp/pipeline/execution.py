"""``run``: execute a :class:`~robustbench_gcp.pipeline.planning.Plan` and return its report.

The model is loaded, the suite's tasks (cells) are made, the store drops what is finished,
the engine computes the rest shard by shard, and the report is built from the stored
counts alone (:func:`robustbench_gcp.reports.stored.build_report`). Under torchrun, rank 0
owns the store and makes the report; the other ranks compute their share and get a
:class:`RankResult`.
"""

from __future__ import annotations

import contextvars
import dataclasses
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from robustbench_gcp.engine import stops
from robustbench_gcp.engine.classifier import Classifier
from robustbench_gcp.engine.device import kept_float32_settings
from robustbench_gcp.engine.distributed import Distributed, execute_distributed
from robustbench_gcp.engine.runner import (
    Context,
    EngineOptions,
    ExecutionStats,
    ImageSource,
    ProgressHook,
    check_progress,
    execute,
)
from robustbench_gcp.errors import (
    ConfigError,
    DataError,
    GcpRobustError,
    Interrupted,
    ModelCodeError,
    Terminated,
    counted,
    gone_said,
    listed,
    not_utf8,
    real_path,
)
from robustbench_gcp.pipeline.identity import (
    IDENTITY_VERSION,
    former_identity,
    planned_identity,
    run_identity,
)
from robustbench_gcp.pipeline.image_sizes import edited_images_notes
from robustbench_gcp.pipeline.planning import (
    Plan,
    check_classes,
    check_input_size,
    labels_matter,
    working_folder,
)
from robustbench_gcp.pipeline.run_notes import (
    FIELD_NAMES,
    absolute_path,
    differences,
    labels_notes,
    limit_notes,
    moved_notes,
    other_settings,
    own_code_notes,
    preprocess_notes,
    released_notes,
    released_size_notes,
    renamed_notes,
    stored_shards,
    taken_over_notes,
    weights_notes,
)
from robustbench_gcp.pipeline.weights import load_chosen
from robustbench_gcp.reports.report_type import Report
from robustbench_gcp.reports.stored import (
    build_report,
)
from robustbench_gcp.store import RunInfo, Store, canonical_json
from robustbench_gcp.suites import TaskInputs


@dataclass(frozen=True)
class RankResult:
    """What :func:`run` returns on a torchrun rank other than 0: that rank computed its share
    and handed it to rank 0, which committed it and made the report."""

    rank: int
    world_size: int
    units: int
    images: int


#: the runs of a :func:`run_all` that held nothing when it first opened them (store, run id): the
#: shards a later plan of it finds there are its own (a compare's first suite's clean cell), not
#: results stored before it, which :func:`~.run_notes.own_code_notes` speaks of
_COMMAND_RUNS: contextvars.ContextVar[set | None] = contextvars.ContextVar("command_runs", default=None)
#: the runs a :func:`run_all` has evaluated (store, identity): the first name it gives one labels it,
#: a second (``compare -m A -m A-copy`` of one file) leaves it so, the comparison saying they are one
#: run (each plan relabelled it, and said so, in turn: helper-249)
_COMMAND_LABELLED: contextvars.ContextVar[set | None] = contextvars.ContextVar("command_labelled",
                                                                               default=None)


def run(plan: Plan, progress: ProgressHook | None = None) -> Report | RankResult:
    """Compute what the store lacks for ``plan`` and report it. torch's TF32 settings, which a CUDA
    run turns off, are as they were afterwards.

    Raises:
        TypeError: ``plan`` is not a :class:`Plan`, or ``progress`` not a progress hook.
        DataError: the data has more classes than the model (the checkpoint changed since the plan).
        CheckpointError: the weights do not fit the architecture.
        StoreError, RankFailure: the store cannot be used, a torchrun rank was lost.
    """
    if not isinstance(plan, Plan):  # run("demo-gap") failed on an attribute, deep inside
        raise TypeError(f"`plan` should be a Plan, made by robustbench_gcp.plan(...). Got {plan!r}")
    check_progress(progress)
    check_folder(plan)
    # a caller's no_grad() or inference_mode() (a notebook's habit) failed the attacks, blaming the
    # model's code (helper-241): a run computes as the default modes do, its suites choosing
    with (kept_float32_settings(), stops.for_a_library_run(), torch.inference_mode(False),
          torch.enable_grad()):
        job = Distributed.get(plan.device)  # None unless launched by torchrun
        if job is None:
            return _run(plan, progress, plan.device, None)
        with job.one_run():  # a run that failed on any rank stops the job
            return _run(plan, progress, job.device(plan.device), job)


def check_folder(plan: Plan) -> None:
    """Refuse to run ``plan`` in another working folder than it was made in where it holds relative
    paths: a notebook's ``%cd`` between plan() and run() made a new store there and read no image.

    Raises:
        ConfigError: naming both folders and the relative paths.
    """
    here = working_folder()
    if plan.folder is None or here == plan.folder:
        return
    paths = (("store", plan.options.store), ("data", plan.images.root),
             ("released files", getattr(plan.selection, "released", None)),
             ("checkpoint", plan.model.checkpoint), ("labels", plan.options.labels))
    relative = [f"{what} {path}" for what, path in paths
                if path is not None and not Path(path).expanduser().is_absolute()]
    if relative:
        raise ConfigError(f"the plan was made in the folder {plan.folder}, and the working folder is now "
                          f"{here or 'gone (deleted)'}: its relative paths ({listed(relative, 5)}) are of "
                          "the first. Change back (os.chdir), or make the plan again here")


def _run(plan: Plan, progress: ProgressHook | None, device: torch.device,
         job: Distributed | None) -> Report | RankResult:
    net = load_chosen(plan.model, device)
    if plan.suite.gradients and any(p.is_inference() for p in net.parameters()):
        # autograd cannot go through them (a raw "inference tensor" error, the weights left frozen)
        raise ModelCodeError(f"{plan.model.label}: its weights were made under torch.inference_mode() "
                             f"(inference tensors), through which the {plan.suite.kind} suite's gradients "
                             "cannot go: build or load the model outside inference_mode (a call of "
                             "evaluate() or run() inside it is fine)")
    built = [net.stride_note] if getattr(net, "stride_note", "") else []  # what its file left open
    # of this command, not of the run (the same run with or without the flag): said, not stored
    unused = ["--no-ema: the checkpoint has no EMA weights (state_dict_ema); its only weights were "
              "evaluated"] if (not plan.model.ema and plan.model.checkpoint and plan.model.external is None
                               and not net.has_ema) else []
    # the checkpoint may have changed since the plan was made
    if labels_matter(plan.suite, plan.data is not None):
        check_classes(plan.images, net.num_classes, plan.model.label, released=plan.data is None,
                      asked_sorted=plan.options.class_order == "sorted")
    cfg = net.pretrained_cfg
    options = plan.options
    classifier = Classifier(net, device, mean=cfg.mean, std=cfg.std, amp=options.amp,
                            channels_last=options.channels_last)
    clean = protocol = None
    size = plan.dataset.image_size
    # checked when planned too; the module may have changed since
    check_input_size(plan.dataset, plan.images, plan.model, cfg.input_size, net.num_classes)
    if plan.data is not None and size is not None:  # small datasets: the images as they are
        clean = ImageSource(plan.images.root, resize_size=None, crop_size=size, reader=plan.images.reader,
                            exact=True)
    elif plan.data is not None:  # the model's preprocessing; corruptions start from the protocol's
        clean = ImageSource(plan.images.root, resize_size=cfg.resize_size, crop_size=cfg.input_size,
                            interpolation=cfg.interpolation)
        protocol = clean.as_protocol()
    tasks = plan.suite.tasks(plan.selection,
                             TaskInputs(clean, net.num_classes, cfg.input_size, protocol))
    identity = run_identity(plan, net, classifier.precision, device)
    ctx = Context(classifier, options.seed, options.batch_size)
    engine = EngineOptions(options.batch_size, options.workers, options.shard_size)
    if job is not None and not job.is_main:  # only rank 0 opens the store
        stats = execute_distributed(tasks, plan.images, None, None, ctx, engine, None, job,
                                    settings=_job_settings(identity, tasks))
        return RankResult(job.rank, job.world_size, stats.units_computed, stats.images_computed)
    checkpoint = absolute_path(str(plan.model.checkpoint)) if plan.model.checkpoint else None  # as data
    keys = [key for task in tasks for key in task.keys]
    data = absolute_path(plan.images.source) if plan.data is not None else None
    released = getattr(plan.selection, "released", None)
    for path in (data, absolute_path(str(released)) if released is not None else None):
        # a relative path in such a working folder, $GCP_ROBUST_DATA: the store cannot hold it
        if path is not None and (shown := not_utf8(path)) is not None:
            raise DataError(f"data path {shown} has a name that is not UTF-8: rename it")
    with Store(options.store) as store:
        # the clean images' folder; a run given released files alone records none (the notes name those)
        before = store.stored_label(identity)
        labelled = _COMMAND_LABELLED.get()
        this_run = (str(real_path(options.store)), canonical_json(identity))
        again = labelled is not None and this_run in labelled
        if labelled is not None:
            labelled.add(this_run)
        former = former_identity(plan, identity)
        taken = before is None and former is not None and store.stored_label(former) is not None
        info = store.run(identity, model=plan.model.label, arch=plan.model.arch, checkpoint=checkpoint,
                         data=data, n_images=len(plan.images), shard_size=options.shard_size,
                         rename=not again, former=former)
        renamed = renamed_notes(before, info, plan.model.label if store.read_only else None)
        renamed += taken_over_notes(plan.model.label, taken)
        moved_release = released_notes(plan, store, info, keys)  # before any cell is computed
        edited = edited_images_notes(plan, store, info, lambda: _shards_done(store, info, tasks))
        held = stored_shards(store, info.id) > 0
        fresh = _COMMAND_RUNS.get()  # within a run_all: the runs it started afresh
        ours = (str(real_path(options.store)), info.id)
        if fresh is not None and not held:
            fresh.add(ours)
        # said before the run (a library caller without a progress hook: in the report alone)
        reused = own_code_notes(plan, held and (fresh is None or ours not in fresh))
        others = other_settings(store, info, held)
        if progress is not None:
            said = [*plan.notes, *built, *unused, *limit_notes(plan), *renamed, *moved_notes(plan, info),
                    *moved_release, *edited, *reused, *released_size_notes(plan, info)]
            for line in [*(f"{plan.model.label}: {note}" for note in said), *others]:
                progress.say(line)
        # for `report`, later: what holds for every suite of the run, and this suite's own
        store.set_notes(info.id, "", [*weights_notes(plan), *built, *labels_notes(plan),
                                      *preprocess_notes(plan)])
        store.set_notes(info.id, plan.suite.kind, [*plan.suite.notes(plan.selection, plan.model),
                                                   *released_size_notes(plan, info)])
        try:
            if job is None:
                stats = execute(tasks, plan.images, store, info, ctx, engine, progress)
            else:
                stats = execute_distributed(tasks, plan.images, store, info, ctx, engine, progress, job,
                                            settings=_job_settings(identity, tasks))
            # a stop Python dropped after the last batch (a loader's fork): said as one in a batch (a
            # library run's left the finished report behind as a bare KeyboardInterrupt, helper-242)
            stops.raise_pending()
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (errors.Terminated) under the CLI
            raise _interrupted(stop, store, info, tasks) from None
        except Exception as error:
            stop = stops.pending()  # a loader worker that the same Ctrl-C ended, its own stop dropped
            if isinstance(stop, KeyboardInterrupt):
                raise _interrupted(stop, store, info, tasks) from None
            if stop is not None:  # a torchrun launcher's stop (distributed.Distributed._stopped)
                raise stop from None
            if isinstance(error, ModelCodeError):  # your model's code, mended: the same run (same weights)
                raise _noted(_mend_the_model(error, store, info, tasks, options), error) from error.__cause__
            if not isinstance(error, DataError):
                raise
            done, total = _shards_done(store, info, tasks)  # a file unreadable half-way: how to resume
            gone = _gone_folder(plan, error)
            mend = (f"{gone}: put it back" if gone is not None else
                    "replace the file with a readable one of the same name")
            raise _noted(DataError(f"{error}. {done} of {total} shards are stored: {mend} and re-run the "
                                   "same command to resume (an image list without it is a new run, started "
                                   "afresh)"), error) from None
        device_name = str(device) if job is None else f"{device.type} x {job.world_size} ranks"
        return report_of(plan, store, info, keys, stats=stats, device=device_name,
                         said=[*built, *unused, *renamed, *moved_release, *edited, *reused, *others])


def _gone_folder(plan: Plan, error: DataError) -> str | None:
    """What is gone of the unreadable file's folders (``error.gone``, where the loader says it),
    else of the run's data (the clean images' folder or file, the released files' folder: judged on
    this machine, where another torchrun machine's rank met an array file's error):
    a folder moved or renamed while the run read it, where "replace the file" misled."""
    if error.gone is not None:
        return error.gone
    roots = ((plan.data, False), (getattr(plan.selection, "released", None), True))  # (data may be a file)
    said = (gone_said(root, folder=folder) for root, folder in roots if root is not None)
    return next((words for words in said if words is not None), None)


def _noted(error: Exception, before: Exception) -> Exception:
    """``error``, said in place of ``before``, with ``before``'s notes (another torchrun rank's error of
    the same round: they were lost)."""
    for note in getattr(before, "__notes__", ()):
        error.add_note(note)
    return error


def _mend_the_model(error: ModelCodeError, store: Store, info: RunInfo, tasks, options) -> ModelCodeError:
    """A model you brought that raised half-way: how far the run got, and how to resume it."""
    done, total = _shards_done(store, info, tasks)
    flags = [flag for flag, on in (("--amp", options.amp), ("--channels-last", options.channels_last)) if on]
    other = f", or leave out {' and '.join(flags)}, which it may not take (a new run)" if flags else ""
    return ModelCodeError(f"{error}. {done} of {total} shards are stored: mend the model's code and re-run "
                          f"the same command to resume{other}")


def _interrupted(stop: KeyboardInterrupt, store: Store, info: RunInfo, tasks) -> Interrupted:
    """Say how far the stopped run got, counted in the store (what is there stays there)."""
    done, total = _shards_done(store, info, tasks)
    what = "terminated" if isinstance(stop, Terminated) else "interrupted"
    return Interrupted(f"{what} after {done} of {total} shards; re-run the same command to resume",
                       terminated=isinstance(stop, Terminated))


def _shards_done(store: Store, info: RunInfo, tasks) -> tuple[int, int]:
    """((cell, shard) units of the run's ``tasks`` in the store, of how many): counted as the
    engine counts them before it starts ("N of M (cell, shard) units already in the store") and
    `report` a partial run's shards, a task of several cells (an attack's epsilons, ImageNet-P's
    difficulties) once per cell (eval said 44 of 78 shards, report 68 of 126)."""
    cells = {key: cell for cell, key in store.cells(info.id)}
    keys = [key for task in tasks for key in task.keys]
    return sum(len(store.done_shards(cells.get(key))) for key in keys), len(keys) * info.n_shards


def run_all(plans: list[Plan], progress: ProgressHook | None = None) -> list[Report] | None:
    """Run several plans in order (stored results reused), as ``compare`` and the demo do; None on
    torchrun ranks other than 0 (every rank runs every plan, in the same order).

    ``progress`` may also take ``item(index, total, label)`` / ``item_done(index)`` events
    (a bar over the jobs).
    """
    check_progress(progress)
    started, labelled = _COMMAND_RUNS.set(set()), _COMMAND_LABELLED.set(set())
    try:
        return _run_each(plans, progress or ProgressHook())
    finally:
        _COMMAND_RUNS.reset(started)
        _COMMAND_LABELLED.reset(labelled)


def _run_each(plans: list[Plan], progress: ProgressHook) -> list[Report] | None:
    reports = []
    for index, plan in enumerate(plans):
        label = f"{plan.model.label} {plan.selection.spec.name}"
        if hasattr(progress, "item"):
            progress.item(index, len(plans), label)
        try:
            reports.append(run(plan, progress))
        except Interrupted as stop:  # say which of the evaluations stopped (the shards are its own)
            raise Interrupted(f"{stop} (evaluation {index + 1} of {len(plans)}: {label}; the ones before "
                              "it are complete)", terminated=stop.exit_code == 143) from None
        except GcpRobustError as error:  # the evaluations before it are kept: say so, and where
            if index:
                done = "the one before it is" if index == 1 else f"the {index} before it are"
                store = shlex.quote(str(plan.options.store))
                error.add_note(f"evaluation {index + 1} of {len(plans)} ({label}) failed; {done} stored: "
                               f"`gcp-robust report --store {store}` shows what is stored")
            raise
        if hasattr(progress, "item_done"):
            progress.item_done(index)
    if any(isinstance(report, RankResult) for report in reports):
        return None
    return reports


def report_of(plan: Plan, store: Store, info: RunInfo, keys, *, stats: ExecutionStats | None = None,
              device: str | None = None, said: Sequence[str] = ()) -> Report:
    """The report of a plan's cells ``keys`` of the stored run ``info``, normalized by the plan's
    baseline; ``said``: the notes the run made before it computed anything (released cells stored
    from another folder, images edited in place, results of a module you bring reused, stored runs
    of other settings it cannot reuse)."""
    cell_ids = {key: cid for cid, key in store.cells(info.id)}
    results = [store.cell_result(cell_ids[key], key, info.n_shards) for key in keys]
    suite = plan.suite
    normalizer = suite.choose_normalizer(plan.baseline, plan.config.baselines, store, keys)
    notes = [*weights_notes(plan), *plan.notes, *limit_notes(plan), *moved_notes(plan, info), *said,
             *labels_notes(plan), *preprocess_notes(plan), *suite.notes(plan.selection, plan.model),
             *released_size_notes(plan, info)]
    computed = None
    if stats is not None:
        computed = {
            "units": stats.units_total,
            "reused": stats.units_skipped,
            "computed": stats.units_computed,
            "images": stats.images_computed,
            "seconds": round(stats.seconds, 3),
        }
    return build_report(
        suite, info, results, normalizer, suite_name=suite_name(plan), model=plan.model.label,
        checkpoint=absolute_path(str(plan.model.checkpoint)) if plan.model.checkpoint else None, notes=notes,
        data=absolute_path(plan.images.source) if plan.data is not None else None,  # as the store records it
        corrupted_dir=absolute_path(str(plan.corrupted_dir)) if plan.corrupted_dir else None, device=device,
        store=str(Path(plan.options.store)), computed=computed,
    )


def suite_name(plan: Plan) -> str:
    """The suite a report names: the one run, or, where ``--dataset`` took it to another dataset
    (``--suite cifar10-p --dataset cifar100``, ``--suite imagenet-c --dataset tinyimagenet``), that
    dataset's suite of the kind in benchmarks.yaml (``cifar100-p``, ``tinyimagenet-c``), as
    ``report`` names the stored run (:meth:`Config.suite_on`)."""
    spec = plan.selection.spec
    declared = plan.config.suites.get(spec.name)  # the plan's spec carries the dataset it runs on
    if declared is None or declared.dataset == plan.dataset.name:
        return spec.name
    return plan.config.suite_on(plan.suite.kind, plan.dataset.name) or spec.name


def check_baseline_name(plan: Plan, name: str, *, replace: bool = False) -> None:
    """Before a baseline is computed: its suite must be one that a stored run normalizes, and
    ``name``, when stored already, must not be another run as far as the plan tells (model, matrix
    function, images, seed, shard size, precision, device, seeded weights) unless ``replace``. What
    only the loaded model tells (a checkpoint's contents) is checked by :func:`store_baseline`.

    Raises:
        ConfigError: either, saying what the name holds, what differs and how to proceed.
    """
    from robustbench_gcp.reports.stored import run_label

    if not plan.suite.normalized_by_stored_run(plan.label_dataset):
        raise ConfigError(f"`--suite`: {plan.suite.kind} on {plan.dataset.title} is not normalized by a "
                          "stored baseline, so one would never be used; baselines serve imagenet-p (FR, "
                          "T5D), and imagenet-c on CIFAR-10/100, Tiny-ImageNet and ImageNet images "
                          "classified into other classes than ImageNet's 1000 (CE)")
    if replace or not Path(plan.options.store).is_file():
        return
    with Store(plan.options.store, read_only=True) as store:
        stored = store.baseline(name)
    if stored is None:
        return
    differ = differences(stored.identity, planned_identity(plan))
    if differ:
        raise ConfigError(f"baseline '{name}' is already stored in {plan.options.store}: a run of "
                          f"{run_label(stored)} on {counted(stored.n_images, 'image')} of {stored.data}, "
                          f"and this run differs in: {differ}; pass --replace to give the name to this "
                          "run, or choose another --name")


def _job_settings(identity: dict, tasks) -> dict:
    """What every rank of a torchrun job must share, by the names messages give them: the run's
    identity (its shard size is rank 0's on every rank) and its cells in order (rank 0 files the
    others' results by their place in its own list)."""
    shared = {FIELD_NAMES.get(k, k): v for k, v in identity.items() if k != "shard_size"}
    shared["cells (--suite and its options: corruptions, severities, attacks ...)"] = [
        [key.kind, key.name, key.level, key.variant] for task in tasks for key in task.keys]
    return shared


def store_baseline(report: Report, name: str, *, replace: bool = False) -> None:
    """Store the run of ``report`` (made by :func:`run`) as the baseline ``name`` in its store, so
    that ``--baseline name`` normalizes by it (ImageNet-P flip rates).

    Raises:
        ConfigError: ``name`` is another run's and ``replace`` is False (the report's cells stay
            stored: storing it again with ``replace`` computes nothing).
    """
    with Store(report.store) as store:
        run = store.run_by_key(report.run)
        named = store.baseline(name)
        if named is not None and named.id == run.id:  # the same command again: nothing to write (a
            return                                     # read-only store refused to store it again)
        stored = store.set_baseline(name, run.id, replace=replace)
        if stored is not None:
            raise ConfigError(f"baseline '{name}' is another run in {report.store} (this one differs in: "
                              f"{differences(stored.identity, run.identity)}); this run's results are "
                              "stored: run the command again with --replace (nothing is computed again), "
                              "or choose another --name")


def renormalized(plan: Plan, report: Report, baseline: str) -> Report:
    """``report`` (of ``plan``) normalized by another baseline, rebuilt from the store alone:
    nothing runs (call it where the report was made: rank 0 under torchrun)."""
    plan = plan.with_baseline(baseline)
    with Store(plan.options.store) as store:
        info = store.run_by_key(report.run)
        rebuilt = report_of(plan, store, info, [r.key for r in report.cells], device=report.device)
    return dataclasses.replace(rebuilt, computed=report.computed)


def evaluate(model: str | torch.nn.Module, *, name: str | None = None,
             progress: ProgressHook | None = None, **kwargs) -> Report | RankResult:
    """Evaluate ``model`` on a suite; finished shards in the store are reused.

    Args:
        model: a model of benchmarks.yaml, a registry architecture name,
            ``torchvision:<name>``, ``package.module:callable``, or any ``nn.Module`` that maps
            ImageNet-normalized (B, 3, H, W) images to (B, classes) logits (its runs are
            identified by the hash of its state dict; it is put in eval mode and moved to
            the device).
        name: the name reports show (for a module: default its class name).
        progress: receives progress events (the CLI draws bars from them).
        **kwargs: the fields of :class:`~robustbench_gcp.pipeline.planning.EvalOptions` and the
            suites' flags (``corruptions=``, ``severities=``, ``attacks=`` ...).

    Returns:
        The :class:`~robustbench_gcp.reports.report_type.Report` (``.to_json()`` is the README's
        JSON schema); a :class:`RankResult` on torchrun ranks other than 0.

    Raises:
        ConfigError, DataError, CheckpointError, StoreError: with a message for the user.

    Example:
        >>> report = evaluate("resnet50-gap", checkpoint="resnet50-0676ba61.pth",
        ...                   suite="imagenet-c", data="/data/imagenet/val", limit=1000)  # doctest: +SKIP
        >>> report.sections["metrics"]["mCE"]                                            # doctest: +SKIP
        >>> evaluate(my_net, name="my-gcp", suite="imagenet-c", data="/data/imagenet/val",
        ...          preprocess={"input_size": 224, "resize_size": 256})               # doctest: +SKIP
    """
    from robustbench_gcp.pipeline.planning import plan

    check_progress(progress)  # before the plan reads the data and the checkpoint
    return run(plan(model, name=name, **kwargs), progress)


__all__ = ["IDENTITY_VERSION", "RankResult", "evaluate", "renormalized", "report_of", "run", "run_all",
           "store_baseline", "check_baseline_name"]
