"""``plan``: every check and every selection of an evaluation, and no compute.

A :class:`Plan` says which model (its weights located and checked, not loaded), which suite
and which of its cells, on which images (scanned and limited), with which engine options, on
which device. Every command that computes (``eval``, ``compare``, ``baseline``, ``demo``)
makes all its plans first, so a typo in the tenth model of a comparison stops it before the
first image.
:func:`robustbench_gcp.pipeline.execution.run` then executes a plan.

Example:
    >>> p = plan("demo-gap", suite="imagenet-c", corruptions="fog", data="demo/val",
    ...          class_order="sorted")                                              # doctest: +SKIP
    >>> p.selection.corruptions, len(p.images)                                      # doctest: +SKIP
    (('fog',), 100)
"""

from __future__ import annotations

import dataclasses
import inspect
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustbench_gcp.config import Config, load_config
from robustbench_gcp.data.datasets import (
    DATASETS,
    IMAGENET_CLASSES,
    DataDetection,
    DatasetInfo,
    check_image_size,
    get_dataset,
    label_space,
    scan_dataset,
    with_preset,
)
from robustbench_gcp.data.folders import CLASS_ORDERS, ImageList
from robustbench_gcp.engine.device import DEVICE_WORDS, amp_dtype, cuda_graphs_on, resolve_device
from robustbench_gcp.engine.limits import MAX_COUNT, MAX_SEED, MAX_WORKERS
from robustbench_gcp.errors import ConfigError, DataError, check_integer, check_kind, suggest, user_path
from robustbench_gcp.metrics import DEFAULT_BASELINE, baseline_names
from robustbench_gcp.pipeline.weights import (
    ModelChoice,
    check_weights,
    choose_model,
    chosen_input_size,
    model_spec,
    returns_probabilities,
)
from robustbench_gcp.store import DEFAULT_STORE
from robustbench_gcp.suites import (
    Selection,
    Suite,
    all_flags,
    all_suites,
    check_flags,
    flag_suites,
    get_suite,
)
from robustbench_gcp.suites.stored_baselines import check_stored_datasets

_INTEGERS = ("batch_size", "workers", "seed", "limit", "shard_size", "ns_iters")
#: the on/off options (NumPy's bools are taken as Python's)
_SWITCHES = ("amp", "channels_last", "random_weights", "ema")
#: the options that are files or folders: ``~`` expanded, "" refused (the CLI's options do both)
_PATHS = ("data", "labels", "store", "config", "checkpoint")


