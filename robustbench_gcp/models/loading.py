"""Checkpoints and registered models: matching, strict loading, inspection.

:mod:`robustbench_gcp.models.checkpoint` turns a file into a state dict with
the project's key names (steps 1-4); this module puts it next to the
registered models:

5. :func:`load_strict`: compare names and shapes, raise a :class:`CheckpointError`
   that lists the missing / unexpected / mismatched keys and names the
   registered model that would fit; then ``load_state_dict(strict=True)``.

:func:`load_model` builds a registered model at the sizes read from the file
and loads it strictly. :func:`inspect_checkpoint` runs steps 1-4 and finds the
best-matching registered model (:func:`rank_models`, compared on the meta
device) without loading anything into a real model.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from robustbench_gcp.engine.device import float32_default, resolve_device
from robustbench_gcp.errors import (
    CheckpointError,
    ConfigError,
    FitHint,
    check_kind,
    check_path,
    counted,
    listed,
    user_path,
)
from robustbench_gcp.models.checkpoint import (
    AS_SAVED,
    Layout,
    StateDict,
    UnknownLayoutError,
    checkpoint_dims,
    read_state_dict,
)
from robustbench_gcp.models.factory import ModelInfo, create_model, model_info
from robustbench_gcp.models.heads import HEADS, CovariancePool, resolve_sqrt
from robustbench_gcp.models.registry import list_models
from robustbench_gcp.models.resnet import last_stride

__all__ = [
    "CheckpointInfo",
    "KeyReport",
    "Match",
    "check_checkpoint",
    "check_fit",
    "compare_keys",
    "fitting_models",
    "inspect_checkpoint",
    "load_model",
    "load_strict",
    "rank_models",
    "twins_differ",
]

#: buffers, not parameters
_BUFFER_SUFFIXES = (".running_mean", ".running_var", ".num_batches_tracked")


@dataclass(frozen=True)
class KeyReport:
    """How a state dict differs from a model's (names and shapes)."""

    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = ()  # key, ckpt, model

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched)

    @property
    def distance(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.mismatched)

    def describe(self, first: int = 3) -> str:
        """``2 missing keys (first: a, b); 0 unexpected keys; 1 shape mismatch (first: ...)``."""

        def some(items: tuple[str, ...]) -> str:
            shown = ", ".join(items[:first]) + (", ..." if len(items) > first else "")
            return f" (first: {shown})" if items else ""

        mism = [f"{k}: checkpoint {list(c)} vs model {list(m)}" for k, c, m in self.mismatched]
        return (f"{counted(len(self.missing), 'missing key')}{some(self.missing)}; "
                f"{counted(len(self.unexpected), 'unexpected key')}{some(self.unexpected)}; "
                f"{counted(len(self.mismatched), 'shape mismatch', 'es')}{some(tuple(mism))}")


@dataclass
class CheckpointInfo:
    """What a checkpoint file holds (see :func:`inspect_checkpoint`).

    Attributes:
        path: the file.
        sha256: hex digest of the file.
        layout: detected layout name (:data:`~robustbench_gcp.models.checkpoint.LAYOUTS`)
            and ``layout_description``.
        container: where the weights were (``bare state dict`` or ``['state_dict']``).
        stripped: wrapper prefixes removed from the keys (``module.``, ``_orig_mod.``).
        arch: registered model that the weights fit exactly (None if none does).
        also_fits: other registered models with the same keys and shapes (e.g. the
            svdpade twin of an isqrt model: :func:`twins_differ` says how they differ).
        closest: the best-matching registered model even when nothing fits.
        head, depth: of ``closest``.
        reduction_dim: d read from the reduction conv (None for GAP).
        num_classes: rows of the classifier.
        num_params: parameters in the file (running statistics excluded).
        num_tensors: entries of the state dict.
        metadata: scalar entries beside the weights (``epoch``, ``arch``, ``best_prec1`` ...).
        last_stride: the stride of layer4 that a fast-MPN-COV training file tells (None elsewhere,
            or where nothing tells: the registered model's), as loading builds it.
        last_stride_told: what tells it: ``arch``, ``zoo`` (a features.8) or ``depth``
            (:func:`layer4_stride_told`); "" where nothing does.
        stride_note: where such a file of a ResNet names no ``arch``, what it leaves open or tells
            by its depth alone (:func:`unstated_stride_note`); "" elsewhere.
        missing, unexpected, mismatched: key differences from ``closest``.
        nonfinite: tensors holding NaN or infinite values, with counts (loading refuses them).
        wrong_types: tensors that ``arch`` has in floating point held as other types, with their
            type (loading refuses them: :func:`wrong_types`).
    """

    path: str
    sha256: str
    layout: str
    layout_description: str
    container: str
    stripped: list[str]
    arch: str | None
    also_fits: list[str]
    closest: str | None
    head: str | None
    depth: int | None
    reduction_dim: int | None
    num_classes: int | None
    num_params: int
    num_tensors: int
    metadata: dict[str, Any] = field(default_factory=dict)
    last_stride: int | None = None
    last_stride_told: str = ""
    stride_note: str = ""
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    nonfinite: list[str] = field(default_factory=list)
    wrong_types: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------- comparing keys


