"""MobileNetV2 and ShuffleNetV2 1.0x with a pooling head chosen by name (GAP or iSQRT-COV).

The backbones' layers are torchvision's own modules, built by
``torchvision.models.MobileNetV2`` / ``ShuffleNetV2`` and adopted in the same order, so
their keys are torchvision's, key for key: ``features.N`` and ``classifier.1`` for
MobileNetV2; ``conv1``, ``stage2`` .. ``stage4``, ``conv5`` and ``fc`` for ShuffleNetV2.
A GAP model's state dict is a torchvision state dict (3,504,872 and 2,278,604
parameters). torchvision is imported when a model is built, not with the registry
(:func:`torchvision_model`).

The GCP variants follow the CVPR2020 GCP code (ZhangLi-CS/GCP_Optimization,
PROTOCOL.md section 5): at the 7x7 map of the last 1x1 conv (MobileNetV2
``features``, 1280 channels; ShuffleNetV2 ``conv5``, 1024) a 1x1 conv to d = 256
(no bias), BatchNorm and **ReLU6**, then the iSQRT-COV pooling of
:class:`~robustbench_gcp.models.heads.CovariancePool` (centred covariance over
M = 49 positions, Newton-Schulz with 5 iterations, upper triangle of 32,896
values) and the classifier: Dropout(0.2) + Linear as ``classifier.1``
(MobileNetV2) or ``fc`` (ShuffleNetV2); 35,449,064 and 34,413,260 parameters. The
reduction lives in ``global_pool.reduce`` / ``global_pool.bn`` as in the GCP
ResNets; the published training files name it ``dimension_reduction.0`` /
``dimension_reduction.1`` (layout ``gcp-optimization`` of
:mod:`robustbench_gcp.models.checkpoint`).

Preprocessing is torchvision's for these weights and the GCP code's: shorter side
to 256 (bilinear), center crop 224, ImageNet mean and std.

Example:
    >>> from robustbench_gcp.models import create_model
    >>> model = create_model("shufflenetv2-isqrt", num_classes=10).eval()
    >>> model(torch.zeros(1, 3, 224, 224)).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from robustbench_gcp.errors import UnknownNameError, check_integer
from robustbench_gcp.models.heads import (
    HEADS,
    CovariancePool,
    classify,
    create_pool,
    resolve_sqrt,
)
from robustbench_gcp.models.registry import register_model
from robustbench_gcp.models.resnet import PreprocessConfig

__all__ = ["MobileNetV2", "ShuffleNetV2", "torchvision_model"]

#: the activation of the GCP heads' 1x1 reduction in the CVPR2020 GCP MobileNetV2 / ShuffleNetV2
REDUCTION_ACTIVATION = "relu6"


def _pool(head: str, in_channels: int, reduction_dim: int | None, sqrt: str | None,
          ns_iters: int | None) -> nn.Module:
    """The pooling module of ``head`` on ``in_channels``; GCP reductions end in ReLU6."""
    if head not in HEADS:
        raise UnknownNameError("head", str(head), HEADS)
    activation = REDUCTION_ACTIVATION if HEADS[head].covariance else "relu"
    return create_pool(head, in_channels, reduction_dim=reduction_dim, sqrt=sqrt,
                       ns_iters=ns_iters, activation=activation)


def torchvision_model(owner: nn.Module, name: str, *args, **kwargs) -> nn.Module:
    """Build torchvision's ``torchvision.models.<name>(*args, **kwargs)`` and give its layers
    to ``owner`` (an initialized ``nn.Module``) in torchvision's order: ``owner``'s state dict
    is then torchvision's, key for key. Returns the torchvision model (its other attributes).

    torchvision is imported here, when a model is built: its import takes over a second,
    which commands that only read the registry need not pay.
    """
    import torchvision.models

    model = getattr(torchvision.models, name)(*args, **kwargs)
    for child, module in model.named_children():
        owner.add_module(child, module)
    return model


class _PooledHead(nn.Module):
    """The project's model interface over a torchvision CNN with ``global_pool``.

    Subclasses set ``global_pool`` and the classifier (:meth:`classifier_layer`),
    and implement :meth:`forward_features`.
    """

    depth = None  # not a ResNet

    def _set_interface(self, head: str, num_classes: int,
                       pretrained_cfg: PreprocessConfig | None) -> None:
        self.name = ""
        self.num_classes = num_classes
        self.head_type = head
        self.reduction_dim = getattr(self.global_pool, "reduction_dim", None)
        self.pretrained_cfg = pretrained_cfg or PreprocessConfig()

    def classifier_layer(self) -> nn.Module:  # pragma: no cover - overridden
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global pooling (and the classifier unless ``pre_logits``)."""
        x = self.global_pool(x)
        return x if pre_logits else classify(self.classifier_layer(), x,
                                             isinstance(self.global_pool, CovariancePool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def set_matrix_function(self, sqrt: str | None = None, ns_iters: int | None = None) -> None:
        """Swap the matrix square root of a GCP model; None for both restores the default.

        Raises:
            ConfigError: ``sqrt`` / ``ns_iters`` for a GAP model, or ``ns_iters``
                without the Newton-Schulz root.
            UnknownNameError: unknown ``sqrt``.
        """
        resolved = resolve_sqrt(self.head_type, sqrt, ns_iters, owner=self.name or None)
        if isinstance(self.global_pool, CovariancePool):
            self.global_pool.set_matrix_function(resolved, ns_iters)


class MobileNetV2(_PooledHead):
    """torchvision's MobileNetV2 (width 1.0; its layers) with the pooling head as an argument.

    Args:
        head: ``gap`` (torchvision's model) or a GCP head (``isqrt``: the CVPR2020 GCP
            model, ReLU6 reduction).
        num_classes: classifier outputs (``classifier.1``).
        reduction_dim: d of a GCP head (None: 256); must be None for ``gap``.
        sqrt, ns_iters: override the head's matrix square root.
        dropout: before the classifier (training only; 0.2 in both codes).
        pretrained_cfg: preprocessing the model expects.

    Attributes:
        name, num_classes, head_type, reduction_dim (None for GAP), pretrained_cfg,
        num_features (1280), depth (None).

    Shape:
        ``(B, 3, H, W)`` ImageNet-normalized -> logits ``(B, num_classes)``; the
        features are ``(B, 1280, H/32, W/32)`` (7x7 at 224 px).
    """

    def __init__(self, *, head: str = "gap", num_classes: int = 1000,
                 reduction_dim: int | None = None, sqrt: str | None = None,
                 ns_iters: int | None = None, dropout: float = 0.2,
                 pretrained_cfg: PreprocessConfig | None = None):
        check_integer("num_classes", num_classes)
        pool = _pool(head, 1280, reduction_dim, sqrt, ns_iters)
        super().__init__()
        self.num_features = torchvision_model(self, "MobileNetV2", num_classes=num_classes,
                                              dropout=dropout).last_channel
        self.global_pool = pool
        if pool.out_features != self.classifier[1].in_features:
            linear = nn.Linear(pool.out_features, num_classes)
            nn.init.normal_(linear.weight, 0, 0.01)  # torchvision's and the GCP code's init
            nn.init.zeros_(linear.bias)
            self.classifier[1] = linear
        self._set_interface(head, num_classes, pretrained_cfg)

    def classifier_layer(self) -> nn.Module:
        return self.classifier

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``features``: ``(B, 3, H, W) -> (B, 1280, h, w)``."""
        return self.features(x)


class ShuffleNetV2(_PooledHead):
    """torchvision's ShuffleNetV2 (its layers) with the pooling head as an argument.

    Args:
        head: ``gap`` (torchvision's model) or a GCP head (``isqrt``: the CVPR2020 GCP
            model, ReLU6 reduction).
        stages_repeats, stages_out_channels: torchvision's (1.0x by default).
        num_classes: classifier outputs (``fc``).
        reduction_dim: d of a GCP head (None: 256); must be None for ``gap``.
        sqrt, ns_iters: override the head's matrix square root.
        pretrained_cfg: preprocessing the model expects.

    Attributes:
        name, num_classes, head_type, reduction_dim (None for GAP), pretrained_cfg,
        num_features (1024), depth (None).

    Shape:
        ``(B, 3, H, W)`` ImageNet-normalized -> logits ``(B, num_classes)``; the
        features (after ``conv5``) are ``(B, 1024, H/32, W/32)``.
    """

    def __init__(self, *, head: str = "gap",
                 stages_repeats: Sequence[int] = (4, 8, 4),
                 stages_out_channels: Sequence[int] = (24, 116, 232, 464, 1024),
                 num_classes: int = 1000, reduction_dim: int | None = None,
                 sqrt: str | None = None, ns_iters: int | None = None,
                 pretrained_cfg: PreprocessConfig | None = None):
        check_integer("num_classes", num_classes)
        pool = _pool(head, stages_out_channels[-1], reduction_dim, sqrt, ns_iters)
        super().__init__()
        torchvision_model(self, "ShuffleNetV2", list(stages_repeats), list(stages_out_channels),
                          num_classes=num_classes)
        self.num_features = stages_out_channels[-1]
        self.global_pool = pool
        if pool.out_features != self.fc.in_features:
            self.fc = nn.Linear(pool.out_features, num_classes)
        self._set_interface(head, num_classes, pretrained_cfg)

    def classifier_layer(self) -> nn.Module:
        return self.fc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``conv1``, max pool, ``stage2`` .. ``stage4``, ``conv5``: ``(B, 3, H, W) ->
        (B, 1024, h, w)``."""
        x = self.maxpool(self.conv1(x))
        return self.conv5(self.stage4(self.stage3(self.stage2(x))))


# --- registered variants (published ImageNet top-1: GCP_Optimization README) ---

@register_model("mobilenetv2-gap")
def mobilenetv2_gap(**kwargs) -> MobileNetV2:
    """MobileNetV2, global average pooling (torchvision)."""
    return MobileNetV2(head="gap", **kwargs)


@register_model("mobilenetv2-isqrt")
def mobilenetv2_isqrt(**kwargs) -> MobileNetV2:
    """MobileNetV2 iSQRT-COV (CVPR2020 GCP; ReLU6 reduction at the 7x7 map)."""
    return MobileNetV2(head="isqrt", **kwargs)


@register_model("shufflenetv2-gap")
def shufflenetv2_gap(**kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x, global average pooling (torchvision)."""
    return ShuffleNetV2(head="gap", **kwargs)


@register_model("shufflenetv2-isqrt")
def shufflenetv2_isqrt(**kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x iSQRT-COV (CVPR2020 GCP; ReLU6 reduction after conv5)."""
    return ShuffleNetV2(head="isqrt", **kwargs)
