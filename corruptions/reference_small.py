"""The CIFAR-10/100-C and Tiny-ImageNet-C generation scripts, transcribed in NumPy (CPU).

The reference of the ``"cifar"`` and ``"tinyimagenet"`` presets: one function per
corruption, re-written from the algorithms and parameters of Hendrycks'
``make_cifar_c.py`` (32 px) and ``make_tinyimagenet_c.py`` (64 px)
(hendrycks/robustness, ``ImageNet-C/create_c/``), with NumPy, SciPy, OpenCV,
scikit-image and PIL as the scripts use them. Each takes a uint8 RGB PIL image and
returns a float array in [0, 255] (pixelate and jpeg_compression: the PIL result as
floats). It draws from NumPy's global random state in the scripts' order, so
:func:`corruptions.reference.reference_with_draws` can record the draws.

Where the transcription cannot follow the scripts:

- ImageMagick (``wand``, not installable here) blurs motion_blur's image and snow's
  layer in the scripts; imagecorruptions' NumPy ``_motion_blur`` (the ImageNet-C
  reference path's choice) stands in for ``MagickMotionBlurImage``. The scripts'
  PNG round trip around it is kept: uint8 in (snow: ``astype(np.uint8)``
  truncation of the layer), uint8 out (rounded).
- The scripts hard-code their image side (32 / 64) in loops, crops and reshapes;
  here the image's own height and width are used, and the size-dependent constants
  follow the image size as in :mod:`corruptions` (fog's map: the power of two >= the
  larger side; frost's ``cv2.resize`` factor and elastic's ``IMSIZE`` scaled by the
  side over 32 / 64). At the preset's size this is the scripts' computation.
- ``clipped_zoom`` crops and trims both axes with the height (square images only);
  here each axis uses its own size (identical on square images).
- impulse_noise is computed by :mod:`corruptions.reference` (scikit-image's
  ``random_noise``, seeded through its ``rng`` argument, as on the ImageNet path).

Only :mod:`corruptions.reference` imports this module (which imports NumPy and
friends at the top: ``import corruptions`` never loads it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from types import ModuleType
from typing import Any

import cv2
import numpy as np
from PIL import Image
from scipy.ndimage import map_coordinates
from scipy.ndimage import zoom as scipy_zoom
from skimage.color import hsv2rgb, rgb2hsv
from skimage.filters import gaussian

from corruptions._registry import PRESET_SIZES

__all__ = ["SCRIPTS", "SMALL_PRESETS", "TABLES", "script_function", "script_row", "script_rows"]

#: the presets transcribed here, and their generation scripts
SCRIPTS = {"cifar": "make_cifar_c.py", "tinyimagenet": "make_tinyimagenet_c.py"}
SMALL_PRESETS = tuple(SCRIPTS)

#: the scripts' ``c = [...]`` tables, typed from them: name -> (cifar rows, tinyimagenet rows).
#: zoom_blur: the (stop, step) of ``np.arange(1, stop, step)``; elastic_transform: multiples
#: of IMSIZE; frost: (image weight, texture weight, cv2.resize factor).
TABLES: dict[str, tuple[tuple, tuple]] = {
    "gaussian_noise": ((0.04, 0.06, 0.08, 0.09, 0.10), (0.04, 0.08, 0.12, 0.15, 0.18)),
    "shot_noise": ((500, 250, 100, 75, 50), (250, 100, 50, 30, 15)),
    "impulse_noise": ((0.01, 0.02, 0.03, 0.05, 0.07), (0.01, 0.02, 0.05, 0.08, 0.14)),
    "speckle_noise": ((0.06, 0.1, 0.12, 0.16, 0.2), (0.15, 0.2, 0.25, 0.3, 0.35)),
    "gaussian_blur": ((0.4, 0.6, 0.7, 0.8, 1), (0.5, 0.75, 1, 1.25, 1.5)),
    "glass_blur": (
        ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
        ((0.1, 1, 1), (0.5, 1, 1), (0.6, 1, 2), (0.7, 2, 1), (0.9, 2, 2)),
    ),
    "defocus_blur": (
        ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
        ((0.5, 0.6), (1, 0.1), (1.5, 0.1), (2.5, 0.01), (3, 0.1)),
    ),
    "motion_blur": (
        ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
        ((10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)),
    ),
    "zoom_blur": ((
        (1.06, 0.01), (1.11, 0.01), (1.16, 0.01), (1.21, 0.01), (1.26, 0.01)),) * 2,
    "fog": (
        ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
        ((0.4, 3), (0.7, 3), (1, 2.5), (1.5, 2), (2, 1.75)),
    ),
    "frost": (
        ((1, 0.2, 0.2), (1, 0.3, 0.2), (0.9, 0.4, 0.2), (0.85, 0.4, 0.2), (0.75, 0.45, 0.2)),
        ((1, 0.3, 0.3), (0.9, 0.4, 0.3), (0.8, 0.45, 0.3), (0.75, 0.5, 0.3), (0.7, 0.55, 0.3)),
    ),
    "snow": (
        ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
         (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
         (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
        ((0.1, 0.2, 1, 0.6, 8, 3, 0.8), (0.1, 0.2, 1, 0.5, 10, 4, 0.8),
         (0.15, 0.3, 1.75, 0.55, 10, 4, 0.7), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.65),
         (0.3, 0.3, 1.25, 0.65, 14, 12, 0.6)),
    ),
    "spatter": (
        ((0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0),
         (0.65, 0.3, 1, 0.69, 0.5, 0), (0.65, 0.1, 0.7, 0.69, 0.6, 1),
         (0.65, 0.1, 0.5, 0.68, 0.6, 1)),
        ((0.62, 0.1, 0.7, 0.7, 0.6, 0), (0.65, 0.1, 0.8, 0.7, 0.6, 0),
         (0.65, 0.3, 1, 0.69, 0.6, 0), (0.65, 0.1, 0.7, 0.68, 0.6, 1),
         (0.65, 0.1, 0.5, 0.67, 0.6, 1)),
    ),
    "contrast": ((0.75, 0.5, 0.4, 0.3, 0.15), (0.4, 0.3, 0.2, 0.1, 0.05)),
    "brightness": ((0.05, 0.1, 0.15, 0.2, 0.3), (0.1, 0.2, 0.3, 0.4, 0.5)),
    "saturate": (
        ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
        ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (30, 0.2)),
    ),
    "jpeg_compression": ((80, 65, 58, 50, 40), (65, 58, 50, 40, 25)),
    "pixelate": ((0.95, 0.9, 0.85, 0.75, 0.65), (0.9, 0.8, 0.7, 0.6, 0.5)),
    "elastic_transform": (
        ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)),
        ((0, 0, 0.08), (0.05, 0.3, 0.06), (0.1, 0.08, 0.06), (0.1, 0.03, 0.03), (0.16, 0.03, 0.02)),
    ),
}


def script_rows(name: str, preset: str) -> tuple:
    """The script's ``c`` rows for ``name`` of ``preset`` (cifar / tinyimagenet), severities 1..5."""
    return TABLES[name][SMALL_PRESETS.index(preset)]