def compare_keys(expected: Mapping[str, torch.Size | tuple[int, ...]],
                 state_dict: Mapping[str, torch.Tensor]) -> KeyReport:
    """Missing, unexpected and shape-mismatched keys of ``state_dict`` against a model's.

    BatchNorm's ``num_batches_tracked`` may be missing: files saved before
    PyTorch 0.4.1 lack it and BatchNorm fills it in on a strict load.
    """
    missing = tuple(k for k in expected if k not in state_dict
                    and not k.endswith(".num_batches_tracked"))
    unexpected = tuple(k for k in state_dict if k not in expected)
    mismatched = tuple(
        (k, _shape(state_dict[k]), _shape(shape)) for k, shape in expected.items()
        if k in state_dict and _shape(state_dict[k]) != _shape(shape)
    )
    return KeyReport(missing, unexpected, mismatched)


def _shape(value) -> tuple[int, ...] | None:
    """A tensor's (or a shape's) dims; None for a module's extra state (``get_extra_state``)."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    return tuple(value) if isinstance(value, (tuple, list)) else None


# --------------------------------------------------------------------- model matching


@cache
def _registered_shapes(name: str, num_classes: int | None = None,
                       reduction_dim: int | None = None) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Names and shapes of a registered model's state dict (built on the meta device)."""
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, reduction_dim=reduction_dim)
    return tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())


@dataclass(frozen=True)
class Match:
    """A registered model compared with a state dict."""

    name: str
    report: KeyReport


def rank_models(state_dict: Mapping[str, torch.Tensor]) -> list[Match]:
    """Registered models ordered by how well ``state_dict`` fits them.

    Key names are compared with every model at its default sizes (meta device,
    cached); the models whose names fit best are then built with the number of
    classes and the width d read from the checkpoint and compared by shape too.
    Ties (isqrt and svdpade share every key) break by the order of
    :data:`~robustbench_gcp.models.heads.HEADS`, then by name.
    """
    num_classes, reduction_dim = checkpoint_dims(state_dict)
    order = list(HEADS)
    ranked = []
    for name in list_models():
        info = model_info(name)
        tie = order.index(info.head) if info.head in order else len(order)
        report = compare_keys(dict(_registered_shapes(name)), state_dict)
        ranked.append([len(report.missing) + len(report.unexpected), tie, name, report])
    best = min((item[0] for item in ranked), default=0)
    for item in ranked:
        if item[0] == best:  # the closest by names: compare shapes at the checkpoint's sizes
            d = reduction_dim if model_info(item[2]).reduction_dim is not None else None
            item[3] = compare_keys(dict(_registered_shapes(item[2], num_classes, d)), state_dict)
        item[0] = item[3].distance
    ranked.sort(key=lambda item: item[:3])
    return [Match(name, report) for _, _, name, report in ranked]


def fitting_models(state_dict: Mapping[str, torch.Tensor],
                   layout: Layout | None = None) -> tuple[list[str], Match | None]:
    """``(names that fit exactly, the closest match)``; with the file's ``layout``, not the models
    of a head that no file of it holds (:attr:`Layout.not_heads`)."""
    matches = rank_models(state_dict)
    fits = [m.name for m in matches if not m.report]
    if layout is not None:
        fits = [name for name in fits if model_info(name).head not in layout.not_heads]
    return fits, (matches[0] if matches else None)


