"""Real photographs to measure on: scikit-image's colour photographs (no download).

Needs NumPy, Pillow and scikit-image, imported on the first call.

Example:
    >>> from robustbench_gcp.bench.photos import photos
    >>> photos(2, 64).shape                                 # doctest: +SKIP
    torch.Size([2, 3, 64, 64])
    >>> photo_levels(2, 64).dtype                           # doctest: +SKIP
    torch.uint8
"""

from __future__ import annotations

import torch

__all__ = ["PHOTOS", "photo_levels", "photos"]

#: colour photographs shipped inside scikit-image (no download)
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "stereo_motorcycle",
)


def photos(count: int = 4, size: int = 224) -> torch.Tensor:
    """:func:`photo_levels` as (count, 3, size, size) float32 images on the uint8 grid (k / 255)."""
    return photo_levels(count, size).float() / 255


def photo_levels(count: int = 4, size: int = 224) -> torch.Tensor:
    """Real photographs as (count, 3, size, size) uint8 levels.

    What a decoded JPEG gives and what the references take: ``levels.double() / 255``
    is exactly on the uint8 grid in float64, where ``photos(...).double()`` is each
    level's float32 neighbour (up to 3e-8 off, which the references round away).

    scikit-image's colour photographs, shorter side resized to ``size`` (PIL
    bilinear) and centre-cropped, as the ImageNet-C preprocessing; beyond the 8
    photographs, mirrored and transposed copies follow.

    Raises:
        ValueError: ``count`` < 1.
    """
    import numpy as np
    import skimage.data
    from PIL import Image

    if count < 1:
        raise ValueError(f"`count` should be >= 1. Got {count}")
    base = []
    for name in PHOTOS:
        array = getattr(skimage.data, name)()
        if isinstance(array, tuple):  # stereo_motorcycle: (left, right, disparity)
            array = array[0]
        image = Image.fromarray(array).convert("RGB")
        width, height = image.size
        scale = size / min(width, height)
        image = image.resize(
            (max(size, round(width * scale)), max(size, round(height * scale))), Image.BILINEAR
        )
        width, height = image.size
        left, top = (width - size) // 2, (height - size) // 2
        image = image.crop((left, top, left + size, top + size))
        base.append(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1))
    variants = [lambda t: t, lambda t: t.flip(-1), lambda t: t.transpose(-1, -2),
                lambda t: t.flip(-2)]
    # image i is variant (i // 8) % 4 of photograph i % 8, i.e. distinct[i % 32]: the copies by one
    # indexing (a list of 10^8 views took minutes before the allocation could fail)
    distinct = torch.stack([variant(b) for variant in variants for b in base][:count])
    return distinct if count <= len(distinct) else distinct[torch.arange(count) % len(distinct)]
