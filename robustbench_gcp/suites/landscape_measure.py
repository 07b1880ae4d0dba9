"""Loss-landscape measurements of the landscape suite: settings, the per-image values, the task.

Definitions (Wang et al., CVPR 2020, and the TPAMI 2023 extension; the authors' code prints
them during training in ZhangLi-CS/GCP_Optimization ``landscape/``). For each image with
label y, the model in eval mode:

- ``X``: the activation at the measurement point: the output of the stem
  (:mod:`robustbench_gcp.models.stems`; ``at="stem"``), or the [0, 1] image before
  normalization (``at="pixels"``);
- ``L(X)``: the cross-entropy of this image's logits against y (per image, no batch mean);
- ``g = grad_X L(X)``;
- step sizes ``eta_k = a + k (b - a) / (K - 1)``, k = 0..K-1 (:class:`Etas`);
- per k: ``loss_k = L(X + s eta_k g)`` and ``change_k = ||grad_X L(X + s eta_k g) - g||_2``,
  s = +1 (``ascent``, the authors' code) or -1 (``descent``, Santurkar et al. 2018).

Per-image summaries (:func:`summaries`): the loss band ``max_k loss_k - min_k loss_k``, the
largest gradient change ``max_k change_k``, the effective beta-smoothness
``max over k with eta_k > 0 of change_k / (eta_k ||g||)`` (the gradient change per unit of
distance moved, ``||X_k - X|| = eta_k ||g||``; 0 where ``g = 0``), ``||g||`` and ``L(X)``.

The store keeps, per image, float32 columns (:data:`COLUMNS`): ``L(X)``, ``||g||``, the K
losses and the K gradient changes; every summary is computed from them at report time.

Precision (:data:`PRECISIONS`): the model runs in float64 by default (the stem too: X is float64),
on a float64 copy of the model (:func:`in_precision`). In float32 the gradient change at the small steps is
float32's rounding, not the landscape: on demo-isqrt with an exact root (``--sqrt eig``) the
beta-smoothness came out 20x float64's (0.31), and the maximum over the steps took the smallest
step's rounding (helper-233); Newton-Schulz and GAP agree with float64 in the mean, but single
images' beta-smoothness was up to 19 % off. ``float32`` stays a choice (its cells carry no mark,
so those stored before are found): the authors' code measures in float32, and it is 2.4 to 2.8x
faster on the CPU.

Speed: the stem runs once per image; only the rest of the network runs, once on X for g, then
on the K perturbed copies of each image stacked along the batch dimension with X (:data:`ROWS`
rows a pass: :func:`passes_per_image`), with the weights frozen so that backward computes input
gradients only. A pass never mixes images,
so the stored values do not depend on the batch size (bit for bit).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from corruptions import from_uint8
from robustbench_gcp.engine.classifier import (
    Classifier,
    frozen_weights,
    gradient_error,
    nonfinite_error,
)
from robustbench_gcp.engine.runner import Context, ImageSource
from robustbench_gcp.errors import ConfigError, ModelCodeError, NonFiniteError, UnknownNameError
from robustbench_gcp.store import CellKey, ShardResult

#: where X is taken: the stem's output (as the authors' code) or the [0, 1] pixels
LANDSCAPE_AT = ("stem", "pixels")
#: ascent: X + eta g (the authors' code); descent: X - eta g (Santurkar et al. 2018)
DIRECTIONS = ("ascent", "descent")
#: the batch of the paper's steps: a batch-mean loss divides each image's gradient by it
PAPER_BATCH = 256
#: the paper's batch-mean step sizes (0.1 to 75 in 50 steps, landscape/ResNet/main.py)
PAPER_ETAS = (0.1, 75.0, 50)
#: the most steps --etas takes (a typo such as 0:1:1e9 would otherwise run for days)
MAX_STEPS = 10_000
#: what the rest of the network computes in (:func:`in_precision`): float64 (the default) or float32
PRECISIONS = {"float64": torch.float64, "float32": torch.float32}


@dataclass(frozen=True)
class Etas:
    """``K`` step sizes from ``low`` to ``high``, evenly spaced: ``eta_k = a + k (b - a) / (K - 1)``."""

    low: float
    high: float
    count: int

    def values(self) -> np.ndarray:
        """The K step sizes, float64; the last is ``high`` exactly (the formula's rounding gave
        1.9999999999999998 for ``0.1:2:4``)."""
        k = np.arange(self.count, dtype=np.float64)
        values = self.low + k * (self.high - self.low) / (self.count - 1)
        values[-1] = self.high
        return values

    @property
    def text(self) -> str:
        """``a:b:K`` as ``--etas`` takes it."""
        return f"{self.low:g}:{self.high:g}:{self.count}"

    def as_list(self) -> list:
        return [float(self.low), float(self.high), int(self.count)]


#: the default steps per measurement point. At the stem, the paper's [0.1, 75] for a batch of
#: 256 is [0.1/256, 75/256] per image (a batch-mean loss scales each image's gradient by 1/256);
#: at the pixels, 0.01 to 1: the largest step moves an image by ||g|| in L2 on the [0, 1] scale,
#: the size of the usual L2 attack budgets (0.25 to 1) for images the model is unsure of.
DEFAULT_ETAS = {
    "stem": Etas(PAPER_ETAS[0] / PAPER_BATCH, PAPER_ETAS[1] / PAPER_BATCH, PAPER_ETAS[2]),
    "pixels": Etas(0.01, 1.0, 50),
}
#: the stem's default steps of the families whose authors used others than ResNet's: MobileNetV2's
#: 0.045 to 1.5 for a batch of 96 (landscape/MobileNetV2/main.py, scripts/train.sh), per image
STEM_ETAS = {family: Etas(0.045 / 96, 1.5 / 96, 50) for family in ("mobilenetv2", "torchvision_mobilenetv2")}


def parse_etas(value: Any, flag: str = "--etas") -> Etas:
    """``"a:b:K"`` (or ``[a, b, K]``) as :class:`Etas`, checked; a and b may be fractions
    (``0.1/256:75/256:50``).

    Raises:
        ConfigError: not three numbers; K < 2 or not an integer; a < 0; a > b; b = 0; a step
            that rounds to 0 in float32.

    Example:
        >>> parse_etas("0.1:75:50").values()[:2]
        array([0.1       , 1.62857143])
        >>> parse_etas("0.1/256:75/256:50") == DEFAULT_ETAS["stem"]
        True
    """
    if isinstance(value, Etas):
        return value
    parts = value.split(":") if isinstance(value, str) else list(value) if isinstance(value, Sequence) \
        else None

    def number(part: Any) -> float:  # 0.1/256 as well as 0.000390625
        if isinstance(part, bool):  # YAML's true is no step size
            raise ValueError
        if isinstance(part, str) and "/" in part:
            numerator, denominator = part.split("/", 1)
            return float(numerator) / float(denominator)
        return float(part)

    try:
        if parts is None or len(parts) != 3:
            raise ValueError
        low, high = number(parts[0]), number(parts[1])
        count_value = float(parts[2])
    except (TypeError, ValueError, ZeroDivisionError):
        # YAML 1.1 reads an unquoted 1:2:3 as the base-60 integer 3723
        sexagesimal = ("; an unquoted A:B:K in YAML is a base-60 number: quote it (\"1:2:3\")"
                       if isinstance(value, int) and not isinstance(value, bool) else "")
        raise ConfigError(f"`{flag}` should be A:B:K (first step, last step, number of steps) such as "
                          f"0.0004:0.3:50. Got {value!r}{sexagesimal}") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ConfigError(f"`{flag}` should hold finite step sizes. Got {value!r}")
    if not math.isfinite(count_value) or count_value != int(count_value) or count_value < 2:
        raise ConfigError(f"`{flag}`: K (the number of steps) should be an integer >= 2. Got {parts[2]}")
    if count_value > MAX_STEPS:  # each step is a forward and backward pass per image
        raise ConfigError(f"`{flag}`: K (the number of steps) should be at most {MAX_STEPS:,} (the papers "
                          f"use 50). Got {parts[2]}")
    if low < 0:
        raise ConfigError(f"`{flag}`: the first step A should be >= 0. Got {low:g}")
    if high <= 0:
        raise ConfigError(f"`{flag}`: the last step B should be > 0. Got {high:g}")
    if low >= high:  # A = B: K steps of one size, one cell apart from the same numbers' others
        raise ConfigError(f"`{flag}`: the first step A should be < the last step B. Got {low:g} >= {high:g}")
    largest = float(np.finfo(np.float32).max)
    if high > largest:  # (an overflow warning, then the model's NaN)
        raise ConfigError(f"`{flag}`: the last step {high:g} is infinite in float32, in which steps can be "
                          f"taken (--landscape-precision; its largest: {largest:.3g}). Got {value!r}")
    etas = Etas(low + 0.0, high, int(count_value))  # -0 is 0 (one cell, one label)
    smallest = float(etas.values()[etas.values() > 0].min())
    if np.float32(smallest) == 0:  # the steps are taken in float32: none would move X
        raise ConfigError(f"`{flag}`: the step {smallest:g} rounds to 0 in float32, in which steps can be "
                          f"taken (--landscape-precision), so no point would move. Got {value!r}")
    return etas


@dataclass(frozen=True)
class LandscapeSettings:
    """Everything that changes a landscape cell's numbers besides the run: its variant."""

    at: str = "stem"
    direction: str = "ascent"
    etas: Etas = DEFAULT_ETAS["stem"]
    precision: str = "float64"

    def __post_init__(self):
        if self.at not in LANDSCAPE_AT:
            raise UnknownNameError("landscape measurement point", self.at, LANDSCAPE_AT)
        if self.direction not in DIRECTIONS:
            raise UnknownNameError("landscape direction", self.direction, DIRECTIONS)
        if self.precision not in PRECISIONS:
            raise UnknownNameError("landscape precision", self.precision, tuple(PRECISIONS))

    @property
    def sign(self) -> float:
        return 1.0 if self.direction == "ascent" else -1.0

    @property
    def dtype(self) -> torch.dtype:
        return PRECISIONS[self.precision]

    def variant(self) -> dict:
        """The cell variant: measurement point, direction, steps ``[a, b, K]`` and, for float64,
        the precision (float32 cells carry none: those stored before 0.7.30 were float32's)."""
        mark = {"precision": self.precision} if self.precision != "float32" else {}
        return {"at": self.at, "direction": self.direction, "etas": self.etas.as_list(), **mark}

    @classmethod
    def of_variant(cls, variant: Mapping) -> LandscapeSettings:
        low, high, count = variant["etas"]
        return cls(variant["at"], variant["direction"], Etas(float(low), float(high), int(count)),
                   variant.get("precision", "float32"))