@dataclass(frozen=True)
class EvalOptions:
    """Every option of an evaluation: the flags of ``gcp-robust eval``.

    ``flags`` holds the suites' own overrides (``corruptions``, ``severities``, ``attacks``
    ...: see :func:`robustbench_gcp.suites.all_flags`); the library takes them as keyword
    arguments of :func:`plan` / :func:`~robustbench_gcp.pipeline.evaluate`.
    """

    checkpoint: str | None = None
    sha256: str | None = None
    random_weights: bool = False  # allow a model without a checkpoint (seeded random weights)
    label: str | None = None  # name shown in reports (default: the model name)
    sqrt: str | None = None
    ns_iters: int | None = None
    ema: bool = True  # a training file's EMA weights (state_dict_ema) when it has them
    preprocess: Any = None  # a model you bring: PreprocessConfig or dict (default ImageNet's)
    suite: str = "clean"
    data: str | Path | None = None
    dataset: str | None = None  # imagenet, cifar10, cifar100, tinyimagenet (None: the suite's, the data's)
    labels: str | Path | None = None
    class_order: str | None = None  # class folders -> labels: imagenet (wnids), sorted; None: the dataset's
    flags: Mapping[str, Any] = field(default_factory=dict)
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
    baseline: str = DEFAULT_BASELINE

    @classmethod
    def of(cls, **kwargs) -> EvalOptions:
        """Options from keyword arguments; those naming a suite flag go to ``flags``.

        Raises:
            TypeError: a keyword that is neither an option nor a suite flag.
        """
        fields = {f.name for f in dataclasses.fields(cls)} - {"flags"}
        known_flags = {flag.name for flag in all_flags()}
        flags = kwargs.pop("flags", None)
        check_kind("flags", {} if flags is None else flags, Mapping, "a dict of suite flags")
        flags = dict(flags or {})
        for name in list(kwargs):
            if name in known_flags:
                value = kwargs.pop(name)
                if name in flags and value is not None:  # one of the two was taken silently
                    raise TypeError(f"{name!r} is given twice: as a keyword and in `flags`")
                if name not in flags:
                    flags[name] = value
            elif name not in fields:
                raise TypeError(f"unexpected option {name!r}.{suggest(name, sorted(fields | known_flags))}")
        return cls(**kwargs, flags=flags)

    def __post_init__(self) -> None:
        """A library caller's NumPy integers and bools, paths and ``~``, as the CLI's (also for
        ``EvalOptions(...)`` made directly and given to ``plan_options``: helper-267)."""
        for name in (*_INTEGERS, *_SWITCHES, *_PATHS, "sha256"):
            value = getattr(self, name)
            if name in _INTEGERS and isinstance(value, numbers.Integral) and not isinstance(value, bool):
                value = int(value)
            elif name in _SWITCHES and isinstance(value, np.bool_):  # torch's autocast refused one mid-run
                value = bool(value)
            elif name in ("checkpoint", "sha256") and isinstance(value, os.PathLike):
                value = os.fspath(value)
            if name in _PATHS and isinstance(value, (str, os.PathLike)):
                default = name in ("store", "config")
                value = user_path(value, name, hint=": give None for the default" if default else "")
            object.__setattr__(self, name, value)

    def validate(self) -> None:
        """Raise :class:`ConfigError` for an engine option out of range."""
        for name, low, high in (("batch_size", 1, MAX_COUNT), ("workers", 0, MAX_WORKERS),
                                ("shard_size", 1, MAX_COUNT), ("seed", 0, MAX_SEED)):
            check_integer(f"--{name.replace('_', '-')}", getattr(self, name), low, high=high)
        if self.limit is not None:
            check_integer("--limit", self.limit)
        for name in _SWITCHES:
            check_kind(name, getattr(self, name), (bool, np.bool_), "True or False")
        if self.label is not None and (not isinstance(self.label, str) or not self.label.strip()):
            # a list failed in the store; "" was the default name
            raise ConfigError(f"`name` should be text: the name reports show. Got {self.label!r}")
        if not isinstance(self.store, (str, os.PathLike)):
            raise ConfigError(f"`store` should be the path of a store file. Got {self.store!r}")
        # the library's keywords of other types ended in TypeErrors of difflib, fetch or pathlib
        for name, kinds, what in (("suite", (str,), "a suite's name"),
                                  ("dataset", (str, type(None)), "a dataset's name"),
                                  ("config", (str, os.PathLike, Config, type(None)), "a path or a Config"),
                                  ("checkpoint", (str, os.PathLike, type(None)), "a path or URL"),
                                  ("data", (str, os.PathLike, type(None)), "a path"),
                                  ("labels", (str, os.PathLike, type(None)), "a path"),
                                  ("sha256", (str, type(None)), "text"),
                                  ("device", (str, torch.device), DEVICE_WORDS),
                                  ("baseline", (str,), "a baseline's name")):
            check_kind(name, getattr(self, name), kinds, what)
        if self.class_order is not None and self.class_order not in CLASS_ORDERS:
            raise ConfigError(f"`--class-order` should be one of {', '.join(CLASS_ORDERS)}. "
                              f"Got {self.class_order!r}")
        if self.dataset is not None:
            get_dataset(self.dataset)  # an unknown name: UnknownNameError with the closest one


