"""Global pooling heads: GAP and the covariance (GCP) variants, chosen by name.

A head is the module between the last residual stage and the classifier. The
model builder takes its name (``head="isqrt"``) instead of there being one
model class per head:

========  ==========================================================  =====================
name      pooling                                                     matrix function
========  ==========================================================  =====================
gap       global average pooling                                      -
isqrt     1x1 conv (no bias) + BN + ReLU to d, covariance             Newton-Schulz, 5 iters
dropcov   same reduction, covariance (training-only ECA conv kept)    none
mpncov    same reduction with a conv bias, covariance                 eig, power 0.5
svdpade   same reduction, DifferentiableSVD's float64 covariance      SVD (float64)
fc        none: the model flattens its feature map into fc layers     -
========  ==========================================================  =====================

Every GCP head then vectorizes the upper triangle: ``d (d + 1) / 2`` features.
The reduction's activation is ReLU; the MobileNetV2 / ShuffleNetV2 iSQRT-COV
models (CVPR2020 GCP) use ReLU6 there (``create_pool(..., activation="relu6")``,
:data:`ACTIVATIONS`), which changes no weight.
``fc`` is the head type of models without global pooling (AlexNet): it has no
pooling module (:func:`create_pool` refuses it) and, like ``gap``, no matrix
square root.

Mixed precision: the reduction conv runs in whatever precision the caller
chose (autocast included); the covariance and matrix function always run with
autocast off in float32 (float64 for SVD); the pooled vector is float32 for half
features (float64 for float64 ones) and the models run their classifier on it
with autocast off (:func:`classify`): a covariance holds squares of the features,
which float16 (largest value 65504) would turn into inf, and its d (d + 1) / 2
inputs make it about 1 % of a ResNet-50's work in float32.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_gcp.engine.limits import MAX_NS_ITERS
from robustbench_gcp.errors import ConfigError, UnknownNameError, check_integer
from robustbench_gcp.models.matrix import (
    SQRT_METHODS,
    covariance,
    covariance_svd_pade,
    full_precision,
    matrix_sqrt,
    triu_vectorize,
)

__all__ = ["ACTIVATIONS", "HEADS", "CovariancePool", "GlobalAvgPool", "HeadSpec", "classify", "create_pool",
           "matrix_label", "matrix_tag", "resolve_sqrt"]

DEFAULT_NS_ITERS = 5


def matrix_tag(sqrt: str | None, ns_iters: int | None) -> str:
    """How a run's matrix function differs from its model's own, as labels show it (``sqrt=eig``,
    ``ns-iters=3``, ``sqrt=newton-schulz,ns-iters=3``; "" for the model's own). The arguments are
    as a run's identity holds them: None where they equal the model's own."""
    tags = [f"sqrt={sqrt}"] if sqrt else []
    if ns_iters is not None:
        tags.append(f"ns-iters={ns_iters}")
    return ",".join(tags)


def matrix_label(label: str, matrix: Mapping) -> str:
    """``label`` with the :func:`matrix_tag` of ``matrix`` appended (``resnet50-isqrt[sqrt=eig]``),
    unless it is the model's own function or the label already ends with the tag. ``matrix``: a
    run's identity, or anything with its ``sqrt`` and ``ns_iters`` (None or absent: the model's own)."""
    tag = matrix_tag(matrix.get("sqrt"), matrix.get("ns_iters"))
    return f"{label}[{tag}]" if tag and not label.endswith(f"[{tag}]") else label


#: activations of the 1x1 reduction: ReLU (ResNets) or ReLU6 (the MobileNetV2 / ShuffleNetV2 GCP
#: models); neither has weights, so the choice changes no key
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "relu6": nn.ReLU6}


def _named(option: str, cli: bool, value: object = None) -> str:
    """An override as messages name it: the library's argument (``sqrt``, ``sqrt='eig'``) or the
    command line's option (``--sqrt``, ``--sqrt eig``)."""
    name = "--" + option.replace("_", "-") if cli else option
    if value is None:
        return name
    return f"{name} {value}" if cli else f"{name}={value!r}"


