"""The blur perturbations: motion_blur (a turning ImageMagick motion blur), gaussian_blur
(a growing scikit-image Gaussian) and zoom_blur (a running mean of growing PIL zooms).
All deterministic (no sampler; ``apply(job, params)`` gets empty ``params``). Their
parameters by preset (:data:`~corruptions.PRESETS`) are the originals': ImageNet-P's
(``make_imagenet_p.py``), CIFAR-10-P's (``make_cifar_p.py``: a 21-frame motion blur) and
Tiny-ImageNet-P's (``make_tinyimagenet_p.py``).

zoom_blur's zooms (>= 1) read only the crop (and the pixel past its last row and column),
about the centre of the whole image: of the S x S square, or with ``sizes`` of the whole
resized image (:mod:`~corruptions.perturbations.geometric_sequences`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from corruptions._ops import gaussian_filter_exact, grid_doubles, true_div
from corruptions._registry import Perturbation, presets, register_perturbation
from corruptions.blur import motion_blur_levels
from corruptions.perturbations._sequence import Job, finish, per_frame
from corruptions.perturbations.geometric_sequences import Box, affine_reads, warp_affine

__all__ = ["FRAMES", "GAUSSIAN_BLUR", "GAUSSIAN_BLUR_CIFAR", "GAUSSIAN_BLUR_TINY", "MOTION_BLUR",
           "MOTION_BLUR_CIFAR", "MOTION_BLUR_TINY", "READS", "ZOOM_STEP"]

# the originals' constants
#: radius, sigma, then frame i's angle (i - offset) * step degrees, and the frame count
MOTION_BLUR = (10, 3, 30, 4, 31)  # ImageNet-P: angle (i - 30) * 4, 31 frames
MOTION_BLUR_CIFAR = (6, 1.8, 20, 9, 21)  # CIFAR-10-P: angle (i - 20) * 9, 21 frames
#: Tiny-ImageNet-P: angle (i - 30) * 5; the original blurred the full-size bounding-box crop,
#: then resized it to 64 px: here the 64 px image itself (see PERTURBATIONS.md, "Presets")
MOTION_BLUR_TINY = (14, 3, 30, 5, 31)
ZOOM_STEP = 0.004  # zoom 1 + 0.004 k, running mean over k <= i (every preset)
#: sigma base + step i, truncate (in sigmas)
GAUSSIAN_BLUR = (0.25, 0.035, 6.0)
GAUSSIAN_BLUR_CIFAR, GAUSSIAN_BLUR_TINY = (0.3, 0.015, 7.0), (0.35, 0.014, 7.0)
ZOOM_FRAMES = 31
_MOTION = presets(MOTION_BLUR, MOTION_BLUR_CIFAR, MOTION_BLUR_TINY)
_GAUSSIAN = presets(GAUSSIAN_BLUR, GAUSSIAN_BLUR_CIFAR, GAUSSIAN_BLUR_TINY)
#: name -> preset -> frame count, where a preset's differs from the registered (ImageNet-P) one
FRAMES: dict[str, dict[str, int]] = {"motion_blur": {k: v[4] for k, v in _MOTION.items()}}


def _zooms(last: int) -> list[dict[str, float]]:
    """The zooms of frame ``last`` (k = 1..last) as keyword arguments of ``inverse_affine``."""
    return [{"scale": 1 + ZOOM_STEP * k} for k in range(1, last + 1)]


#: the pixels zoom_blur reads (see ``geometric_sequences.READS``)
READS: dict[str, Callable[[int, int, int], Box]] = {
    "zoom_blur": lambda crop, height, width: affine_reads(_zooms(ZOOM_FRAMES - 1), crop, height, width),
}


def _motion_blur(job: Job, params: dict) -> torch.Tensor:
    # ImageMagick's motion blur of the image (an 8-bit PNG); Tiny-ImageNet-P's Resize(64)
    # after it leaves a 64 px image as it is (PIL returns a copy at the same size)
    radius, sigma, offset, step, _ = _MOTION[job.preset]

    def render(x: torch.Tensor, j: int) -> torch.Tensor:
        # in double, rounded half up (the PNG): in float32 values a hair below .5 came out a level up
        angle = torch.tensor([float((j - offset) * step)], dtype=torch.float64).expand(x.shape[0])
        levels = motion_blur_levels(x, radius, sigma, angle).clamp_(0, 255)
        return true_div(levels.add_(0.5).floor_(), 255.0).to(x.dtype)

    return per_frame(job, render)


def _gaussian_blur(job: Job, params: dict) -> torch.Tensor:
    # scikit-image's gaussian of uint8 / 255. doubles, with scipy's sums in scipy's order: at
    # sigma .25 the neighbours weigh 3e-4 and many values land a hair below a uint8 level, which
    # the original's truncation drops (so does finish); another order of the sums puts some on it
    base, step, truncate = _GAUSSIAN[job.preset]
    clean = grid_doubles(job.clean)
    out = job.clean.new_empty((job.batch, len(job.frames), *clean.shape[1:]))
    for k, j in enumerate(job.frames):
        blurred = gaussian_filter_exact(clean, base + step * j, "nearest", truncate)
        out[:, k] = finish(blurred, job)
    return out


def _zoom_blur(job: Job, params: dict) -> torch.Tensor:
    # frame i = mean of the clean crop and the centre zooms 1 + 0.004 k, k = 1..i, of the
    # whole image: PIL images (uint8, truncated), summed in float32 in the original's
    # order (avg += z_k; torch.cumsum would accumulate in double), divided, truncated
    last = max(job.frames)
    zooms = warp_affine(job, _zooms(last), truncate=True) if last else None
    running = job.clean.clone()
    sums = [running.clone()]
    for k in range(last):
        running += zooms[:, k]
        sums.append(running.clone() if k + 1 in job.frames else None)
    return torch.stack([true_div(sums[j], j + 1) for j in job.frames], dim=1)  # NumPy's rounding on CUDA too


register_perturbation(Perturbation(
    "motion_blur", 31, _motion_blur, storage="round",
    doc="ImageMagick-style motion blur, radius 10, sigma 3, angle (i - 30) * 4 degrees (CIFAR-10-P: "
        "radius 6, sigma 1.8, (i - 20) * 9, 21 frames; Tiny-ImageNet-P: radius 14, sigma 3, (i - 30) * 5)",
    revision=2,  # 0.7.12: sums in double tap after tap, rounded in double (float32 moved a few a level)
))
register_perturbation(Perturbation(
    "zoom_blur", ZOOM_FRAMES, _zoom_blur, storage="truncate-exact",
    doc="mean of the clean crop and the centre zooms 1 + 0.004 k (k = 1..i) of the image",
))
register_perturbation(Perturbation(
    "gaussian_blur", 31, _gaussian_blur, storage="truncate-exact", revision=2,
    doc="scikit-image Gaussian blur, sigma 0.25 + 0.035 i, truncate 6 (CIFAR-10-P: 0.3 + 0.015 i, "
        "Tiny-ImageNet-P: 0.35 + 0.014 i, truncate 7)",
))
