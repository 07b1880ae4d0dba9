"""The registries of the corruptions and the perturbations, their subsets and levels,
and the argument checks.

One mechanism for both: a :class:`Registry` maps names to entries, keeps the named
subsets in report order and checks names (suggesting the closest one). Each entry
splits its randomness from its computation: ``sample(rng, images, level)`` draws the
random parameters from an :class:`~corruptions._rng.ImageRandom` (None for
deterministic entries), ``apply`` is deterministic given them.

- :data:`CORRUPTIONS`: the 19 ImageNet-C corruptions (:class:`Corruption`), registered
  by ``corruptions/{noise,blur,weather,digital}.py``; levels :data:`SEVERITIES`.
- :data:`PERTURBATIONS`: the 14 ImageNet-P perturbations (:class:`Perturbation`),
  registered by ``corruptions/perturbations/*_sequences.py``; levels :data:`DIFFICULTIES`.
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, Protocol, TypeVar

import torch

from corruptions._checks import FLOAT_DTYPES, MIN_SIZE, check_images, check_range  # noqa: F401 (theirs)
from corruptions._ops import new_output, without_autocast, work_images
from corruptions._rng import Drawn, ImageRandom, draws_equal


class ReadOnlyTable(dict):
    """A dict that refuses changes: a corruption's parameters per preset. Still a dict (JSON, pickle
    for a loader's spawned workers, ``copy.deepcopy``: a MappingProxyType was none of them)."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("a corruption's parameter table is read-only (every later call in the process "
                        "would take the change): copy it with dict(table)")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self):
        return type(self), (dict(self),)

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


__all__ = [
    "BENCHMARK",
    "CORRUPTIONS",
    "DIFFICULTIES",
    "EXTRA",
    "Level",
    "NOISE_PERTURBATIONS",
    "PRESETS",
    "PRESET_SIZES",
    "PERTURBATIONS",
    "PERTURBATION_SUBSETS",
    "SEVERITIES",
    "SUBSETS",
    "Corruption",
    "Perturbation",
    "Registry",
    "check_difficulty",
    "check_images",
    "check_name",
    "check_perturbation",
    "check_preset",
    "check_severity",
    "get_corruption",
    "get_perturbation",
    "list_corruptions",
    "list_perturbations",
    "presets",
    "register",
    "register_perturbation",
]

# --------------------------------------------------------------------------------------
# names, subsets and levels

#: the 15 benchmark corruptions, in the order of every report (PROTOCOL.md)
BENCHMARK = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
#: the 4 held-out ("extra") corruptions
EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")

#: named subsets for :func:`list_corruptions`; the four groups are those of the benchmark
SUBSETS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "benchmark": BENCHMARK,
    "extra": EXTRA,
    "all": BENCHMARK + EXTRA,
    "noise": BENCHMARK[0:3],
    "blur": BENCHMARK[3:7],
    "weather": BENCHMARK[7:11],
    "digital": BENCHMARK[11:15],
})

#: corruption severities
SEVERITIES = (1, 2, 3, 4, 5)

#: corruption parameter presets: the original generation scripts retune every corruption for
#: each resolution (hendrycks/robustness ImageNet-C/create_c/make_imagenet_c.py,
#: make_cifar_c.py, make_tinyimagenet_c.py)
PRESETS = ("imagenet", "cifar", "tinyimagenet")
#: the image side each preset's parameters were made for (ImageNet-C: the 224 crop)
PRESET_SIZES = MappingProxyType({"imagenet": 224, "cifar": 32, "tinyimagenet": 64})