@dataclass(frozen=True)
class Plan:
    """An evaluation, checked and selected: what :func:`~robustbench_gcp.pipeline.execution.run` executes.

    Attributes:
        model: the model, its weights located and checked to fit (not loaded).
        suite, selection: the suite's module and what it evaluates.
        images: the images of the run (after ``--limit``); ``available``: before it.
        data: the clean images' folder (the released files' folder is the selection's).
        device: where the model runs (a torchrun rank moves to its own GPU).
        options: the engine options (batch size, workers, seed, shard size, store ...).
        config: benchmarks.yaml (normalizers).
        dataset: the dataset of the images (``--dataset``, the suite's ``dataset:``, or found
            from the data), which sets how they are read and the corruption preset.
        notes: what planning chose that eval says and the report keeps (released files read
            alone where benchmarks.yaml's clean images are missing).
        classes: the model's number of classes, as its checkpoint says (None: not known).
        folder: the working folder the plan was made in, which its relative paths are of (None:
            unknown, a folder deleted since).
    """

    model: ModelChoice
    suite: Suite
    selection: Selection
    images: ImageList
    available: int
    data: Path | None
    device: torch.device
    options: EvalOptions
    config: Config
    dataset: DatasetInfo = DATASETS["imagenet"]
    notes: tuple[str, ...] = ()
    classes: int | None = None
    folder: str | None = None

    @property
    def label_dataset(self) -> DatasetInfo:
        """:attr:`dataset` in the model's label space (:func:`~robustbench_gcp.data.datasets.label_space`:
        ImageNet images classified into 10 classes are no task AlexNet's errors normalize), with the
        corruption parameters ``--preset`` forced (:func:`~robustbench_gcp.data.datasets.with_preset`)."""
        return with_preset(label_space(self.dataset, self.classes), getattr(self.selection, "preset", None))

    @property
    def corrupted_dir(self) -> Path | None:
        """The released files the cells are read from (``--corrupted-dir``), or None."""
        return self.selection.released

    @property
    def baseline(self) -> str:
        return self.options.baseline

    def with_baseline(self, name: str) -> Plan:
        """The same plan normalized by another baseline (a report-time choice: no re-run)."""
        return dataclasses.replace(self, options=dataclasses.replace(self.options, baseline=name))


def baseline_unused(suites: Sequence[Suite]) -> str:
    """Why a baseline given for ``suites``, none of which a baseline normalizes, is refused (after
    the option's name): ``normalizes the metrics of the imagenet-c/imagenet-p suites; the clean
    suite has none to normalize``."""
    kinds = "/".join(s.kind for s in all_suites() if s.uses_baseline)
    named = "/".join(dict.fromkeys(suite.kind for suite in suites))
    return f"normalizes the metrics of the {kinds} suites; the {named} suite has none to normalize"


def plan(model: str | torch.nn.Module, *, name: str | None = None, **kwargs) -> Plan:
    """Check and select an evaluation of ``model``; nothing is computed.

    Args:
        model: a model of benchmarks.yaml, a registry architecture name,
            ``torchvision:<name>``, ``package.module:callable``, or an ``nn.Module`` (held by a
            wrapper that carries the attributes the engine reads, so that the module's own are
            untouched; it is put in eval mode and moved to the device).
        name: the name reports show (the label; for a module, default its class name).
        **kwargs: the fields of :class:`EvalOptions`, and the suites' flags
            (``corruptions=``, ``severities=``, ``attacks=``, ...).

    Raises:
        ConfigError, DataError, CheckpointError, StoreError: with a message for the user (a
            ``baseline`` given for a suite that no baseline normalizes too).
        TypeError: an unknown keyword.
    """
    if name is not None:
        if kwargs.get("label") not in (None, name):  # one of the two was dropped silently (helper-266)
            raise TypeError(f"`name` and `label` are one option (the name reports show): give one. Got "
                            f"name={name!r}, label={kwargs['label']!r}")
        kwargs["label"] = name
    planned = plan_options(model, EvalOptions.of(**kwargs))
    # another than the default where nothing is normalized: refused, as eval's --baseline (it was ignored)
    if kwargs.get("baseline", DEFAULT_BASELINE) != DEFAULT_BASELINE and not planned.suite.uses_baseline:
        raise ConfigError(f"`--baseline` {baseline_unused([planned.suite])}")
    return planned


