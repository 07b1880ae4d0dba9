"""Models the registry does not know: any ``nn.Module`` a user brings.

Three ways in, all ending in a :class:`BroughtModel` holding the module, with the attributes the
engine reads (``name``, ``num_classes``, ``pretrained_cfg``, ``head_type``) beside it:

- ``torchvision:<name>``: any torchvision classification architecture
  (``torchvision.models.get_model(name, weights=None)``), e.g. a GAP baseline of any family;
- ``package.module:callable``: a callable (no arguments) that returns an ``nn.Module``;
- a module object, from the library (``evaluate(model=net, name="my-gcp")``).

A checkpoint is loaded strictly with the file's own key names: the inner dict is picked and
``module.`` / ``_orig_mod.`` are stripped as for registry models, but nothing is renamed (a
user's module defines its names). Weights are identified by a hash of the state dict
(:func:`state_dict_hash`), so the same weights reuse the store and changed weights never
pass for the old ones.

Example:
    >>> source = external_source("torchvision:resnet18")
    >>> net = source.build()
    >>> output_classes(net, source.preprocess.input_size, source.ref)
    1000
"""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustbench_gcp.engine.device import out_of_memory
from robustbench_gcp.errors import (
    ConfigError,
    GcpRobustError,
    ModelCodeError,
    UnknownNameError,
    check_integer,
    listed,
    suggest,
)
from robustbench_gcp.models.checkpoint import AS_SAVED, read_state_dict
from robustbench_gcp.models.resnet import PreprocessConfig
from robustbench_gcp.models.weights_hash import module_hash

__all__ = ["BroughtModel", "ExternalSource", "external_source", "is_external", "load_external",
           "module_source", "output_classes", "preprocess_config", "state_dict_hash"]

TORCHVISION = "torchvision:"
#: how a run's identity names the weights of a model you bring: the hash of its state dict
STATE_DICT_SHA256 = "state-dict-sha256-"


def is_external(name: str) -> bool:
    """Whether ``name`` refers to a model outside the registry (``x:y``)."""
    return ":" in name


@dataclass(frozen=True)
class ExternalSource:
    """How to build a model the registry does not know.

    Attributes:
        ref: what the user wrote (``torchvision:resnet18``, ``my_pkg.nets:gcp_net``), or
            ``module:<name>`` for a module object; the ``arch`` of its runs.
        build: makes the module (random or the callable's own weights).
        preprocess: resize, crop and normalization (ImageNet's unless given).
        random_init: whether ``build`` gives random weights (torchvision architectures):
            then, as for registry models, a checkpoint or ``--random-weights`` is needed.
        takes_classes: ``build`` takes ``num_classes=`` (torchvision architectures: a checkpoint's
            classifier says how many, e.g. 100 for CIFAR-100).
        own_preprocess: none, or some keys only, were given: the built module's own
            ``pretrained_cfg`` (a :class:`PreprocessConfig`, a dict of its keys, or timm's dict)
            wins over ``preprocess`` when it has one, under the keys given (``preprocess_given``).
        note: what reports should say of the preprocessing chosen (a torchvision architecture
            whose published weights differ in theirs), or "".
    """

    ref: str
    build: Callable[..., nn.Module] = field(compare=False)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    random_init: bool = False
    takes_classes: bool = False
    own_preprocess: bool = False
    note: str = field(default="", compare=False)
    preprocess_given: Mapping[str, Any] | None = field(default=None, compare=False)


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
            if base is not None or _has_own_cfg(model):
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


def _has_own_cfg(model: nn.Module | None) -> bool:
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
    return _shared(_torchvision_configs(name))


def _shared(configs: list[PreprocessConfig]) -> PreprocessConfig | None:
    """The one preprocessing of ``configs``; None where they differ or there are none."""
    return configs[0] if len(configs) == 1 else None


def _torchvision_configs(name: str) -> list[PreprocessConfig]:
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


def _not_found_hint(top: str) -> str:
    """Where Python looks for a user's module: the gcp-robust command does not import from the
    working folder (only ``python -m`` does), so "run from that folder" led nowhere."""
    here = Path.cwd()
    if (here / f"{top}.py").is_file() or (here / top).is_dir():
        return (f"; {top} is in this folder, which the gcp-robust command does not import from: "
                "PYTHONPATH=. gcp-robust ...")
    return "; put its folder on PYTHONPATH (PYTHONPATH=/path/to/folder gcp-robust ...)"