_PERTURBATION_TEST = (
    "gaussian_noise",
    "shot_noise",
    "motion_blur",
    "zoom_blur",
    "snow",
    "brightness",
    "translate",
    "rotate",
    "tilt",
    "scale",
)
_PERTURBATION_VALIDATION = ("speckle_noise", "gaussian_blur", "spatter", "shear")
#: CIFAR-10-P's and CIFAR-100-P's: hendrycks/robustness ImageNet-P/cifar-p-eval.py averages
#: spatter where ImageNet-P has snow (snow is among its validation perturbations)
_CIFAR_P_TEST = tuple("spatter" if p == "snow" else p for p in _PERTURBATION_TEST)
_CIFAR_P_VALIDATION = tuple("snow" if p == "spatter" else p for p in _PERTURBATION_VALIDATION)
#: named subsets for :func:`list_perturbations`: the 10 test perturbations in the order of
#: every report (PROTOCOL.md section 2), the 4 validation ones, all 14; and CIFAR-10-P's
#: test and validation ones
PERTURBATION_SUBSETS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "test": _PERTURBATION_TEST,
    "validation": _PERTURBATION_VALIDATION,
    "all": _PERTURBATION_TEST + _PERTURBATION_VALIDATION,
    "cifar-test": _CIFAR_P_TEST,
    "cifar-validation": _CIFAR_P_VALIDATION,
})
#: the perturbations made of fresh noise per frame: frames 1..30 are compared with the
#: clean frame 0 (not with the previous frame), and difficulty selects their noise level
NOISE_PERTURBATIONS = ("gaussian_noise", "shot_noise", "speckle_noise")
#: perturbation difficulties
DIFFICULTIES = (1, 2, 3)


# --------------------------------------------------------------------------------------
# the registry mechanism


class _Named(Protocol):
    @property
    def name(self) -> str: ...


E = TypeVar("E", bound=_Named)


class Registry(Generic[E]):
    """Entries by name, the named subsets (in report order) and the name checks.

    Args:
        kind: what an entry is (``corruption``), for the messages.
        subsets: named subsets of names; ``subsets["all"]`` are the names that may be
            registered.
        origin: where the names come from (``ImageNet-C``), for the messages.
    """

    def __init__(self, kind: str, subsets: Mapping[str, tuple[str, ...]], *, origin: str,
                 maker: str = "") -> None:
        self.kind = kind
        self.subsets = subsets
        self.origin = origin
        self.maker = maker  # the function that applies an entry, for the messages
        #: the other registry, whose names this one's messages recognize (rotate given to corrupt)
        self.sibling: Registry | None = None
        self._entries: dict[str, E] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def register(self, entry: E) -> E:
        """Add an entry (a duplicate name, or a name outside ``subsets["all"]``, is an error)."""
        name, names = entry.name, self.subsets["all"]
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        if name not in names:
            raise ValueError(f"{self.kind} {name!r} is not one of the {len(names)} of {self.origin}")
        self._entries[name] = entry
        return entry

    def names(self, subset: str) -> list[str]:
        """A new list of the names of ``subset``.

        Raises:
            ValueError: unknown subset (the closest one is suggested).
        """
        if not isinstance(subset, str):
            raise TypeError(f"`subset` should be a subset name (str): {', '.join(self.subsets)}. "
                            f"Got {type(subset).__name__}")
        if subset not in self.subsets:
            folded = {name.lower(): name for name in self.subsets}  # "ALL": all (difflib minds the case)
            close = difflib.get_close_matches(subset.lower(), folded, n=1, cutoff=0.5)
            hint = f" Did you mean {folded[close[0]]!r}?" if close else ""
            raise ValueError(
                f"`subset` should be one of {', '.join(self.subsets)}. Got {subset!r}.{hint}"
            )
        return list(self.subsets[subset])

    def check(self, name: str) -> str:
        """``name`` if it is registered.

        Raises:
            TypeError: ``name`` is not a str.
            ValueError: unknown name; the closest name is suggested, also matched without
                separators (``gaussiannoise``, ``Gaussian Noise``).
        """
        if not isinstance(name, str):
            raise TypeError(f"`name` should be a {self.kind} name (str). Got {type(name).__name__}")
        if name not in self._entries:
            if sibling := self.sibling_of(name):
                raise ValueError(f"unknown {self.kind} {name!r}: {sibling}, which {self.sibling.maker} "
                                 "makes")
            choices = self.subsets["all"]
            key = name.lower().replace("_", "").replace("-", "").replace(" ", "")
            started = [c for c in choices if c.replace("_", "").startswith(key)] if key else []
            close = started if len(started) == 1 else \
                difflib.get_close_matches(name, choices, n=1, cutoff=0.5)  # jpeg: jpeg_compression
            if not close:
                squashed = {c.replace("_", ""): c for c in choices}
                close = [squashed[k] for k in difflib.get_close_matches(key, squashed, n=1, cutoff=0.6)]
            # the names themselves (the command line's bench commands print this too, where a
            # library function to call said nothing)
            hint = f" Did you mean {close[0]!r}?" if close else f" Choose from: {', '.join(choices)}."
            raise ValueError(f"unknown {self.kind} {name!r}.{hint}")
        return name

    def sibling_of(self, name: str) -> str:
        """``"an ImageNet-P perturbation"`` where ``name`` is no entry of this registry but one of
        its :attr:`sibling`'s (``rotate`` given as a corruption; "Did you mean 'saturate'?"
        misled), else ""."""
        if name in self._entries or self.sibling is None or name not in self.sibling.subsets["all"]:
            return ""
        return f"an {self.sibling.origin} {self.sibling.kind}"

    def get(self, name: str) -> E:
        """The entry of ``name`` (errors as :meth:`check`)."""
        return self._entries[self.check(name)]