def _dims(state_dict: Mapping[str, torch.Tensor]) -> str:
    """What a file holds, for messages: ``d=256, 1000 classes``."""
    num_classes, d = checkpoint_dims(state_dict)
    return ", ".join(([f"d={d}"] if d else []) + ([f"{num_classes} classes"] if num_classes else []))


def _suggestion(loaded: StateDict, requested: nn.Module, name: str) -> tuple[str, FitHint | None]:
    """What the error that ``loaded`` does not fit ``requested`` adds: ``("", hint)`` naming the
    registered model it fits, or a line on the closest one ("" for a model you brought)."""
    state_dict, layout = loaded.tensors, loaded.layout
    if layout is AS_SAVED and loaded.path is not None:  # a module you bring reads its own names: a file
        # of a published layout, renamed, may fit a registered model (torchvision:resnet18 given a
        # fast-MPN-COV training file got no hint, helper-251)
        try:
            detected = read_state_dict(loaded.path, compute_sha256=False)
            state_dict, layout = detected.tensors, detected.layout
        except (UnknownLayoutError, CheckpointError):
            pass
    fits, closest = fitting_models(state_dict, layout)
    if not fits:
        from robustbench_gcp.models.registry import list_models

        if name not in list_models():  # a model you brought: no registry hint
            return "", None
        if closest is None:
            return "No registered model fits it.", None
        distance = closest.report.distance
        return (f"No registered model fits it; the closest is '{closest.name}' "
                f"({distance} differing key{'s' if distance != 1 else ''})."), None
    best = fits[0]
    wanted = HEADS.get(getattr(requested, "head_type", ""))
    best_head = HEADS.get(model_info(best).head)
    # the root this run asked for: the requested model's own, or a --sqrt given with it
    roots = [m.sqrt for m in requested.modules() if isinstance(m, CovariancePool)]
    root = roots[0] if roots else wanted.sqrt if wanted else None
    keep = bool(best_head and best_head.sqrt and root and root != best_head.sqrt)
    # a --sqrt given, where the fitting model has no root (DropCov's plain covariance, GAP): leave it out
    drop = bool(best_head and not best_head.sqrt and wanted
                and (root != wanted.sqrt or getattr(requested, "root_asked", False)))
    return "", FitHint(best, _dims(state_dict), sqrt=root if keep else None, no_sqrt=not keep and drop)


# ---------------------------------------------------------------------------- loading


def check_fit(model: nn.Module, loaded: StateDict, name: str | None = None) -> None:
    """Check that ``loaded`` has exactly ``model``'s names and shapes (``model`` may live on the
    meta device: nothing is copied). ``name`` names the model in messages (default: its ``name``).

    Raises:
        CheckpointError: names or shapes differ; the message gives the layout,
            the counts and first keys of each kind of difference, and the
            registered model that the checkpoint fits. Or a tensor holds NaN or
            infinite values (named): such weights give meaningless errors.
    """
    state = model.state_dict()
    expected = {k: _shape(v) for k, v in state.items()}
    report = compare_keys(expected, loaded.tensors)
    if name is None:
        name = getattr(model, "name", "") or type(model).__name__
    if report:
        line, fit = _suggestion(loaded, model, name)
        raise CheckpointError(
            f"'{loaded.path}' does not fit {name}.\n"
            f"  detected: {loaded.origin}\n"
            f"  keys after renaming: {report.describe()}" + (f"\n  {line}" if line else ""), fit)
    kinds = wrong_types(state, loaded.tensors)
    if kinds:  # an int64 or complex weight loaded into a float one without a word (complex: a warning)
        raise CheckpointError(f"'{loaded.path}' holds {len(kinds)} tensor{'s' * (len(kinds) > 1)} that "
                              f"{name} has in floating point as other types: {listed(kinds, 3)}; the file "
                              "is damaged or not of this model's weights")
    head = getattr(model, "head_type", None)
    if head in loaded.layout.not_heads:  # the keys of a twin: an iSQRT-COV file for SVD-Pade
        _, fit = _suggestion(loaded, model, name)
        raise CheckpointError(
            f"'{loaded.path}' has {name}'s keys, but no {head} model was published in its layout "
            f"('{loaded.layout.name}': {loaded.layout.description}): it holds another head's "
            f"weights, trained with another network (weights that are {head}'s load under the tool's "
            "own names, global_pool.*)", fit)
    bad = loaded.nonfinite()
    if bad:
        shown = listed(bad, 3)
        raise CheckpointError(
            f"'{loaded.path}' holds non-finite weights in {len(bad)} tensor"
            f"{'s' if len(bad) > 1 else ''}: {shown}; the file is damaged or the training "
            "diverged (`gcp-robust inspect` lists them all)"
        )