#: the stored per-image columns (then the K losses and the K gradient changes)
COLUMNS = ("loss", "grad_norm")


def summaries(extra: np.ndarray, settings: LandscapeSettings) -> dict[str, np.ndarray]:
    """The per-image quantities (float64) of a cell's stored values ``extra`` (n, 2 + 2K).

    Returns:
        ``loss`` L(X), ``grad_norm`` ||g||, ``loss_band``, ``grad_change_max``,
        ``beta_smoothness`` (each (n,)), and ``losses`` / ``changes`` ((n, K)).
    """
    values = np.asarray(extra, dtype=np.float64)
    k = settings.etas.count
    if values.ndim != 2 or values.shape[1] != len(COLUMNS) + 2 * k:
        raise ValueError(f"landscape values have shape {values.shape}; expected (n, {len(COLUMNS) + 2 * k})")
    losses, changes = values[:, 2:2 + k], values[:, 2 + k:]
    norm = values[:, 1]
    etas = settings.etas.values()
    moved = etas > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = changes[:, moved] / (etas[moved][None, :] * norm[:, None])
    beta = np.where(norm > 0, ratio.max(axis=1), 0.0)
    return {
        "loss": values[:, 0],
        "grad_norm": norm,
        "loss_band": losses.max(axis=1) - losses.min(axis=1),
        "grad_change_max": changes.max(axis=1),
        "beta_smoothness": beta,
        "losses": losses,
        "changes": changes,
    }