# --------------------------------------------------------------------------------------
# corruptions

#: Sampler: (rng, images, level) -> dict of per-image parameter tensors (batch first)
Sampler = Callable[..., dict[str, Any]]
#: Applier: (images float (B, 3, H, W), level, params) -> corrupted images (unclipped ok)
Applier = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Level:
    """What an applier or sampler gets: one corruption at one severity of one preset.

    Attributes:
        severity: 1..5.
        preset: one of :data:`PRESETS`.
        c: the corruption's parameters there (a number or a tuple): the row the original
            script selects with ``c = [...][severity - 1]``.
    """

    severity: int
    preset: str
    c: Any


@dataclass(frozen=True)
class Corruption:
    """One registered corruption.

    Attributes:
        name: registry name (imagecorruptions' function name).
        family: noise, blur, weather or digital (the paper's categories; the
            extra corruptions have one too, though the subsets of
            :func:`list_corruptions` group the benchmark ones only).
        parameters: the parameters for severities 1..5 of each preset
            (:data:`PRESETS`: ImageNet-C's at 224 px, CIFAR-10-C's at 32 px,
            Tiny-ImageNet-C's at 64 px), from the original generation scripts.
        applier: ``applier(images, level, params) -> images``: the deterministic part, on
            (B, 3, H, W) float32/float64 images in [0, 1]; ``level`` is a :class:`Level`.
        sampler: ``sampler(rng, images, level) -> params`` for random corruptions
            (None for deterministic ones): a dict of tensors whose first axis is the
            batch, drawn from an :class:`~corruptions._rng.ImageRandom`.
        cpu_chunk: on the CPU, images are processed this many at a time (at 224 px;
            scaled by image area), which keeps temporaries in cache and avoids
            page-faulting fresh 20 MB buffers at every operation; None processes the
            whole batch at once (spatter's row-sequential distance transform prefers it).
        revision: 1, plus one each time a release changed its output (2 for brightness and
            saturate: scikit-image's float64 HSV arithmetic since gcp-robust 0.7.1), so that
            results stored from an earlier revision are recomputed, not reused
            (``robustbench_gcp.suites.revisions``).
        host_read: what the applier reads of the images' values on the host, once per batch
            ("" for none): such a corruption cannot run on "meta" images, which hold no values.
    """

    name: str
    family: str
    parameters: Mapping[str, tuple]
    applier: Applier
    sampler: Sampler | None = None
    doc: str = field(default="", compare=False)
    cpu_chunk: int | None = 4
    revision: int = 1
    host_read: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        # read-only: a caller's edit of a table the README shows changed every later call's output
        frozen = ReadOnlyTable({preset: tuple(table) for preset, table in self.parameters.items()})
        object.__setattr__(self, "parameters", frozen)

    @property
    def random(self) -> bool:
        return self.sampler is not None

    def check_device(self, images: torch.Tensor) -> None:
        """Raise a ValueError for "meta" images where the applier reads values (:attr:`host_read`):
        torch's "Tensor.item() cannot be called on meta tensors" named neither."""
        refuse_meta(self.name, self.host_read, images)

    def level(self, severity: int, preset: str = "imagenet") -> Level:
        """The :class:`Level` of ``severity`` in ``preset`` (both checked)."""
        severity, preset = check_severity(severity), check_preset(preset)
        return Level(severity, preset, self.parameters[preset][severity - 1])

    @without_autocast
    def apply(self, images: torch.Tensor, severity: int, params: Mapping[str, Any], *,
              preset: str = "imagenet") -> torch.Tensor:
        """The deterministic part at ``severity`` of ``preset``, unclipped: ``images`` as
        :func:`corruptions.corrupt` takes them (checked alike, computed in the same precision,
        returned in their dtype, not modified); ``params`` as :meth:`sample` or
        ``sample_parameters`` drew them, for these B images or for one image (its draw then
        serves them all).

        Raises:
            TypeError, ValueError: ``images`` as :func:`corruptions.corrupt` refuses them (values
                outside [0, 1] included).
            ValueError: ``params`` drawn for another number of images, lacking one, or drawn for
                images of another size that these do not fit.
        """
        check_images(images)
        level = self.level(severity, preset)
        if not isinstance(params, Mapping):  # an AttributeError from inside
            raise TypeError(f"{self.name}: `params` should be the dict sample_parameters drew ({{}} for a "
                            f"deterministic corruption). Got {type(params).__name__}")
        if isinstance(params, Drawn) and (params.corruption, params.severity, params.preset) != (
                self.name, severity, preset):
            reuse = ""
            if params.corruption == self.name and self._draws_alike(images, params, severity, preset):
                reuse = (f" (or reuse this draw: {self.name} draws the same at both, so dict(params) gives "
                         "what a draw made for these would)")
            raise ValueError(f"{self.name}: `params` were drawn for {params.corruption} at severity "
                             f"{params.severity} ({params.preset} preset), and are applied at severity "
                             f"{severity} ({preset} preset): draw them with sample_parameters(images, "
                             f"{self.name!r}, {severity}, preset={preset!r}){reuse}")
        check_range(images)
        self.check_device(images)
        if images.shape[0] == 0:
            return images.detach().clone(memory_format=torch.contiguous_format)
        x = work_images(images)
        fitted = {key: _fit_draw(self.name, key, value, x) for key, value in params.items()}
        self._check_draw_shapes(x, severity, preset, fitted)
        try:
            out = self.applier(x, level, fitted)
        except KeyError as missing:
            raise ValueError(f"{self.name}: `params` lack {missing.args[0]!r}: pass what sample_parameters "
                             f"drew for it ({', '.join(map(repr, params)) or 'none given'})") from None
        out = new_output(out, images)
        return out if out.dtype == images.dtype else out.to(images.dtype)

    def _check_draw_shapes(self, x: torch.Tensor, severity: int, preset: str,
                           params: Mapping[str, Any]) -> None:
        """Each drawn tensor of the shape a draw for these images has (torch's "The size of tensor
        a (32) must match the size of tensor b (48)" named neither the draw nor the cause)."""
        height, width = x.shape[-2:]
        expected = _draw_shapes(self, severity, preset, height, width)
        for key, shape in expected.items():
            value = params.get(key)
            if isinstance(value, torch.Tensor) and tuple(value.shape[1:]) != shape:
                # glass_blur's offsets are shaped by the severity and preset too
                leveled = any(_draw_shapes(self, other, kind, height, width)[key] != shape
                              for other in SEVERITIES for kind in PRESETS)
                what, these = ("size, severity or preset", f" at severity {severity} (preset {preset})") \
                    if leveled else ("size", "")
                raise ValueError(f"{self.name}: `params` were drawn for images of another {what}: {key!r} is "
                                 f"{tuple(value.shape[1:])} an image, a draw for these {height}x{width} "
                                 f"images{these} {shape}: draw them for these images"
                                 f"{' at this severity and preset' if leveled else ''} (sample_parameters)")

    def _draws_alike(self, images: torch.Tensor, params: Drawn, severity: int, preset: str) -> bool:
        """Whether this corruption draws the same for one of ``images`` (seeded) at ``params``'
        severity and preset as at ``severity`` and ``preset`` (gaussian_noise's field; not
        impulse_noise's, snow's, fog's ...): where a reused draw gives the right image."""
        if images.shape[0] == 0 or images.device.type == "meta":  # no values to draw for
            return False
        one = images[:1].detach().to("cpu").clamp(0, 1)
        return draws_equal(*(self.sample(ImageRandom(1, "cpu", seeds=[0]), one, s, preset=p)
                             for s, p in ((params.severity, params.preset), (severity, preset))))

    def sample(self, rng: Any, images: torch.Tensor, severity: int, *,
               preset: str = "imagenet") -> Drawn:
        """The random parameters (``{}`` for a deterministic corruption), drawn from ``rng``, a
        :class:`corruptions._rng.ImageRandom` of one stream per image of ``images``.
        :func:`corruptions.sample_parameters` makes that from a seed or a generator: the way to
        draw them unless you hold an ``ImageRandom``.

        Raises:
            TypeError: ``rng`` is not an ``ImageRandom`` (a ``torch.Generator``: pass it to
                ``sample_parameters(..., generator=)``); ``images`` as ``corrupt`` refuses them.
            ValueError: ``rng`` is of another number of images than ``images``.
        """
        check_images(images)
        level = self.level(severity, preset)
        if not isinstance(rng, ImageRandom):
            raise TypeError(f"{self.name}: `rng` should be a corruptions._rng.ImageRandom. Got "
                            f"{type(rng).__name__}: draw with corruptions.sample_parameters(images, "
                            f"{self.name!r}, {severity}, seed=... or generator=...)")
        if rng.batch != images.shape[0]:
            raise ValueError(f"{self.name}: `rng` draws for {rng.batch} images; `images` holds "
                             f"{images.shape[0]}")
        draws = {} if self.sampler is None else self.sampler(rng, work_images(images), level)
        return Drawn(draws, self.name, severity, preset)