def plan_options(model: str | torch.nn.Module, options: EvalOptions) -> Plan:
    """:func:`plan` with the options already gathered."""
    options.validate()
    config = options.config if isinstance(options.config, Config) else load_config(options.config)
    module = None
    if model is None:  # else looked up as a model named 'NoneType'
        raise ConfigError("`model` should be a model name or a torch.nn.Module. Got None")
    if not isinstance(model, str):
        module, model = model, options.label or type(model).__name__
    else:
        model_spec(config, model, options.checkpoint, options.sha256)  # the name, before the rest
    spec = config.suite(options.suite)
    suite = get_suite(spec.kind)
    shows = DataDetection(options.data)
    dataset = resolve_dataset(spec.dataset, options, shows)
    if suite.datasets is not None and dataset.name not in suite.datasets:
        runs_on = ", ".join(DATASETS[d].title for d in suite.datasets)
        raise ConfigError(f"the {suite.kind} suite runs on {runs_on} images, not {dataset.title} "
                          f"({'--dataset' if options.dataset else 'the data'})")
    spec_dataset, spec = spec.dataset, dataclasses.replace(spec, dataset=dataset.name)
    options, located = _configured_data(suite, dataset, options, config)
    if options.data != shows.path:  # benchmarks.yaml's datasets: located it
        shows = DataDetection(options.data)
    flags = check_flags(spec, options.flags)
    selection = suite.select(spec, flags)
    if suite.corrupts(selection) and flags.get("preset") is None and (options.dataset or spec_dataset):
        _check_found_size(dataset, options, shows.found)  # a dataset asked for (one found is the data's own)
    if suite.uses_baseline:
        for name in baseline_names(options.baseline):
            suite.check_baseline(name, config.baselines, Path(options.store))
    if options.data is None and getattr(selection, "released", None) is not None:  # before their files
        _refuse_data_flags(options, dataset)  # are read: a folder --class-order was meant for failed a check
    suite.check_inputs(selection)
    data = Path(options.data).expanduser() if options.data is not None else None
    everything = _image_list(suite, selection, options, dataset)
    if options.data is not None:
        suite.check_data(selection, everything)
    # where the dataset came from: a suite's dataset: was not named (helper-227)
    asked = None if options.dataset or not spec_dataset else f"suite {options.suite}'s dataset:"
    check_image_size(dataset, everything, forced=flags.get("preset") is not None,
                     corrupted=suite.corrupts(selection), asked=asked)
    device = resolve_device(options.device, amp=options.amp)
    if device.type == "cuda":  # read by the corruptions' draws deep in the run: said before it starts
        cuda_graphs_on()
    if options.amp and not suite.allows_amp:
        raise ConfigError(f"`--amp` computes in {str(amp_dtype(device)).removeprefix('torch.')} on "
                          f"{device.type}, whose rounding swamps the {suite.kind} suite's differences of "
                          "gradients at small steps (beta-smoothness came out 660x float32's in a test). "
                          "Run it without --amp")
    if options.amp and suite.gradients and amp_dtype(device) == torch.float16:
        raise ConfigError(f"`--amp` computes in float16 on {device.type}, whose input gradients round to 0 "
                          f"for confidently classified images: the {suite.kind} suite would overstate "
                          "robustness. Run it without --amp")
    choice = choose_model(config, model, checkpoint=options.checkpoint, sha256=options.sha256,
                          random_weights=options.random_weights, label=options.label, sqrt=options.sqrt,
                          ns_iters=options.ns_iters, seed=options.seed, ema=options.ema, module=module,
                          preprocess=options.preprocess)
    selection = suite.check_model(selection, choice) or selection  # None: a suite of the old contract
    images = everything.limit(options.limit)
    if "whole" in inspect.signature(suite.check_files).parameters:
        suite.check_files(selection, images, data=options.data is not None,
                          whole=len(images) == len(everything))
    elif options.data is not None:  # a suite of the contract before 0.7.8
        suite.check_files(selection, images)
    num_classes = check_weights(choice)
    if suite.gradients and returns_probabilities(choice):
        from robustbench_gcp.models.probe import said_as

        raise ConfigError(f"{said_as(choice.arch)} returns probabilities, not logits (its outputs for "
                          "two random images are >= 0 and sum to 1 per image): the "
                          f"{suite.kind} suite takes the cross-entropy of logits, whose gradients a second "
                          "softmax flattens (robustness overstated, a landscape flattened). Return the "
                          "scores before the softmax")
    _check_size_guess(dataset, options, spec_dataset, shows.layout, num_classes, choice.label,
                      suite.corrupts(selection))
    if suite.uses_baseline:
        # benchmarks.yaml's normalizers are the dataset's own label space's (AlexNet's ImageNet errors);
        # a model of other classes is another task, which only a stored run of it normalizes
        suite.check_normalizers(baseline_names(options.baseline), config.baselines, selection,
                                Path(options.store), own_classes=label_space(dataset, num_classes) is dataset)
        check_stored_datasets(baseline_names(options.baseline), config.baselines, Path(options.store), suite,
                              dataset)
    if labels_matter(suite, options.data is not None):
        check_classes(images, num_classes, choice.label, released=options.data is None,
                      asked_sorted=options.class_order == "sorted")
    # before any model of a comparison runs (it was checked when this model's turn came)
    check_input_size(dataset, images, choice, chosen_input_size(choice), num_classes)
    return Plan(choice, suite, selection, images, len(everything), data, device, options, config, dataset,
                located, classes=num_classes, folder=working_folder())