def script_row(name: str, preset: str, severity: int) -> Any:
    """The script's ``c`` for ``name`` at ``severity`` (1..5) of ``preset`` (cifar / tinyimagenet)."""
    return script_rows(name, preset)[severity - 1]


@dataclass(frozen=True)
class _Script:
    """What a transcription needs besides the image and its row."""

    preset: str
    ic: ModuleType  # imagecorruptions.corruptions: _motion_blur, plasma_fractal, disk

    @property
    def side(self) -> int:
        return PRESET_SIZES[self.preset]


def _float(image) -> np.ndarray:
    return np.array(image) / 255.0


def _gaussian_noise(image, c, script: _Script):
    x = _float(image)
    return np.clip(x + np.random.normal(size=x.shape, scale=c), 0, 1) * 255


def _shot_noise(image, c, script: _Script):
    x = _float(image)
    return np.clip(np.random.poisson(x * c) / c, 0, 1) * 255


def _speckle_noise(image, c, script: _Script):
    x = _float(image)
    return np.clip(x + x * np.random.normal(size=x.shape, scale=c), 0, 1) * 255


def _gaussian_blur(image, c, script: _Script):
    return np.clip(gaussian(_float(image), sigma=c, channel_axis=-1), 0, 1) * 255


def _glass_blur(image, c, script: _Script):
    sigma, delta, passes = c
    x = np.uint8(gaussian(_float(image), sigma=sigma, channel_axis=-1) * 255)
    height, width = x.shape[:2]
    for _ in range(passes):
        for h in range(height - delta, delta, -1):
            for w in range(width - delta, delta, -1):
                dx, dy = np.random.randint(-delta, delta, size=(2,))
                # the scripts' "swap" assigns NumPy views: only (h, w) changes, a copy
                x[h, w] = x[h + dy, w + dx]
    return np.clip(gaussian(x / 255.0, sigma=sigma, channel_axis=-1), 0, 1) * 255


