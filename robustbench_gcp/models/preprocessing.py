"""The preprocessing of models you bring: what ``--preprocess`` (the library's ``preprocess=``) gives,
checked, laid on a module's own ``pretrained_cfg`` (this tool's :class:`PreprocessConfig`, a dict of
its keys, or timm's dict, read as timm evaluates the model), or on torchvision's published weights'
transforms, else ImageNet's (resize 256, crop 224, bilinear).

Example:
    >>> preprocess_config({"input_size": 288, "resize_size": 320}).input_size
    288
    >>> torchvision_preprocess("inception_v3").input_size
    299
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

from torch import nn

from robustbench_gcp.errors import ConfigError, check_integer
from robustbench_gcp.models.resnet import PreprocessConfig

__all__ = ["TRANSFORM_INPUT", "CropRefused", "check_preprocess_values", "differing_note", "has_own_cfg",
           "preprocess_config", "shared_config", "torchvision_configs", "torchvision_preprocess"]


def preprocess_config(given: PreprocessConfig | Mapping[str, Any] | None,
                      model: nn.Module | None = None, *,
                      base: PreprocessConfig | None = None, fit: bool = True,
                      timm_crop: bool = True) -> PreprocessConfig:
    """The preprocessing of a user's model: ``given`` (a config, or a dict of some of
    ``input_size``, ``resize_size``, ``interpolation``, ``mean``, ``std``), else the module's own
    ``pretrained_cfg`` when it is a :class:`PreprocessConfig`, a dict of those keys, or timm's dict
    (:func:`_timm_preprocess`), else ImageNet's. A dict's missing keys are those of ``base``, else
    of what the module would have without it (``mean=`` alone kept ImageNet's 256 / 224 for a
    module made for 73 / 64, which then erred on 60 % of its images). Checked whichever it is;
    ``fit=False`` leaves out whether a dict's sizes fit those below them (before the module is
    built, which may have sizes of its own: :func:`load_external` checks it then). A dict that
    gives both sizes takes the rest of a timm ``pretrained_cfg`` whose crop this tool cannot make
    (``timm_crop=False`` there: those sizes were refused, then refused again once given).

    Raises:
        ConfigError: an unknown key or a bad value.
    """
    what = "preprocess"
    known = {f.name for f in fields(PreprocessConfig)}
    if given is not None and not isinstance(given, (Mapping, PreprocessConfig)):  # a string: its letters
        raise ConfigError(f"`preprocess` should be a dict of {sorted(known)} (the CLI's --preprocess "
                          f"KEY=VALUE,... is the library's {{KEY: VALUE}}). Got {given!r}")
    if isinstance(given, Mapping) and not set(given) >= known and not set(given) - known:
        sized = {"input_size", "resize_size"} <= set(given)
        below = base if base is not None else preprocess_config(None, model, timm_crop=not sized)
        check_preprocess_values(given, lambda key: f"{what}['{key}']")  # each named as given
        laid = {**{f.name: getattr(below, f.name) for f in fields(PreprocessConfig)}, **given}
        fits = laid["resize_size"] >= laid["input_size"]
        if fit and not fits:  # one of them is the model's own
            mine = "input_size" if "input_size" in given else "resize_size"
            theirs = "resize_size" if mine == "input_size" else "input_size"
            size = f"{theirs} {laid[theirs]}"
            if base is not None or has_own_cfg(model):
                size = f"the model's own {size}"
            else:
                size += ", ImageNet's (the model has no pretrained_cfg)"
            raise ConfigError(f"preprocess {mine}={laid[mine]} does not fit {size}: the crop (input_size) "
                              f"is of the resized image (resize_size); give {theirs} too")
        if fits:
            given = laid  # (else the keys alone, checked: the built module's sizes decide, and
            # load_external lays them on those, or on ImageNet's where it has none, and checks the fit)
    if given is None:
        own = getattr(model, "pretrained_cfg", None)
        ours = isinstance(own, PreprocessConfig) or (  # or a dict of this tool's keys, as preprocess=
            isinstance(own, Mapping) and own and set(own) <= known
            and not isinstance(own.get("input_size"), (tuple, list)))
        if ours:
            given, what = own, "pretrained_cfg"
        elif isinstance(own, Mapping):  # timm's: read as timm evaluates the model (it was ignored)
            given, what = _timm_preprocess(model, timm_crop), "pretrained_cfg (timm's)"
        else:
            return PreprocessConfig()
    if isinstance(given, PreprocessConfig):  # checked as a dict is: it decides every image
        given = {f.name: getattr(given, f.name) for f in fields(PreprocessConfig)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(f"`{what}` has unknown keys {unknown}; expected some of {sorted(known)}")
    return PreprocessConfig(**check_preprocess_values(given, lambda key: f"{what}['{key}']"))


def has_own_cfg(model: nn.Module | None) -> bool:
    """Whether ``model`` carries preprocessing of its own (a ``pretrained_cfg``: this tool's
    config, or a dict of its keys or of timm's)."""
    return isinstance(getattr(model, "pretrained_cfg", None), (PreprocessConfig, Mapping))


def check_preprocess_values(given: Mapping[str, Any], name: Callable[[str], str]) -> dict[str, Any]:
    """``given``'s values checked one by one (sizes integers >= 32, the crop within the resize where
    both are given, mean and std three finite numbers, the std's positive, a known interpolation),
    ``name(key)`` naming each in a message: ``preprocess['std']`` to the library, ``std`` of
    ``--preprocess`` on the command line.

    Raises:
        ConfigError: a bad value.
    """
    from robustbench_gcp.data.loader import INTERPOLATIONS

    values = dict(given)
    for key in ("input_size", "resize_size"):
        if key in values:
            values[key] = check_integer(name(key), values[key], low=32)  # the tool's smallest crop
    if "input_size" in values and values.get("resize_size", math.inf) < values["input_size"]:
        raise ConfigError(f"`{name('input_size')}` {values['input_size']} should be <= "
                          f"`{name('resize_size')}` {values['resize_size']}: the crop is of the resized "
                          "image")
    for key in ("mean", "std"):
        if key in values:
            # "123" was taken digit by digit as (1, 2, 3), a set in its hash order
            if isinstance(values[key], (str, bytes, bytearray, set, frozenset, Mapping)):
                raise ConfigError(f"`{name(key)}` should hold 3 numbers (R, G, B). Got {values[key]!r}")
            try:
                values[key] = tuple(float(v) for v in values[key])
            except (TypeError, ValueError):
                raise ConfigError(f"`{name(key)}` should hold 3 numbers (R, G, B). "
                                  f"Got {values[key]!r}") from None
            if len(values[key]) != 3:
                raise ConfigError(f"`{name(key)}` should hold 3 numbers (R, G, B)")
            low = 0.0 if key == "std" else -math.inf  # images are divided by the std
            if not all(math.isfinite(v) and v > low for v in values[key]):
                wanted = "positive finite" if key == "std" else "finite"
                raise ConfigError(f"`{name(key)}` should hold 3 {wanted} numbers. Got {values[key]}")
    if "interpolation" in values and values["interpolation"] not in INTERPOLATIONS:
        raise ConfigError(f"`{name('interpolation')}` should be one of {', '.join(INTERPOLATIONS)}. "
                          f"Got {values['interpolation']!r}")
    return values


#: torchvision architectures whose published weights expect ``transform_input=True`` (torchvision
#: sets it whenever it loads them; their builders default to False)
TRANSFORM_INPUT = ("googlenet", "inception_v3")


def torchvision_preprocess(name: str) -> PreprocessConfig | None:
    """The preprocessing of torchvision's published weights of architecture ``name`` (their
    ``transforms``: inception_v3 342 / 299, efficientnet_b4 384 / 380 bicubic, swin_t 232 / 224
    bicubic ...) where all its weights share one; None (ImageNet's 256 / 224 bilinear) where they
    differ (resnet50's V1 256, V2 232: which the checkpoint is cannot be told) or it has none."""
    return shared_config(torchvision_configs(name))


def shared_config(configs: list[PreprocessConfig]) -> PreprocessConfig | None:
    """The one preprocessing of ``configs``; None where they differ or there are none."""
    return configs[0] if len(configs) == 1 else None


def torchvision_configs(name: str) -> list[PreprocessConfig]:
    """The distinct preprocessings of torchvision's published weights of ``name``, in their order
    (none when its weights are not plain classification transforms)."""
    import inspect

    import torchvision

    try:  # a private module of torchvision's: without it, ImageNet's preprocessing
        from torchvision.transforms._presets import ImageClassification

        weights = list(torchvision.models.get_model_weights(name))
    except (ImportError, ValueError, KeyError):
        return []
    defaults = {key: p.default for key, p in inspect.signature(ImageClassification).parameters.items()}
    configs = []
    for w in weights:
        given = getattr(w.transforms, "keywords", None)
        if getattr(w.transforms, "func", None) is not ImageClassification or given is None:
            return []
        chosen = {**defaults, **given}
        interpolation = getattr(chosen["interpolation"], "value", chosen["interpolation"])
        config = PreprocessConfig(int(chosen["crop_size"]), int(chosen["resize_size"]), str(interpolation),
                                  tuple(map(float, chosen["mean"])), tuple(map(float, chosen["std"])))
        if config not in configs:
            configs.append(config)
    return configs


def differing_note(name: str, configs: list[PreprocessConfig]) -> str:
    """The report's note for ``torchvision:name`` preprocessed as ImageNet by default because its
    published weights' ``configs`` (:func:`torchvision_configs`) differ ("" where they do not)."""
    if len(configs) < 2:
        return ""
    imagenet = PreprocessConfig()
    normalized = (imagenet.mean, imagenet.std)
    said = "; ".join(f"{c.resize_size} / {c.input_size} {c.interpolation}"
                     + (f" mean {c.mean} std {c.std}" if (c.mean, c.std) != normalized else "")
                     for c in configs)
    return (f"preprocessing: ImageNet's (resize 256, crop 224, bilinear); torchvision's published {name} "
            f"weights differ in theirs ({said}): give --preprocess (preprocess=) to match the checkpoint's")


class CropRefused(ConfigError):
    """A timm crop this tool cannot make: its message ends by asking for both sizes."""


def _timm_preprocess(model: nn.Module, crop: bool = True) -> dict[str, Any]:
    """A timm model's ``pretrained_cfg`` dict as :class:`PreprocessConfig` values, as timm's
    ``validate.py`` evaluates it: ``resolve_data_config(use_test_size=True)`` (its test size and crop
    where the weights have them), the shorter side resized to ``floor(size / crop_pct)``, a centre
    crop (``transforms_imagenet_eval``).

    Raises:
        ConfigError: a crop this tool's square centre crop cannot give (not square, or timm's
            ``squash`` / ``border`` modes), unless ``crop`` is False (the sizes are given: only the
            interpolation, mean and std are read; the sizes returned are then the crop's height's).
    """
    from timm.data import resolve_data_config

    config = resolve_data_config({}, model=model, use_test_size=True)
    size = config["input_size"]
    if not isinstance(size, (tuple, list)) or len(size) != 3:  # a dict of PreprocessConfig's keys
        raise ConfigError(f"`pretrained_cfg` is a dict, read as timm's, whose input_size is (channels, "
                          f"height, width). Got {size!r}: make it a robustbench_gcp.models.PreprocessConfig")
    _, height, width = size
    mode = config.get("crop_mode") or "center"
    if crop and (height != width or mode != "center"):
        raise CropRefused(f"`pretrained_cfg` (timm's) asks for {height}x{width} crops in crop mode "
                           f"'{mode}'; gcp-robust takes square centre crops: give both input_size and "
                           "resize_size")
    return {"input_size": height, "resize_size": math.floor(height / config["crop_pct"]),
            "interpolation": config["interpolation"], "mean": config["mean"], "std": config["std"]}