def load_strict(model: nn.Module, loaded: StateDict, name: str | None = None) -> None:
    """Load ``loaded`` into ``model`` strictly, after checking names and shapes (:func:`check_fit`;
    ``name`` names the model in messages).

    Raises:
        CheckpointError: names or shapes differ (see :func:`check_fit`).
    """
    check_fit(model, loaded, name)
    model.load_state_dict(loaded.tensors, strict=True)


def load_model(name: str, checkpoint: str | Path | None = None, *,
               device: str | torch.device = "cpu", sha256: str | None = None,
               sqrt: str | None = None, ns_iters: int | None = None,
               ema: bool = True, random_weights: bool = False) -> nn.Module:
    """A registered model in eval mode on ``device``, with weights from ``checkpoint``.

    Every published layout is accepted (see :mod:`robustbench_gcp.models.checkpoint`);
    the width d and the number of classes are read from the file; loading is
    strict. Random weights are asked for, ``random_weights=True`` (as ``evaluate`` asks; a name
    alone gave them in silence, which looked like the model ``evaluate`` scores with
    benchmarks.yaml's weights: helper-293).

    The model takes ImageNet-normalized ``(B, 3, H, W)`` input and returns logits
    ``(B, num_classes)``. Attributes: ``name``, ``num_classes``, ``pretrained_cfg``
    (:class:`PreprocessConfig`), ``checkpoint_sha256`` (None without a checkpoint),
    ``weights_container`` (the container keys followed in the file, e.g.
    ``['state_dict_ema']``; empty for a bare state dict or without a checkpoint), ``has_ema``
    (the file holds EMA weights, taken or not), ``forward_features`` / ``forward_head``.
    The model is float32 whatever torch's default dtype (the images are), and with a checkpoint
    the caller's global random state is as it was (the random initialization it replaces drew
    from it).

    Args:
        name: registry name.
        checkpoint: path of a checkpoint file, or None with ``random_weights``.
        device: ``cpu``, ``cuda``, ``cuda:1``, ``mps`` or ``auto``.
        sha256: expected SHA-256 of the file (full, or a prefix of >= 8 hex digits).
        sqrt: evaluate a GCP model with another square root: ``newton-schulz``,
            ``eig`` or ``svd`` (None: the model's own; isqrt, mpncov, svdpade only).
        ns_iters: Newton-Schulz iterations (None: 5; with newton-schulz only).
        ema: of a training file with EMA weights (``state_dict_ema``), load those, as the
            original evaluations do (DeiT + DropCov); False loads the raw ones.

    Raises:
        UnknownNameError: unknown model or square root.
        ConfigError: no checkpoint and no ``random_weights``; invalid option (``sqrt`` for GAP /
            DropCov / AlexNet, ``sha256`` without a checkpoint, bad device, an option of another
            type ...).
        CheckpointError: unreadable file, hash mismatch, or weights that do not
            fit (the message names the registered model that they fit).

    Example:
        >>> model = load_model("resnet50-isqrt", "mpncovresnet50-15991845.pth")  # doctest: +SKIP
        >>> model = load_model("resnet50-isqrt", "r50.pth", sqrt="eig")  # doctest: +SKIP
    """
    # as plan checks them: a number was a pathlib TypeError, ema="no" taken as True
    check_kind("checkpoint", checkpoint, (str, os.PathLike, type(None)), "a path")
    check_kind("sha256", sha256, (str, type(None)), "text")
    check_kind("ema", ema, (bool, np.bool_), "True or False")
    check_kind("random_weights", random_weights, (bool, np.bool_), "True or False")
    checkpoint = None if checkpoint is None else _checkpoint_path(checkpoint)
    device = resolve_device(device, keyword=True)
    info = model_info(name)  # checks the name and options before any file is read
    resolve_sqrt(info.head, sqrt, ns_iters, owner=name)
    if checkpoint is not None and random_weights:
        raise ConfigError("`random_weights` and `checkpoint` exclude each other: pick one")
    if checkpoint is None:
        if sha256 is not None:
            raise ConfigError("`sha256` needs a checkpoint to check. Got sha256 without checkpoint")
        if not random_weights:
            raise ConfigError(f"load_model({name!r}) needs its weights: give a checkpoint file "
                              f"(benchmarks.yaml's, which evaluate({name!r}) takes: load_config().model"
                              f"({name!r}).checkpoint, where it names one), or random_weights=True for "
                              "random ones (create_model builds them too)")
        with float32_default():  # (a float64 default built float64 layers, which eval refused)
            model = create_model(name, sqrt=sqrt, ns_iters=ns_iters)
        model.checkpoint_sha256 = None
        model.weights_container, model.has_ema = [], False
    else:
        loaded = read_state_dict(checkpoint, sha256=sha256, ema=ema)
        with float32_default(), torch.random.fork_rng(devices=[]):
            model = _model_for(name, loaded, sqrt=sqrt, ns_iters=ns_iters)
        load_strict(model, loaded)
        model.checkpoint_sha256 = loaded.sha256
        model.stride_note = unstated_stride_note(os.path.abspath(checkpoint), loaded, model_info(name))
        model.weights_container, model.has_ema = list(loaded.container), loaded.has_ema
    return model.eval().to(device)