def working_folder() -> str | None:
    """The current working folder, or None where it was deleted."""
    try:
        return os.getcwd()
    except OSError:
        return None


def resolve_dataset(declared: str | None, options: EvalOptions, shows: DataDetection) -> DatasetInfo:
    """The dataset of an evaluation: ``--dataset``, else the suite's ``dataset:``, else the one
    the data ``shows`` (its own layout, else its images' size), else ImageNet.

    Raises:
        DataError: the data is another dataset than the one asked for (CIFAR pickles under a
            Tiny-ImageNet suite ...).
    """
    asked = options.dataset or declared
    if options.data is None:
        return DATASETS[asked or "imagenet"]
    # a dataset asked for is refused here for another's layout only (CIFAR pickles, a
    # Tiny-ImageNet-200 tree); images of another's size only where the run corrupts them
    # (_check_found_size: 64 px ImageNet wnid folders are ImageNet for the clean suite)
    layout = shows.layout
    if asked is not None and layout is not None and DATASETS[asked].preset != DATASETS[layout].preset:
        said = "--dataset" if options.dataset else "the suite's dataset:"
        raise DataError(f"--data {options.data} holds {DATASETS[layout].title} images in its own layout, "
                        f"but {said} is {asked} ({DATASETS[asked].title}); give --dataset {layout} (or its "
                        "suite)")
    return DATASETS[asked or shows.found or "imagenet"]


def _check_found_size(dataset: DatasetInfo, options: EvalOptions, found: str | None) -> None:
    """Refuse images of another dataset's size (32 px: CIFAR, 64 px: Tiny-ImageNet; ``found`` is the
    dataset the data shows) for corruptions made for ``dataset``'s, before their folders are read
    as its classes.

    Raises:
        DataError: saying which dataset the images look like, and (ImageNet's, of any size) how to
            force its parameters on them.
    """
    if found is not None and DATASETS[found].preset != dataset.preset:
        said = "--dataset" if options.dataset else "the suite's dataset:"
        anyway = (f", or, to read them as {dataset.title} images with {dataset.released}'s corruption "
                  f"parameters anyway, --preset {dataset.preset}") if dataset.image_size is None else ""
        raise DataError(f"--data {options.data} holds {DATASETS[found].title} images, but {said} is "
                        f"{dataset.name} ({dataset.title}); give --dataset {found} (or its suite){anyway}")


def _configured_data(suite: Suite, dataset: DatasetInfo, options: EvalOptions,
                     config: Config) -> tuple[EvalOptions, tuple[str, ...]]:
    """``options`` with the data benchmarks.yaml's ``datasets:`` locates for ``dataset`` when
    the command line gives none: the clean images (the corruptions are generated from them), else,
    where those are not configured or not there, the suite's released files; and the note that
    says so when configured clean images are missing (a typo would otherwise pass unseen).

    Raises:
        ConfigError: the configured paths do not exist (each key named).
    """
    if options.data is not None or options.flags.get("corrupted_dir") is not None:
        return options, ()
    keys = ("clean", kind) if (kind := getattr(suite, "released_data", None)) else ("clean",)
    located = {key: config.data.locate(dataset.name, key) for key in keys}
    usable = [key for key, (path, missing) in located.items() if path is not None and missing is None]
    if "clean" in usable:
        return dataclasses.replace(options, data=located["clean"][0]), ()
    if usable:
        gone = located["clean"][1]
        said = () if gone is None else (f"{gone}: the released files of datasets.{dataset.name}.{kind} are "
                                        "read alone (no clean cell; give --data for one)",)
        return dataclasses.replace(options, flags={**options.flags, "corrupted_dir": located[kind][0]}), said
    refused = [located[key] for key in keys if located[key][1] is not None]
    if refused:
        raise config.data.refusal(refused)
    return options, ()


def labels_matter(suite, data: bool) -> bool:
    """Whether a run's labels are scored: not those of released files read alone (no ``--data``)
    by a suite that needs none of theirs (ImageNet-P's flips: ``released_labels = False``), whose
    class folders (a Tiny-ImageNet-P subset) then need not be every class."""
    return data or suite.released_labels