Fn = Callable[[torch.Tensor], torch.Tensor]


def in_precision(classifier: Classifier, precision: str) -> Classifier:
    """``classifier`` computing in ``precision``: itself for float32; for float64 a classifier of
    a float64 copy of its model (weights frozen; the run's own model stays as it is), which
    normalizes in float64 too.

    Raises:
        ConfigError: float64 on an MPS device, which has no float64.
    """
    dtype = PRECISIONS[precision]
    if classifier.mean.dtype == dtype:
        return classifier
    if classifier.device.type == "mps":
        raise ConfigError("the landscape suite measures in float64 (--landscape-precision), which MPS "
                          "devices do not have: give --landscape-precision float32, or --device cpu")
    import copy

    try:  # a module you bring may not copy (a lock, an open file among its attributes)
        model = copy.deepcopy(classifier.model)
    except Exception as error:  # noqa: BLE001 - any error of its code's __deepcopy__ / pickling
        # a setting's error (exit status 2), not the code's: re-running the command would fail alike
        raise ConfigError(
            f"the landscape suite measures a float64 copy of the model (--landscape-precision float64, "
            f"the default), and the model cannot be copied ({type(error).__name__}: {error}): give "
            "--landscape-precision float32") from None
    model = model.to(dtype)
    model.requires_grad_(False)
    return Classifier(model, classifier.device, mean=classifier.mean.flatten().tolist(),
                      std=classifier.std.flatten().tolist(), channels_last=classifier.channels_last,
                      dtype=dtype)


