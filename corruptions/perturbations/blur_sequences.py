"""The blur perturbations: motion_blur (a turning ImageMagick motion blur), gaussian_blur
(a growing scikit-image Gaussian) and zoom_blur (a running mean of growing PIL zooms).
All deterministic (no sampler; ``apply(job, params)`` gets empty ``params``)."""

from __future__ import annotations

import torch

from corruptions._ops import gaussian_blur2d
from corruptions._registry import Perturbation, register_perturbation
from corruptions.blur import motion_blur
from corruptions.perturbations._sequence import Job, finish, per_frame
from corruptions.perturbations.geometric_sequences import inverse_affine, warp_affine

__all__ = ["GAUSSIAN_BLUR", "MOTION_BLUR", "ZOOM_STEP"]

# the original's constants
MOTION_BLUR = (10, 3)  # radius, sigma; angle (i - 30) * 4 degrees
ZOOM_STEP = 0.004  # zoom 1 + 0.004 k, running mean over k <= i
GAUSSIAN_BLUR = (0.25, 0.035, 6.0)  # sigma 0.25 + 0.035 i, truncate 6


def _motion_blur(job: Job, params: dict) -> torch.Tensor:
    radius, sigma = MOTION_BLUR

    def render(x: torch.Tensor, j: int) -> torch.Tensor:
        return motion_blur(x, radius, sigma, torch.tensor([(j - 30) * 4.0], dtype=torch.float64))

    return per_frame(job, render)


def _gaussian_blur(job: Job, params: dict) -> torch.Tensor:
    # float64, as scikit-image: at sigma .25 the neighbours weigh 3e-4 and many values land
    # a hair below a uint8 level, which the original's truncation drops (so does finish)
    base, step, truncate = GAUSSIAN_BLUR
    clean = job.clean.to(job.exact)
    out = job.clean.new_empty((job.batch, len(job.frames), *clean.shape[1:]))
    for k, j in enumerate(job.frames):
        blurred = gaussian_blur2d(clean, base + step * j, mode="nearest", truncate=truncate)
        out[:, k] = finish(blurred, job)
    return out


def _zoom_blur(job: Job, params: dict) -> torch.Tensor:
    # frame i = mean of the clean crop and the centre zooms 1 + 0.004 k, k = 1..i, of the
    # whole image: PIL images (uint8, truncated), summed in float32 in the original's
    # order (avg += z_k; torch.cumsum would accumulate in double), divided, truncated
    last = max(job.frames)
    matrices = [inverse_affine(job.size, scale=1 + ZOOM_STEP * k) for k in range(1, last + 1)]
    zooms = warp_affine(job, matrices, truncate=True) if matrices else None
    running = job.clean.clone()
    sums = [running.clone()]
    for k in range(last):
        running += zooms[:, k]
        sums.append(running.clone() if k + 1 in job.frames else None)
    return torch.stack([sums[j] / (j + 1) for j in job.frames], dim=1)


register_perturbation(Perturbation(
    "motion_blur", 31, _motion_blur, storage="round",
    doc="ImageMagick-style motion blur, radius 10, sigma 3, angle (i - 30) * 4 degrees",
))
register_perturbation(Perturbation(
    "zoom_blur", 31, _zoom_blur, storage="truncate-exact",
    doc="mean of the clean crop and the centre zooms 1 + 0.004 k (k = 1..i) of the image",
))
register_perturbation(Perturbation(
    "gaussian_blur", 31, _gaussian_blur, storage="truncate-exact",
    doc="scikit-image Gaussian blur, sigma 0.25 + 0.035 i, truncate 6",
))
