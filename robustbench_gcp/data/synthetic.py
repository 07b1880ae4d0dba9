"""Procedurally generated ImageNet-style folders, for tests and quick trials.

Each class is a family of colored stripe patterns (orientation, frequency and
tint depend on the class) with per-image jitter and noise, saved as JPEG files
of varied sizes, so decoding, resizing and cropping are exercised as on real data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def stripe_image(label: int, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """An (H, W, 3) uint8 image of class ``label``."""
    angle = math.pi * (label * 0.381966 % 1.0) + rng.normal(0, 0.08)
    frequency = 4.0 + 3.0 * (label % 5) + rng.normal(0, 0.4)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = (x * math.cos(angle) + y * math.sin(angle)) / max(width, height)
    wave = 0.5 + 0.5 * np.sin(2 * math.pi * frequency * phase + rng.uniform(0, 2 * math.pi))
    tint = np.array([(label * 0.29) % 1.0, (label * 0.57 + 0.3) % 1.0, (label * 0.83 + 0.6) % 1.0])
    tint = 0.35 + 0.65 * tint
    image = wave[..., None] * tint[None, None, :] + 0.15 * rng.standard_normal((height, width, 1))
    image += 0.05 * rng.standard_normal((height, width, 3))
    return (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def make_image_folder(
    root: str | Path,
    classes: Sequence[str],
    per_class: int,
    *,
    seed: int = 0,
    sizes: tuple[int, int] = (240, 360),
    quality: int = 90,
) -> Path:
    """Write ``root/<class>/<class>_<i>.JPEG`` images; returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            width, height = (int(v) for v in rng.integers(sizes[0], sizes[1], size=2))
            pixels = stripe_image(label, rng, width, height)
            Image.fromarray(pixels).save(folder / f"{name}_{i:04d}.JPEG", quality=quality)
    return root
