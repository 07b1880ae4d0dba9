"""The weather perturbations: snow (a fixed layer whose motion blur turns), brightness
(an HSV ramp) and spatter (a liquid layer that drifts down). snow and spatter draw one
layer per video (``sample``); every frame is then computed from it (``apply``).

Their parameters by preset (:data:`~corruptions.PRESETS`) are the originals': ImageNet-P's
(``make_imagenet_p.py``), CIFAR-10-P's (``make_cifar_p.py``) and Tiny-ImageNet-P's
(``make_tinyimagenet_p.py``); the computations are the same."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from corruptions._ops import (
    device_constant,
    gaussian_filter_exact,
    grid_doubles,
    hsv_factors,
    rgb_to_gray,
    rgb_to_hsv,
    true_div,
)
from corruptions._registry import Perturbation, presets, register_perturbation
from corruptions._resample import zoom_center
from corruptions._rng import ImageRandom
from corruptions.blur import motion_blur_levels
from corruptions.perturbations._sequence import Job, finish
from corruptions.weather import SPATTER_HOST_READ, spatter_frame, water_mask

__all__ = ["BRIGHTNESS_STEP", "SNOW", "SNOW_CIFAR", "SNOW_TINY", "SPATTER",
           "SPATTER_CIFAR", "SPATTER_COLOR", "SPATTER_DRIFT", "SPATTER_DRIFT_SMALL", "SPATTER_TINY"]

# the originals' constants
#: loc, scale, zoom, threshold, motion radius, motion sigma, blend; angle 4 i - 150
SNOW = (0.05, 0.3, 3, 0.5, 14, 4, 0.85)
SNOW_CIFAR, SNOW_TINY = (0.05, 0.3, 2, 0.5, 10, 2, 0.85), (0.05, 0.28, 2, 0.5, 10, 2.5, 0.85)
#: HSV V + (i - 15) * step / 100 by preset, in the originals' order of operations
BRIGHTNESS_STEP = presets(2, 1.5, 2)
#: loc, scale, sigma, threshold, intensity; per frame the layer drifts down by this filter
SPATTER = (0.65, 0.27, 3.7, 0.69, 0.6)
SPATTER_CIFAR, SPATTER_TINY = (0.6, 0.265, 1.75, 0.7, 0.6), (0.6, 0.25, 1.75, 0.7, 0.6)
SPATTER_DRIFT = (0.05, 0.1, 0.15, 0.7)  # np.convolve(column, DRIFT, mode="same")
SPATTER_DRIFT_SMALL = (0.2, 0.8)  # CIFAR-10-P's and Tiny-ImageNet-P's
SPATTER_COLOR = (175 / 255, 238 / 255, 238 / 255)  # pale turquoise, in array order
_SNOW = presets(SNOW, SNOW_CIFAR, SNOW_TINY)
_SPATTER = presets(SPATTER, SPATTER_CIFAR, SPATTER_TINY)
_DRIFT = presets(SPATTER_DRIFT, SPATTER_DRIFT_SMALL, SPATTER_DRIFT_SMALL)


def _snow_sample(rng: ImageRandom, images: torch.Tensor, difficulty: int, *,
                 preset: str = "imagenet") -> dict:
    """The video's snow layer, N(.05, .3) (Tiny-ImageNet-P: N(.05, .28)), (B, 1, c, c) float32."""
    del difficulty
    loc, scale = _SNOW[preset][:2]
    c = images.shape[-1]
    return {"layer": rng.normal(1, c, c, mean=loc, std=scale)}


def _snow(job: Job, params: dict) -> torch.Tensor:
    zoom, threshold, radius, sigma, blend = _SNOW[job.preset][2:]
    c = job.crop
    # the original's float64 layer, zoomed by scipy in float64, cut to the uint8 PNG it blurred (in
    # float32, 1 video in 6 had a layer value a level up, and its blurred snow with it)
    layer = params["layer"].to(job.exact)
    layer = zoom_center(layer, zoom)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer)
    layer = true_div(torch.floor(layer.clamp(0, 1) * 255), 255.0)
    x = job.clean
    # the original's arithmetic: float64 image, OpenCV's float32 grey, float64 composite
    exact = grid_doubles(x)
    grey = rgb_to_gray(exact.float()) * 1.5 + 0.5
    base = blend * exact + (1 - blend) * torch.maximum(exact, grey.to(job.exact))
    out = x.new_empty((job.batch, len(job.frames), *x.shape[1:]))
    folded = layer.reshape(1, job.batch, c, c)
    for k, j in enumerate(job.frames):
        angle = torch.tensor([4.0 * j - 150], dtype=torch.float64)
        blurred = motion_blur_levels(folded, radius, sigma, angle).view(job.batch, 1, c, c)
        snow = true_div(torch.floor(blurred.to(job.exact) + 0.5).clamp_(0, 255), 255.0)  # 8-bit PNG
        out[:, k] = finish(base + snow + snow.flip(-1, -2), job)
    return out