_DRAW_SHAPES: dict[tuple, dict[str, tuple[int, ...]]] = {}


def _draw_shapes(spec: Corruption, severity: int, preset: str, height: int, width: int) -> dict[str, tuple]:
    """The shape of one image's draws (name -> shape) for ``height`` x ``width`` images: drawn once
    on the "meta" device, which holds no values. Empty where the draw reads values (impulse_noise's
    counts), which meta tensors have not."""
    key = (spec.name, severity, preset, height, width)
    shapes = _DRAW_SHAPES.get(key)
    if shapes is None:
        shapes = {}
        if spec.random:
            try:
                drawn = spec.sample(ImageRandom(1, torch.device("meta")),
                                    torch.empty(1, 3, height, width, device="meta"), severity, preset=preset)
            except (RuntimeError, NotImplementedError):  # a value read: .item() of a meta tensor
                drawn = {}
            shapes = {k: tuple(v.shape[1:]) for k, v in drawn.items()
                      if isinstance(v, torch.Tensor) and v.ndim}
        if len(_DRAW_SHAPES) > 1024:
            _DRAW_SHAPES.clear()
        _DRAW_SHAPES[key] = shapes
    return shapes


def _fit_draw(name: str, key: str, value: Any, images: torch.Tensor) -> Any:
    """One drawn parameter for ``images``: on their device, and one image's draw repeated for B."""
    if not isinstance(value, torch.Tensor) or value.ndim == 0:
        return value
    batch, drawn = images.shape[0], value.shape[0]
    if drawn != batch and drawn != 1:
        raise ValueError(f"{name}: `params` were drawn for {drawn} images ({key!r}), but `images` has "
                         f"{batch}: draw them for these images, or for one image to give all its draw")
    value = value.to(images.device)
    return value.expand(batch, *value.shape[1:]) if drawn != batch else value