def _differing_note(name: str, configs: list[PreprocessConfig]) -> str:
    """The report's note for ``torchvision:name`` preprocessed as ImageNet by default because its
    published weights' ``configs`` (:func:`_torchvision_configs`) differ ("" where they do not)."""
    if len(configs) < 2:
        return ""
    imagenet = PreprocessConfig()
    normalized = (imagenet.mean, imagenet.std)
    said = "; ".join(f"{c.resize_size} / {c.input_size} {c.interpolation}"
                     + (f" mean {c.mean} std {c.std}" if (c.mean, c.std) != normalized else "")
                     for c in configs)
    return (f"preprocessing: ImageNet's (resize 256, crop 224, bilinear); torchvision's published {name} "
            f"weights differ in theirs ({said}): give --preprocess (preprocess=) to match the checkpoint's")


class _CropRefused(ConfigError):
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
        raise _CropRefused(f"`pretrained_cfg` (timm's) asks for {height}x{width} crops in crop mode "
                           f"'{mode}'; gcp-robust takes square centre crops: give both input_size and "
                           "resize_size")
    return {"input_size": height, "resize_size": math.floor(height / config["crop_pct"]),
            "interpolation": config["interpolation"], "mean": config["mean"], "std": config["std"]}


def external_source(ref: str, preprocess: PreprocessConfig | Mapping | None = None) -> ExternalSource:
    """Resolve ``torchvision:<name>`` or ``package.module:callable`` (imported now; nothing built).

    Raises:
        UnknownNameError: not a torchvision classification architecture.
        ConfigError: the module cannot be imported, or has no such callable.
    """
    if ref.startswith(TORCHVISION):
        import torchvision

        name = ref.removeprefix(TORCHVISION)
        available = torchvision.models.list_models(module=torchvision.models)
        if name not in available:
            raise UnknownNameError("torchvision classification model", name, available)
        # as torchvision builds them for its published weights (same keys either way: strict loading
        # could not tell, and those weights gave other logits without the input transform)
        # init_weights: their builders' default, said so that they do not warn the user about it
        options = {"transform_input": True, "init_weights": True} if name in TRANSFORM_INPUT else {}
        published = _torchvision_configs(name)  # read once
        shared = _shared(published)
        # the keys not given: those of the published weights' preprocessing
        chosen = preprocess_config(preprocess if preprocess is not None else shared, base=shared)
        if name.startswith("vit_"):  # its position embeddings are of the input size (SWAG's: 384, 518)
            options["image_size"] = chosen.input_size

        def build(**sizes) -> nn.Module:
            return torchvision.models.get_model(name, weights=None, **options, **sizes)

        note = _differing_note(name, published) if preprocess is None else ""  # given: the user chose
        return ExternalSource(ref, build, chosen, random_init=True, takes_classes=True, note=note)
    module_name, _, attribute = ref.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"`--model {ref}`: expected package.module:callable or torchvision:<name>")
    if module_name.endswith(".py") or "/" in module_name or "\\" in module_name:
        path = Path(module_name)  # a file, as a shell names it: Python imports module names
        folder = "." if str(path.parent) in ("", ".") else str(path.parent)
        stem = path.stem if path.suffix == ".py" else path.name
        raise ConfigError(f"`--model {ref}`: '{module_name}' is a file's path, and --model takes a module's "
                          f"name: PYTHONPATH={folder} gcp-robust ... --model {stem}:{attribute}")
    # imported as `python -c "import m"` would: a script that parses its command line when imported
    # read gcp-robust's (its usage said "usage: gcp-robust ... --lr LR", above our own error). What it
    # prints is not captured: a logging.basicConfig() at import would keep writing to the capture.
    argv = sys.argv
    sys.argv = [module_name]
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as error:  # noqa: BLE001 - any import failure is the user's module's
        hint = (_not_found_hint(module_name.split(".")[0])
                if isinstance(error, ModuleNotFoundError) and error.name == module_name.split(".")[0] else
                _EXITED if isinstance(error, SystemExit) else "")
        raise ConfigError(f"`--model {ref}`: cannot import module '{module_name}': "
                          f"{type(error).__name__}: {error}{hint}") from None
    finally:
        sys.argv = argv
    target: Any = module
    for part in attribute.split("."):
        target = getattr(target, part, None)
    if target is None:
        own = sorted(name for name, value in vars(module).items()  # its own callables, not imported ones
                     if not name.startswith("_") and callable(value)
                     and getattr(value, "__module__", None) == module.__name__)
        raise ConfigError(f"`--model {ref}`: module '{module_name}' ({module.__file__}) has no "
                          f"'{attribute}'.{suggest(attribute, own) if own else ''}")
    if not callable(target):
        raise ConfigError(f"`--model {ref}`: '{attribute}' is {_kind(target)}, not a "
                          "callable that returns an nn.Module")

    def build() -> nn.Module:
        try:
            made = target()
        except (Exception, SystemExit) as error:  # noqa: BLE001 - the user's code failed: say where
            raise ConfigError(f"`--model {ref}`: {attribute}() raised {type(error).__name__}: "
                              f"{error}{_EXITED if isinstance(error, SystemExit) else ''}") from None
        if not isinstance(made, nn.Module):
            alone = ": return the module alone" if isinstance(made, (tuple, list)) else ""
            raise ConfigError(f"`--model {ref}`: {attribute}() returned {_kind(made)}, not a "
                              f"torch.nn.Module{alone}")
        return made

    some = preprocess if isinstance(preprocess, Mapping) else None  # the module's own cfg fills the rest
    return ExternalSource(ref, build, preprocess_config(preprocess, fit=some is None),
                          own_preprocess=preprocess is None or some is not None, preprocess_given=some)


