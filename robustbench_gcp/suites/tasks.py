"""Classification tasks: the clean cell, and cells whose images are transformed first
(the corruptions of ImageNet-C); shared by the suites that count top-1 / top-5 errors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from corruptions import from_uint8
from robustbench_gcp.engine.runner import Context, ImageSource, classification_counts
from robustbench_gcp.store import CellKey, ShardResult

#: (images in [0, 1] on the device, per-image seeds) -> transformed images
Transform = Callable[[torch.Tensor, Sequence[int]], torch.Tensor]


@dataclass(frozen=True)
class ClassifyTask:
    """Top-1 / top-5 errors of (optionally transformed) images.

    The transform receives one seed per image, derived from (run seed, the
    cell's label, the image's index), so its randomness does not depend on
    batching.
    """

    key: CellKey
    source: ImageSource
    transform: Transform | None = None

    @property
    def keys(self) -> tuple[CellKey, ...]:
        return (self.key,)

    def process(
        self, images: torch.Tensor, labels: torch.Tensor, indices: Sequence[int], ctx: Context
    ) -> list[ShardResult]:
        x = from_uint8(images)
        if self.transform is not None:
            x = self.transform(x, ctx.seeds(self.key.label, indices))
        return [classification_counts(ctx.classifier(x), labels)]