def _checkpoint_path(path: str | os.PathLike, name: str = "checkpoint",
                     hint: str = ": give a file, or None with random_weights=True") -> str | os.PathLike:
    """A checkpoint path as a shell gives it (:func:`~robustbench_gcp.errors.user_path`); ``name``:
    the keyword it came by."""
    return user_path(path, name, error=CheckpointError, hint=hint)


def _model_for(name: str, loaded: StateDict, **options) -> nn.Module:
    """The registered model ``name`` at the number of classes and width d of ``loaded``, and, for
    a ResNet, the last stage's stride its file states (:func:`stored_last_stride`)."""
    num_classes, reduction_dim = checkpoint_dims(loaded.tensors)
    info = model_info(name)
    stride = stored_last_stride(loaded, info)
    if stride is not None:
        options["last_stride"] = stride
    model = create_model(name, num_classes=num_classes,
                         reduction_dim=None if info.reduction_dim is None else reduction_dim, **options)
    # a --sqrt or --ns-iters given (its own root too): a hint toward a model without one says to drop it
    model.root_asked = options.get("sqrt") is not None or options.get("ns_iters") is not None
    return model


#: the depths of fast-MPN-COV's mpncovresnet (its src/network/mpncovresnet.py, DifferentiableSVD's copy
#: alike): at the others, a ResNet of its training files is torchvision's resnet*
MPNCOV_RESNET_DEPTHS = (50, 101)
#: the heads whose files fast-MPN-COV's training code writes (its MPNCOV reduction has no bias, as
#: iSQRT-COV's and SVD-Pade's; GAvP): an MPN-COV head's reduction has one, so no such file is one
FAST_MPN_COV_HEADS = ("isqrt", "svdpade", "gap")


def twins_differ(info: CheckpointInfo) -> str:
    """How the models that fit the file of ``info`` key for key differ (iSQRT-COV's and SVD-Pade's):
    not in their matrix function alone (loaded as iSQRT-COV with --sqrt svd, an SVD-Pade file is
    not its model); in their layer4 stride too, unless the file states it (both are built at it)."""
    stride = "" if info.last_stride_told else " layer4 stride (7x7 maps) and"
    return f"their matrix square roots differ, and SVD-Pade's{stride} centring"