def presets(imagenet: tuple, cifar: tuple, tinyimagenet: tuple) -> dict[str, tuple]:
    """A corruption's parameter tables by preset (the order of :data:`PRESETS`)."""
    return dict(zip(PRESETS, (imagenet, cifar, tinyimagenet)))


def refuse_meta(name: str, host_read: str, images: torch.Tensor) -> None:
    """A ValueError for "meta" images given to ``name``, whose applier reads ``host_read`` (if
    any) of their values on the host."""
    if images.device.type == "meta" and host_read:
        raise ValueError(f"{name} cannot run on 'meta' images, which hold no values: once per "
                         f"batch the host reads {host_read}")


#: the corruption registry
CORRUPTIONS: Registry[Corruption] = Registry(
    "corruption", SUBSETS, origin="ImageNet-C", maker="corrupt"
)


def register(corruption: Corruption) -> Corruption:
    """Add a corruption to the registry (a duplicate name, or a preset without 5 severities,
    is an error)."""
    if set(corruption.parameters) != set(PRESETS):
        raise ValueError(f"corruption {corruption.name!r} needs parameters for the presets "
                         f"{', '.join(PRESETS)}")
    for preset, table in corruption.parameters.items():
        if len(table) != len(SEVERITIES):
            raise ValueError(f"corruption {corruption.name!r} needs 5 severities in preset {preset!r}")
    return CORRUPTIONS.register(corruption)


