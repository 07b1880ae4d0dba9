"""Decoding and ImageNet preprocessing on CPU loader workers, producing uint8 batches.

Preprocessing follows the released ImageNet-C: PIL decode, RGB, resize the
shorter side to 256 with PIL bilinear, center crop 224. Released ImageNet-C
files are already 224 px and are read as they are (no second resize).
A file that cannot be decoded is reported by name instead of killing a worker.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from robustbench_gcp.errors import DataError


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to ``resize_size`` then center-crop ``crop_size``.

    ``resize_size=None`` keeps the decoded size (released ImageNet-C files); the
    crop is then only checked.
    """

    resize_size: int | None = 256
    crop_size: int = 224

    def __call__(self, image: Image.Image) -> np.ndarray:
        if self.resize_size is not None:
            w, h = image.size
            if w <= h:
                size = (self.resize_size, max(1, int(self.resize_size * h / w)))
            else:
                size = (max(1, int(self.resize_size * w / h)), self.resize_size)
            if size != image.size:
                image = image.resize(size, Image.Resampling.BILINEAR)
        w, h = image.size
        c = self.crop_size
        if w < c or h < c:
            raise ValueError(f"image is {w}x{h}, smaller than the {c}x{c} crop")
        left = int(round((w - c) / 2.0))
        top = int(round((h - c) / 2.0))
        if (w, h) != (c, c):
            image = image.crop((left, top, left + c, top + c))
        return np.array(image, dtype=np.uint8)


class ImageFiles(Dataset):
    """Images by path -> (uint8 (3, H, W) tensor, position, error message)."""

    def __init__(self, paths: Sequence[Path], preprocess: Preprocess):
        self.paths = list(paths)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, position: int):
        path = self.paths[position]
        try:
            with Image.open(path) as image:
                array = self.preprocess(image.convert("RGB"))
        except FileNotFoundError:
            return self._failed(position, "file not found")
        except UnidentifiedImageError:
            return self._failed(position, "not an image (cannot identify the file format)")
        except (OSError, ValueError, SyntaxError) as error:  # truncated / corrupt files
            return self._failed(position, str(error) or type(error).__name__)
        return torch.from_numpy(array).permute(2, 0, 1).contiguous(), position, ""

    def _failed(self, position: int, message: str):
        c = self.preprocess.crop_size
        return torch.zeros(3, c, c, dtype=torch.uint8), position, message


def iterate_batches(
    paths: Sequence[Path],
    preprocess: Preprocess,
    *,
    batch_size: int,
    workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[tuple[torch.Tensor, list[int]]]:
    """Yield ``(uint8 images (B, 3, H, W), positions)`` in order.

    Raises:
        DataError: an image cannot be read (the message names the file).
    """
    dataset = ImageFiles(paths, preprocess)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
    )
    for images, positions, errors in loader:
        for position, error in zip(positions.tolist(), errors):
            if error:
                raise DataError(f"cannot read image {dataset.paths[position]}: {error}")
        yield images, positions.tolist()