def check_sqrt(sqrt: str | None, ns_iters: int | None, *, cli: bool = False) -> None:
    """Check a square-root choice: a name of SQRT_METHODS (or None) and iterations for NS only.
    ``cli``: messages name the command-line options (``--ns-iters``), not the arguments.

    Raises:
        UnknownNameError: unknown ``sqrt``.
        ConfigError: ``ns_iters`` not an integer in 1..:data:`~robustbench_gcp.engine.limits.MAX_NS_ITERS`,
            or given with another root.
    """
    if sqrt is not None and sqrt not in SQRT_METHODS:
        raise UnknownNameError("matrix square root", str(sqrt), SQRT_METHODS)
    if ns_iters is not None:
        check_integer(_named("ns_iters", cli), ns_iters, high=MAX_NS_ITERS)  # diverges past it
        if sqrt != "newton-schulz":
            raise ConfigError(
                f"`{_named('ns_iters', cli)}` applies to the newton-schulz square root only; this model "
                f"uses {sqrt or 'no square root'}. Pass {_named('sqrt', cli, 'newton-schulz')} as well."
            )


@dataclass(frozen=True)
class HeadSpec:
    """What a head name stands for.

    Attributes:
        name: registry suffix (``isqrt`` ...).
        covariance: whether it is a covariance (GCP) head.
        sqrt: default matrix square root (None: no root).
        reduction_bias: whether the 1x1 reduction conv has a bias.
        eca: whether it carries DropCov's training-only ECA conv.
        pooling: whether :func:`create_pool` builds a global pooling module for it
            (False for ``fc``: the model flattens its feature map itself).
        description: one line for tables.
        centring: how the covariance is computed: ``exact`` (:func:`covariance`) or
            ``svd-pade`` (DifferentiableSVD's, :func:`covariance_svd_pade`, whatever the root).
    """

    name: str
    covariance: bool
    sqrt: str | None = None
    reduction_bias: bool = False
    eca: bool = False
    pooling: bool = True
    description: str = ""
    centring: str = "exact"


#: the heads, in the order tables list them (and ties between equal key sets break)
HEADS: dict[str, HeadSpec] = {
    spec.name: spec
    for spec in (
        HeadSpec("gap", False, description="global average pooling"),
        HeadSpec("isqrt", True, "newton-schulz",
                 description="iSQRT-COV: covariance, Newton-Schulz square root (5 iterations)"),
        HeadSpec("dropcov", True, None, eca=True,
                 description="DropCov: plain covariance at evaluation (no square root)"),
        HeadSpec("mpncov", True, "eig", reduction_bias=True,
                 description="MPN-COV: covariance, exact square root by eigendecomposition"),
        HeadSpec("svdpade", True, "svd", centring="svd-pade",
                 description="SVD-Pade: covariance, exact square root by SVD in float64"),
        HeadSpec("fc", False, pooling=False,
                 description="no global pooling: feature map flattened into fully connected "
                             "layers (AlexNet)"),
    )
}


