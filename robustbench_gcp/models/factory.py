"""Creating models by name, describing them, and loading checkpoints into them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from torch import nn

from robustbench_gcp.errors import ConfigError
from robustbench_gcp.models.checkpoint import checkpoint_dims, load_strict, read_state_dict
from robustbench_gcp.models.heads import resolve_sqrt
from robustbench_gcp.models.registry import model_entrypoint

__all__ = ["ModelInfo", "create_model", "load_model", "model_info"]


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
                 sqrt: str | None = None, ns_iters: int | None = None) -> nn.Module:
    """A registered model with random weights, in training mode.

    Args:
        name: a name of :func:`list_models`, e.g. ``resnet50-isqrt``.
        num_classes: classifier outputs (None: the model's default, 1000).
        reduction_dim: d of a GCP head (None: the model's default, 256); GAP
            models and AlexNet refuse it.
        sqrt: ``newton-schulz``, ``eig`` or ``svd`` instead of the head's own
            square root (isqrt, mpncov and svdpade models).
        ns_iters: Newton-Schulz iterations (default 5).

    Raises:
        UnknownNameError: unknown model or square root.
        ConfigError: an option the model does not have (``sqrt`` for GAP,
            DropCov or AlexNet, ``reduction_dim`` for GAP or AlexNet, ``ns_iters``
            with an exact root).

    Example:
        >>> model = create_model("resnet18-isqrt", num_classes=10, reduction_dim=64)
        >>> model.fc.in_features
        2080
    """
    kwargs = {key: value for key, value in (("num_classes", num_classes),
                                             ("reduction_dim", reduction_dim),
                                             ("sqrt", sqrt), ("ns_iters", ns_iters))
              if value is not None}
    model = model_entrypoint(name)(**kwargs)
    model.name = name
    return model


@cache
def model_info(name: str) -> ModelInfo:
    """Describe a registered model without allocating its weights (meta device).

    Raises:
        UnknownNameError: unknown model.
    """
    entrypoint = model_entrypoint(name)
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


def load_model(name: str, checkpoint: str | Path | None = None, *,
               device: str | torch.device = "cpu", sha256: str | None = None,
               sqrt: str | None = None, ns_iters: int | None = None) -> nn.Module:
    """A registered model in eval mode on ``device``, with weights from ``checkpoint``.

    Every published layout is accepted (see :mod:`robustbench_gcp.models.checkpoint`);
    the width d and the number of classes are read from the file; loading is
    strict. Without a checkpoint the weights are random.

    The model takes ImageNet-normalized ``(B, 3, H, W)`` input and returns logits
    ``(B, num_classes)``. Attributes: ``name``, ``num_classes``, ``pretrained_cfg``
    (:class:`PreprocessConfig`), ``checkpoint_sha256`` (None without a checkpoint),
    ``forward_features`` / ``forward_head``.

    Args:
        name: registry name.
        checkpoint: path of a checkpoint file, or None.
        device: ``cpu``, ``cuda``, ``cuda:1``, ``mps`` or ``auto``.
        sha256: expected SHA-256 of the file (full, or a prefix of >= 8 hex digits).
        sqrt: evaluate a GCP model with another square root: ``newton-schulz``,
            ``eig`` or ``svd`` (None: the model's own; isqrt, mpncov, svdpade only).
        ns_iters: Newton-Schulz iterations (None: 5; with newton-schulz only).

    Raises:
        UnknownNameError: unknown model or square root.
        ConfigError: invalid option (``sqrt`` for GAP / DropCov / AlexNet, ``sha256``
            without a checkpoint, bad device ...).
        CheckpointError: unreadable file, hash mismatch, or weights that do not
            fit (the message names the registered model that they fit).

    Example:
        >>> model = load_model("resnet50-isqrt", "mpncovresnet50-15991845.pth")  # doctest: +SKIP
        >>> model = load_model("resnet50-isqrt", "r50.pth", sqrt="eig")  # doctest: +SKIP
    """
    from robustbench_gcp.engine.device import resolve_device

    device = resolve_device(device)
    info = model_info(name)  # checks the name and options before any file is read
    resolve_sqrt(info.head, sqrt, ns_iters, owner=name)
    if checkpoint is None:
        if sha256 is not None:
            raise ConfigError("`sha256` needs a checkpoint to check. Got sha256 without checkpoint")
        model = create_model(name, sqrt=sqrt, ns_iters=ns_iters)
        model.checkpoint_sha256 = None
    else:
        loaded = read_state_dict(checkpoint, sha256=sha256)
        num_classes, reduction_dim = checkpoint_dims(loaded.tensors)
        model = create_model(
            name, num_classes=num_classes, sqrt=sqrt, ns_iters=ns_iters,
            reduction_dim=reduction_dim if info.reduction_dim is not None else None,
        )
        load_strict(model, loaded)
        model.checkpoint_sha256 = loaded.sha256
    return model.eval().to(device)
