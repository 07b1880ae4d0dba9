"""Creating registered models by name and describing them.

Nothing here reads files: checkpoints are turned into state dicts by
:mod:`robustbench_gcp.models.checkpoint` and loaded into the models made here by
:func:`robustbench_gcp.models.loading.load_model`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch
from torch import nn

from robustbench_gcp.errors import ConfigError
from robustbench_gcp.models import info_cache
from robustbench_gcp.models.heads import HEADS
from robustbench_gcp.models.registry import model_entrypoint

__all__ = ["ModelInfo", "create_model", "model_info"]


@dataclass(frozen=True)
class ModelInfo:
    """A registered model at its default sizes.

    Attributes:
        name: registry name.
        depth: 18, 34, 50, 101 ... (None for models that are not ResNets).
        head: ``gap``, ``isqrt``, ``dropcov``, ``mpncov``, ``svdpade``, or ``fc`` (no
            global pooling: AlexNet).
        num_params: parameters at the default d and number of classes.
        input_size: side of the square input it expects (224 for ImageNet).
        reduction_dim: default d (None for GAP).
        num_classes: default number of classes.
        pooling: the pooling and matrix function in words.
        description: first line of the entry point's docstring.
    """

    name: str
    depth: int | None
    head: str
    num_params: int
    input_size: int
    reduction_dim: int | None
    num_classes: int
    pooling: str
    description: str


def create_model(name: str, *, num_classes: int | None = None, reduction_dim: int | None = None,
                 sqrt: str | None = None, ns_iters: int | None = None,
                 last_stride: int | None = None) -> nn.Module:
    """A registered model with random weights, in training mode.

    Args:
        name: a name of :func:`list_models`, e.g. ``resnet50-isqrt``.
        num_classes: classifier outputs (None: the model's default, 1000).
        reduction_dim: d of a GCP head (None: the model's default, 256); GAP
            models and AlexNet refuse it.
        sqrt: ``newton-schulz``, ``eig`` or ``svd`` instead of the head's own
            square root (isqrt, mpncov and svdpade models).
        ns_iters: Newton-Schulz iterations (default 5).
        last_stride: stride of a ResNet's last stage, 1 or 2 (None: the published network's,
            :func:`~robustbench_gcp.models.resnet.last_stride`).

    Raises:
        UnknownNameError: unknown model or square root.
        ConfigError: an option the model does not have (``sqrt`` for GAP,
            DropCov or AlexNet, ``reduction_dim`` for GAP or AlexNet, ``ns_iters``
            with an exact root), or a ``last_stride`` other than 1 or 2.

    Example:
        >>> model = create_model("resnet18-isqrt", num_classes=10, reduction_dim=64)
        >>> model.fc.in_features
        2080
    """
    if last_stride is not None and (isinstance(last_stride, bool) or last_stride not in (1, 2)):
        raise ConfigError(f"`last_stride` should be 1 or 2. Got {last_stride!r}")  # any other was 2
    kwargs = {key: value for key, value in (("num_classes", num_classes),
                                             ("reduction_dim", reduction_dim),
                                             ("sqrt", sqrt), ("ns_iters", ns_iters),
                                             ("last", last_stride))
              if value is not None}
    try:
        model = model_entrypoint(name)(**kwargs)
    except TypeError as error:  # a builder without that stage (MobileNet, DeiT ...)
        if last_stride is None or "'last'" not in str(error):
            raise
        raise ConfigError(f"`last_stride` applies to the ResNets; {name} has no such stage") from None
    model.name = name
    return model


@cache
def model_info(name: str) -> ModelInfo:
    """Describe a registered model without allocating its weights (meta device), or as a disk
    cache kept it (:mod:`robustbench_gcp.models.info_cache`).

    Raises:
        UnknownNameError: unknown model.
    """
    entrypoint = model_entrypoint(name)
    if not info_cache.cacheable(entrypoint):  # a model registered from outside the package
        return _describe(name, entrypoint)
    kept = info_cache.cached(name, _CACHED_TYPES)
    if kept is not None and _plausible(name, kept):  # described before, by this code and libraries
        return ModelInfo(**kept)
    info = _describe(name, entrypoint)
    info_cache.keep(name, info)
    return info


#: the fields of a cached :class:`ModelInfo` and their JSON types
_CACHED_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "depth": (int, type(None)), "head": (str,), "num_params": (int,), "input_size": (int,),
    "reduction_dim": (int, type(None)), "num_classes": (int,), "pooling": (str,), "description": (str,),
}


def _plausible(name: str, entry: dict) -> bool:
    """A cached description that could be this model's: its name, a known head, positive sizes
    (a damaged or foreign file is passed over, not believed: the head decides a run's identity)."""
    return (entry["name"] == name and entry["head"] in HEADS and entry["num_params"] > 0
            and entry["input_size"] > 0 and entry["num_classes"] > 0)


def _describe(name: str, entrypoint) -> ModelInfo:
    """The description of ``name``, from the model built on the "meta" device."""
    with torch.device("meta"):
        model = create_model(name)
    describe = getattr(model, "describe_pooling", None)  # models without a global_pool module
    pooling = describe() if describe is not None else model.global_pool.describe()
    doc = (entrypoint.__doc__ or "").strip().splitlines()
    return ModelInfo(
        name=name,
        depth=getattr(model, "depth", None),
        head=model.head_type,
        num_params=sum(p.numel() for p in model.parameters()),
        input_size=model.pretrained_cfg.input_size,
        reduction_dim=model.reduction_dim,
        num_classes=model.num_classes,
        pooling=pooling,
        description=doc[0] if doc else "",
    )
