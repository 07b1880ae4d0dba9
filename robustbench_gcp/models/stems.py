"""A model split at the output of its stem, where the GCP papers measure the loss landscape.

``split_at_stem(model)`` gives two functions with ``model(x) == rest(stem(x))`` for
ImageNet-normalized images ``x``. The stem, as in the authors' landscape code
(ZhangLi-CS/GCP_Optimization ``landscape/``):

- ResNet (the demo models and torchvision's own ResNets too): conv1, bn1, ReLU and max pool;
- MobileNetV2 (torchvision's too): the first conv-BN-ReLU6 block (``features[0]``);
- ShuffleNetV2 (torchvision's too): conv1 and max pool;
- DeiT (timm) and DeiT + DropCov: the token sequence entering the first block (tokens, class
  token and position embedding; timm's ``patch_drop`` and ``norm_pre`` are identities at
  evaluation).

Example:
    >>> from robustbench_gcp.models import create_model
    >>> model = create_model("demo-gap").eval()
    >>> split = split_at_stem(model)
    >>> x = torch.randn(1, 3, 64, 64)
    >>> torch.allclose(split.rest(split.stem(x)), model(x))
    True
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from robustbench_gcp.errors import ConfigError

__all__ = ["STEM_FAMILIES", "Stem", "has_stem", "no_stem_reason", "split_at_stem", "stem_family"]

#: the model families with a known stem, for messages
STEM_FAMILIES = ("resnet*, demo-*, mobilenetv2-*, shufflenetv2-*, deit-small-*, torchvision:resnet*, "
                 "torchvision:mobilenet_v2, torchvision:shufflenet_v2_*")


@dataclass(frozen=True)
class Stem:
    """``model(x) == rest(stem(x))``; ``where`` says where the split is, in words."""

    stem: Callable[[torch.Tensor], torch.Tensor]
    rest: Callable[[torch.Tensor], torch.Tensor]
    where: str


def _resnet(model) -> Stem:
    def stem(x):
        return model.maxpool(model.relu(model.bn1(model.conv1(x))))

    def rest(x):
        for name in model.stage_names:
            x = getattr(model, name)(x)
        return model.forward_head(x)

    return Stem(stem, rest, "after conv1, bn1, ReLU and max pool")


def _torchvision_resnet(model) -> Stem:
    """torchvision's own ResNet (``--model torchvision:resnet50``): the same stem, its own head."""
    def rest(x):
        x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
        return model.fc(torch.flatten(model.avgpool(x), 1))

    return dataclasses.replace(_resnet(model), rest=rest)


def _torchvision_mobilenetv2(model) -> Stem:
    """torchvision's own MobileNetV2 (``--model torchvision:mobilenet_v2``): the same stem, its own
    head."""
    def rest(x):
        return model.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(model.features[1:](x), 1), 1))

    return dataclasses.replace(_mobilenetv2(model), rest=rest)


def _torchvision_shufflenetv2(model) -> Stem:
    """torchvision's own ShuffleNetV2 (``--model torchvision:shufflenet_v2_x1_0``): the same stem,
    its own head."""
    def rest(x):
        return model.fc(model.conv5(model.stage4(model.stage3(model.stage2(x)))).mean([2, 3]))

    return dataclasses.replace(_shufflenetv2(model), rest=rest)


def _mobilenetv2(model) -> Stem:
    return Stem(lambda x: model.features[0](x),
                lambda x: model.forward_head(model.features[1:](x)),
                "after the first conv-BN-ReLU6 block (features[0])")


def _shufflenetv2(model) -> Stem:
    def rest(x):
        return model.forward_head(model.conv5(model.stage4(model.stage3(model.stage2(x)))))

    return Stem(lambda x: model.maxpool(model.conv1(x)), rest, "after conv1 and max pool")


def _timm_vit(model) -> Stem:
    def stem(x):
        return model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))

    return Stem(stem, lambda x: model.forward_head(model.norm(model.blocks(x))),
                "the token sequence entering the first block")


def _dropcov_vit(model) -> Stem:
    def stem(x):
        tokens, grid = model.visual_tokens(x)
        cls = model.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype)
        return torch.cat([cls, tokens], 1) + model.position_embedding(grid).to(tokens.dtype)

    def rest(x):
        for block in model.blocks:
            x = block(x)
        return model.forward_head(model.norm(x))

    return Stem(stem, rest, "the token sequence entering the first block")


def _own(model: nn.Module) -> nn.Module:
    """The module a model you bring holds (its stem is that module's), else ``model``."""
    from robustbench_gcp.models.external import BroughtModel

    return model.net if isinstance(model, BroughtModel) else model


#: the methods a family's forward pass runs that its split does not: a subclass that changes one
#: is not split (its own forward would be skipped: a landscape of another function)
_FORWARD = ("forward", "forward_features", "_forward_impl")


