"""Blur: defocus_blur, glass_blur, motion_blur, zoom_blur (benchmark), gaussian_blur (extra)."""

from __future__ import annotations

import functools
import math

import torch

from corruptions._ops import (
    exact_dtype,
    fft_correlate,
    fft_filter2d,
    float64_device,
    gaussian_filter_exact,
    grid_doubles,
    host_to_device,
    on_grid,
    shift_add,
    shift_add_in_order,
    symmetric_correlate,
    true_div,
    uint8_levels,
)
from corruptions._registry import PRESETS, Corruption, Level, presets, register
from corruptions._resample import zoom_center
from corruptions._rng import ImageRandom

GAUSSIAN_BLUR = (1, 2, 3, 4, 6)
#: (sigma, max_delta, iterations)
GLASS_BLUR = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))
#: (disk radius, alias blur sigma)
DEFOCUS_BLUR = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))
#: (radius, sigma); the angle is U(-45, 45) degrees
MOTION_BLUR = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))
#: np.arange(1, stop, step)
ZOOM_BLUR = ((1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03))
# CIFAR-10/100-C (make_cifar_c.py, 32 px) and Tiny-ImageNet-C (make_tinyimagenet_c.py, 64 px)
GAUSSIAN_BLUR_CIFAR, GAUSSIAN_BLUR_TINY = (0.4, 0.6, 0.7, 0.8, 1), (0.5, 0.75, 1, 1.25, 1.5)
GLASS_BLUR_CIFAR = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))
GLASS_BLUR_TINY = ((0.1, 1, 1), (0.5, 1, 1), (0.6, 1, 2), (0.7, 2, 1), (0.9, 2, 2))
DEFOCUS_BLUR_CIFAR = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))
DEFOCUS_BLUR_TINY = ((0.5, 0.6), (1, 0.1), (1.5, 0.1), (2.5, 0.01), (3, 0.1))
MOTION_BLUR_CIFAR = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))
MOTION_BLUR_TINY = ((10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3))
ZOOM_BLUR_SMALL = ((1.06, 0.01), (1.11, 0.01), (1.16, 0.01), (1.21, 0.01), (1.26, 0.01))  # both


# --------------------------------------------------------------------------------------
# gaussian_blur


def _gaussian_blur(x: torch.Tensor, level: Level, params: dict) -> torch.Tensor:
    # scikit-image's gaussian of uint8 / 255. doubles, as scipy sums (kept on its side of a level)
    return on_grid(gaussian_filter_exact(grid_doubles(x), level.c, "nearest").clamp_(0, 1), x)


# --------------------------------------------------------------------------------------
# defocus_blur


@functools.lru_cache(maxsize=16)
def disk_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """The original's anti-aliased disk, with OpenCV's float32 arithmetic in its order.

    A binary disk ``x^2 + y^2 <= r^2`` on a (17, 17) grid (r <= 8) or (2r+1, 2r+1) grid,
    normalized, then ``cv2.GaussianBlur`` with a 3x3 (r <= 8) or 5x5 kernel of sigma
    ``alias_blur`` and reflect-101 borders: rows, then columns, each output
    ``x_0 k_0 + (x_-1 + x_1) k_1 (+ (x_-2 + x_2) k_2)`` in float32, as OpenCV's symmetric
    small-kernel filters (its portable C path; its SIMD path may fuse a multiply-add on some
    CPUs, a last-bit difference). The disk's sum decides on which side of a level a flat
    region lands, so the last bit matters: the float64 blur of the first version put 0.6 %
    to 0.8 % of ImageNet severity 2 and 3 values a level above the original's.
    """
    half, ksize = (8, 3) if radius <= 8 else (radius, 5)
    grid = torch.arange(-half, half + 1, dtype=torch.float32)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    disk = (xx**2 + yy**2 <= radius**2).to(torch.float32)
    disk /= disk.sum()
    weights = opencv_gaussian_weights(ksize, alias_blur).tolist()  # float32 values, exactly
    rows = symmetric_correlate(disk, weights, -1, "mirror", outside_in=False)
    return symmetric_correlate(rows, weights, -2, "mirror", outside_in=False)


