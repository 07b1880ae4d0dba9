"""The checked arguments of one :func:`~corruptions.perturbation_sequence` call, which every
perturbation's ``apply`` receives, and the helpers the families share.

A job's images are either the S x S squares themselves or, with ``sizes``, W x W windows
of larger (non-square) resized images: :class:`Placement` says where each whole image lies
in its window, so that the geometric perturbations can transform the whole image as the
original did (its centre, its extent, its size).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from corruptions._ops import exact_dtype, true_div_

__all__ = ["Job", "Placement", "finish", "per_frame", "window_origin"]


def window_origin(side: int, window: int) -> int:
    """Where a ``window`` px window centred on an image axis of ``side`` px starts, in the
    image's pixels: ``round((side - window) / 2)`` (Python's rounding, as the centre crop:
    negative when the window extends beyond the image)."""
    return int(round((side - window) / 2.0))


@dataclass(frozen=True)
class Placement:
    """Where one whole image lies in a job's W x W input: input pixel (r, s) shows image
    pixel (r + top, s + left) of the ``height`` x ``width`` image (zero outside it).

    For a plain square input, the image is the input itself: (S, S, 0, 0).
    """

    height: int
    width: int
    top: int
    left: int


@dataclass
class Job:
    """The checked arguments of one :func:`~corruptions.perturbation_sequence` call.

    Attributes:
        x: (B, 3, S, S) contiguous images (W x W windows with ``sizes``, zero outside
            each image) in float32 (float64 input too, computed as the original's float32
            steps), never written to.
        crop: side c of the frames.
        top: offset of the centre crop in ``x`` (rows and columns).
        frames: the requested frame indices, in the caller's order (repeats allowed).
        difficulty: 1..3.
        seeds: B per-image seeds (random perturbations), or None.
        generator: the batch generator (random perturbations), or None.
        quantize: whether the frames end on the uint8 grid.
        sizes: None (each image is the S x S input itself), or per image the (height,
            width) of the whole resized image, of which the input is the W x W window
            centred as a centre crop (:func:`window_origin`), zero outside the image; the
            crop is then the original's centre crop of the whole image.
        preset: whose parameters (``corruptions.PRESETS``): ImageNet-P's (``imagenet``),
            CIFAR-10-P's (``cifar``) or Tiny-ImageNet-P's (``tinyimagenet``); each family
            module keeps its tables by preset.
    """

    x: torch.Tensor
    crop: int
    top: int
    frames: list[int]
    difficulty: int
    seeds: list[int] | None
    generator: torch.Generator | None
    quantize: bool
    sizes: tuple[tuple[int, int], ...] | None = None
    preset: str = "imagenet"

    @property
    def batch(self) -> int:
        return self.x.shape[0]

    @property
    def size(self) -> int:
        return self.x.shape[-1]

    @property
    def exact(self) -> torch.dtype:
        """:func:`~corruptions._ops.exact_dtype` of the images' device."""
        return exact_dtype(self.x.device)

    def placements(self) -> list[tuple[list[int] | None, Placement]]:
        """The images grouped by where their whole image lies: (positions in the batch, or
        None for all of them, placement), in order of first appearance."""
        size = self.size
        if self.sizes is None:
            return [(None, Placement(size, size, 0, 0))]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, hw in enumerate(self.sizes):
            groups.setdefault(hw, []).append(i)
        whole = len(groups) == 1
        return [(None if whole else positions,
                 Placement(h, w, window_origin(h, size), window_origin(w, size)))
                for (h, w), positions in groups.items()]

    @property
    def clean(self) -> torch.Tensor:
        """The centre crop (B, 3, c, c) (a view)."""
        return self.x[..., self.top : self.top + self.crop, self.top : self.top + self.crop]


def finish(frame: torch.Tensor, job: Job) -> torch.Tensor:
    """Clip a frame computed in the original's float type and, with ``job.quantize``,
    truncate it to uint8 there (``np.uint8(255 x)``, ``tensor.mul(255).byte()``); returns
    the work dtype (k / 255 is exact: the final storage step leaves it unchanged)."""
    frame = frame.clamp(0, 1)
    if job.quantize:
        frame = frame.mul_(255).floor_()
        return true_div_(frame.to(job.x.dtype), 255.0)
    return frame.to(job.x.dtype)


def per_frame(job: Job, render: Callable[[torch.Tensor, int], torch.Tensor],
              source: torch.Tensor | None = None) -> torch.Tensor:
    """Stack ``render(images, frame)`` over the requested frames: (B, F, C, c, c).

    ``render`` gets the batch folded into the channels, (1, B * C, c, c), so every
    frame is one call over the whole batch.
    """
    source = job.clean if source is None else source
    batch, channels, height, width = source.shape
    folded = source.reshape(1, batch * channels, height, width)
    out = source.new_empty((batch, len(job.frames), channels, height, width))
    for k, j in enumerate(job.frames):
        out[:, k] = render(folded, j).reshape(batch, channels, height, width)
    return out
