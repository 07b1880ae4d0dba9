"""The two tiny models of the embedded demo: one GAP, one iSQRT-COV.

Scaled-down copies of the real ResNets, for 64 px images of the demo dataset
(:mod:`robustbench_gcp.data.demo_images`): one BasicBlock per stage, widths
16-32-64-96, the ImageNet stem (7x7/2 conv + 3x3/2 max pool), and, as in the
published GCP networks, layer4 at stride 1 for the covariance head (4x4
features, M = 16, against 2x2 for GAP; 7x7 and 14x14 at 224 px for ResNets).
The iSQRT-COV head reduces to d = 32 (528 pooled features). Preprocessing is
ImageNet's at a smaller scale: shorter side to 73 px, center crop 64 (crop
fraction 0.877, ImageNet's 224/256 = 0.875), ImageNet mean and std.

Their trained weights ship in ``robustbench_gcp/resources/demo/`` and are
made by ``scripts/train_demo.py``.
"""

from __future__ import annotations

from robustbench_gcp.data.demo_images import DEMO_CLASSES
from robustbench_gcp.models.registry import register_model
from robustbench_gcp.models.resnet import PreprocessConfig, ResNet, build_resnet

__all__ = ["DEMO_PREPROCESS", "DEMO_REDUCTION_DIM", "DEMO_WIDTHS"]

DEMO_WIDTHS = (16, 32, 64, 96)
DEMO_REDUCTION_DIM = 32
DEMO_PREPROCESS = PreprocessConfig(input_size=64, resize_size=73)


def _demo(head: str, **kwargs) -> ResNet:
    kwargs.setdefault("num_classes", len(DEMO_CLASSES))
    if head != "gap":
        kwargs.setdefault("reduction_dim", DEMO_REDUCTION_DIM)
    return build_resnet("basic", (1, 1, 1, 1), head=head, widths=DEMO_WIDTHS,
                        stem_width=DEMO_WIDTHS[0], pretrained_cfg=DEMO_PREPROCESS, **kwargs)


@register_model("demo-gap")
def demo_gap(**kwargs) -> ResNet:
    """Tiny ResNet (1 block per stage, 64 px) with global average pooling, for the demo."""
    return _demo("gap", **kwargs)


@register_model("demo-isqrt")
def demo_isqrt(**kwargs) -> ResNet:
    """Tiny ResNet (1 block per stage, 64 px) with iSQRT-COV pooling (d=32), for the demo."""
    return _demo("isqrt", **kwargs)