#: the hint for a user's module that exits (sys.exit, argparse) while imported or building the model
_EXITED = ("; it exits instead of returning (a training script that parses its command line when "
           "imported? put that under `if __name__ == \"__main__\":`)")


def _kind(value: Any) -> str:
    """What a value is, by type alone (a module's repr runs to thousands of lines): ``an int``,
    ``a tuple (ResNet, NoneType)``, ``None``."""
    if value is None:
        return "None"
    name = type(value).__name__
    text = f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"
    if isinstance(value, (tuple, list)) and value:
        shown = ", ".join(type(item).__name__ for item in value[:4])
        text += f" ({shown}{', ...' if len(value) > 4 else ''})"
    return text


def said_as(ref: str) -> str:
    """How an error names a model: ``--model REF`` as the command line gave it, ``model 'NAME'`` for
    a module object the library was given (``module:NAME``, which no command takes)."""
    return f"model {ref.partition(':')[2]!r}" if ref.startswith("module:") else f"`--model {ref}`"


def module_source(module: nn.Module, name: str,
                  preprocess: PreprocessConfig | Mapping | None = None) -> ExternalSource:
    """A module object as a model source (the library's ``evaluate(model=net, name=...)``)."""
    if not isinstance(module, nn.Module):
        raise ConfigError(f"`model` should be a model name or a torch.nn.Module. Got a "
                          f"{type(module).__name__}")
    config = preprocess_config(preprocess, module)  # a BroughtModel's: what it was evaluated with
    while isinstance(module, BroughtModel):  # one the library returned: the module it holds
        module = module.net
    return ExternalSource(f"module:{name}", lambda: module, config)


def output_classes(model: nn.Module, input_size: int, ref: str) -> int:
    """The number of classes of ``model``: the width of its output for a batch of 2 seeded random
    images, and of 1 (the first alone: a ``squeeze()`` drops its batch axis) (``model`` is put in
    eval mode; one whose outputs depend on the batch or on the calls before is refused).

    Raises:
        ConfigError: the output is not a (batch, classes) tensor of floating-point logits.
    """
    return probe_output(model, input_size, ref)[0]


