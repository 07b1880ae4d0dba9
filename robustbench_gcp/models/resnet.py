"""ResNet backbones with a pooling head chosen by name, and the registered variants.

One builder, :func:`build_resnet`, makes every variant. Module and parameter
names are torchvision's (``conv1``, ``bn1``, ``layer1`` .. ``layer4``, ``fc``,
blocks from ``torchvision.models.resnet``), so a GAP model's state dict is a
torchvision state dict. GCP heads live in ``global_pool`` (``global_pool.reduce``,
``global_pool.bn``, ``global_pool.eca.conv``).

GCP variants (PROTOCOL.md section 3) have layer4 at stride 1: 14x14 features
at 224 px (M = 196); layer4.0 keeps its 1x1 downsample conv, at stride 1. The
SVD-Pade ResNets keep torchvision's stride 2, as the published one was trained
(:func:`last_stride`); a fast-MPN-COV training file says which it is in its ``arch``
(:func:`robustbench_gcp.models.loading.stored_last_stride`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from robustbench_gcp.errors import ConfigError, UnknownNameError, check_integer
from robustbench_gcp.models.heads import (
    HEADS,
    CovariancePool,
    classify,
    create_pool,
    resolve_sqrt,
)
from robustbench_gcp.models.registry import register_model

__all__ = ["BLOCKS", "BasicBlock", "Bottleneck", "PreprocessConfig", "ResNet", "block_class", "build_resnet"]

#: the residual blocks by name: torchvision's ``BasicBlock`` and ``Bottleneck``, key for key
BLOCKS = ("basic", "bottleneck")


def _conv(inplanes: int, planes: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inplanes, planes, kernel, stride=stride, padding=kernel // 2, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and the shortcut (stride on the first): torchvision's ``BasicBlock``,
    its parameter names and arithmetic, so that its checkpoints load and compute the same."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1, self.bn1 = _conv(inplanes, planes, 3, stride), nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = _conv(planes, planes, 3), nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1, 3x3 (the stride: ResNet V1.5, as torchvision and the GCP papers' code) and 1x1
    convolutions, 4x wider out, and the shortcut: torchvision's ``Bottleneck`` key for key."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1, self.bn1 = _conv(inplanes, planes, 1), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = _conv(planes, planes, 3, stride), nn.BatchNorm2d(planes)
        self.conv3 = _conv(planes, planes * self.expansion, 1)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def block_class(block: str) -> type[nn.Module]:
    """The residual block class named ``block`` (one of :data:`BLOCKS`).

    The blocks are written here rather than imported from torchvision: importing
    ``torchvision.models`` takes 1.3 s (it imports ``torch._dynamo`` through ``torchvision.ops``),
    which every ResNet run paid before its first image, and a resumed one in a 4 s command.
    """
    if block not in BLOCKS:
        raise UnknownNameError("block", str(block), BLOCKS)
    return BasicBlock if block == "basic" else Bottleneck


#: depth -> (block, blocks per stage) of the standard ResNets
DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}


@dataclass(frozen=True)
class PreprocessConfig:
    """How images are prepared for a model (ImageNet defaults).

    Resize the shorter side to ``resize_size`` (``interpolation``), center-crop
    ``input_size``, scale to [0, 1], normalize with ``mean`` / ``std``.
    """

    input_size: int = 224
    resize_size: int = 256
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @property
    def crop_pct(self) -> float:
        """``input_size / resize_size`` (0.875 for ImageNet), timm's name for it."""
        return self.input_size / self.resize_size