def measurement_split(classifier: Classifier, at: str) -> tuple[Fn, Fn]:
    """(to X, from X to logits) of the classifier's model at ``at``: ``[0, 1]`` images -> X, and
    X -> logits, with ``rest(to_x(x)) == model(normalize(x))``.

    Raises:
        ConfigError: ``at="stem"`` and the model has no known stem.
    """
    if at == "pixels":
        return (lambda x: x), (lambda x: classifier.model(classifier.normalize(x)))
    from robustbench_gcp.models.stems import split_at_stem

    split = split_at_stem(classifier.model)
    return (lambda x: split.stem(classifier.normalize(x))), split.rest


#: perturbed copies of one image per forward + backward pass. Fixed, and each pass holds the
#: copies of a single image, so that an image's values never depend on --batch-size or on the
#: other images of its batch (CPU kernels round differently for other batch shapes).
ROWS = 32


def step_passes(etas: np.ndarray) -> list[np.ndarray]:
    """The indices of ``etas`` each pass of :func:`measure` steps to after the pass for g: those
    not 0, ``ROWS - 1`` at a time (each pass carries X too)."""
    moving = np.flatnonzero(etas != 0)
    return [moving[start:start + ROWS - 1] for start in range(0, len(moving), ROWS - 1)]


def passes_per_image(settings: LandscapeSettings) -> tuple[int, int]:
    """(passes, rows) of the rest of the model per image in :func:`measure`: one of X alone for g,
    then :func:`step_passes`, each with X."""
    passes = step_passes(settings.etas.values())
    return 1 + len(passes), 1 + sum(len(p) + 1 for p in passes)