def opencv_gaussian_weights(ksize: int, sigma: float) -> torch.Tensor:
    """``cv2.getGaussianKernel(ksize, sigma, CV_32F)`` (OpenCV 4 and 5, sigma > 0): the taps
    ``exp(-x^2 / (2 sigma^2))`` in double, normalized by one reciprocal, rounded to float32."""
    scale = -0.125 / (sigma * sigma)  # of (2x)^2: OpenCV steps x by 2 from 1 - ksize
    values = [math.exp(float(x * x) * scale) for x in range(1 - ksize, 0, 2)]
    total = 2 * sum(values, 0.0) + 1.0
    reciprocal = 1.0 / total
    side = [v * reciprocal for v in values]
    return torch.tensor(side + [reciprocal] + side[::-1], dtype=torch.float32)


def _defocus_blur(x: torch.Tensor, level: Level, params: dict) -> torch.Tensor:
    # in float64 as the original's cv2.filter2D of x / 255., and kept on its side of a level: the
    # float32 kernel sums to a hair below 1, so a flat region lands a hair below its level, which
    # np.uint8 truncated (float32 and the storage tolerance put 3 % to 7 % of values a level higher)
    radius, alias = level.c
    kernel = disk_kernel(radius, alias).to(torch.float64)
    out = fft_filter2d(grid_doubles(x), kernel, mode="mirror")
    return on_grid(out.clamp_(0, 1), x)


# --------------------------------------------------------------------------------------
# glass_blur


def _glass_sample(rng: ImageRandom, images: torch.Tensor, level: Level) -> dict:
    _, delta, iterations = level.c
    height, width = images.shape[-2:]
    n_h, n_w = max(height - 2 * delta, 0), max(width - 2 * delta, 0)
    # one (dx, dy) = randint(-delta, delta) (high exclusive) per visited pixel and pass
    return {"offsets": rng.randint(-delta, delta, iterations, 2, n_h, n_w)}


def glass_sources(
    offsets: torch.Tensor, delta: int, height: int, width: int, *, checked: bool = False
) -> torch.Tensor:
    """Where each pixel's value comes from after the original glass_blur loop.

    The original visits rows ``h = H - d .. d + 1`` (descending) and, within a row,
    columns ``w = W - d .. d + 1`` (descending), and copies into (h, w) the current
    value of (h + dy, w + dx). A visited pixel p thus ends with the final value of its
    source if the source was visited before p, else with the source's value at the
    start of the pass; that is a chain of pointers, resolved here for all pixels at
    once by pointer jumping (log2(longest chain) gathers).

    The jumping does :data:`GLASS_DOUBLINGS` rounds per pass without asking the device
    whether every chain has ended; the batch's one host sync asks at the end, and the rare
    batch with a longer chain is done again ``checked`` (asking after every round).

    Args:
        offsets: (B, passes, 2, H - 2d, W - 2d) integers: [:, k, 0] = dx (columns),
            [:, k, 1] = dy (rows) of pass k, for the visited pixels in row-major order.
        delta: d, the maximal displacement.
        height, width: image size.

    Returns:
        (B, H * W) int64: flat index into the image before the first pass of the
        pixel whose value each pixel holds after the last pass.
    """
    batch, passes = offsets.shape[:2]
    device = offsets.device
    n = height * width
    total = torch.arange(n, device=device).expand(batch, n)
    if offsets.shape[-1] == 0 or offsets.shape[-2] == 0:
        return total.clone()
    rows = torch.arange(delta + 1, height - delta + 1, device=device).view(-1, 1)
    cols = torch.arange(delta + 1, width - delta + 1, device=device).view(1, -1)
    visited = (rows * width + cols).flatten()
    unfinished = None  # on the device: some chain outlived the unchecked rounds
    for k in range(passes):
        src_h = rows + offsets[:, k, 1].to(torch.int64)
        src_w = cols + offsets[:, k, 0].to(torch.int64)
        pointer = torch.arange(n, device=device).repeat(batch, 1)
        pointer[:, visited] = (src_h * width + src_w).flatten(1)
        if delta >= 2:  # with delta 1, dx and dy are -1 or 0: no source is visited before its pixel
            src_visited = (
                (src_h >= delta + 1) & (src_h <= height - delta)
                & (src_w >= delta + 1) & (src_w <= width - delta)
            )
            before = src_visited & ((src_h > rows) | ((src_h == rows) & (src_w > cols)))
            done = torch.ones(batch, n, dtype=torch.bool, device=device)
            done[:, visited] = ~before.flatten(1)
            if checked:
                for _ in range(64):  # chains shorten geometrically; 64 doublings is unreachable
                    if bool(done.all()):
                        break
                    pointer, done = _jump(pointer, done, 1)
            else:
                pointer, done = _jump(pointer, done, GLASS_DOUBLINGS)
                left = ~done.all()
                unfinished = left if unfinished is None else unfinished | left
        total = total.gather(1, pointer)
    if unfinished is not None and bool(unfinished):  # the batch's one host sync
        return glass_sources(offsets, delta, height, width, checked=True)
    return total