def probe_output(model: nn.Module, input_size: int, ref: str) -> tuple[int, bool]:
    """:func:`output_classes`, and whether the outputs look like probabilities, not logits: every
    one >= 0 and each image's summing to 1 (a softmax at the end)."""
    model.eval()
    _refuse_training(model, ref, "eval() leaves {} in training mode (a train() of its own that does not "
                                 "pass the mode on?)")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    # seeded, of another value each (black images hid statistics over the batch), float32 as the images
    # are (a float64 default dtype made a float64 model pass); a copy for each pass (a model may write
    # into its input, as the engine allows)
    images = torch.randn(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(0),
                         dtype=torch.float32).to(device)
    pair = _probe_pass(model, images.clone(), ref)
    sums = pair.detach().double().sum(dim=1)
    probabilities = bool((pair >= 0).all()) and bool(((sums - 1).abs() <= 1e-3).all())
    classes = int(pair.shape[1])
    alone = _probe_pass(model, images[:1].clone(), ref, classes)
    _check_fixed(model, pair, alone, _probe_pass(model, images.clone(), ref, classes), ref=ref)
    return classes, probabilities


def _probe_pass(model: nn.Module, images: torch.Tensor, ref: str, classes: int | None = None) -> torch.Tensor:
    """``model``'s output for ``images``, checked: (batch, classes) floating-point logits.

    Raises:
        ConfigError: the forward pass failed (or exited), or its output is not such logits.
    """
    n, _, size, _ = images.shape
    batch = f"({n}, 3, {size}, {size}) batch"
    try:
        with torch.no_grad():
            out = model(images)
    except (Exception, SystemExit) as error:  # noqa: BLE001 - the user's forward failed
        dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()} - {torch.float32}
        hint = (f" (its weights are {', '.join(sorted(map(str, dtypes)))}, the images float32: return "
                "the model in float32, .float(); --amp then runs its operators in half precision where "
                "they allow)" if dtypes else "; it exits instead of returning"
                if isinstance(error, SystemExit) else "")
        raise ConfigError(f"{said_as(ref)}: the forward pass of a {batch} failed: {_raised(error)}"
                          f"{hint}") from None
    if (not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != n or out.shape[1] < 2
            or out.shape[1] != (classes or out.shape[1])):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"{said_as(ref)}: the output for a {batch} is {shape}, not ({n}, classes) logits")
    if not out.is_floating_point():
        raise ConfigError(f"{said_as(ref)}: the output for a {batch} is {out.dtype}, not floating-point "
                          "logits")
    return out


def _named(names: list[str]) -> str:
    return listed([f"'{n}'" for n in names], 3)


def _refuse_training(model: nn.Module, ref: str, what: str) -> None:
    """Refuse ``model`` where a submodule is in training mode, ``what`` saying how it got there."""
    training = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    if training:
        raise ConfigError(f"{said_as(ref)}: {what.format(_named(training))}: in training mode BatchNorm "
                          "normalizes each batch by its own statistics and Dropout drops at random, so "
                          "results would depend on the batch and the draw; gcp-robust measures a fixed "
                          "model in eval mode")


def _check_fixed(model: nn.Module, pair: torch.Tensor, alone: torch.Tensor, again: torch.Tensor, *,
                 ref: str) -> None:
    """Refuse a module whose outputs depend on the batch it is given or on the calls before: its
    cells would differ with --batch-size, and a run would store them under the weights hash taken
    before it changed (one ran at 2 and at 12 images a batch gave two top-1 errors, the second reusing
    the first's: helper-255). Told by what it does: ``pair``, ``alone`` and ``again`` are its outputs
    for two seeded images, for the first alone, and for the two again. State that does not change
    its outputs is no change (a cache of tables made at the first call, timm's LeViT attention
    biases; spectral_norm's weight; the last attention map kept for a plot: helper-258).

    Raises:
        ConfigError: a submodule in training mode after the forward passes (the forward puts it
            there), a BatchNorm without running statistics, or other outputs for the same images.
    """
    from torch.nn.modules.batchnorm import _BatchNorm

    _refuse_training(model, ref, "its forward pass puts {} in training mode")
    batch_statistics = [name for name, m in model.named_modules()
                        if isinstance(m, _BatchNorm) and m.running_mean is None]
    if batch_statistics:
        raise ConfigError(f"{said_as(ref)}: BatchNorm {_named(batch_statistics)} keeps no running statistics "
                          "(track_running_stats=False), so in eval mode it normalizes each batch by its "
                          "own: results would depend on the batch size and on which images share a batch. "
                          "gcp-robust measures a fixed model: give it running statistics (or GroupNorm / "
                          "LayerNorm, which are per image)")

    def same(a: torch.Tensor, b: torch.Tensor) -> bool:  # (other kernels for other batch sizes round apart)
        finite = a[a.isfinite()].abs()
        scale = float(finite.max()) if finite.numel() else 0.0  # relative to the outputs' size, however small
        return bool(torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-3 * scale, equal_nan=True))

    if not same(pair, again):
        raise ConfigError(f"{said_as(ref)}: its forward pass gives other outputs for the same images at a "
                          "second call (state it changes as it runs: a counter, a running mean, weights): "
                          "results would depend on how many batches it saw before; gcp-robust measures a "
                          "fixed model")
    if not same(pair[:1], alone):
        raise ConfigError(f"{said_as(ref)}: its outputs for an image depend on the images batched with it "
                          "(statistics over the batch, or dynamic quantization's scales?): results would "
                          "depend on --batch-size and on which images share a batch; gcp-robust measures a "
                          "fixed model")