def measure(x: torch.Tensor, labels: torch.Tensor, classifier: Classifier, settings: LandscapeSettings,
            *, split: tuple[Fn, Fn] | None = None) -> np.ndarray:
    """The stored per-image landscape values of a batch.

    Each image is measured on its own: X and g from a pass of that image alone, then its K steps
    in passes of at most :data:`ROWS` rows, X itself and up to ``ROWS - 1`` steps (the stem
    output is computed once, only the rest of the model runs per step; each change is taken
    against the gradient at X of the same pass). The values are therefore the same for any batch size, worker
    count or process count.

    Args:
        x: (B, 3, H, W) images in [0, 1] on the classifier's device; labels: (B,).
        classifier: the model (eval mode), its normalization and precision.
        settings: measurement point, direction and steps.
        split: :func:`measurement_split` of the classifier (made here if None).

    Returns:
        (B, 2 + 2K) float32: L(X), ||g||, loss_k for each k, change_k for each k (computed in
        ``settings.precision``: ``classifier`` is taken there, :func:`in_precision`, and ``split``
        must be of that classifier).

    Raises:
        NonFiniteError: the logits, or the gradient of the loss, at X or at a step are NaN or infinite.
    """
    dtype = settings.dtype
    if classifier.mean.dtype != dtype:  # (a copy of the model per call: callers pass theirs)
        classifier, split = in_precision(classifier, settings.precision), None
    to_x, rest = split or measurement_split(classifier, settings.at)
    etas = settings.etas.values()
    count = len(etas)

    # each pass's non-finite rows, looked at once after the batch (a wait for the device per pass was)
    checks: list[tuple[torch.Tensor, torch.Tensor, int, bool]] = []

    def loss_and_grad(points: torch.Tensor, targets: torch.Tensor, *, step: bool) -> tuple[torch.Tensor,
                                                                                             torch.Tensor]:
        points = points.detach().requires_grad_(True)
        with torch.autocast(points.device.type, dtype=classifier.amp_dtype, enabled=classifier.amp):
            logits = rest(points).to(dtype)
        loss = F.cross_entropy(logits, targets, reduction="none")
        try:
            (grad,) = torch.autograd.grad(loss.sum(), points)
        except RuntimeError as error:
            if (failure := gradient_error(error, "the landscape suite")) is not None:
                raise failure from error
            raise
        bad_logits = ~torch.isfinite(logits).all(dim=-1)
        bad = ~torch.isfinite(grad.flatten(1)).all(dim=1) & ~bad_logits
        checks.append((bad_logits.sum(), bad.sum(), len(points), step))
        return loss.detach(), grad.detach()

    # the passes' steps, the same for every image: X itself rides along as row 0 (a step of 0), so that
    # each change is measured against the gradient at X computed in the same pass and rounding
    # cancels as the step goes to 0
    steps = torch.tensor(etas * settings.sign, dtype=dtype, device=x.device)
    chunks = [(torch.as_tensor(moving, device=x.device), torch.cat([steps.new_zeros(1), steps[moving]]))
              for moving in step_passes(etas)]
    out = []
    with torch.enable_grad(), frozen_weights(classifier.model):
        for j in range(x.shape[0]):
            with torch.no_grad(), torch.autocast(x.device.type, dtype=classifier.amp_dtype,
                                                 enabled=classifier.amp):
                base = to_x(x[j:j + 1].clone()).to(dtype)
            label = labels[j:j + 1]
            loss0, g = loss_and_grad(base, label, step=False)
            # a step of 0 is X itself: its loss is L(X) and its gradient change 0, exactly
            losses = loss0.repeat(count)
            changes = torch.zeros(count, dtype=loss0.dtype, device=loss0.device)
            for where, scale in chunks:  # base is of the steps' dtype
                points = base + scale.view(-1, *[1] * (base.ndim - 1)) * g
                loss_k, grad_k = loss_and_grad(points, label.expand(len(scale)), step=True)
                losses[where] = loss_k[1:]
                changes[where] = torch.linalg.vector_norm((grad_k[1:] - grad_k[:1]).flatten(1), dim=1)
            norm = torch.linalg.vector_norm(g.flatten(1), dim=1)
            out.append(torch.cat([loss0, norm, losses, changes]).float())
    _check_passes(checks, classifier.amp, settings)
    return torch.stack(out).cpu().numpy().astype(np.float32)