def _check_size_guess(dataset: DatasetInfo, options: EvalOptions, declared: str | None, layout: str | None,
                      num_classes: int, model: str, corrupts: bool) -> None:
    """Refuse an ImageNet-1k model on a dataset found from the size of the data's images only:
    neither asked for nor shown by a layout of its own, nor labelled by a ``--class-order`` chosen
    (64 px wnid folders are Tiny-ImageNet or a downsampled ImageNet; its hints led nowhere).

    Raises:
        DataError: saying how to read them as ImageNet images.
    """
    if (num_classes != IMAGENET_CLASSES or options.dataset is not None or declared is not None
            or options.data is None or options.class_order is not None or dataset.image_size is None
            or layout is not None):
        return
    side = dataset.image_size
    anyway = " --preset imagenet (ImageNet-C's corruption parameters, made for 224 px)" * corrupts
    raise DataError(f"--data {options.data} holds {side}x{side} images in class folders, read as "
                    f"{dataset.title} for their size, but model '{model}' has 1000 classes (ImageNet-1k's): "
                    f"for ImageNet images of that size, give --dataset imagenet{anyway}")


def check_input_size(dataset: DatasetInfo, images: ImageList, choice: ModelChoice, input_size: int,
                     num_classes: int) -> None:
    """A model of a small dataset's image size (CIFAR's 32 px, Tiny-ImageNet's 64).

    Raises:
        ConfigError: the model takes another size, with what to give it.
    """
    size = dataset.image_size
    if size is None or input_size == size:
        return
    fix = (f"give the model a pretrained_cfg (or --preprocess / preprocess=) with input_size={size}"
           if choice.external is not None else  # the registry's are ImageNet networks
           f"bring a {size} px network: --model torchvision:NAME --preprocess input_size={size} "
           "(its classes read from the checkpoint), or --model package.module:callable")
    if images.labelling in ("imagenet", "wnids") and num_classes == IMAGENET_CLASSES:
        # ImageNet's classes in wnid folders (--class-order imagenet): a downsampled ImageNet
        fix = "the folders name ImageNet classes; give --dataset imagenet to read them as ImageNet images"
    raise ConfigError(f"model '{choice.label}' takes {input_size} px inputs, but {dataset.title} images are "
                      f"{size} px: {fix}")


def check_classes(images: ImageList, num_classes: int, model: str, *, released: bool = False,
                  asked_sorted: bool = False) -> None:
    """Raise :class:`DataError` when the data has a class index the model does not have, when its
    wnid folders (standard ImageNet-1k indices) meet a model of other than 1000 classes (a
    background class first shifts every label), or when
    its class folders, numbered in their sorted order, are more than the model's classes (a folder
    that is no class moves the index of those after it, whichever images ``--limit`` takes) or
    fewer: with a class missing, a folder's index is not its class's (``released``: files read
    alone, e.g. Tiny-ImageNet-C / -P without ``wnids.txt``; fewer is refused for the order a
    dataset takes by default, not for ``--class-order sorted`` given, ``asked_sorted``); or when
    a dataset's own files (CIFAR's batches, Tiny-ImageNet's annotations) label its classes and the
    model has another number of them (a CIFAR-100 or ImageNet-1k model on CIFAR-10)."""
    whose = "the released files'" if released else "--data's"
    if images.labelling == "folders" and len(images.classes) > num_classes:  # whatever --limit takes
        raise DataError(f"{whose} {len(images.classes)} folders "
                        f"are numbered in their sorted order, but model '{model}' has {num_classes} "
                        f"classes: give a model of {len(images.classes)} classes, or, if a folder is no "
                        "class (one without images?), move it out: it moves the index of those after it")
    if images.labelling in ("imagenet", "wnids") and num_classes != len(images.classes):
        shifted = " (a background class first, as TF-slim's, moves every label by one)" \
            if num_classes == len(images.classes) + 1 else ""
        what = "class folders are ImageNet-1k wnids" if images.labelling == "imagenet" else \
            "labels are ImageNet-1k wnids (--labels)"
        # --class-order sorted numbers class folders; a flat folder of --labels has none (the two
        # exclude each other: the advice led to that error, helper-284)
        advice = ("For a model trained on these folders in their sorted order, give --class-order sorted"
                  if images.labelling == "imagenet" else
                  f"Give a model of ImageNet's {len(images.classes)} classes, or the images as class folders "
                  "numbered in the order this model was trained with (--class-order sorted)")
        raise DataError(f"{whose} {what}, labelled by their standard indices 0-{len(images.classes) - 1}, "
                        f"but model '{model}' has {num_classes} classes{shifted}: its outputs are not those "
                        f"labels. {advice}")
    if images.labelling == "dataset" and num_classes != len(images.classes):
        raise DataError(f"{whose} images are labelled by the dataset's own {len(images.classes)} classes "
                        f"(indices 0-{len(images.classes) - 1} in {images.source}), but model '{model}' "
                        f"has {num_classes} classes: its outputs are not those labels. Give a model "
                        f"trained on this dataset's {len(images.classes)} classes")
    top = max(images.labels)
    if top >= num_classes:
        raise DataError(f"the data has class index {top} ({images.classes[top]}) but model "
                        f"'{model}' has {num_classes} classes")
    if images.labelling == "folders" and len(images.classes) < num_classes and not asked_sorted:
        remedy = ("Give --data too (Tiny-ImageNet: the tiny-imagenet-200 folder, its wnids.txt) or every "
                  "class folder" if released else "Give every class folder (an empty folder keeps a "
                  "class's place), or --class-order imagenet for wnid folders (sorted: those folders are "
                  "the model's first classes)")
        raise DataError(f"{whose} {len(images.classes)} class folders are numbered in their sorted order, "
                        f"but model '{model}' has {num_classes} classes: with classes missing, a folder's "
                        f"index is not its class's. {remedy}")