def _brightness(job: Job, params: dict) -> torch.Tensor:
    # the original: rgb2hsv, V = clip(V + (i - 15) * 2 / 100, 0, 1), hsv2rgb, np.uint8(255 x),
    # all in float64 on x = uint8 / 255; the round trip alone leaves some values a hair
    # below their level, which the truncation drops: reproduced bit for bit
    x = job.clean
    h, s, v = rgb_to_hsv(grid_doubles(x))  # the doubles k / 255 of uint8 input
    factors = hsv_factors(h, s)
    step = BRIGHTNESS_STEP[job.preset]
    out = x.new_empty((job.batch, len(job.frames), *x.shape[1:]))
    for k, j in enumerate(job.frames):
        out[:, k] = finish((v + (j - 15) * step / 100.0).clamp_(0, 1) * factors, job)
    return out


def _drift(liquid: torch.Tensor, weights: tuple[float, ...] = SPATTER_DRIFT) -> torch.Tensor:
    """``np.convolve(column, weights, mode="same")`` down every column.

    With K weights and s = (K - 1) // 2: ``out[n] = sum_k weights[k] a[n + s - k]`` (zeros
    outside), e.g. ``0.05 a[n + 1] + 0.1 a[n] + 0.15 a[n - 1] + 0.7 a[n - 2]`` (ImageNet-P),
    ``0.2 a[n] + 0.8 a[n - 1]`` (CIFAR-10-P, Tiny-ImageNet-P).
    """
    size = len(weights)
    shift = (size - 1) // 2
    padded = F.pad(liquid, (0, 0, size - 1 - shift, shift))
    height = liquid.shape[-2]
    out = padded[..., size - 1 : size - 1 + height, :] * weights[0]
    for k in range(1, size):
        out += padded[..., size - 1 - k : size - 1 - k + height, :] * weights[k]
    return out


def _spatter_sample(rng: ImageRandom, images: torch.Tensor, difficulty: int, *,
                    preset: str = "imagenet") -> dict:
    """The video's liquid layer, N(.65, .27) (CIFAR-10-P N(.6, .265), Tiny-ImageNet-P N(.6, .25)),
    (B, 1, c, c) float32."""
    del difficulty
    loc, scale = _SPATTER[preset][:2]
    c = images.shape[-1]
    return {"liquid": rng.normal(1, c, c, mean=loc, std=scale)}


def _spatter(job: Job, params: dict) -> torch.Tensor:
    sigma, threshold, intensity = _SPATTER[job.preset][2:]
    weights = _DRIFT[job.preset]
    # the original's float64 layer: np.random.normal, scikit-image's gaussian (scipy's sums), the
    # drift by np.convolve; its water m is float32 (in float32 the layer's bytes came out a level
    # apart in a few frames)
    liquid = gaussian_filter_exact(params["liquid"].to(job.exact), sigma, "nearest")
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    layers = []
    wanted = set(job.frames)
    for j in range(max(job.frames) + 1):
        if j in wanted:
            layers.append((j, liquid))
        liquid = _drift(liquid, weights)
    index = {j: k for k, (j, _) in enumerate(layers)}
    stacked = torch.stack([layer for _, layer in layers], dim=1)  # (B, F_unique, 1, c, c)
    masks = water_mask(stacked.flatten(0, 1)).view_as(stacked).float() * intensity
    masks = masks[:, [index[j] for j in job.frames]]
    color = device_constant(SPATTER_COLOR, masks.dtype, masks.device).view(1, 1, 3, 1, 1)
    return spatter_frame(job.clean.unsqueeze(1), masks.to(job.x.dtype), color.to(job.x.dtype))


register_perturbation(Perturbation(
    "snow", 31, _snow, _snow_sample, storage="truncate-exact",
    doc="fixed snow layer (N(.05, .3), zoom 3, threshold .5), motion-blurred (radius 14, "
        "sigma 4, angle 4 i - 150), added with its 180-degree rotation to a whitened image "
        "(CIFAR-10-P: zoom 2, radius 10, sigma 2; Tiny-ImageNet-P: N(.05, .28), zoom 2, radius 10, "
        "sigma 2.5)",
    revision=3,  # 0.7.30: OpenCV's float32 grey bit for bit (0.7.12: the layer in float64, scipy's
    # zoom, the blur's sums in double)
))
register_perturbation(Perturbation(
    "brightness", 31, _brightness, storage="truncate-exact",
    doc="HSV value + (i - 15) * 0.02 (CIFAR-10-P: * 0.015)",
))
register_perturbation(Perturbation(
    "spatter", 31, _spatter, _spatter_sample, storage="truncate-exact",
    doc="ImageNet-C's water spatter (intensity .6) of a liquid layer that drifts down "
        "(np.convolve with [.05, .1, .15, .7]) after every frame (CIFAR-10-P: layer N(.6, .265), "
        "sigma 1.75, threshold .7, drift [.2, .8]; Tiny-ImageNet-P: N(.6, .25), the same)",
    revision=2,  # 0.7.12: a frame whose layer has dried is black, as the original's NaN (it was clean)
    host_read=SPATTER_HOST_READ,
))