def _defocus_blur(image, c, script: _Script):
    x = _float(image)
    kernel = script.ic.disk(radius=c[0], alias_blur=c[1])  # the scripts' disk()
    channels = [cv2.filter2D(x[:, :, d], -1, kernel) for d in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0, 1) * 255


def _magick_motion_blur(pixels: np.ndarray, radius, sigma, angle, script: _Script) -> np.ndarray:
    """uint8 in, uint8 out, as the scripts' PNG round trip through ImageMagick; the blur
    itself is imagecorruptions' NumPy ``_motion_blur`` (ImageMagick is not installable)."""
    blurred = script.ic._motion_blur(pixels, radius=radius, sigma=sigma, angle=angle)
    return np.clip(np.round(blurred), 0, 255).astype(np.uint8)


def _motion_blur(image, c, script: _Script):
    pixels = np.array(image)
    out = _magick_motion_blur(pixels, c[0], c[1], np.random.uniform(-45, 45), script)
    return np.clip(out.astype(np.float64), 0, 255)


def _clipped_zoom(img: np.ndarray, factor: float) -> np.ndarray:
    """Centre crop of ceil(n / factor), scipy order-1 zoom, centred trim back to n (per axis;
    the scripts use the height for both axes, the same on square images)."""
    height, width = img.shape[:2]
    crop_h, crop_w = math.ceil(height / factor), math.ceil(width / factor)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    zoomed = scipy_zoom(img[top : top + crop_h, left : left + crop_w], (factor, factor, 1), order=1)
    trim_h, trim_w = (zoomed.shape[0] - height) // 2, (zoomed.shape[1] - width) // 2
    return zoomed[trim_h : trim_h + height, trim_w : trim_w + width]


def _zoom_blur(image, c, script: _Script):
    x = _float(image).astype(np.float32)
    factors = np.arange(1, c[0], c[1])
    out = np.zeros_like(x)
    for factor in factors:
        out += _clipped_zoom(x, factor)
    return np.clip((x + out) / (len(factors) + 1), 0, 1) * 255


def _snow(image, c, script: _Script):
    loc, scale, zoom, threshold, radius, sigma, blend = c
    x = np.array(image, dtype=np.float32) / 255.0
    height, width = x.shape[:2]
    layer = np.random.normal(size=(height, width), loc=loc, scale=scale)
    layer = _clipped_zoom(layer[..., np.newaxis], zoom)
    layer[layer < threshold] = 0
    layer = (np.clip(layer[..., 0], 0, 1) * 255).astype(np.uint8)  # the PNG written for wand
    angle = np.random.uniform(-135, -45)
    layer = _magick_motion_blur(layer, radius, sigma, angle, script)[..., np.newaxis] / 255.0
    grey = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).reshape(height, width, 1)
    x = blend * x + (1 - blend) * np.maximum(x, grey * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2), 0, 1) * 255