def plan_all(jobs: Sequence[tuple[str, Mapping[str, Any]]], common: Mapping[str, Any]) -> list[Plan]:
    """Plans of several (model, own options) jobs that share ``common`` options, all made before
    any is run. A suite flag of ``common`` goes only to the jobs whose suite takes it
    (``compare --suite clean,imagenet-c --corruptions fog``); a job's own flags always apply.

    Raises:
        ConfigError: a flag of ``common`` that no job's suite takes, or any error of :func:`plan`.
    """
    shared = EvalOptions.of(**common)
    config = shared.config if isinstance(shared.config, Config) else load_config(shared.config)
    gathered = [(model, EvalOptions.of(**{**common, **own, "config": config}), own) for model, own in jobs]
    taken = [{flag.name for flag in get_suite(config.suite(options.suite).kind).flags}
             for _, options, _ in gathered]
    used = set().union(*taken)
    unused = [name for name, value in shared.flags.items() if value is not None and name not in used]
    if unused:
        flag = next(f for f in all_flags() if f.name == unused[0])
        kinds = "/".join(flag_suites(flag.name))
        raise ConfigError(f"`{flag.option}` applies to the {kinds} suite, and no suite compared is one")
    plans = []
    for (model, options, own), suite_flags in zip(gathered, taken):
        flags = {k: v for k, v in options.flags.items() if k in own or k in suite_flags}
        plans.append(plan_options(model, dataclasses.replace(options, flags=flags)))
    return plans


def _image_list(suite: Suite, selection: Selection, options: EvalOptions,
                dataset: DatasetInfo) -> ImageList:
    if options.data is not None:
        # the order changes the labels, so the fingerprint (the run's data identity) follows it
        return scan_dataset(dataset, options.data, options.labels, class_order=options.class_order)
    found = suite.image_list(selection)
    if found is None:  # before the flags that order or label --data: no released files either
        raise ConfigError(f"the {suite.kind} suite needs {suite.needs}")
    _refuse_data_flags(options, dataset)
    return found


def _refuse_data_flags(options: EvalOptions, dataset: DatasetInfo) -> None:
    """Refuse the flags of ``--data`` (its class order, its labels) on a run of released files alone."""
    if options.class_order is not None and not options.class_order == dataset.class_order == "imagenet":
        raise ConfigError(f"`--class-order {options.class_order}` orders the class folders of --data; "
                          f"released files are read in {dataset.title}'s own order (their -C or -P "
                          "benchmark's)")
    if options.labels is not None:
        raise ConfigError("`--labels` labels the images of --data; released files are labelled by their "
                          "wnid folders (give --data too for a clean cell)")
