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
pass for the old ones. Their preprocessing is chosen in :mod:`.preprocessing`; what they are
(classes, logits or probabilities, a fixed model) is told by running them, in :mod:`.probe`.

Example:
    >>> source = external_source("torchvision:resnet18")
    >>> net = source.build()
    >>> probe_output(net, source.preprocess.input_size, source.ref)
    (1000, False)
"""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustbench_gcp.engine.device import out_of_memory
from robustbench_gcp.errors import (
    CheckpointError,
    ConfigError,
    GcpRobustError,
    ModelCodeError,
    UnknownNameError,
    suggest,
)
from robustbench_gcp.models.checkpoint import AS_SAVED, read_state_dict
from robustbench_gcp.models.preprocessing import (
    TRANSFORM_INPUT,
    CropRefused,
    differing_note,
    has_own_cfg,
    preprocess_config,
    shared_config,
    torchvision_configs,
)
from robustbench_gcp.models.probe import in_one_line, probe_output, said_as
from robustbench_gcp.models.resnet import PreprocessConfig
from robustbench_gcp.models.weights_hash import module_hash

__all__ = ["BroughtModel", "ExternalSource", "external_source", "is_external", "load_external",
           "module_source", "state_dict_hash"]

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
        module_object: a module object the library was given (``ref`` ``module:<name>``, the
            name it is evaluated under, which its runs' identity leaves out).
    """

    ref: str
    build: Callable[..., nn.Module] = field(compare=False)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    random_init: bool = False
    takes_classes: bool = False
    own_preprocess: bool = False
    note: str = field(default="", compare=False)
    preprocess_given: Mapping[str, Any] | None = field(default=None, compare=False)
    module_object: bool = False


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
        published = torchvision_configs(name)  # read once
        shared = shared_config(published)
        # the keys not given: those of the published weights' preprocessing
        chosen = preprocess_config(preprocess if preprocess is not None else shared, base=shared)
        if name.startswith("vit_"):  # its position embeddings are of the input size (SWAG's: 384, 518)
            options["image_size"] = chosen.input_size

        def build(**sizes) -> nn.Module:
            return torchvision.models.get_model(name, weights=None, **options, **sizes)

        note = differing_note(name, published) if preprocess is None else ""  # given: the user chose
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


def _not_found_hint(top: str) -> str:
    """Where Python looks for a user's module: the gcp-robust command does not import from the
    working folder (only ``python -m`` does), so "run from that folder" led nowhere."""
    here = Path.cwd()
    if (here / f"{top}.py").is_file() or (here / top).is_dir():
        return (f"; {top} is in this folder, which the gcp-robust command does not import from: "
                "PYTHONPATH=. gcp-robust ...")
    return "; put its folder on PYTHONPATH (PYTHONPATH=/path/to/folder gcp-robust ...)"


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


def module_source(module: nn.Module, name: str,
                  preprocess: PreprocessConfig | Mapping | None = None) -> ExternalSource:
    """A module object as a model source (the library's ``evaluate(model=net, name=...)``)."""
    if not isinstance(module, nn.Module):
        raise ConfigError(f"`model` should be a model name or a torch.nn.Module. Got a "
                          f"{type(module).__name__}")
    config = preprocess_config(preprocess, module)  # a BroughtModel's: what it was evaluated with
    while isinstance(module, BroughtModel):  # one the library returned: the module it holds
        module = module.net
    return ExternalSource(f"module:{name}", lambda: module, config, module_object=True)


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
            raise ModelCodeError(f"the forward pass of '{self.name}' raised {in_one_line(error)}"
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
            _check_image_size(source, model, loaded.tensors, checkpoint)
        load_strict(model, loaded, name=source.ref)
    model = model.to(device)
    cfg = source.preprocess
    mine = source.own_preprocess and has_own_cfg(model)
    if mine or source.preprocess_given is not None:  # some keys: on the module's own, else ImageNet's
        try:
            cfg = preprocess_config(source.preprocess_given, model if mine else None)
        except ConfigError as error:
            option = "preprocess=" if source.ref.startswith("module:") else "--preprocess"
            other = ""  # the cfg's fault: the option overrides it
            if source.preprocess_given is None:
                other = f" with {option}" if isinstance(error, CropRefused) else f" (or give {option})"
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


def _check_image_size(source: ExternalSource, model: nn.Module, tensors: Mapping[str, Any],
                      checkpoint: str | Path) -> None:
    """Refuse a torchvision ViT checkpoint whose position embeddings are of another image size than
    the one the model was built for (``--preprocess input_size``), naming the size to give: its
    shape mismatch alone did not say (torchvision's SWAG weights are of 384 and 518 px images). A
    file of another ViT (other widths or patches) is left to the strict load's mismatch report.

    Raises:
        CheckpointError: ``encoder.pos_embedding`` holds another number of patches of this model's.
    """
    ours, theirs = getattr(getattr(model, "encoder", None), "pos_embedding", None), tensors.get(
        "encoder.pos_embedding")
    patch, kernel = getattr(model, "patch_size", None), tensors.get("conv_proj.weight")
    if not (source.ref.startswith(TORCHVISION) and isinstance(ours, torch.Tensor)
            and isinstance(theirs, torch.Tensor) and isinstance(patch, int)
            and theirs.ndim == 3 and ours.ndim == 3 and theirs.shape[2] == ours.shape[2]
            and theirs.shape[1] != ours.shape[1]):
        return
    if isinstance(kernel, torch.Tensor) and tuple(kernel.shape[2:]) != (patch, patch):  # another ViT's
        return
    side = math.isqrt(theirs.shape[1] - 1)  # its patches and one class token
    if side < 1 or side * side != theirs.shape[1] - 1:
        return
    size = side * patch
    name = source.ref.removeprefix(TORCHVISION)
    published = {(c.resize_size, c.interpolation) for c in torchvision_configs(name) if c.input_size == size}
    given, said = f"input_size={size},resize_size={size}", ""
    if len(published) == 1:  # one recipe for that size (vit_b_16's 224 px weights have two)
        (resize, interpolation), = published
        given = f"input_size={size},resize_size={resize},interpolation={interpolation}"
        said = " (as torchvision preprocesses its weights of that size)"
    elif published:
        recipes = "; ".join(f"resize_size={r},interpolation={i}" for r, i in sorted(published))
        said = f" or the resize its weights of that size were made with (torchvision's: {recipes})"
    raise CheckpointError(f"'{checkpoint}': its position embeddings (encoder.pos_embedding, "
                          f"{theirs.shape[1]} tokens) are of {size}x{size} images; {source.ref} was built "
                          f"for {model.image_size}x{model.image_size}: give --preprocess {given}{said}")