def _frost(image, c, script: _Script):
    from corruptions.weather import FROST_FILES, frost_directory

    weight_image, weight_frost, factor = c
    x = np.array(image)
    height, width = x.shape[:2]
    index = np.random.randint(5)
    texture = cv2.imread(os.path.join(frost_directory(), FROST_FILES[index]))
    scale = factor * max(height, width) / script.side  # the script's factor at its size
    texture = cv2.resize(texture, (0, 0), fx=scale, fy=scale)
    top = np.random.randint(0, texture.shape[0] - height)
    left = np.random.randint(0, texture.shape[1] - width)
    crop = texture[top : top + height, left : left + width][..., [2, 1, 0]]
    return np.clip(weight_image * x + weight_frost * crop, 0, 255)


def _fog(image, c, script: _Script):
    x = _float(image)
    height, width = x.shape[:2]
    mapsize = 1 << max(1, math.ceil(math.log2(max(height, width))))  # the script: its side
    max_val = x.max()
    plasma = script.ic.plasma_fractal(mapsize=mapsize, wibbledecay=c[1])[:height, :width]
    x = x + c[0] * plasma[..., np.newaxis]
    return np.clip(x * max_val / (max_val + c[0]), 0, 1) * 255


def _spatter(image, c, script: _Script):
    loc, scale, sigma, threshold, intensity, mud = c
    x = np.array(image, dtype=np.float32) / 255.0
    liquid = np.random.normal(size=x.shape[:2], loc=loc, scale=scale)
    liquid = gaussian(liquid, sigma=sigma)
    liquid[liquid < threshold] = 0
    if not mud:
        # astype(np.uint8) in the scripts: values from 256 on (a layer above 1, which the
        # small presets' sigma 1 / scale 0.3 rows reach) wrap around modulo 256, as the C
        # cast does on x86 (and NumPy here); written out to not depend on the platform
        liquid = (np.floor(liquid * 255).astype(np.int64) % 256).astype(np.uint8)
        dist = cv2.distanceTransform(255 - cv2.Canny(liquid, 50, 150), cv2.DIST_L2, 5)
        _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
        dist = cv2.equalizeHist(cv2.blur(dist, (3, 3)).astype(np.uint8))
        emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
        dist = cv2.blur(cv2.filter2D(dist, cv2.CV_8U, emboss), (3, 3)).astype(np.float32)
        m = liquid * dist  # float32, one channel (the scripts' BGRA copies add alpha = 1)
        peak = np.max(m)  # 0 (no drop): the scripts divide by zero (NaN); left at 0 here
        m = m / peak * intensity if peak > 0 else m
        colour = np.array([175, 238, 238], dtype=np.float32) / 255.0  # pale turquoise
        return np.clip(x + m[..., np.newaxis] * colour, 0, 1) * 255
    m = gaussian(np.where(liquid > threshold, 1, 0).astype(np.float32), sigma=intensity)
    m[m < 0.8] = 0
    colour = np.array([63, 42, 20], dtype=np.float32) / 255.0  # mud brown
    m = m[..., np.newaxis]
    return np.clip(x * (1 - m) + colour * m, 0, 1) * 255


def _contrast(image, c, script: _Script):
    x = _float(image)
    means = np.mean(x, axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def _brightness(image, c, script: _Script):
    hsv = rgb2hsv(_float(image))
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] + c, 0, 1)
    return np.clip(hsv2rgb(hsv), 0, 1) * 255