class GlobalAvgPool(nn.Module):
    """Global average pooling: ``(B, C, H, W) -> (B, C)`` (torchvision's avgpool + flatten)."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.out_features = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def describe(self) -> str:
        return "global average pooling"


class EcaLayer(nn.Module):
    """DropCov's channel-attention conv (``eca_layer.conv.weight``, shape [1, 1, 3]).

    DropCov uses it only in training (to set an adaptive channel-dropout rate);
    at evaluation it does nothing. It is kept as a real parameter so that
    DropCov checkpoints load strictly and parameter counts match the paper's code.
    """

    def __init__(self, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)


class CovariancePool(nn.Module):
    """Global covariance pooling with a 1x1 reduction and a swappable matrix square root.

    ``x -> ReLU(BN(conv1x1(x)))`` (``d`` channels; ReLU6 with ``activation="relu6"``)
    ``-> covariance -> sqrt ->
    upper triangle``. The square root can be swapped after construction (see
    :meth:`set_matrix_function`) without touching the weights.

    Args:
        in_channels: channels of the last stage (2048 for ResNet-50).
        reduction_dim: d, channels after the 1x1 reduction.
        sqrt: ``newton-schulz``, ``eig``, ``svd`` or None (plain covariance).
        ns_iters: Newton-Schulz iterations (None: 5; only with ``newton-schulz``).
        reduction_bias: give the reduction conv a bias (MPN-COV).
        eca: carry DropCov's training-only ECA conv.
        activation: of the reduction, a name of :data:`ACTIVATIONS` (``relu`` or ``relu6``).

    Raises:
        UnknownNameError: unknown ``sqrt`` or ``activation``.
        ConfigError: bad ``reduction_dim`` or ``ns_iters``.

    Shape:
        ``(B, in_channels, H, W) -> (B, d (d + 1) / 2)``.
    """

    def __init__(self, in_channels: int, reduction_dim: int, *, sqrt: str | None,
                 ns_iters: int | None = None, reduction_bias: bool = False, eca: bool = False,
                 activation: str = "relu", centring: str = "exact"):
        super().__init__()
        if centring not in ("exact", "svd-pade"):
            raise ConfigError(f"`centring` should be 'exact' or 'svd-pade'. Got {centring!r}")
        self.centring = centring
        check_integer("reduction_dim", reduction_dim)
        if activation not in ACTIVATIONS:
            raise UnknownNameError("reduction activation", str(activation), ACTIVATIONS)
        self.reduction_dim = reduction_dim
        self.activation = activation
        self.reduce = nn.Conv2d(in_channels, reduction_dim, 1, bias=reduction_bias)
        self.bn = nn.BatchNorm2d(reduction_dim)
        self.relu = ACTIVATIONS[activation](inplace=True)
        self.eca = EcaLayer() if eca else None
        self.out_features = reduction_dim * (reduction_dim + 1) // 2
        self.set_matrix_function(sqrt, ns_iters)
        nn.init.kaiming_normal_(self.reduce.weight, mode="fan_out", nonlinearity="relu")
        if reduction_bias:
            nn.init.zeros_(self.reduce.bias)

    def set_matrix_function(self, sqrt: str | None, ns_iters: int | None = None) -> None:
        """Choose the root: ``newton-schulz`` (with ``ns_iters``), ``eig``, ``svd`` or None."""
        check_sqrt(sqrt, ns_iters)
        self.sqrt = sqrt
        self.ns_iters = DEFAULT_NS_ITERS if ns_iters is None else ns_iters

    def describe(self) -> str:
        """The pooling in words, e.g. ``covariance d=256, newton-schulz sqrt (5 iterations)``
        (``covariance d=256, ReLU6 reduction, ...`` for the ReLU6 variant)."""
        if self.sqrt is None:
            root = "no square root"
        elif self.sqrt == "newton-schulz":
            root = f"newton-schulz sqrt ({self.ns_iters} iterations)"
        elif self.sqrt == "svd":
            root = "svd sqrt (float64)"
        else:
            root = "eig sqrt"
        act = ACTIVATIONS[self.activation].__name__
        act = "" if self.activation == "relu" else f"{act} reduction, "
        return f"covariance d={self.reduction_dim}, {act}{root}"

    def reduce_features(self, x: torch.Tensor) -> torch.Tensor:
        """The 1x1 reduction and its activation: ``(B, C, H, W) -> (B, d, H, W)``."""
        return self.relu(self.bn(self.reduce(x)))

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Covariance, square root and vectorization of reduced features ``(B, d, H, W)``.

        Runs with autocast off, in float32 (float64 for ``svd``); returns float32 for
        half ``x``, else the dtype of ``x`` (see :func:`classify`).
        """
        with full_precision(x.device):
            work = torch.float64 if self.sqrt == "svd" or x.dtype == torch.float64 \
                else torch.float32
            # the SVD-Pade head's as its authors computed it (float64), whatever the root
            y = covariance_svd_pade(x) if self.centring == "svd-pade" else covariance(x.to(work))
            if self.sqrt is not None:
                y = matrix_sqrt(y, self.sqrt, iters=self.ns_iters)
            return triu_vectorize(y).to(torch.promote_types(x.dtype, torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.reduce_features(x))


def classify(classifier: nn.Module, pooled: torch.Tensor, covariance: bool) -> torch.Tensor:
    """``classifier(pooled)``; for a ``covariance`` head, with autocast off (its float32 features
    stay float32: squares of the features can overflow float16), else as the caller chose."""
    if not covariance:
        return classifier(pooled)
    weight = next(classifier.parameters(), None)  # a model cast to half (.half()) stays half
    with full_precision(pooled.device):
        return classifier(pooled if weight is None else pooled.to(weight.dtype))


def resolve_sqrt(head: str, sqrt: str | None = None, ns_iters: int | None = None,
                 *, owner: str | None = None, cli: bool = False) -> str | None:
    """The square root a ``head`` uses given the overrides (None: the head's default).

    Args:
        head: one of :data:`HEADS`.
        sqrt: ``newton-schulz``, ``eig``, ``svd`` or None.
        ns_iters: Newton-Schulz iterations or None.
        owner: what to call the model in messages (default: "a '<head>' head").
        cli: messages name the command-line options (``--sqrt``), not the arguments.

    Raises:
        UnknownNameError: unknown head or ``sqrt``.
        ConfigError: ``sqrt`` / ``ns_iters`` given for a head without a square root
            (gap, dropcov), or ``ns_iters`` with a root other than newton-schulz.
    """
    if head not in HEADS:
        raise UnknownNameError("head", str(head), HEADS)
    spec = HEADS[head]
    owner = owner or f"a '{head}' head"
    given = [(option, value) for option, value in (("sqrt", sqrt), ("ns_iters", ns_iters))
             if value is not None]
    if given and spec.sqrt is None:
        option, value = given[0]
        why = ("its classifier was trained on the plain covariance, so a root would change "
               "what it sees rather than swap a matrix function"
               if spec.covariance else "it has no covariance matrix")
        raise ConfigError(
            f"`{_named(option, cli)}` cannot be used with {owner}: it has no matrix "
            f"square root ({why}). `{_named('sqrt', cli)}` and `{_named('ns_iters', cli)}` apply to "
            f"isqrt, mpncov and svdpade models. Got {_named(option, cli, value)}"
        )
    resolved = spec.sqrt if sqrt is None else sqrt
    check_sqrt(resolved, ns_iters, cli=cli)
    return resolved


def create_pool(head: str, in_channels: int, *, reduction_dim: int | None = None,
                sqrt: str | None = None, ns_iters: int | None = None,
                activation: str = "relu") -> nn.Module:
    """Build the pooling module of head ``head``.

    Args:
        head: one of :data:`HEADS`.
        in_channels: channels of the last stage.
        reduction_dim: d for GCP heads (default 256); must be None for ``gap``.
        sqrt: override of the head's square root (isqrt, mpncov, svdpade).
        ns_iters: Newton-Schulz iterations.
        activation: of a GCP head's reduction: ``relu`` (default) or ``relu6``
            (the MobileNetV2 / ShuffleNetV2 GCP models).

    Raises:
        UnknownNameError: unknown head, square root or activation.
        ConfigError: an option that the head does not have, or a head without a
            pooling module (``fc``).
    """
    sqrt = resolve_sqrt(head, sqrt, ns_iters)
    spec = HEADS[head]
    if not spec.pooling:
        pooled = ", ".join(name for name, other in HEADS.items() if other.pooling)
        raise ConfigError(
            f"head '{head}' has no pooling module: models of this head type flatten their "
            f"feature map themselves (alexnet). Use one of {pooled}. Got head={head!r}"
        )
    if not spec.covariance:
        if reduction_dim is not None:
            raise ConfigError(
                f"`reduction_dim` applies to covariance (GCP) models only; a '{head}' head has "
                f"no reduction. Got reduction_dim={reduction_dim!r}"
            )
        if activation != "relu":
            raise ConfigError(
                f"`activation` applies to the reduction of covariance (GCP) heads only; a "
                f"'{head}' head has no reduction. Got activation={activation!r}"
            )
        return GlobalAvgPool(in_channels)
    return CovariancePool(
        in_channels, 256 if reduction_dim is None else reduction_dim, sqrt=sqrt,
        ns_iters=ns_iters, reduction_bias=spec.reduction_bias, eca=spec.eca,
        activation=activation, centring=spec.centring,
    )
