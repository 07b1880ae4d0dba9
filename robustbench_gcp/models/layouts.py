"""The published state-dict layouts (:data:`LAYOUTS`) and the renaming of their keys onto the
project's module names (:func:`detect_layout`, :func:`remap`): step 4 of
:mod:`robustbench_gcp.models.checkpoint`, decided by key names only, never by file names.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import torch

from robustbench_gcp.errors import CheckpointError

__all__ = ["AS_SAVED", "LAYOUTS", "Layout", "UnknownLayoutError", "detect_layout", "refuse_collisions",
           "remap", "under_one_prefix"]


@dataclass(frozen=True)
class Layout:
    """A published state-dict layout and how it maps onto the project's names.

    Attributes:
        name: short id shown to users.
        description: where files of this layout come from.
        markers: key prefixes (after stripping wrappers) that identify it.
        renames: ``(old prefix, new prefix)`` pairs; first match wins, keys that
            match none are kept (and show up as unexpected if they do not fit).
        not_heads: heads of which no file of this layout was published, where such a file
            fits one key for key (an iSQRT-COV file fits its SVD-Pade twin): refused.
    """

    name: str
    description: str
    markers: tuple[str, ...]
    renames: tuple[tuple[str, str], ...] = ()
    not_heads: tuple[str, ...] = ()


#: how the checkpoint of a model you bring is read: the file's own names, nothing renamed
#: (:mod:`robustbench_gcp.models.external`; ``inspect`` describes such a file this way)
AS_SAVED = Layout("as-saved", "the module's own key names (a model you brought: nothing renamed)", ())

#: the layouts, in detection order (the first whose markers occur wins)
LAYOUTS: tuple[Layout, ...] = (
    # MobileNetV2 / ShuffleNetV2 files: first, since their other keys carry the markers of
    # torchvision-alexnet (classifier.1.), fast-mpn-cov-training (features.) and torchvision (conv1.)
    Layout(
        "gcp-optimization",
        "CVPR2020 GCP MobileNetV2 / ShuffleNetV2: dimension_reduction.0/1, classifier.1 or fc",
        ("dimension_reduction.",),
        (
            ("dimension_reduction.0.", "global_pool.reduce."),
            ("dimension_reduction.1.", "global_pool.bn."),
        ),
    ),
    # AlexNet's features.1 is a ReLU: features.1.conv. is MobileNetV2's first inverted residual
    Layout(
        "torchvision-mobilenetv2",
        "torchvision MobileNetV2 names (also gcp-robust ones): features.N, classifier.1",
        ("features.1.conv.",),
    ),
    Layout(
        "deit",
        "facebookresearch/deit / timm VisionTransformer names: patch_embed, blocks.N, norm, head "
        "(deit_small_patch16_224-cd65a155.pth)",
        ("patch_embed.",),
    ),
    # before fast-mpn-cov-training, whose `classifier.` marker its keys also have
    Layout(
        "dropcov-vit",
        "DropCov DeiT (mingzeG/DropCov Transformers, timm train.py file): visual_tokens, blocks.N, "
        "classifier.cls_fc / visual_fc",
        ("visual_tokens.",),
    ),
    # before fast-mpn-cov-training, whose `features.` marker its keys also have; the
    # training layout's classifier is one Linear (`classifier.weight`), never `classifier.1.`
    Layout(
        "torchvision-alexnet",
        "torchvision AlexNet names: features.0-10, classifier.1/4/6 (alexnet-owt-7be5be79.pth)",
        ("classifier.1.", "classifier.4."),
    ),
    Layout(
        "fast-mpn-cov-training",
        "fast-MPN-COV training file: features.N / representation.conv_dr_block.N / classifier",
        ("features.", "representation.", "classifier."),
        (
            ("features.0.", "conv1."),
            ("features.1.", "bn1."),
            ("features.4.", "layer1."),
            ("features.5.", "layer2."),
            ("features.6.", "layer3."),
            ("features.7.", "layer4."),
            # arch mpncovresnet* fine-tuned from the model zoo keeps layer_reduce(_bn) in features
            ("features.8.", "global_pool.reduce."),
            ("features.9.", "global_pool.bn."),
            ("representation.conv_dr_block.0.", "global_pool.reduce."),
            ("representation.conv_dr_block.1.", "global_pool.bn."),
            ("classifier.", "fc."),
        ),
    ),
    Layout(
        "layer-reduce",
        "fast-MPN-COV model zoo / CVPR2020 GCP / DropCov: layer_reduce, layer_reduce_bn, fc",
        ("layer_reduce.", "layer_reduce_bn.", "eca_layer."),
        (
            ("layer_reduce.", "global_pool.reduce."),
            ("layer_reduce_bn.", "global_pool.bn."),
            ("eca_layer.", "global_pool.eca."),
        ),
        # DifferentiableSVD saved its ResNets with fast-MPN-COV's training code (features.N)
        not_heads=("svdpade",),
    ),
    Layout(
        "gcp-robust",
        "the GCP models this tool saves: global_pool.reduce, global_pool.bn, fc",
        ("global_pool.",),
    ),
    Layout(
        "torchvision-shufflenetv2",
        "torchvision ShuffleNetV2 names: conv1, stage2-4, conv5, fc",
        ("stage2.",),
    ),
    Layout(
        "torchvision",
        "torchvision ResNet names (also gcp-robust GAP models): conv1, bn1, layer1-4, fc",
        ("conv1.", "layer1."),
    ),
)


def _by_new_name(old_keys: Collection[str], new_keys: Sequence[str]) -> dict[str, list[str]]:
    """The old keys that become each new one, in order."""
    sources: dict[str, list[str]] = {}
    for old, new in zip(old_keys, new_keys):
        sources.setdefault(new, []).append(old)
    return sources


def refuse_collisions(old_keys: Collection[str], new_keys: Sequence[str], how: str) -> None:
    """Two keys that become one (``fc.weight`` beside ``module.fc.weight``) are two weights for
    one tensor: the later silently replaced the earlier (the ``module.`` copy, zeros, was loaded).

    Raises:
        CheckpointError: naming the first such keys and how many more there are.
    """
    clashes = [(new, olds) for new, olds in _by_new_name(old_keys, new_keys).items() if len(olds) > 1]
    if clashes:
        new, olds = clashes[0]
        others = len(clashes) - 1
        more = f" (and {others} more such name{'s' * (others > 1)})" if others else ""
        raise CheckpointError(f"keys {' and '.join(repr(k) for k in olds)} both become {new!r} {how}{more}: "
                              "the file holds two weights for one tensor; keep one set of keys")


class UnknownLayoutError(CheckpointError):
    """The keys of a state dict are none of the published layouts' (a model you bring keeps its
    own: :data:`AS_SAVED`)."""


def detect_layout(keys) -> Layout:
    """The first layout of :data:`LAYOUTS` whose markers start some key.

    Raises:
        CheckpointError: no layout matches (the message shows the first keys).
    """
    keys = list(keys)
    for layout in LAYOUTS:
        if any(k.startswith(layout.markers) for k in keys):
            return layout
    raise UnknownLayoutError(
        f"unrecognized state-dict layout ({len(keys)} tensors; first keys: "
        f"{', '.join(keys[:5]) or 'none'}). Supported: "
        + "; ".join(layout.description for layout in LAYOUTS)
    )


def under_one_prefix(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Layout, str] | None:
    """A layout's keys, each under one more name (a PyTorch Lightning module's ``model.``, a
    wrapper's ``backbone.``): that name stripped, the layout and the prefix (None: they are not)."""
    first = {key.split(".", 1)[0] for key in tensors}
    if len(first) == 1 and all("." in key for key in tensors):
        prefix = f"{first.pop()}."
        inner = {key[len(prefix):]: value for key, value in tensors.items()}
        try:
            return inner, detect_layout(inner), prefix
        except UnknownLayoutError:
            pass
    return None