def _saturate(image, c, script: _Script):
    hsv = rgb2hsv(_float(image))
    hsv[:, :, 1] = np.clip(hsv[:, :, 1] * c[0] + c[1], 0, 1)
    return np.clip(hsv2rgb(hsv), 0, 1) * 255


def _jpeg_compression(image, c, script: _Script):
    buffer = BytesIO()
    image.save(buffer, "JPEG", quality=c)
    return np.asarray(Image.open(buffer), dtype=np.float64)


def _pixelate(image, c, script: _Script):
    width, height = image.size
    small = image.resize((int(width * c), int(height * c)), Image.BOX)
    return np.asarray(small.resize((width, height), Image.BOX), dtype=np.float64)


def _elastic_transform(image, c, script: _Script):
    image = np.array(image, dtype=np.float32) / 255.0
    shape = image.shape
    imsize = min(shape[:2])  # the script's IMSIZE (its side), following the image size
    alpha, sigma, jitter = (imsize * v for v in c)
    center = np.float32(shape[:2]) // 2
    third = min(shape[:2]) // 3
    src = np.float32([center + third, [center[0] + third, center[1] - third], center - third])
    dst = src + np.random.uniform(-jitter, jitter, size=src.shape).astype(np.float32)
    matrix = cv2.getAffineTransform(src, dst)
    image = cv2.warpAffine(image, matrix, shape[:2][::-1], borderMode=cv2.BORDER_REFLECT_101)
    dx = (gaussian(np.random.uniform(-1, 1, size=shape[:2]), sigma, mode="reflect", truncate=3)
          * alpha).astype(np.float32)
    dy = (gaussian(np.random.uniform(-1, 1, size=shape[:2]), sigma, mode="reflect", truncate=3)
          * alpha).astype(np.float32)
    rows, cols, chans = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), np.arange(shape[2]),
                                    indexing="ij")
    coords = [rows + dy[..., np.newaxis], cols + dx[..., np.newaxis], chans]
    out = map_coordinates(image, [a.reshape(-1) for a in coords], order=1, mode="reflect")
    return np.clip(out.reshape(shape), 0, 1) * 255


_TRANSCRIPTIONS: dict[str, Callable] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "speckle_noise": _speckle_noise,
    "gaussian_blur": _gaussian_blur,
    "glass_blur": _glass_blur,
    "defocus_blur": _defocus_blur,
    "motion_blur": _motion_blur,
    "zoom_blur": _zoom_blur,
    "snow": _snow,
    "frost": _frost,
    "fog": _fog,
    "spatter": _spatter,
    "contrast": _contrast,
    "brightness": _brightness,
    "saturate": _saturate,
    "jpeg_compression": _jpeg_compression,
    "pixelate": _pixelate,
    "elastic_transform": _elastic_transform,
}


def script_function(name: str, preset: str, imagecorruptions: ModuleType) -> Callable:
    """The transcription of ``preset``'s script function ``name``: ``f(pil_image, severity)``.

    Args:
        name: a corruption name other than impulse_noise (see the module docstring).
        preset: ``"cifar"`` or ``"tinyimagenet"``.
        imagecorruptions: the loaded ``imagecorruptions.corruptions`` module
            (:func:`corruptions.reference.load_imagecorruptions`), whose helpers
            ``_motion_blur``, ``plasma_fractal`` and ``disk`` are used.

    Raises:
        ValueError: an unknown preset, or a name without a transcription.
    """
    if preset not in SCRIPTS:
        raise ValueError(f"`preset` should be one of {', '.join(SMALL_PRESETS)}. Got {preset!r}")
    if name not in _TRANSCRIPTIONS:
        raise ValueError(f"no transcription of {name!r} (one of {', '.join(_TRANSCRIPTIONS)})")
    script = _Script(preset, imagecorruptions)
    function = _TRANSCRIPTIONS[name]

    def run(image, severity: int):
        return function(image, script_row(name, preset, severity), script)

    return run
