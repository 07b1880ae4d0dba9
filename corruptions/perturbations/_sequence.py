"""The checked arguments of one :func:`~corruptions.perturbation_sequence` call, which every
perturbation's ``apply`` receives, and the helpers the families share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["Job", "finish", "per_frame"]


@dataclass
class Job:
    """The checked arguments of one :func:`~corruptions.perturbation_sequence` call.

    Attributes:
        x: (B, 3, S, S) contiguous images in the work dtype (float32, or float64), never
            written to.
        crop: side c of the frames.
        top: offset of the centre crop (rows and columns).
        frames: the requested frame indices, in the caller's order (repeats allowed).
        difficulty: 1..3.
        seeds: B per-image seeds (random perturbations), or None.
        generator: the batch generator (random perturbations), or None.
        quantize: whether the frames end on the uint8 grid.
    """

    x: torch.Tensor
    crop: int
    top: int
    frames: list[int]
    difficulty: int
    seeds: list[int] | None
    generator: torch.Generator | None
    quantize: bool

    @property
    def batch(self) -> int:
        return self.x.shape[0]

    @property
    def size(self) -> int:
        return self.x.shape[-1]

    @property
    def exact(self) -> torch.dtype:
        """float64, the type of the original's NumPy / PIL arithmetic (float32 on MPS,
        which has no float64: a few truncations may then differ by a level)."""
        return torch.float32 if self.x.device.type == "mps" else torch.float64

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
        return frame.to(job.x.dtype).div_(255)
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
