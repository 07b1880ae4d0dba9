"""torchvision's AlexNet, registered as ``alexnet``: the baseline of mCE and mFR.

ImageNet-C errors and ImageNet-P flip rates are normalized by AlexNet's
(PROTOCOL.md sections 1-2). The model's layers are torchvision's own, built by its
class when the model is built (:func:`~robustbench_gcp.models.mobile.torchvision_model`),
so its state dict has torchvision's names (``features.0.weight`` .. ``classifier.6.bias``,
61,100,840 parameters) and the released ``alexnet-owt-7be5be79.pth`` loads
strictly from a local file (nothing is downloaded).

It has no global pooling head: its 6x6 feature map (adaptive average pooling,
an identity at 224 px) is flattened into three fully connected layers; its
head type is ``fc`` (:data:`~robustbench_gcp.models.heads.HEADS`), which
refuses ``sqrt``, ``ns_iters`` and ``reduction_dim`` as GAP models do.
Preprocessing is torchvision's for these weights: shorter side to 256
(bilinear), center crop 224, ImageNet mean and std.
"""

from __future__ import annotations

import torch
from torch import nn

from robustbench_gcp.errors import ConfigError, check_integer
from robustbench_gcp.models.heads import resolve_sqrt
from robustbench_gcp.models.mobile import torchvision_model
from robustbench_gcp.models.registry import register_model
from robustbench_gcp.models.resnet import PreprocessConfig

__all__ = ["ALEXNET_PREPROCESS", "AlexNet"]

#: torchvision's ``AlexNet_Weights.IMAGENET1K_V1.transforms()``
ALEXNET_PREPROCESS = PreprocessConfig(input_size=224, resize_size=256, interpolation="bilinear")

HEAD = "fc"


class AlexNet(nn.Module):
    """torchvision's AlexNet (its layers) with the project's model interface.

    Args:
        num_classes: outputs of the last layer (``classifier.6``).
        dropout: dropout of the classifier (training only).
        reduction_dim, sqrt, ns_iters: refused (ConfigError) unless None; they
            exist so that every registered model takes the same options.
        pretrained_cfg: preprocessing the model expects.

    Attributes:
        name: registry name (set by ``create_model``).
        num_classes, head_type (``fc``), reduction_dim (None), pretrained_cfg.

    Shape:
        ``(B, 3, H, W)`` ImageNet-normalized, H and W >= 63 -> logits ``(B, num_classes)``.

    Raises:
        ConfigError: ``reduction_dim``, ``sqrt`` or ``ns_iters`` given, or a bad ``num_classes``.

    Example:
        >>> model = AlexNet(num_classes=10).eval()
        >>> model(torch.zeros(1, 3, 224, 224)).shape
        torch.Size([1, 10])
    """

    def __init__(self, num_classes: int = 1000, *, dropout: float = 0.5,
                 reduction_dim: int | None = None, sqrt: str | None = None,
                 ns_iters: int | None = None, pretrained_cfg: PreprocessConfig | None = None):
        resolve_sqrt(HEAD, sqrt, ns_iters, owner="AlexNet")
        if reduction_dim is not None:
            raise ConfigError(
                "`reduction_dim` applies to covariance (GCP) models only; AlexNet has no "
                f"reduction. Got reduction_dim={reduction_dim!r}"
            )
        check_integer("num_classes", num_classes)
        super().__init__()
        torchvision_model(self, "AlexNet", num_classes=num_classes, dropout=dropout)
        self.name = ""
        self.num_classes = num_classes
        self.head_type = HEAD
        self.reduction_dim = None
        self.num_features = self.classifier[-1].in_features
        self.pretrained_cfg = pretrained_cfg or ALEXNET_PREPROCESS

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The five conv layers: ``(B, 3, H, W) -> (B, 256, h, w)`` (6x6 at 224 px)."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """6x6 adaptive average pooling, flatten, the fully connected layers.

        With ``pre_logits`` the output of the second hidden layer ``(B, 4096)``
        (before the last Linear), else logits.
        """
        x = torch.flatten(self.avgpool(x), 1)
        if pre_logits:
            for layer in self.classifier[:-1]:
                x = layer(x)
            return x
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def describe_pooling(self) -> str:
        """The pooling in words (for :func:`~robustbench_gcp.models.model_info`)."""
        size = self.avgpool.output_size
        return (f"no global pooling: {size[0]}x{size[1]} adaptive average pooling, flattened "
                f"({self.classifier[1].in_features} features) into 3 fully connected layers")

    def set_matrix_function(self, sqrt: str | None = None, ns_iters: int | None = None) -> None:
        """AlexNet has no matrix square root: anything but None raises ConfigError."""
        resolve_sqrt(self.head_type, sqrt, ns_iters, owner=self.name or "AlexNet")


@register_model("alexnet")
def alexnet(**kwargs) -> AlexNet:
    """AlexNet (torchvision; the ImageNet-C / ImageNet-P baseline, top-1 56.52)."""
    return AlexNet(**kwargs)