def layer4_stride_told(loaded: StateDict, info: ModelInfo | None) -> tuple[int | None, str]:
    """The stride of layer4 that a fast-MPN-COV training file tells for the ResNet ``info`` describes,
    and what tells it: ``(stride, "arch" | "zoo" | "depth")``; ``(None, "open")`` where such a file of
    that code's heads could be either (at 50 / 101), ``(None, "")`` elsewhere (not such a file, no
    ResNet, or no file of that code): the registered model's. Its keys are the same either way:
    ``mpncovresnet*`` drops the last downsampling (stride 1, 14x14 features), while ``resnet*`` with
    any representation (fast-MPN-COV's and DifferentiableSVD's Basemodel) keeps torchvision's (2, 7x7).
    What tells: the file's ``arch``; else, for that code's heads, a ``features.8`` at 50 / 101
    (layer_reduce kept in the features: an mpncovresnet fine-tuned from the model zoo), or a depth
    of no mpncovresnet (only resnet* has these keys)."""
    if info is None or info.depth is None or loaded.layout.name != "fast-mpn-cov-training":
        return None, ""
    arch = str(loaded.metadata.get("arch"))
    if re.fullmatch(r"(mpncov)?resnet\d+", arch):
        return (1 if arch.startswith("mpncov") else 2), "arch"
    if info.head not in FAST_MPN_COV_HEADS:
        return None, ""
    zoo = any(k.startswith("features.8.") for k in loaded.layout_keys)  # resnet*'s features end at 7
    if info.depth in MPNCOV_RESNET_DEPTHS:
        return (1, "zoo") if zoo else (None, "open")
    return (None, "") if zoo else (2, "depth")


def stored_last_stride(loaded: StateDict, info: ModelInfo | None) -> int | None:
    """The stride of :func:`layer4_stride_told` (None: the registered model's)."""
    return layer4_stride_told(loaded, info)[0]


def unstated_stride_note(path: str | Path, loaded: StateDict, info: ModelInfo | None) -> str:
    """What a fast-MPN-COV training file of a ResNet that names no ``arch`` of that code leaves open,
    or tells by its depth alone (a bare state dict, as DifferentiableSVD's README saves one), and the
    stride its arch or its features.8 tell where it is not the registered model's: "" where they tell
    the registered model's, for a bare SVD-Pade file (its published file is one, at the stride its
    model has), for heads whose files that code does not write, and where the stride built is the
    registered model's with no other in fast-MPN-COV (a GAP ResNet-18: no mpncovresnet18)."""
    stride, told = layer4_stride_told(loaded, info)
    if told in ("arch", "zoo"):  # told, but another stride than the registered model's: said (helper-251)
        own = last_stride(info.head)
        if stride == own:
            return ""
        why = (f"names `arch` {str(loaded.metadata.get('arch'))!r}" if told == "arch" else
               "holds `features.8` (an mpncovresnet of fast-MPN-COV's model zoo, fine-tuned)")
        side = 14 // stride
        return (f"{path} {why}: layer4 is built at stride {stride} ({side}x{side} features at 224 px), as "
                f"fast-MPN-COV's training code builds it; {info.name}'s published network has stride {own}")
    if told not in ("depth", "open") or info.head == "svdpade":
        return ""
    own, arch, depth = last_stride(info.head), loaded.metadata.get("arch"), info.depth
    names = "names no `arch`" if arch is None else f"names `arch` {str(arch)!r}, which does not say"
    built = stride or own
    features = f"({14 // built}x{14 // built} features at 224 px)"
    if told == "depth":
        return "" if built == own else (
            f"{path} {names}: layer4 is built at stride {built} {features}, as fast-MPN-COV's training "
            f"code builds resnet{depth}, its only ResNet-{depth} with these keys (it has no "
            f"mpncovresnet{depth}); {info.name}'s published network has stride {own}")
    other, other_arch = (2, f"resnet{depth}") if own == 1 else (1, f"mpncovresnet{depth}")
    return (f"{path} {names}: layer4 is built at stride {built} {features}, as {info.name}'s published "
            f"network. fast-MPN-COV's training code saves the same keys for `arch` {other_arch} at stride "
            f"{other}: if it was trained so, save the weights as {{'arch': '{other_arch}', "
            "'state_dict': ...} and that stride is built")