def _check_passes(checks: list[tuple[torch.Tensor, torch.Tensor, int, bool]], amp: bool,
                  settings: LandscapeSettings) -> None:
    """Raise for the first pass whose logits, or whose gradient where its logits are finite, hold
    a NaN or an infinity: one wait for the device for the whole batch.

    Raises:
        NonFiniteError: as :func:`~robustbench_gcp.engine.classifier.finite` says it of the logits, or of
            the gradient; at a step, with the largest step named.
    """
    if not checks:
        return
    counts = torch.stack([torch.stack([logits, grad]) for logits, grad, _, _ in checks]).cpu().tolist()
    for (n_logits, n_grad), (_, _, rows, step) in zip(counts, checks):
        if not n_logits and not n_grad:
            continue
        if n_logits:
            error = nonfinite_error(n_logits, rows, amp, "points (X and its steps)")
        else:  # finite logits, undefined backward: every step from X would be NaN
            error = NonFiniteError(f"the gradient of the loss is NaN or infinite at {n_grad} of {rows} "
                                   "points (X and its steps) where the logits are finite: the model's "
                                   "backward pass is undefined there (a square root or a division at 0?)")
        if step:
            raise NonFiniteError(f"{error}, at a step of up to eta = {settings.etas.high:g} from the "
                                 f"{settings.at}: lower the last step of --etas") from None
        raise error


def _of_dtypes(error: Exception) -> bool:
    """Whether a module's error is one of mixed dtypes (float32 tensors of its own meeting the
    float64 copy's: "expected m1 and m2 to have the same dtype", "expected scalar type Double", "Input
    type (double) and bias type (float) should be the same"), not another of its code's."""
    text = f"{error} {error.__cause__ or ''}".lower()  # ("torch.DoubleTensor" alone is no such one)
    return "dtype" in text or "scalar type" in text or ("type (" in text and "should be the same" in text)


#: (images in [0, 1] on the device, per-image seeds) -> transformed images
Transform = Callable[[torch.Tensor, Sequence[int]], torch.Tensor]


@dataclass(frozen=True)
class LandscapeTask:
    """The landscape of one cell: clean images, or images corrupted on the fly (``transform``,
    seeded per image by ``seed_token``, the ImageNet-C cell's label, so that the images are
    those the ImageNet-C suite classifies)."""

    key: CellKey
    source: ImageSource
    settings: LandscapeSettings
    transform: Transform | None = None
    seed_token: str | None = None
    keys: tuple[CellKey, ...] = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "keys", (self.key,))

    def process(self, images: torch.Tensor, labels: torch.Tensor, indices: Sequence[int],
                ctx: Context) -> list[ShardResult]:
        x = from_uint8(images)
        if self.transform is not None:
            x = self.transform(x, ctx.seeds(self.seed_token or self.key.label, indices))
        # the model in the cell's precision: a float64 copy made once per process, whatever the
        # measurement point; its split at each point
        classifier_key = ("landscape_classifier", self.settings.precision)
        if classifier_key not in ctx.cache:
            ctx.cache[classifier_key] = in_precision(ctx.classifier, self.settings.precision)
        classifier = ctx.cache[classifier_key]
        split_key = ("landscape_split", self.settings.at, self.settings.precision)
        if split_key not in ctx.cache:
            ctx.cache[split_key] = measurement_split(classifier, self.settings.at)
        split = ctx.cache[split_key]
        try:
            values = measure(x, labels, classifier, self.settings, split=split)
        except ModelCodeError as error:  # a module you bring that computes in float32 only (helper-236)
            if self.settings.precision == "float32" or not _of_dtypes(error):
                raise
            # said as a setting's error: "mend the model's code and re-run the same command" misled
            raise ConfigError(f"{error} (the landscape suite runs a float64 copy of the model, "
                              "--landscape-precision float64 by default: if the module computes in float32 "
                              "only, give --landscape-precision float32)") from error
        return [ShardResult(n=len(indices), counts={}, extra=values)]