class ResNet(nn.Module):
    """A ResNet whose global pooling is a constructor argument.

    Args:
        block: ``"basic"`` or ``"bottleneck"`` (torchvision's blocks).
        layers: blocks per stage, e.g. ``(3, 4, 6, 3)``.
        widths: planes per stage (torchvision: 64, 128, 256, 512).
        strides: stride of each stage; GCP ResNets use ``(1, 2, 2, 1)``.
        stem: ``"imagenet"`` (7x7/2 conv + 3x3/2 max pool) or ``"cifar"``
            (3x3/1 conv, no pooling) for small images.
        stem_width: channels of the stem conv.
        head: a name of :data:`~robustbench_gcp.models.heads.HEADS`.
        num_classes: classifier outputs.
        reduction_dim: d of GCP heads (None: 256); must be None for ``gap``.
        sqrt, ns_iters: override the head's matrix square root.
        in_chans: input channels.
        pretrained_cfg: preprocessing the model expects.

    Attributes:
        name: registry name (set by ``create_model``).
        num_classes, head_type, reduction_dim (None for GAP), pretrained_cfg.

    Shape:
        ``(B, in_chans, H, W)`` ImageNet-normalized -> logits ``(B, num_classes)``.
    """

    def __init__(self, block: str, layers: Sequence[int], *,
                 widths: Sequence[int] = (64, 128, 256, 512),
                 strides: Sequence[int] = (1, 2, 2, 2), stem: str = "imagenet",
                 stem_width: int = 64, head: str = "gap", num_classes: int = 1000,
                 reduction_dim: int | None = None, sqrt: str | None = None,
                 ns_iters: int | None = None, in_chans: int = 3,
                 pretrained_cfg: PreprocessConfig | None = None):
        super().__init__()
        block_cls = block_class(block)
        if not (len(layers) == len(widths) == len(strides)) or not layers:
            raise ConfigError(
                "`layers`, `widths` and `strides` should have one entry per stage. "
                f"Got {len(layers)}, {len(widths)} and {len(strides)}"
            )
        check_integer("num_classes", num_classes)
        self.name = ""
        self.num_classes = num_classes
        self.head_type = head
        self.block = block
        self.layers = tuple(layers)
        self.strides = tuple(strides)
        self.pretrained_cfg = pretrained_cfg or PreprocessConfig()

        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, stem_width, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        elif stem == "cifar":
            self.conv1 = nn.Conv2d(in_chans, stem_width, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            raise UnknownNameError("stem", str(stem), ("imagenet", "cifar"))
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        channels = stem_width
        self.stage_names = []
        stages = zip(layers, widths, strides, strict=True)
        for index, (blocks, planes, stride) in enumerate(stages, 1):
            stage, channels = _make_stage(block_cls, channels, planes, blocks, stride)
            self.add_module(f"layer{index}", stage)
            self.stage_names.append(f"layer{index}")
        self.num_features = channels
        self.global_pool = create_pool(head, channels, reduction_dim=reduction_dim, sqrt=sqrt,
                                       ns_iters=ns_iters)
        self.reduction_dim = getattr(self.global_pool, "reduction_dim", None)
        self.fc = nn.Linear(self.global_pool.out_features, num_classes)

        for name, module in self.named_modules():  # torchvision's initialization
            if getattr(module, "weight", None) is not None and module.weight.is_meta:
                continue  # shapes only (a checkpoint's check): meta's normal_ imports torch._dynamo, 1 s
            if isinstance(module, nn.Conv2d) and not name.startswith("global_pool"):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def depth(self) -> int:
        """Layers with weights: 18, 34, 50, 101 for the standard ResNets."""
        return sum(self.layers) * (3 if self.block == "bottleneck" else 2) + 2

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and residual stages: ``(B, 3, H, W) -> (B, C, h, w)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global pooling (and the classifier unless ``pre_logits``)."""
        x = self.global_pool(x)
        return x if pre_logits else classify(self.fc, x, isinstance(self.global_pool, CovariancePool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def set_matrix_function(self, sqrt: str | None = None, ns_iters: int | None = None) -> None:
        """Swap the matrix square root of a GCP model; None for both restores the default.

        Raises:
            ConfigError: ``sqrt`` / ``ns_iters`` for a GAP or DropCov model, or
                ``ns_iters`` without the Newton-Schulz root.
            UnknownNameError: unknown ``sqrt``.
        """
        resolved = resolve_sqrt(self.head_type, sqrt, ns_iters, owner=self.name or None)
        if isinstance(self.global_pool, CovariancePool):
            self.global_pool.set_matrix_function(resolved, ns_iters)


def _make_stage(block: type[nn.Module], inplanes: int, planes: int, blocks: int,
                stride: int) -> tuple[nn.Sequential, int]:
    """torchvision's ``_make_layer``: a 1x1 downsample when stride or width changes."""
    outplanes = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != outplanes:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, outplanes, 1, stride=stride, bias=False),
            nn.BatchNorm2d(outplanes),
        )
    modules = [block(inplanes, planes, stride, downsample)]
    modules += [block(outplanes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*modules), outplanes


def build_resnet(block: str, layers: Sequence[int], *, head: str = "gap",
                 strides: Sequence[int] | None = None, last: int | None = None, **kwargs) -> ResNet:
    """The one builder behind every registered ResNet.

    ``strides`` defaults to ``(1, 2, 2, 2)``, with the last one :func:`last_stride` of the
    head (``(1, 2, 2, 1)`` for most GCP heads), as the published networks have; ``last``
    sets the last one (a training file that says how its network was built). Other
    arguments are those of :class:`ResNet`.
    """
    if head not in HEADS:
        raise UnknownNameError("head", str(head), HEADS)
    if strides is None:
        strides = (1,) + (2,) * (len(layers) - 1)
        if (last_stride(head) if last is None else last) == 1:
            strides = strides[:-1] + (1,)
    return ResNet(block, layers, head=head, strides=strides, **kwargs)


def last_stride(head: str) -> int:
    """The stride of the last stage in the published ResNets with ``head``: 1 for the GCP
    networks (fast-MPN-COV's mpncovresnet, CVPR2020 GCP, DropCov drop the last downsampling:
    14x14 features at 224 px), 2 for GAP and for SVD-Pade (DifferentiableSVD's ResNet-50 is
    torchvision's resnet50, ``arch=resnet50`` in its train_resnet.sh: 7x7 features)."""
    return 1 if HEADS[head].covariance and head != "svdpade" else 2


def _standard(depth: int, head: str, **kwargs) -> ResNet:
    block, layers = DEPTHS[depth]
    return build_resnet(block, layers, head=head, **kwargs)


# --- registered variants: ResNet-18/34/50/101 x gap, isqrt, dropcov, mpncov, svdpade ---
# Published ImageNet top-1 (PyTorch) where known: PROTOCOL.md section 3.

@register_model("resnet18-gap")
def resnet18_gap(**kwargs) -> ResNet:
    """ResNet-18, global average pooling (torchvision)."""
    return _standard(18, "gap", **kwargs)


@register_model("resnet34-gap")
def resnet34_gap(**kwargs) -> ResNet:
    """ResNet-34, global average pooling (torchvision)."""
    return _standard(34, "gap", **kwargs)


@register_model("resnet50-gap")
def resnet50_gap(**kwargs) -> ResNet:
    """ResNet-50, global average pooling (torchvision; IMAGENET1K_V1 top-1 76.13)."""
    return _standard(50, "gap", **kwargs)


@register_model("resnet101-gap")
def resnet101_gap(**kwargs) -> ResNet:
    """ResNet-101, global average pooling (torchvision; IMAGENET1K_V1 top-1 77.37)."""
    return _standard(101, "gap", **kwargs)


@register_model("resnet18-isqrt")
def resnet18_isqrt(**kwargs) -> ResNet:
    """ResNet-18 iSQRT-COV (fast-MPN-COV, CVPR2020 GCP)."""
    return _standard(18, "isqrt", **kwargs)


@register_model("resnet34-isqrt")
def resnet34_isqrt(**kwargs) -> ResNet:
    """ResNet-34 iSQRT-COV (fast-MPN-COV, CVPR2020 GCP)."""
    return _standard(34, "isqrt", **kwargs)


@register_model("resnet50-isqrt")
def resnet50_isqrt(**kwargs) -> ResNet:
    """ResNet-50 iSQRT-COV (CVPR2020 GCP ResNet50_GCP_LRnorm: top-1 78.56; fast-MPN-COV model zoo: 78.29)."""
    return _standard(50, "isqrt", **kwargs)


@register_model("resnet101-isqrt")
def resnet101_isqrt(**kwargs) -> ResNet:
    """ResNet-101 iSQRT-COV (CVPR2020 GCP: top-1 79.47; fast-MPN-COV model zoo: 79.01)."""
    return _standard(101, "isqrt", **kwargs)


@register_model("resnet18-dropcov")
def resnet18_dropcov(**kwargs) -> ResNet:
    """ResNet-18 DropCov (NeurIPS 2022)."""
    return _standard(18, "dropcov", **kwargs)


@register_model("resnet34-dropcov")
def resnet34_dropcov(**kwargs) -> ResNet:
    """ResNet-34 DropCov (NeurIPS 2022)."""
    return _standard(34, "dropcov", **kwargs)


@register_model("resnet50-dropcov")
def resnet50_dropcov(**kwargs) -> ResNet:
    """ResNet-50 DropCov (NeurIPS 2022; top-1 78.19)."""
    return _standard(50, "dropcov", **kwargs)


@register_model("resnet101-dropcov")
def resnet101_dropcov(**kwargs) -> ResNet:
    """ResNet-101 DropCov (NeurIPS 2022; top-1 79.51)."""
    return _standard(101, "dropcov", **kwargs)


@register_model("resnet18-mpncov")
def resnet18_mpncov(**kwargs) -> ResNet:
    """ResNet-18 MPN-COV (ICCV2017): eigendecomposition square root."""
    return _standard(18, "mpncov", **kwargs)


@register_model("resnet34-mpncov")
def resnet34_mpncov(**kwargs) -> ResNet:
    """ResNet-34 MPN-COV (ICCV2017): eigendecomposition square root."""
    return _standard(34, "mpncov", **kwargs)


@register_model("resnet50-mpncov")
def resnet50_mpncov(**kwargs) -> ResNet:
    """ResNet-50 MPN-COV (ICCV2017): eigendecomposition square root."""
    return _standard(50, "mpncov", **kwargs)


@register_model("resnet101-mpncov")
def resnet101_mpncov(**kwargs) -> ResNet:
    """ResNet-101 MPN-COV (ICCV2017): eigendecomposition square root."""
    return _standard(101, "mpncov", **kwargs)


@register_model("resnet18-svdpade")
def resnet18_svdpade(**kwargs) -> ResNet:
    """ResNet-18 SVD-Pade (ICCV2021; layer4 stride 2): SVD square root in float64."""
    return _standard(18, "svdpade", **kwargs)


@register_model("resnet34-svdpade")
def resnet34_svdpade(**kwargs) -> ResNet:
    """ResNet-34 SVD-Pade (ICCV2021; layer4 stride 2): SVD square root in float64."""
    return _standard(34, "svdpade", **kwargs)


@register_model("resnet50-svdpade")
def resnet50_svdpade(**kwargs) -> ResNet:
    """ResNet-50 SVD-Pade (ICCV2021; layer4 stride 2): SVD square root in float64."""
    return _standard(50, "svdpade", **kwargs)


@register_model("resnet101-svdpade")
def resnet101_svdpade(**kwargs) -> ResNet:
    """ResNet-101 SVD-Pade (ICCV2021; layer4 stride 2): SVD square root in float64."""
    return _standard(101, "svdpade", **kwargs)