def check_checkpoint(name: str, checkpoint: str | Path, *, sha256: str | None = None,
                     ema: bool = True, sqrt: str | None = None, ns_iters: int | None = None) -> int:
    """Check, without building the model's weights, that ``checkpoint`` loads strictly into the
    registered model ``name`` (with the matrix function ``sqrt`` / ``ns_iters`` asked for); return
    its number of classes.

    Reads the file (the sha256 is checked) and compares names and shapes with the model
    built on the meta device: what :func:`load_model` would refuse, this refuses with the same
    message (its hint names the root asked for: the model's own root was advised against
    ``--sqrt svd``).

    Raises:
        UnknownNameError, CheckpointError: as :func:`load_model`.
    """
    model_info(name)
    loaded = read_state_dict(checkpoint, sha256=sha256, ema=ema)
    with torch.device("meta"):
        model = _model_for(name, loaded, sqrt=sqrt, ns_iters=ns_iters)
    check_fit(model, loaded)
    return model.num_classes


# ------------------------------------------------------------------------- inspection


def wrong_types(state: Mapping[str, Any], tensors: Mapping[str, Any]) -> list[str]:
    """The entries of ``tensors`` that a model's ``state`` has in floating point, held as other types
    (an int64 or complex weight): ``["fc.weight (int64)"]``."""
    floating = {k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()}
    return [f"{key} ({str(value.dtype).removeprefix('torch.')})" for key, value in tensors.items()
            if key in floating and isinstance(value, torch.Tensor) and not value.is_floating_point()]


def inspect_checkpoint(path: str | Path) -> CheckpointInfo:
    """Describe a checkpoint: layout, best-matching registered model, sizes, sha256.

    Nothing is loaded into a real model: registered models are compared on the
    meta device.

    Raises:
        CheckpointError: the file cannot be read or holds no recognizable state dict.

    Example:
        >>> info = inspect_checkpoint("mpncovresnet50-15991845.pth")  # doctest: +SKIP
        >>> info.arch, info.reduction_dim, info.num_classes   # doctest: +SKIP
        ('resnet50-isqrt', 256, 1000)
    """
    check_path(path, "a checkpoint file")
    path = _checkpoint_path(path, "path", hint=": give the checkpoint file to inspect")
    try:
        loaded = read_state_dict(path)
    except UnknownLayoutError:  # a model you bring: its own names, described as they are
        loaded = read_state_dict(path, layout=AS_SAVED)
    tensors = loaded.tensors
    fits, closest = fitting_models(tensors, loaded.layout) if loaded.layout.markers else ([], None)
    num_classes, reduction_dim = checkpoint_dims(tensors)
    info = model_info(closest.name) if closest else None
    report = closest.report if closest else KeyReport()
    types: list[str] = []
    stride, told = layer4_stride_told(loaded, info)
    stride_note = ""
    if fits:  # what loading it into that model refuses, as eval would
        with torch.device("meta"):
            types = wrong_types(_model_for(fits[0], loaded).state_dict(), tensors)
        stride_note = unstated_stride_note(path, loaded, model_info(fits[0]))
        twin = next((name for name in fits[1:] if model_info(name).head == "svdpade"), None)
        if stride_note and twin:  # DifferentiableSVD's own file is such a one
            stride_note += f" (as {twin}, which they fit too, it is built at stride 2, DifferentiableSVD's)"
    return CheckpointInfo(
        path=str(path),
        sha256=loaded.sha256 or "",
        layout=loaded.layout.name,
        layout_description=loaded.layout.description,
        container="".join(f"[{k!r}]" for k in loaded.container) or "bare state dict",
        stripped=loaded.stripped,
        arch=fits[0] if fits else None,
        also_fits=fits[1:],
        closest=closest.name if closest else None,
        head=info.head if info else None,
        depth=info.depth if info else None,
        reduction_dim=reduction_dim,
        num_classes=num_classes,
        num_params=sum(v.numel() for k, v in tensors.items()
                       if isinstance(v, torch.Tensor) and not k.endswith(_BUFFER_SUFFIXES)),
        num_tensors=len(tensors),
        metadata=loaded.metadata,
        last_stride=stride,
        last_stride_told=told if stride is not None else "",
        stride_note=stride_note,
        missing=list(report.missing),
        unexpected=list(report.unexpected),
        mismatched=[f"{k}: checkpoint {list(c)} vs model {list(m)}"
                    for k, c, m in report.mismatched],
        nonfinite=loaded.nonfinite(),
        wrong_types=types,
    )