class BroughtModel(nn.Module):
    """A module you bring, with the attributes the engine reads beside it rather than on it: the
    module keeps its own ``name``, ``pretrained_cfg`` (timm's dict) and children of any name.

    Attributes:
        net: the module itself (put in eval mode on the run's device, nothing else changed).
        name, num_classes, pretrained_cfg, head_type, reduction_dim: as registry models have.
        weights_hash: :func:`state_dict_hash` of ``net``; checkpoint_sha256: None.
        returns_probabilities: its outputs for random images are probabilities, not logits
            (:func:`probe_output`): the suites that take gradients refuse it.
    """

    def __init__(self, net: nn.Module, name: str, num_classes: int, pretrained_cfg: PreprocessConfig,
                 returns_probabilities: bool = False):
        super().__init__()
        self.net = net
        self.returns_probabilities = returns_probabilities
        self.name, self.num_classes, self.pretrained_cfg = name, num_classes, pretrained_cfg
        head_type, reduction_dim = getattr(net, "head_type", None), getattr(net, "reduction_dim", None)
        self.head_type = head_type if isinstance(head_type, str) else "external"
        self.reduction_dim = reduction_dim if isinstance(reduction_dim, int) else None
        self.weights_hash = state_dict_hash(net)
        self.checkpoint_sha256 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run_code(self.net, x)

    def run_code(self, function: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``function(x)``, where ``function`` runs the module's code (its forward pass, or a part
        of it: the landscape's stem split), an exception of that code a :class:`ModelCodeError`."""
        try:
            return function(x)
        except (Exception, SystemExit) as error:  # noqa: BLE001 - the user's code failed: say where, in one line
            # the engine says to lower --batch-size; the tool's own (a torchrun rank stopped) stay so
            if out_of_memory(error) or isinstance(error, GcpRobustError):
                raise
            raise ModelCodeError(f"the forward pass of '{self.name}' raised {_raised(error)}"
                                 f"{_where(error)}") from error

    def __getattr__(self, name: str) -> Any:
        """What the wrapper does not hold is the module's (a covariance ResNet's ``strides``,
        which its run's identity names), as when the engine's attributes were set on it."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "net":
                raise
            return getattr(self.net, name)


def _raised(error: BaseException) -> str:
    """An exception in one line: ``RuntimeError: its message's first line`` (200 characters at
    most; the type alone for an empty message)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__


def _where(error: BaseException) -> str:
    """Where ``error`` arose: the innermost frame outside torch, torchvision and this package (the
    user's own line), as `` (at net.py:42, in forward)``; "" when there is none
    (``torchvision:<name>``; the landscape's stem split runs the model's layers from this package)."""
    import traceback

    ours = Path(__file__).parents[1]  # robustbench_gcp
    libraries = tuple(str(Path(module.__file__).parent) for module in
                      (torch, sys.modules.get("torchvision")) if module is not None) + (str(ours),)
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if not frame.filename.startswith(libraries)]
    if not frames:
        return ""
    return f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno}, in {frames[-1].name})"