def list_corruptions(subset: str = "benchmark") -> list[str]:
    """Names of the corruptions of a subset, in the order of the reports.

    Args:
        subset: ``benchmark`` (the 15 of ImageNet-C, PROTOCOL.md order),
            ``extra`` (speckle_noise, gaussian_blur, spatter, saturate), ``all``
            (the 19), or one of the benchmark groups ``noise``, ``blur``,
            ``weather``, ``digital``.

    Returns:
        A new list of names.

    Raises:
        ValueError: unknown subset.

    Example:
        >>> list_corruptions("noise")
        ['gaussian_noise', 'shot_noise', 'impulse_noise']
    """
    return CORRUPTIONS.names(subset)


def get_corruption(name: str) -> Corruption:
    """The registry entry of ``name`` (its parameters, sampler and applier).

    Raises:
        ValueError: unknown name (the closest name is suggested).
    """
    return CORRUPTIONS.get(name)


def check_name(name: str) -> str:
    """``name`` if it is a corruption, else an error suggesting the closest one."""
    return CORRUPTIONS.check(name)


# --------------------------------------------------------------------------------------
# perturbations


@dataclass(frozen=True)
class Perturbation:
    """One registered ImageNet-P perturbation.

    Attributes:
        name: its name (the released folder's).
        frames: number of frames (31, or 41 for translate).
        apply: ``apply(job, params) -> frames``: the deterministic part. ``job`` (a
            ``corruptions.perturbations._sequence.Job``) holds the checked call: the
            S x S images, the crop, the requested frame indices, the difficulty;
            returns (B, F, 3, c, c) frames in the work dtype (unclipped ok).
        sample: ``sample(rng, images, difficulty, preset=...) -> params`` for random perturbations
            (None for deterministic ones): a dict of tensors whose first axis is the
            ``rng.batch`` random sources of an :class:`~corruptions._rng.ImageRandom`,
            grouped by image (``images``: the B clean crops; sources ``k n .. k n + n - 1``
            belong to image k). n is 1 (one layer per video: snow, spatter), or, for
            the :data:`NOISE_PERTURBATIONS`, the number of noisy frames drawn (one
            source per frame: ``corruptions.perturbations.draw_parameters``).
        storage: how the original stored a frame as uint8: ``truncate`` (``np.uint8(255 x)``,
            PIL's filters; a 1e-3 tolerance absorbs float32 error), ``truncate-exact`` (the
            frames went through the original's float operations: plain truncation) or
            ``round`` (ImageMagick, OpenCV).
        revision: 1, plus one each time a release changed its frames (2 for gaussian_blur in
            0.7.7: scipy's sums in scipy's order); cells of an earlier revision are computed
            again, not reused (``robustbench_gcp.suites.revisions``).
        doc: what frame i is.
        host_read: as :attr:`Corruption.host_read` (spatter's Canny hysteresis).
    """

    name: str
    frames: int
    apply: Callable[..., torch.Tensor]
    sample: Sampler | None = None
    storage: str = "truncate"
    revision: int = 1
    doc: str = field(default="", compare=False)
    host_read: str = field(default="", compare=False)

    @property
    def random(self) -> bool:
        """Whether the frames depend on random draws."""
        return self.sample is not None

    @property
    def subset(self) -> str:
        """``test`` or ``validation``."""
        return "test" if self.name in PERTURBATION_SUBSETS["test"] else "validation"

    @property
    def noise(self) -> bool:
        """Fresh noise per frame (one of :data:`NOISE_PERTURBATIONS`)."""
        return self.name in NOISE_PERTURBATIONS