#: pointer-jumping rounds per pass done without asking the device whether every chain has
#: ended: 5 doublings end chains of up to 32 links. A link (a source visited before its pixel)
#: has probability 0.31 at delta 2 and 0.42 at delta 4, so a batch of 256 images at 224 px
#: holds a longer chain with probability about 256 * 224**2 * 0.42**33 < 1e-5 (4 or 5 needed,
#: measured on batches of 64 at 32, 64 and 224 px).
GLASS_DOUBLINGS = 5


def _jump(pointer: torch.Tensor, done: torch.Tensor, rounds: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``rounds`` pointer doublings; a pointer whose chain has ended (``done``) stays put."""
    for _ in range(rounds):
        pointer, done = (
            torch.where(done, pointer, pointer.gather(1, pointer)),
            done | done.gather(1, pointer),
        )
    return pointer, done


def _glass_blur(x: torch.Tensor, level: Level, params: dict) -> torch.Tensor:
    # the original's arithmetic (as gaussian_blur): np.uint8(gaussian(uint8 / 255.) * 255), the
    # pixels swapped, gaussian(uint8 / 255.) again, np.uint8. Over a flat region scipy's sums land a
    # hair below the level and np.uint8 drops it, twice: float32 sums with the storage truncation's
    # tolerance left flat regions up to 2 levels brighter than the original (white stayed 255, 254
    # in the original)
    sigma, delta, _ = level.c
    batch, channels, height, width = x.shape
    levels = torch.floor(gaussian_filter_exact(grid_doubles(x), sigma, "nearest") * 255)
    source = glass_sources(params["offsets"], delta, height, width)
    shuffled = levels.flatten(2).gather(2, source.unsqueeze(1).expand(batch, channels, -1))
    doubles = true_div(shuffled.view(batch, channels, height, width), 255.0)
    return on_grid(gaussian_filter_exact(doubles, sigma, "nearest").clamp_(0, 1), x)


# --------------------------------------------------------------------------------------
# motion_blur (imagecorruptions' NumPy version of ImageMagick's motion blur)


def motion_taps(
    radius: int, sigma: float, angles: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and offsets of imagecorruptions' ``_motion_blur`` for each angle.

    Tap i = 0 .. 2r (one-sided Gaussian weight exp(-i^2 / (2 sigma^2)), normalized
    over the 2r + 1 taps) reads the pixel at (y - dy_i, x - dx_i) with
    ``dy_i = -ceil(i sin(a) - 0.5)``, ``dx_i = -ceil(i cos(a) - 0.5)``; taps from the
    first one whose shift reaches the image size on are dropped (not renormalized).

    Returns:
        taps (B, 2r + 1) float64 and offsets (B, 2r + 1, 2) int64 as (row, column)
        offsets of the read, for :func:`corruptions._ops.fft_correlate`.
    """
    width_k = 2 * radius + 1
    device = float64_device(angles.device)  # where the angles are: the host never waits for them
    i = torch.arange(width_k, dtype=torch.float64, device=device)
    kernel = torch.exp(-(i**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    rad = torch.deg2rad(angles.detach().to(device, torch.float64)).view(-1, 1)
    py, px = width_k * torch.sin(rad), width_k * torch.cos(rad)
    hyp = torch.hypot(py, px)
    dy = -torch.ceil(i * py / hyp - 0.5)
    dx = -torch.ceil(i * px / hyp - 0.5)
    inside = (dy.abs() < height) & (dx.abs() < width)
    keep = torch.cumprod(inside.to(torch.int64), dim=1).to(torch.float64)
    taps = kernel * keep
    offsets = torch.stack([-dy, -dx], dim=-1).to(torch.int64)
    offsets = offsets.clamp(-max(height, width), max(height, width))
    return taps, offsets


def motion_blur(x: torch.Tensor, radius: int, sigma: float, angles: torch.Tensor) -> torch.Tensor:
    """imagecorruptions' ``_motion_blur`` on (B, C, H, W), one angle (degrees) per image."""
    height, width = x.shape[-2:]
    taps, offsets = motion_taps(radius, sigma, angles, height, width)
    pad = min(2 * radius, max(height, width))
    if x.device.type == "cpu":
        return shift_add(x, taps, offsets, pad, mode="nearest")
    return fft_correlate(x, host_to_device(taps, x.device), host_to_device(offsets, x.device), pad,
                         mode="nearest")


def _motion_sample(rng: ImageRandom, images: torch.Tensor, level: Level) -> dict:
    return {"angle": rng.uniform(low=-45.0, high=45.0)}


@functools.lru_cache(maxsize=64)
def _motion_kernel(radius: int, sigma: float) -> tuple[float, ...]:
    """imagecorruptions' ``getMotionBlurKernel`` to the bit: NumPy's Gaussian density over
    0 .. 2r, divided by its NumPy sum (:func:`motion_taps` normalizes the same curve in torch)."""
    import numpy as np

    width = 2 * radius + 1
    density = np.exp(-((np.arange(width) - 0) ** 2) / (2 * (sigma**2))) / (np.sqrt(2 * np.pi) * sigma)
    return tuple(float(w) for w in density / np.sum(density))


def _motion_blur(x: torch.Tensor, level: Level, params: dict) -> torch.Tensor:
    # imagecorruptions' _motion_blur on uint8 values: float64 sums of w_i x_i, tap after tap; np.uint8
    # then truncates. In [0, 1] floats with merged taps the port put flat regions a level up (half
    # to two thirds of their values, up to 5 % of a photograph's). The CIFAR and Tiny scripts blur
    # with ImageMagick into a PNG: rounded to uint8 (as the transcription).
    radius, sigma = level.c
    levels = motion_blur_levels(x, radius, sigma, params["angle"]).clamp_(0, 255)
    if level.preset == "imagenet":
        return on_grid(levels, x, peak=255)
    return true_div(levels.round_(), 255.0).to(x.dtype)


def motion_blur_levels(x: torch.Tensor, radius: int, sigma: float, angles: torch.Tensor) -> torch.Tensor:
    """imagecorruptions' ``_motion_blur`` of ``x``'s uint8 values (0 .. 255, not clipped): on the
    CPU its float64 sums of w_i x_i, tap after tap, with its NumPy kernel (as ImageMagick sums in
    double); elsewhere :func:`motion_blur`'s FFT (float32: a level apart on a few values)."""
    height, width = x.shape[-2:]
    if x.device.type != "cpu":
        return motion_blur(x, radius, sigma, angles) * 255
    taps, offsets = motion_taps(radius, sigma, angles, height, width)
    kernel = torch.tensor(_motion_kernel(radius, sigma), dtype=torch.float64)
    taps = torch.where(taps != 0, kernel, taps)  # the kept taps, NumPy's weights
    return shift_add_in_order(uint8_levels(x), taps, offsets, min(2 * radius, max(height, width)),
                              mode="nearest")


# --------------------------------------------------------------------------------------
# zoom_blur


def zoom_factors(severity: int, preset: str = "imagenet") -> list[float]:
    """The factors of ``np.arange(1, stop, step)`` (ImageNet-C: 12, 16, 11, 13, 11 of them;
    CIFAR-10-C and Tiny-ImageNet-C: 7, 12, 16, 21, 26)."""
    stop, step = (ZOOM_BLUR if preset == "imagenet" else ZOOM_BLUR_SMALL)[severity - 1]
    count = math.ceil((stop - 1.0) / step)
    delta = (1.0 + step) - 1.0  # np.arange fills start + k * (the second value - start)
    return [1.0 + k * delta for k in range(count)]


def _zoom_blur(x: torch.Tensor, level: Level, params: dict) -> torch.Tensor:
    # the original's float32 arithmetic in its order: a sum from zeros of the zoomed copies
    # (scipy zooms in float64 and stores float32), (x + sum) / (n + 1), clip, * 255, then np.uint8,
    # whose side of a level is kept (in float32 from x, 0.01 % to 0.05 % of values were a level up)
    factors = level.c
    x32 = x.to(torch.float32)
    exact = x32.to(exact_dtype(x.device))
    total = torch.zeros_like(x32)
    for factor in factors:
        total += zoom_center(exact, factor).to(torch.float32)
    scaled = true_div(x32 + total, len(factors) + 1).clamp_(0, 1) * 255  # NumPy's division on CUDA too
    return on_grid(scaled.to(exact.dtype), x, peak=255.0)


register(Corruption(
    "defocus_blur", "blur", presets(DEFOCUS_BLUR, DEFOCUS_BLUR_CIFAR, DEFOCUS_BLUR_TINY), _defocus_blur,
    doc="correlation with an anti-aliased disk, reflect-101 borders (FFT).",
    revision=3,  # 0.7.6: OpenCV's float32 disk, uint8 / 255. doubles (0.7.5: float64, truncation side)
))
register(Corruption(
    "glass_blur", "blur", presets(GLASS_BLUR, GLASS_BLUR_CIFAR, GLASS_BLUR_TINY), _glass_blur, _glass_sample,
    doc="Gaussian blur, uint8 truncation, the original's sequential local pixel copy "
        "(exact, by pointer jumping), Gaussian blur.",
    revision=2,  # 0.7.12: scipy's float64 sums for both blurs, np.uint8's truncation between
    host_read="whether a chain of pixel copies outlived the unchecked doublings",
))
register(Corruption(
    "motion_blur", "blur", presets(MOTION_BLUR, MOTION_BLUR_CIFAR, MOTION_BLUR_TINY),
    _motion_blur, _motion_sample,
    doc="one-sided Gaussian line blur at a random angle (imagecorruptions' _motion_blur).",
    revision=2,  # 0.7.12: its float64 sums on uint8 values, tap after tap; small presets rounded
))
register(Corruption(
    "zoom_blur", "blur",
    {p: tuple(tuple(zoom_factors(s, p)) for s in range(1, 6)) for p in PRESETS}, _zoom_blur,
    doc="mean of the image and its centre zooms (scipy order-1 zoom, centred crop).",
    revision=2,  # 0.7.6: the original's float32 arithmetic in its order and truncation side
))
register(Corruption(
    "gaussian_blur", "blur", presets(GAUSSIAN_BLUR, GAUSSIAN_BLUR_CIFAR, GAUSSIAN_BLUR_TINY),
    _gaussian_blur,
    doc="scikit-image gaussian (scipy, nearest borders, truncate 4).",
    revision=2,  # 0.7.6: scipy's float64 arithmetic in its order and the original's truncation side
))
