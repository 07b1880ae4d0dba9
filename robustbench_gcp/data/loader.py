"""Decoding and ImageNet preprocessing on CPU loader workers, producing uint8 batches.

Preprocessing follows the released ImageNet-C: PIL decode, RGB, resize the
shorter side to 256 with PIL bilinear, center crop 224 (:data:`PROTOCOL_INTERPOLATION`); a
model whose own evaluation resizes otherwise (DeiT: bicubic) gets its interpolation for its
clean images. Released ImageNet-C files are already 224 px and are read as they are (no
second resize).
Images of every PIL mode become 8-bit RGB (:func:`to_rgb`: 16-bit files are scaled, not
clipped). A file that cannot be decoded is reported by name instead of killing a worker.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from robustbench_gcp.errors import DataError, gone_said

#: Formats whose PIL mode "I" images hold 16-bit samples (0..65535): PNG, and PGM scaled by PIL.
_SIXTEEN_BIT_I = ("PNG", "PPM")


def _sample_bits(image: Image.Image) -> int | None:
    """Bits per sample of a mode "I" image, when the file says (None when unknown)."""
    if image.format in _SIXTEEN_BIT_I:
        return 16
    bits = getattr(image, "tag_v2", {}).get(258)  # TIFF BitsPerSample
    if isinstance(bits, tuple):
        bits = bits[0] if bits else None
    return bits if isinstance(bits, int) else None


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB version of a decoded image.

    PIL's ``convert("RGB")`` is right for the 8-bit modes (1, L, P, LA, PA, RGBA, CMYK,
    YCbCr ...; alpha is dropped, as torchvision's loader does) but clips 16-bit grayscale
    (modes "I;16*", and "I" from 16-bit PNG, PGM or TIFF files) to 255, which turns most
    images white: those are scaled 0..65535 -> 0..255, rounded to the nearest level. PIL
    reads 16-bit color PNGs at 8 bits itself (the high byte, within one level).

    Raises:
        ValueError: pixels of unknown range (32-bit integers, floats); the loader names the file.

    Example:
        >>> to_rgb(Image.new("I;16", (2, 2), 65535)).getpixel((0, 0))
        (255, 255, 255)
    """
    mode = image.mode
    if mode.startswith("I;16") or (mode == "I" and _sample_bits(image) == 16):
        wide = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
        return Image.fromarray(((wide + 128) // 257).astype(np.uint8)).convert("RGB")
    if mode in ("I", "F") or mode.startswith(("I;", "F;")):
        bits = _sample_bits(image)
        kind = "floating-point" if mode.startswith("F") else f"{bits or 32}-bit integer"
        raise ValueError(f"{kind} pixels (PIL mode {mode}) have no standard range: "
                         "save the image with 8 or 16 bits per sample")
    if mode == "P" and "transparency" in image.info:
        # the same pixels; PIL warns on the run's output, naming no file, when a palette image with
        # transparency goes to RGB directly
        image = image.convert("RGBA")
    return image.convert("RGB")


#: how ImageNet-C / -P base images are resized (PROTOCOL.md section 1): PIL bilinear
PROTOCOL_INTERPOLATION = "bilinear"

#: interpolation names (timm's / PreprocessConfig's) -> PIL filters
INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to ``resize_size`` (PIL, ``interpolation``) then center-crop
    ``crop_size``.

    ``resize_size=None`` keeps the decoded size; the crop is then only checked. ``exact=True``
    (with ``resize_size=None``: the images of a dataset of one size, CIFAR's 32 px, Tiny-ImageNet's
    64 px, and released -C files, ImageNet-C's 224 px) refuses an image of any other size than
    ``crop_size`` square rather than crop it.

    ``window=True`` (ImageNet-P's geometric base images) makes the crop a window that may
    extend beyond the resized image: the same centre crop, zero where it lies outside the
    image, whose first two pixels (row 0, columns 0 and 1; outside the image, since
    ``crop_size >= resize_size + 4``) record the resized image's height and width, each as
    three base-256 digits in R, G, B (:meth:`window_sizes` reads them back).

    Raises:
        ValueError: an ``interpolation`` that is not a name of :data:`INTERPOLATIONS`; a
            ``window`` without a resize or less than ``resize_size + 4`` wide; ``exact`` with a
            resize.
    """

    resize_size: int | None = 256
    crop_size: int = 224
    interpolation: str = PROTOCOL_INTERPOLATION
    window: bool = False
    #: place the crop so that its own centre crop of this side is the image's (ImageNet-P's
    #: squares, whose perturbations crop their centre: the image is then cropped once, at the
    #: original's offset; two centred crops are a pixel off it where (crop - this) % 4 != 0)
    centred_on: int | None = None
    exact: bool = False

    def __post_init__(self) -> None:
        if self.exact and self.resize_size is not None:
            raise ValueError(f"`exact` keeps the decoded size: it takes no resize. Got {self.resize_size}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"`interpolation` should be one of {', '.join(INTERPOLATIONS)}. "
                             f"Got {self.interpolation!r}")
        if self.window and (self.resize_size is None or self.crop_size < self.resize_size + 4):
            raise ValueError(f"a window should be at least the resize size + 4 px. Got "
                             f"{self.crop_size} for resize size {self.resize_size}")

    def __call__(self, image: Image.Image) -> np.ndarray:
        if self.resize_size is not None:
            w, h = image.size
            if w <= h:
                size = (self.resize_size, max(1, int(self.resize_size * h / w)))
            else:
                size = (max(1, int(self.resize_size * w / h)), self.resize_size)
            if size != image.size:
                image = image.resize(size, INTERPOLATIONS[self.interpolation])
        w, h = image.size
        c = self.crop_size
        if self.exact and (w, h) != (c, c):
            raise ValueError(f"image is {w}x{h}; this dataset's images are {c}x{c}")
        if (w < c or h < c) and not self.window:
            raise ValueError(f"image is {w}x{h}, smaller than the {c}x{c} crop")
        left = int(round((w - c) / 2.0))
        top = int(round((h - c) / 2.0))
        if self.centred_on is not None and not self.window:
            inner = int(round((c - self.centred_on) / 2.0))
            left = int(round((w - self.centred_on) / 2.0)) - inner
            top = int(round((h - self.centred_on) / 2.0)) - inner
        if (w, h) != (c, c):
            image = image.crop((left, top, left + c, top + c))  # PIL: zeros beyond the image
        array = np.array(image, dtype=np.uint8)
        if self.window:
            if max(h, w) >= 1 << 24:
                raise ValueError(f"image is {w}x{h} after resizing, too large for a window's record")
            array[0, :2] = [[n >> 16, (n >> 8) & 255, n & 255] for n in (h, w)]
        return array

    @staticmethod
    def window_sizes(images: torch.Tensor) -> list[tuple[int, int]]:
        """The resized (height, width) that ``window=True`` recorded in each of the uint8
        windows ``images`` (B, 3, W, W) (reading them waits for the device)."""
        record = images[:, :, 0, :2].to("cpu", torch.int64)  # (B, RGB, height / width)
        sizes = record[:, 0] * 65536 + record[:, 1] * 256 + record[:, 2]
        return [(h, w) for h, w in sizes.tolist()]


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
                array = self.preprocess(to_rgb(image))
        except FileNotFoundError:
            return self._failed(position, "file not found")
        except UnidentifiedImageError:
            return self._failed(position, "not an image (cannot identify the file format)")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:  # corrupt, huge
            return self._failed(position, str(error) or type(error).__name__)
        except MemoryError:  # a 40000x1 strip resized to a 256 px short side: 10 million px long
            width, height = _size_of(path)
            return self._failed(position, f"out of memory decoding and resizing it ({width}x{height} px)")
        return torch.from_numpy(array).permute(2, 0, 1).contiguous(), position, ""

    def _failed(self, position: int, message: str):
        c = self.preprocess.crop_size
        return torch.zeros(3, c, c, dtype=torch.uint8), position, message


def _size_of(path: Path) -> tuple[object, object]:
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError, MemoryError):
        return "?", "?"


def iterate_batches(
    paths: Sequence[Path],
    preprocess: Preprocess,
    *,
    batch_size: int,
    workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[tuple[torch.Tensor, list[int]]]:
    """``(uint8 images (B, 3, H, W), positions)`` in order.

    The loader's workers start now, in the calling thread (:func:`started`); the batches are
    decoded as the result is iterated, in any thread.

    Raises:
        DataError: an image cannot be read (the message names the file), as the batches are read.
    """
    dataset = ImageFiles(paths, preprocess)
    loader = shard_loader(dataset, batch_size, workers, prefetch=4, pin_memory=pin_memory)
    return started(loader, lambda position, error: f"cannot read image {dataset.paths[position]}: {error}",
                   paths=dataset.paths)


@contextlib.contextmanager
def _quiet_worker_count() -> Iterator[None]:
    """Without torch's warning of more loader workers than CPUs, which it gives as a loader is
    made and again as it starts, at every shard (``--workers`` says it once)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="This DataLoader will create")
        yield


def shard_loader(dataset: Dataset, batch_size: int, workers: int, *, prefetch: int, **options) -> DataLoader:
    """A loader of ``dataset``'s items in order, with at most as many workers as it has batches
    (more forked idle processes at every shard), and its seed drawn from a generator of its own
    (the caller's random state stays as it was)."""
    workers = min(workers, -(-len(dataset) // batch_size))
    with _quiet_worker_count():
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                          persistent_workers=False, generator=torch.Generator(),
                          prefetch_factor=prefetch if workers > 0 else None, **options)


def started(loader: DataLoader, message, paths: Sequence[Path] | None = None
            ) -> Iterator[tuple[torch.Tensor, list[int]]]:
    """The batches of ``loader`` (items ``(tensor, position, error)``), its workers started now.

    A worker forked from a thread while another thread runs torch can deadlock (one in about 25
    resumed runs with ``--workers 1``): the fork copies a lock that thread holds (glibc's
    exit-handler lock, taken as torch sets up a thread pool), and the worker waits on it forever.
    The engine decodes a shard in a background thread, so it starts each shard's loader here, in
    the main thread, and lets the background thread read the batches.

    Raises:
        DataError: ``message(position, error)`` for the first item whose error is not empty; where
            ``paths[position]`` (the file at fault) is in a folder that is gone, ``gone`` says so
            (:func:`~robustbench_gcp.errors.gone_said`).
    """
    with _quiet_worker_count():
        batches = iter(loader)  # a multi-process loader forks its workers here

    def read() -> Iterator[tuple[torch.Tensor, list[int]]]:
        for images, positions, errors in batches:
            for position, error in zip(positions.tolist(), errors):
                if error:
                    failed = DataError(message(position, error))
                    failed.gone = None if paths is None else gone_said(Path(paths[position]).parent)
                    raise failed
            yield images, positions.tolist()

    return read()