#: the perturbation registry
PERTURBATIONS: Registry[Perturbation] = Registry(
    "perturbation", PERTURBATION_SUBSETS, origin="ImageNet-P", maker="perturbation_sequence"
)
CORRUPTIONS.sibling, PERTURBATIONS.sibling = PERTURBATIONS, CORRUPTIONS


def register_perturbation(perturbation: Perturbation) -> Perturbation:
    """Add a perturbation to the registry (a duplicate name is an error)."""
    if perturbation.storage not in ("truncate", "truncate-exact", "round"):
        raise ValueError(f"perturbation {perturbation.name!r}: unknown storage {perturbation.storage!r}")
    return PERTURBATIONS.register(perturbation)


def list_perturbations(subset: str = "test") -> list[str]:
    """Names of the perturbations of a subset, in the order of the reports.

    Args:
        subset: ``test`` (the 10 of ImageNet-P), ``validation`` (speckle_noise,
            gaussian_blur, spatter, shear), ``all`` (the 14), ``cifar-test`` /
            ``cifar-validation`` (CIFAR-10-P's: spatter and snow trade places).

    Returns:
        A new list of names.

    Raises:
        ValueError: unknown subset.

    Example:
        >>> list_perturbations("validation")
        ['speckle_noise', 'gaussian_blur', 'spatter', 'shear']
    """
    return PERTURBATIONS.names(subset)


def check_perturbation(name: str) -> str:
    """``name`` if it is a perturbation, else an error suggesting the closest one."""
    return PERTURBATIONS.check(name)


def get_perturbation(name: str) -> Perturbation:
    """The registry entry of ``name`` (frame count, subset, sampler and applier, documentation).

    Raises:
        ValueError: unknown name (the closest name is suggested).
    """
    return PERTURBATIONS.get(name)


# --------------------------------------------------------------------------------------
# argument checks


def check_severity(severity: int) -> int:
    if isinstance(severity, bool) or not isinstance(severity, numbers.Integral):
        raise TypeError(f"`severity` should be an int 1..5. Got {severity!r} ({type(severity).__name__})")
    if int(severity) not in SEVERITIES:
        raise ValueError(f"`severity` should be 1..5. Got {severity}")
    return int(severity)


def check_preset(preset: str) -> str:
    """``preset`` if it is one of :data:`PRESETS`, else an error listing them."""
    if preset not in PRESETS:
        if not isinstance(preset, str):
            raise TypeError(f"`preset` should be one of {', '.join(PRESETS)}. Got {preset!r}")
        close = difflib.get_close_matches(preset.lower().replace("-", ""), PRESETS, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"`preset` should be one of {', '.join(PRESETS)}. Got {preset!r}.{hint}")
    return preset


def check_difficulty(difficulty: int) -> int:
    if isinstance(difficulty, bool) or not isinstance(difficulty, numbers.Integral):
        raise TypeError(f"`difficulty` should be an int 1..3. Got {difficulty!r} "
                        f"({type(difficulty).__name__})")
    if int(difficulty) not in DIFFICULTIES:
        raise ValueError(f"`difficulty` should be 1..3. Got {difficulty}")
    return int(difficulty)