def load_external(source: ExternalSource, label: str, checkpoint: str | Path | None = None, *,
                  sha256: str | None = None, device: str | torch.device = "cpu",
                  ema: bool = True) -> BroughtModel:
    """Build ``source``'s module, load ``checkpoint`` strictly into it (a training file's EMA
    weights unless ``ema=False``), and return it in eval mode on ``device``, held by a
    :class:`BroughtModel` named ``label`` (its number of classes from a forward pass).

    Raises:
        ConfigError: the module cannot be built, or its output is not (batch, classes).
        CheckpointError: the file does not fit the module (names, shapes), or holds NaN / inf.
    """
    from robustbench_gcp.models.loading import load_strict

    model = source.build()
    tensors = [*model.parameters(), *model.buffers()]
    if any(nn.parameter.is_lazy(t) for t in tensors):
        raise ConfigError(f"{said_as(source.ref)} has lazy layers (nn.LazyLinear ...) not yet built: run "
                          "one forward pass in your callable before returning the module")
    if any(t.is_meta for t in tensors):
        raise ConfigError(f"{said_as(source.ref)} is on the meta device (no values): build it on a real "
                          "device, e.g. with torch.device('cpu')")
    if checkpoint is not None:
        loaded = read_state_dict(checkpoint, sha256=sha256, compute_sha256=False, ema=ema,
                                 layout=AS_SAVED, own_keys=model.state_dict().keys())
        if source.takes_classes:
            model = _with_classes(source, model, loaded.tensors)
            model = _without_aux_heads(source, model, loaded.tensors)
        load_strict(model, loaded, name=source.ref)
    model = model.to(device)
    cfg = source.preprocess
    mine = source.own_preprocess and _has_own_cfg(model)
    if mine or source.preprocess_given is not None:  # some keys: on the module's own, else ImageNet's
        try:
            cfg = preprocess_config(source.preprocess_given, model if mine else None)
        except ConfigError as error:
            option = "preprocess=" if source.ref.startswith("module:") else "--preprocess"
            other = ""  # the cfg's fault: the option overrides it
            if source.preprocess_given is None:
                other = f" with {option}" if isinstance(error, _CropRefused) else f" (or give {option})"
            raise ConfigError(f"{said_as(source.ref)}: {error}{other}") from None
    classes, probabilities = probe_output(model, cfg.input_size, source.ref)
    return BroughtModel(model, label, classes, cfg, returns_probabilities=probabilities).eval()


def state_dict_hash(model: nn.Module) -> str:
    """SHA-256 of the weights of a module you bring (:func:`~.weights_hash.module_hash`; of the
    module held, for a :class:`BroughtModel`)."""
    while isinstance(model, BroughtModel):
        model = model.net
    return module_hash(model)


#: torchvision architectures with auxiliary classifiers, by their keys' prefixes: trained with them, run
#: without them (eval mode never calls them), and often saved without them once fine-tuned
AUX_HEADS = {"inception_v3": ("AuxLogits.",), "googlenet": ("aux1.", "aux2.")}


def _without_aux_heads(source: ExternalSource, model: nn.Module, tensors: Mapping[str, Any]) -> nn.Module:
    """``model``, or ``source`` built again without its auxiliary classifiers where the checkpoint
    holds none of their keys (a file saved without them failed on 12 or 18 missing keys: helper-251)."""
    torchvision = source.ref.startswith(TORCHVISION)
    prefixes = AUX_HEADS.get(source.ref.removeprefix(TORCHVISION)) if torchvision else None
    if prefixes is None or any(str(key).startswith(prefixes) for key in tensors) \
            or not any(key.startswith(prefixes) for key in model.state_dict()):
        return model
    return source.build(aux_logits=False, num_classes=model.fc.out_features)


def _with_classes(source: ExternalSource, model: nn.Module, tensors: Mapping[str, Any]) -> nn.Module:
    """``model``, or ``source`` built again with as many classes as the checkpoint's classifier has
    rows (its last ``nn.Linear``, or without one, SqueezeNet's last ``nn.Conv2d``): a torchvision architecture
    trained on CIFAR-100 has 100."""
    modules = list(model.named_modules())[::-1]
    name, last = next((m for m in modules if isinstance(m[1], nn.Linear)), None) \
        or next((m for m in modules if isinstance(m[1], nn.Conv2d)), None) or (None, None)  # SqueezeNet
    weight = tensors.get(f"{name}.weight") if last is not None else None
    if not isinstance(weight, torch.Tensor) or weight.ndim != last.weight.ndim \
            or weight.shape[0] == last.weight.shape[0]:
        return model
    return source.build(num_classes=int(weight.shape[0]))
