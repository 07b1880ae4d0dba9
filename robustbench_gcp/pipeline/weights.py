"""The one path by which a model enters an evaluation: name -> checked choice -> loaded module.

:func:`choose_model` resolves a name (a model of benchmarks.yaml or a registry
architecture), the checkpoint flags and the matrix-function overrides into a
:class:`ModelChoice`, checking everything that can be checked without reading the
weights: the name, the options the architecture takes, and where the checkpoint file
is (a URL is fetched once into the cache). :func:`load_chosen` builds the module.
``eval``, ``compare``, ``baseline``, ``demo`` and ``bench attack`` all go through here.

Example:
    >>> from robustbench_gcp.config import load_config
    >>> choice = choose_model(load_config(), "demo-isqrt")
    >>> net = load_chosen(choice, "cpu")                    # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from robustbench_gcp.config import Config, ModelSpec
from robustbench_gcp.errors import CheckpointError, ConfigError, UnknownNameError, real_path
from robustbench_gcp.fetch import resolve_checkpoint
from robustbench_gcp.models.external import (
    ExternalSource,
    external_source,
    is_external,
    load_external,
    module_source,
)
from robustbench_gcp.models.probe import said_as
from robustbench_gcp.models.resnet import PreprocessConfig

#: the identity's ``arch`` of a module object's runs (before 0.7.30: ``module:<the name>``)
MODULE_ARCH = "module"


class MissingCheckpointError(ConfigError):
    """A model without weights was asked for without ``random_weights``."""

    def __init__(self, label: str, name: str):
        self.label, self.name = label, name
        super().__init__(
            f"model '{label}' has no checkpoint: pass --checkpoint FILE, or --random-weights to evaluate "
            "the architecture with seeded random weights (a pipeline check, not a result)"
        )


@dataclass(frozen=True)
class ModelChoice:
    """A model to evaluate, checked, with its weights located but not read.

    Attributes:
        spec: the architecture and the weights' origin (benchmarks.yaml's entry, with the
            command-line flags applied). For a model outside the registry, ``arch`` is what
            the user wrote (``torchvision:resnet18``, ``pkg.mod:fn``, ``module:<name>``).
        label: the name reports show (a comparison's entry label, the library's ``name``;
            default: the model's name, tagged with its matrix-function overrides:
            ``resnet50-isqrt[sqrt=eig]``).
        checkpoint: the local checkpoint file, or None for seeded random weights.
        sqrt, ns_iters: matrix-function overrides (None: the model's own).
        seed: seeds random weights (used only without a checkpoint).
        ema: take a training file's EMA weights (``state_dict_ema``) when it has them.
        external: how to build a model outside the registry (None for registry models).
        configured: where benchmarks.yaml gives the weights, ``("models.NAME", FILE, what it gives)``,
            or None
            (given on the command line, none, or not a model of benchmarks.yaml): a checkpoint
            error names it, the entry to fix.
    """

    spec: ModelSpec
    label: str
    checkpoint: Path | None
    sqrt: str | None = None
    ns_iters: int | None = None
    seed: int = 0
    ema: bool = True
    external: ExternalSource | None = None
    configured: tuple[str, str, str] | None = None

    @property
    def arch(self) -> str:
        return self.spec.arch

    @property
    def identity_arch(self) -> str:
        """The ``arch`` of its runs' identity: :attr:`arch`, but ``module`` for a module object
        whatever the name it is evaluated under (its weights hash and its classes' tree tell it
        apart; its ``arch`` ``module:NAME`` made a run under a new name compute everything again,
        where a registry model's is reused: helper-293)."""
        return MODULE_ARCH if self.external is not None and self.external.module_object else self.arch

    def matrix_identity(self) -> dict:
        """The ``sqrt`` / ``ns_iters`` of a run's identity: None where they equal the model's own
        (an override equal to the trained function is the same run as none)."""
        from robustbench_gcp.models import model_info
        from robustbench_gcp.models.heads import DEFAULT_NS_ITERS, HEADS

        if self.external is not None:
            return {"sqrt": None, "ns_iters": None}
        own = HEADS[model_info(self.arch).head].sqrt
        sqrt, ns_iters = self.sqrt, self.ns_iters
        if sqrt == own:
            sqrt = None
        if ns_iters == DEFAULT_NS_ITERS and (sqrt or own) == "newton-schulz":
            ns_iters = None
        return {"sqrt": sqrt, "ns_iters": ns_iters}

    def root(self) -> str | None:
        """The matrix square root the evaluated model computes (None: it has none)."""
        from robustbench_gcp.models import model_info
        from robustbench_gcp.models.heads import HEADS

        if self.external is not None:
            return None
        return self.sqrt or HEADS[model_info(self.arch).head].sqrt


def model_spec(config: Config, name: str, checkpoint: str | None = None,
               sha256: str | None = None) -> ModelSpec:
    """A model of benchmarks.yaml by name, or a registry architecture; the flags override.

    Raises:
        UnknownNameError: neither (the closest name suggested).
    """
    from robustbench_gcp.models import list_models

    if "=" in name:  # (no model's name holds one: a torchvision name nor a module path)
        _refuse_file_as_name(name, set(config.models) | set(list_models()))
    if name in config.models:
        spec = config.models[name]
    elif name in list_models() or is_external(name):
        spec = ModelSpec(name=name, arch=name)
    else:
        known = set(config.models) | set(list_models())
        _refuse_file_as_name(name, known)
        raise UnknownNameError("model", name, sorted(known),
                               listing="`gcp-robust models` lists them (list_models() in Python), and "
                                       "torchvision:<name> or package.module:callable brings your own")
    if checkpoint is not None:
        spec = dataclasses.replace(spec, checkpoint=checkpoint, sha256=sha256, source=None)
    elif sha256 is not None:
        spec = dataclasses.replace(spec, sha256=sha256)
    return spec


def _refuse_file_as_name(name: str, known: set[str]) -> None:
    """A checkpoint given where a model's name goes: ``NAME=FILE`` (compare's form) or a file.

    Raises:
        ConfigError: naming the way to give it (a model and its checkpoint apart).
    """
    model, equals, file = name.partition("=")
    if equals and (model.strip() in known or is_external(model.strip())):
        raise ConfigError(f"model '{name}': give its checkpoint apart, as `--model {model.strip()} "
                          f"--checkpoint {file}` (MODEL=CHECKPOINT is `gcp-robust compare --model`'s form)")
    if Path(name).expanduser().is_file():
        raise ConfigError(f"model '{name}' is a file: name the architecture as the model and give the file "
                          f"as its checkpoint (eval: `--model ARCH --checkpoint {name}`; compare: "
                          f"`--model ARCH={name}`; `gcp-robust inspect {name}` names the ARCH it fits)")


def choose_model(
    config: Config,
    name: str,
    *,
    checkpoint: str | None = None,
    sha256: str | None = None,
    random_weights: bool = False,
    label: str | None = None,
    sqrt: str | None = None,
    ns_iters: int | None = None,
    seed: int = 0,
    ema: bool = True,
    module: nn.Module | None = None,
    preprocess: PreprocessConfig | Mapping | None = None,
) -> ModelChoice:
    """Check a model and locate its weights; nothing is loaded.

    ``name`` is a model of benchmarks.yaml, a registry architecture, ``torchvision:<name>`` or
    ``package.module:callable``; with ``module`` (an ``nn.Module`` object), ``name`` labels it.
    ``preprocess`` applies to models outside the registry only.

    Raises:
        UnknownNameError: unknown model or square root.
        ConfigError: ``random_weights`` with ``checkpoint``; an override the architecture does
            not take; a user's module that cannot be imported.
        MissingCheckpointError: a model without weights, and no ``random_weights``.
        CheckpointError: the checkpoint file is missing (or its download failed).
    """
    from robustbench_gcp.models import model_info
    from robustbench_gcp.models.heads import resolve_sqrt

    external = None
    if module is not None:
        if checkpoint is not None:  # it would be loaded into the caller's own module, which runs as it is
            raise ConfigError(f"`checkpoint` applies to model names; load the file into your module first "
                              f"({name}.load_state_dict(torch.load(FILE, weights_only=True))), or pass "
                              "a callable that builds it as package.module:callable")
        external = module_source(module, name, preprocess)
        spec = dataclasses.replace(model_spec(config, external.ref, checkpoint, sha256), name=name)
    else:
        spec = model_spec(config, name, checkpoint, sha256)
        if is_external(spec.arch):
            external = external_source(spec.arch, preprocess)
    if preprocess is not None and external is None:
        raise ConfigError(f"`preprocess` applies to models you bring; {spec.arch} has its own")

    def option(flag: str) -> str:  # as the caller named it: a module object comes from the library
        return f"`{flag.removeprefix('--').replace('-', '_')}`" if module is not None else f"`{flag}`"

    who = None if external is None else external.ref if module is None else said_as(external.ref)

    if external is not None:
        if sqrt is not None or ns_iters is not None:
            raise ConfigError(f"{option('--sqrt')} / {option('--ns-iters')} apply to the registry's GCP "
                              f"models, not to {who}")
    else:
        resolve_sqrt(model_info(spec.arch).head, sqrt, ns_iters, owner=spec.arch, cli=True)
    needs_weights = external is None or external.random_init
    if random_weights:
        if checkpoint is not None:
            raise ConfigError(f"{option('--random-weights')} and {option('--checkpoint')} exclude each "
                              "other: pick one")
        if sha256 is not None:
            raise ConfigError(f"{option('--random-weights')} and {option('--sha256')} exclude each other: "
                              "the hash checks a checkpoint file")
        if not needs_weights:
            raise ConfigError(f"{option('--random-weights')} gives seeded random weights to the registry's "
                              f"models and torchvision:<name>; {who} comes with its own "
                              "weights: drop it")
        spec = dataclasses.replace(spec, checkpoint=None, sha256=None)  # also over benchmarks.yaml's file
    elif spec.checkpoint is None and needs_weights:
        raise MissingCheckpointError(label or spec.name, name)
    elif spec.checkpoint is None and spec.sha256 is not None:
        advice = "drop it" if module is not None else "give the file with --checkpoint, or drop --sha256"
        raise ConfigError(f"{option('--sha256')} checks a checkpoint file, and {who} "
                          f"runs with its own weights: {advice}")
    if spec.checkpoint is None and not ema:  # it was ignored (helper-255)
        weights = "seeded random weights" if random_weights else "its own weights"
        raise ConfigError(f"{'`ema=False`' if module is not None else '`--no-ema`'} chooses a checkpoint's "
                          f"raw weights over its EMA ones, and {who or spec.name} runs with {weights}: "
                          "drop it")
    path = configured = None
    if spec.checkpoint is not None and checkpoint is None and module is None and name in config.models:
        # what the entry gave (a --sha256 of the command line is not the file's)
        given = "checkpoint and arch" if sha256 is not None else "checkpoint, sha256 and arch"
        configured = (f"models.{name}", str(config.path), given)
    if spec.checkpoint is not None:
        with said_where(configured):
            path = resolve_checkpoint(spec.checkpoint, sha256=spec.sha256, source=spec.source,
                                      configured=checkpoint is None)
    choice = ModelChoice(spec, label or spec.name, path, sqrt, ns_iters, seed, ema, external, configured)
    # another matrix function is another row of a report: say which, under a name you chose too
    # (the label `report` gives the stored run later; a label with the tag already keeps it)
    from robustbench_gcp.models.heads import matrix_label

    return dataclasses.replace(choice, label=matrix_label(choice.label, choice.matrix_identity()))


# The last model outside the registry that check_weights built, loaded and ran (a user's module
# may be costly to build, its checkpoint large): load_chosen hands it to the run of that plan,
# once, instead of building and loading it again. One slot: eval's plan-then-run uses it;
# compare, which plans every model first, builds each again; any other load empties it.
_checked_external: tuple[ModelChoice, nn.Module, tuple | None] | None = None


@contextlib.contextmanager
def said_where(configured: tuple[str, str, str] | None) -> Iterator[None]:
    """A :class:`CheckpointError` inside names the benchmarks.yaml entry its file came from (a
    message naming the file and ``--model`` alone leaves the user to find it)."""
    try:
        yield
    except CheckpointError as error:
        if configured is None:
            raise
        entry, file, given = configured
        raise error.from_entry(entry, f"{given} from {entry} of {file}") from None


def _stamp(path: Path | None) -> tuple | None:
    """A file's inode, size and modification time (None for no file, or one gone: loading it
    then says so)."""
    try:
        stat = Path(path).stat() if path is not None else None
    except OSError:
        return None
    return None if stat is None else (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def check_weights(choice: ModelChoice) -> int:
    """The number of classes of the chosen model, after checking that its checkpoint loads
    strictly (names, shapes, sha256) without building its weights. Each file is read once per
    process (several plans of one comparison share the check).

    A model outside the registry is built (on the CPU) and, with its weights, run on two
    random images: its number of classes is the width of its output.

    Raises:
        CheckpointError: the file is unreadable or does not fit the architecture.
        ConfigError: a user's module cannot be built, or its output is not (batch, classes).
    """
    if choice.external is not None:
        global _checked_external
        model = load_chosen(choice, "cpu")
        # the run of this plan takes it instead of a rebuild, if the file is still the same
        _checked_external = (choice, model, _stamp(choice.checkpoint))
        return model.num_classes
    if choice.checkpoint is None:
        from robustbench_gcp.models import model_info

        return model_info(choice.arch).num_classes
    path = Path(choice.checkpoint)
    stat = path.stat()
    with said_where(choice.configured):
        return _checked_classes(choice.arch, str(real_path(path)), stat.st_size, stat.st_mtime_ns,
                                choice.spec.sha256, choice.ema, choice.sqrt, choice.ns_iters)


@functools.lru_cache(maxsize=64)
def _checked_classes(arch: str, path: str, size: int, mtime: int, sha256: str | None, ema: bool,
                     sqrt: str | None, ns_iters: int | None) -> int:
    from robustbench_gcp.models.loading import check_checkpoint

    return check_checkpoint(arch, path, sha256=sha256, ema=ema, sqrt=sqrt, ns_iters=ns_iters)


def chosen_input_size(choice: ModelChoice) -> int:
    """The input side of the chosen model, after :func:`check_weights`: a brought module's
    preprocessing (built there), else the registry's."""
    if choice.external is not None:
        return _brought(choice).pretrained_cfg.input_size
    from robustbench_gcp.models import model_info

    return model_info(choice.arch).input_size


def returns_probabilities(choice: ModelChoice) -> bool:
    """Whether the chosen model's outputs are probabilities, not logits, after :func:`check_weights`:
    a brought module's, as its probe found them (the registry's models give logits)."""
    return choice.external is not None and _brought(choice).returns_probabilities


def _brought(choice: ModelChoice):
    """The brought module :func:`check_weights` built, else built again."""
    checked = _checked_external
    if checked is not None and checked[0] is choice:
        return checked[1]
    return load_chosen(choice, "cpu")


def load_chosen(choice: ModelChoice, device: str | torch.device = "cpu") -> nn.Module:
    """The model of ``choice`` in eval mode on ``device`` (strict loading; seeded random weights
    without a checkpoint, reproducible for the choice's seed)."""
    from robustbench_gcp.models import load_model

    global _checked_external
    checked, _checked_external = _checked_external, None
    if checked is not None and checked[0] is choice and checked[2] == _stamp(choice.checkpoint):
        from robustbench_gcp.models.external import state_dict_hash

        model = checked[1].to(device).eval()  # built and loaded by check_weights
        # hashed again: a module object's weights may have changed between plan and run, and the
        # run is found by the weights it computes with
        model.weights_hash = state_dict_hash(model)
        return model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(choice.seed)
        if choice.external is not None:
            return load_external(choice.external, choice.label, choice.checkpoint,
                                 sha256=choice.spec.sha256, device=device, ema=choice.ema)
        with said_where(choice.configured):
            return load_model(choice.arch, choice.checkpoint, device=device, sha256=choice.spec.sha256,
                              sqrt=choice.sqrt, ns_iters=choice.ns_iters, ema=choice.ema,
                              random_weights=choice.checkpoint is None)
