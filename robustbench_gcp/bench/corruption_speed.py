"""Speed of the torch corruptions against the reference backend, on the same photographs.

Used by ``gcp-robust bench corruptions``; usable from Python too. Needs NumPy,
Pillow, scikit-image and imagecorruptions (the reference backend), imported on
the first call. With ``preset="cifar"`` / ``"tinyimagenet"`` the reference is the
transcription of the preset's generation script (:mod:`corruptions.reference_small`).

Example:
    >>> from robustbench_gcp.bench.corruption_speed import speed, speed_summary
    >>> rows = speed(["fog"], batch_size=4, size=64, severities=[3],
    ...              repeats=1)                             # doctest: +SKIP
    >>> speed_summary(rows)["speedup"] > 0                  # doctest: +SKIP
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from corruptions import (
    PRESET_SIZES,
    SEVERITIES,
    check_name,
    check_preset,
    corrupt,
    from_uint8,
    list_corruptions,
)
from robustbench_gcp.bench.photos import photo_levels
from robustbench_gcp.bench.timing import time_calls

__all__ = ["geometric_mean", "reference_description", "reference_name", "speed", "speed_summary"]

Progress = Callable[[str], None]

#: the generation scripts the small presets' reference transcribes
_SCRIPTS = {"cifar": "make_cifar_c.py", "tinyimagenet": "make_tinyimagenet_c.py"}


def reference_name(preset: str = "imagenet") -> str:
    """What the reference backend runs for ``preset``: ``imagecorruptions`` or the script's name."""
    return _SCRIPTS.get(check_preset(preset), "imagecorruptions")


def reference_description(preset: str = "imagenet") -> str:
    """One line naming the reference of ``preset``, for table captions and JSON."""
    if check_preset(preset) == "imagenet":
        return "imagecorruptions on the CPU"
    return (f"{_SCRIPTS[preset]} transcription on the CPU (motion blur: imagecorruptions' "
            "NumPy port; wand not installable)")


def geometric_mean(values: Sequence[float | None]) -> float | None:
    """Geometric mean of the positive finite values (None if there are none)."""
    values = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


def speed(
    names: Sequence[str] | None = None,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    size: int | None = None,
    severities: Sequence[int] = SEVERITIES,
    reference_images: int = 2,
    repeats: int = 3,
    progress: Progress | None = None,
    preset: str = "imagenet",
) -> list[dict]:
    """Time this package and the reference backend on the same images.

    For each corruption and severity: the best of ``repeats`` calls of
    :func:`corruptions.corrupt` on a batch of ``batch_size`` photographs (after one
    warm-up call that fills the caches), per image; and the reference
    (:func:`reference_description`) on each of
    the first ``reference_images`` of the same images, one at a time on the CPU, as a user
    calls it (uint8 NumPy in and out: :func:`corruptions.reference.reference_image_call`; the
    images are converted before the timing), after one warm-up call, best of 2 (glass_blur: one
    image, once; it takes about a second per image). The
    best of several runs is robust to other processes on a shared machine. Times
    are then averaged over the severities.

    Args:
        names: corruption names (default: all of them).
        device: where this package runs (the reference runs on the CPU).
        batch_size: images per :func:`~corruptions.corrupt` call.
        size: side of the square photographs, in pixels (default: the preset's,
            :data:`corruptions.PRESET_SIZES`: 224, 32, 64).
        severities: 1..5.
        reference_images: images the reference is timed on, per severity.
        repeats: timed calls per severity after the warm-up call; the best counts.
        progress: called with each corruption's name before it is timed.
        preset: the corruption parameters (:data:`corruptions.PRESETS`), on both sides.

    Returns:
        One row per corruption: corruption, ms_per_image, images_per_second,
        reference_ms_per_image, speedup, reference_images.

    Raises:
        ValueError: an unknown corruption name or preset.
    """
    from corruptions.reference import reference_image_call

    preset = check_preset(preset)
    size = PRESET_SIZES[preset] if size is None else size
    device = torch.device(device)
    names = list(names) if names is not None else list_corruptions("all")
    names = [check_name(n) for n in names]
    # uint8 images, as the suites decode them (ours: from_uint8's k / 255; the reference's: uint8
    # NumPy images as a user holds them), made once, outside the timing
    levels = photo_levels(batch_size, size)
    images = from_uint8(levels).to(device)
    pixels = levels.permute(0, 2, 3, 1).numpy()
    seeds = list(range(batch_size))
    rows = []
    for name in names:
        if progress:
            progress(name)
        glass = name == "glass_blur"
        count = 1 if glass else max(1, min(reference_images, batch_size))
        ours, reference = [], []
        for severity in severities:
            # one warm-up call: caches, textures, kernels
            # as the engine calls it (no [0, 1] check: no device sync of its own)
            (timing,) = time_calls(
                [lambda n=name, s=severity: corrupt(images, n, s, seed=seeds, preset=preset,
                                                    check_values=False)],
                device=device, repeats=repeats, warmup=1)
            ours.append(timing.best / batch_size * 1000)
            call = reference_image_call(name, severity, preset)
            per_image = [
                time_calls([lambda i=i, call=call: call(pixels[i], seeds[i])], device="cpu",
                           repeats=1 if glass else 2, warmup=0 if glass else 1)[0].best
                for i in range(count)
            ]
            reference.append(sum(per_image) / count * 1000)
        ms = sum(ours) / len(ours)
        ref_ms = sum(reference) / len(reference)
        rows.append({
            "corruption": name,
            "ms_per_image": ms,
            "images_per_second": 1000 / ms if ms > 0 else None,
            "reference_ms_per_image": ref_ms,
            "speedup": ref_ms / ms if ms > 0 else None,
            "reference_images": count,
        })
    return rows


def speed_summary(rows: Sequence[dict]) -> dict:
    """The geometric means of rows of :func:`speed`, as one more row (corruption
    ``"geometric mean"``; None where no row has a positive figure)."""
    summary = {
        "corruption": "geometric mean",
        "ms_per_image": geometric_mean([r["ms_per_image"] for r in rows]),
        "reference_ms_per_image": geometric_mean([r["reference_ms_per_image"] for r in rows]),
        "speedup": geometric_mean([r["speedup"] for r in rows]),
    }
    summary["images_per_second"] = 1000 / summary["ms_per_image"] if summary["ms_per_image"] else None
    return summary
