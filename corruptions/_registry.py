"""The corruption registry, the subsets, and the argument checks."""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "BENCHMARK",
    "EXTRA",
    "SUBSETS",
    "Corruption",
    "check_images",
    "check_name",
    "check_severity",
    "get_corruption",
    "list_corruptions",
    "register",
]

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
SUBSETS: dict[str, tuple[str, ...]] = {
    "benchmark": BENCHMARK,
    "extra": EXTRA,
    "all": BENCHMARK + EXTRA,
    "noise": BENCHMARK[0:3],
    "blur": BENCHMARK[3:7],
    "weather": BENCHMARK[7:11],
    "digital": BENCHMARK[11:15],
}

SEVERITIES = (1, 2, 3, 4, 5)
#: smallest image side accepted (as imagecorruptions)
MIN_SIZE = 32

#: Sampler: (rng, images, severity) -> dict of per-image parameter tensors (batch first)
Sampler = Callable[..., dict[str, Any]]
#: Applier: (images float (B, 3, H, W), severity, params) -> corrupted images (unclipped ok)
Applier = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Corruption:
    """One registered corruption.

    Attributes:
        name: registry name (imagecorruptions' function name).
        family: noise, blur, weather or digital (the paper's categories; the
            extra corruptions have one too, though the subsets of
            :func:`list_corruptions` group the benchmark ones only).
        parameters: the ImageNet-C parameters for severities 1..5 (224 px).
        apply: ``apply(images, severity, params) -> images``: the deterministic
            part, on (B, 3, H, W) float32/float64 images in [0, 1].
        sample: ``sample(rng, images, severity) -> params`` for random corruptions
            (None for deterministic ones): a dict of tensors whose first axis is the
            batch, drawn from an :class:`~corruptions._rng.ImageRandom`.
        cpu_chunk: on the CPU, images are processed this many at a time (at 224 px;
            scaled by image area), which keeps temporaries in cache and avoids
            page-faulting fresh 20 MB buffers at every operation; None processes the
            whole batch at once (spatter's row-sequential distance transform prefers it).
    """

    name: str
    family: str
    parameters: tuple
    apply: Applier
    sample: Sampler | None = None
    doc: str = field(default="", compare=False)
    cpu_chunk: int | None = 4

    @property
    def random(self) -> bool:
        return self.sample is not None


_REGISTRY: dict[str, Corruption] = {}


def register(corruption: Corruption) -> Corruption:
    """Add a corruption to the registry (a duplicate name is an error)."""
    if corruption.name in _REGISTRY:
        raise ValueError(f"corruption {corruption.name!r} is registered twice")
    if corruption.name not in SUBSETS["all"]:
        raise ValueError(f"corruption {corruption.name!r} is not one of the 19 of ImageNet-C")
    if len(corruption.parameters) != len(SEVERITIES):
        raise ValueError(f"corruption {corruption.name!r} needs parameters for 5 severities")
    _REGISTRY[corruption.name] = corruption
    return corruption


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
    if subset not in SUBSETS:
        close = difflib.get_close_matches(str(subset), SUBSETS, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"`subset` should be one of {', '.join(SUBSETS)}. Got {subset!r}.{hint}"
        )
    return list(SUBSETS[subset])


def get_corruption(name: str) -> Corruption:
    """The registry entry of ``name`` (its parameters, sampler and applier).

    Raises:
        ValueError: unknown name (the closest name is suggested).
    """
    return _REGISTRY[check_name(name)]


def check_name(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"`name` should be a corruption name (str). Got {type(name).__name__}")
    if name not in _REGISTRY:
        choices = SUBSETS["all"]
        close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
        if not close:
            # also match on the name without separators ("gaussiannoise", "Gaussian Noise")
            squashed = {c.replace("_", ""): c for c in choices}
            key = name.lower().replace("_", "").replace("-", "").replace(" ", "")
            close = [squashed[k] for k in difflib.get_close_matches(key, squashed, n=1, cutoff=0.6)]
        hint = (
            f" Did you mean {close[0]!r}?"
            if close
            else " See list_corruptions('all') for the 19 names."
        )
        raise ValueError(f"unknown corruption {name!r}.{hint}")
    return name


def check_severity(severity: int) -> int:
    if isinstance(severity, bool) or not isinstance(severity, numbers.Integral):
        raise TypeError(f"`severity` should be an int 1..5. Got {severity!r} ({type(severity).__name__})")
    if int(severity) not in SEVERITIES:
        raise ValueError(f"`severity` should be 1..5. Got {severity}")
    return int(severity)


def check_images(images: torch.Tensor, min_size: int = MIN_SIZE) -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"`images` should be a torch.Tensor of shape (B, 3, H, W). Got {type(images).__name__}"
        )
    if images.ndim != 4:
        hint = " (add a batch dimension: images.unsqueeze(0))" if images.ndim == 3 else ""
        raise ValueError(
            f"`images` should have shape (B, 3, H, W). Got {tuple(images.shape)}{hint}"
        )
    if images.shape[1] != 3:
        hint = (
            " (repeat a grayscale image: images.expand(-1, 3, -1, -1))"
            if images.shape[1] == 1
            else " (channels first: images.permute(0, 3, 1, 2))"
            if images.shape[-1] == 3
            else ""
        )
        raise ValueError(
            f"`images` should have 3 channels, shape (B, 3, H, W). Got {tuple(images.shape)}{hint}"
        )
    if not images.dtype.is_floating_point:
        raise TypeError(
            f"`images` should be a float tensor in [0, 1]. Got {images.dtype} "
            "(convert uint8 images with images.float() / 255)"
        )
    if images.shape[2] < min_size or images.shape[3] < min_size:
        raise ValueError(
            f"`images` should be at least {min_size}x{min_size} pixels. Got {tuple(images.shape)}"
        )