def _candidate(model: nn.Module) -> tuple[Callable[[nn.Module], Stem], type | None] | None:
    """The split of ``model``'s family and the class whose forward pass it follows (None for timm's
    ViTs, found by their attributes), whether or not ``model`` changes that forward pass."""
    from robustbench_gcp.models.deit import DeiTDropCov
    from robustbench_gcp.models.mobile import MobileNetV2, ShuffleNetV2
    from robustbench_gcp.models.resnet import ResNet

    for cls, split in ((ResNet, _resnet), (MobileNetV2, _mobilenetv2), (ShuffleNetV2, _shufflenetv2),
                       (DeiTDropCov, _dropcov_vit)):
        if isinstance(model, cls):
            return split, cls
    torchvision = sys.modules.get("torchvision")  # not imported: the model is none of its
    if torchvision is not None:
        for cls, split in ((torchvision.models.ResNet, _torchvision_resnet),
                           (torchvision.models.MobileNetV2, _torchvision_mobilenetv2),
                           (torchvision.models.ShuffleNetV2, _torchvision_shufflenetv2)):
            if isinstance(model, cls):
                return split, cls
    if all(hasattr(model, a) for a in ("patch_embed", "_pos_embed", "norm_pre", "blocks", "norm")):
        return _timm_vit, None
    return None


def _family(model: nn.Module) -> Callable[[nn.Module], Stem] | None:
    found = _candidate(_own(model))
    if found is None or _forward_change(_own(model), found[1]) is not None or _hooks(model, found[0]):
        return None
    return found[0]


#: a module's hooks that only its own call runs (the split calls its children, never it)
_HOOKS = {"_forward_pre_hooks": "forward pre-hook", "_forward_hooks": "forward hook",
          "_backward_pre_hooks": "backward pre-hook", "_backward_hooks": "backward hook"}
#: the containers of a family whose children its split calls, never the container itself: a hook on
#: one would be skipped (MobileNetV2's features, sliced at the stem: helper-292)
_BYPASSED = {_mobilenetv2: ("features",), _torchvision_mobilenetv2: ("features",)}


def _hooks(model: nn.Module, split: Callable[[nn.Module], Stem]) -> str | None:
    """Where a hook is that the split at the stem (``split``) would skip, in words (``a forward
    hook registered on the model itself``: a temperature, a normalization of its outputs; or on a
    container whose children the split calls one by one), else None."""
    own = _own(model)
    places = {id(m): (m, "the model itself") for m in (own, model)}
    for name in _BYPASSED.get(split, ()):
        container = getattr(own, name, None)
        if isinstance(container, nn.Module):
            places.setdefault(id(container), (container, f"{name}, whose parts the split calls one by one"))
    for module, where in places.values():
        for attribute, kind in _HOOKS.items():
            if getattr(module, attribute, None):
                return f"a {kind} registered on {where}"
    return None


def _forward_change(model: nn.Module, family: type | None) -> str | None:
    """``Class.method`` of :data:`_FORWARD` that ``model``'s class defines otherwise than
    ``family`` (timm's ViTs, ``family`` None: a method not defined by timm), else None."""
    for name in _FORWARD:
        method = getattr(type(model), name, None)
        if family is not None:
            same = method is getattr(family, name, None)
        else:
            same = method is None or getattr(method, "__module__", "").startswith("timm.")
        if not same:
            return f"{type(model).__name__}.{name}"
    return None


def no_stem_reason(model: nn.Module) -> str:
    """Why ``model`` has no known stem, for messages (after "model 'name' ")."""
    found = _candidate(_own(model))
    change = _forward_change(_own(model), found[1]) if found else None
    if change:
        return (f"changes the forward pass of its family ({change}), which the split at the stem "
                "would skip")
    if found and (hook := _hooks(model, found[0])):
        return f"has {hook}, which the split at the stem would skip"
    return f"has no known stem; models with one: {STEM_FAMILIES}"


def has_stem(model: nn.Module) -> bool:
    """Whether :func:`split_at_stem` knows ``model``'s stem."""
    return _family(model) is not None


def stem_family(model: nn.Module) -> str | None:
    """The family whose stem ``model`` has: ``resnet``, ``torchvision_resnet``, ``mobilenetv2``,
    ``torchvision_mobilenetv2``, ``shufflenetv2``, ``torchvision_shufflenetv2``, ``timm_vit``,
    ``dropcov_vit`` (None: no known stem)."""
    family = _family(model)
    return family.__name__.lstrip("_") if family is not None else None


def split_at_stem(model: nn.Module) -> Stem:
    """``model`` split at the output of its stem (see the module docstring).

    Raises:
        ConfigError: a model without a known stem (the message names the families that have one).
    """
    from robustbench_gcp.models.external import BroughtModel

    family = _family(model)
    if family is None:
        name = getattr(model, "name", None) or type(model).__name__
        raise ConfigError(f"`--landscape-at stem`: model '{name}' {no_stem_reason(model)}. Use "
                          "--landscape-at pixels for any model")
    split = family(_own(model))
    if isinstance(model, BroughtModel):  # its code's exceptions, as its forward pass gives them
        return Stem(functools.partial(model.run_code, split.stem),
                    functools.partial(model.run_code, split.rest), split.where)
    return split