def remap(state_dict: Mapping[str, torch.Tensor], layout: Layout) -> dict[str, torch.Tensor]:
    """Rename keys by ``layout.renames`` (the first matching prefix); others are kept.

    Raises:
        UnknownLayoutError: two of the layout's names become one (another network has its names).
        CheckpointError: a key is renamed to one the file has already (``layer_reduce.weight``
            beside ``global_pool.reduce.weight``).
    """
    def renamed(key: str) -> str:
        old, new = next(((old, new) for old, new in layout.renames if key.startswith(old)), ("", ""))
        return new + key[len(old):]

    keys = [renamed(key) for key in state_dict]
    for new, olds in _by_new_name(state_dict, keys).items():
        # two of the layout's names for one tensor: another network's (fast-MPN-COV's VGG's features.8)
        renamed_here = [old for old in olds if old != new]
        if len(renamed_here) > 1:
            raise UnknownLayoutError(
                f"keys {' and '.join(map(repr, renamed_here))} would both be {new!r} in the {layout.name} "
                f"layout ({layout.description}): the file is another network with names of that layout, "
                "which no registered model is (a model you bring: --model package.module:callable "
                "--checkpoint FILE loads it by its own names)")
    refuse_collisions(state_dict, keys, f"once renamed from the {layout.name} layout")
    return dict(zip(keys, state_dict.values()))
