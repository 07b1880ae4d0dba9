"""The tasks of the ImageNet-P suite: a perturbation sequence, generated on the device or read
from released videos, classified once, scored at each difficulty (flip rates and top-5
distances per video).

A generated sequence starts from the resized image: the geometric perturbations from a window of
side :func:`window_side` centred on the whole image (``Preprocess(window=True)``), the others
from the S x S square placed so that the perturbation's centre crop is the image's own centre
crop (``Preprocess(centred_on=crop)``), as the original crops once.

The per-video rates a task stores (float32, in a cell's ``extra``) are read back as integer
totals by :func:`per_video`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from corruptions import NOISE_PERTURBATIONS, frame_count, from_uint8
from corruptions.perturbations import GEOMETRIC_PERTURBATIONS, window_size
from robustbench_gcp.data.datasets import dataset_mark, get_dataset
from robustbench_gcp.data.loader import Preprocess
from robustbench_gcp.engine.runner import Context, ImageSource
from robustbench_gcp.metrics import flip_mode, flip_totals, rate_counts, relative_rate
from robustbench_gcp.store import CellKey, CellResult, ShardResult, canonical_json
from robustbench_gcp.suites.revisions import mark, perturbation_revision
from robustbench_gcp.suites.stored_baselines import percent_of

__all__ = ["WINDOWED", "PerturbationTask", "shifted_square", "stride", "window_side"]


def stride(perturbation: str, difficulty: int) -> int:
    """The frame stride of the flip rule (1 for the noise perturbations)."""
    return 1 if perturbation in NOISE_PERTURBATIONS else difficulty


#: the perturbations whose frames the suite makes from windows of the whole resized image: the
#: geometric ones (they show pixels beyond the crop) and zoom_blur (it zooms about the whole image's
#: centre, which the square's is not where the image's excess over it is odd)
WINDOWED = (*GEOMETRIC_PERTURBATIONS, "zoom_blur")


def window_side(resize_size: int, crop_size: int, perturbations: Sequence[str] = WINDOWED) -> int:
    """The side of the windows of ``perturbations`` (the windowed ones of a selection: zoom_blur
    alone reads the crop only, 260 px at 256 / 224 where all of them need 564): :func:`window_size`
    of the crop, at least ``resize_size + 4`` (the loader's size record lies outside the image),
    with (side - crop) a multiple of 4. The frames do not depend on it."""
    side = window_size(crop_size, perturbations)
    while side < resize_size + 4:
        side += 4
    return side


def shifted_square(source: ImageSource) -> bool:
    """Whether ``source`` is a square that :attr:`~ImageSource.centred_on` moves off the resized
    image's centre: where (square - crop) % 4 != 0 (256 / 224: never; the demo models' 73 / 64:
    always), the two centred crops of earlier versions were a pixel off the original's one."""
    if source.centred_on is None or source.resize_size is None or source.window:
        return False
    return (source.crop_size - source.centred_on) % 4 != 0


@dataclass(frozen=True)
class PerturbationTask:
    """The cells of one sequence: generated or released frames, classified once.

    A noise perturbation has one difficulty per task (each difficulty is another
    noise level, hence other frames). Any other perturbation has the same frames
    at every difficulty, so one task classifies them once and fills a cell per
    difficulty, comparing frames at stride 1, 2, 3 (and its random layers, for
    snow and spatter, are the same at every difficulty, as in the released data).
    """

    perturbation: str
    difficulties: tuple[int, ...]
    source: ImageSource
    crop_size: int
    #: the dataset (``DATASETS`` key): its preset makes the sequences; other than ImageNet, its
    #: cells' variant names it
    dataset: str = "imagenet"
    #: the model's classes: other than ImageNet's 1000 on its images, the cells say so (``"classes":
    #: K``, :func:`~robustbench_gcp.data.datasets.label_space`): flips among 10 classes are
    #: another task than AlexNet's among 1000, and a baseline normalizes a model of its own classes
    classes: int | None = None
    keys: tuple[CellKey, ...] = field(init=False)

    def __post_init__(self):
        noise = self.perturbation in NOISE_PERTURBATIONS
        if noise and len(self.difficulties) != 1:
            raise ValueError(f"a {self.perturbation} task has one difficulty. Got {self.difficulties}")
        source = "released" if self.source.video_frames else "torch"
        variant = {"source": source, **dataset_mark(get_dataset(self.dataset, self.classes)),
                   **mark(perturbation_revision(self.perturbation, source))}
        if self.source.window:  # 0.4+: from the whole image, not its centre square (older stores' cells)
            variant["geometry"] = "whole-image"
        elif shifted_square(self.source):  # 0.7.5+: at the image's centre crop, not a pixel off it
            variant["geometry"] = "centred-crop"
        variant = canonical_json(variant)
        keys = tuple(CellKey("imagenet-p", self.perturbation, str(d), variant) for d in self.difficulties)
        object.__setattr__(self, "keys", keys)

    @property
    def seed_token(self) -> str:
        """What the per-image seeds derive from: the noise level's cell, or the perturbation."""
        if self.perturbation in NOISE_PERTURBATIONS:
            return self.keys[0].label
        return f"imagenet-p/{self.perturbation}"

    def process(
        self, images: torch.Tensor, labels: torch.Tensor, indices: Sequence[int], ctx: Context
    ) -> list[ShardResult]:
        preset = get_dataset(self.dataset).preset
        frames = frame_count(self.perturbation, preset=preset)
        budget = max(1, (4 * ctx.batch_size) // frames)  # videos per chunk: bounded memory
        difficulty = self.difficulties[0]  # selects the frames of noise perturbations only
        # windows: the whole images' sizes, as the loader recorded them (the record lies outside
        # the image, which the sequences ignore); the batch's one wait for the device (behind
        # the previous batch's frames, seconds of work on a GPU beside the host's milliseconds
        # before the next kernels), not one per chunk
        window_sizes = None
        if self.source.window and not self.source.video_frames:
            window_sizes = Preprocess.window_sizes(images)
        logits = []
        for start in range(0, images.shape[0], budget):
            chunk = images[start:start + budget]
            if self.source.video_frames:
                videos = from_uint8(chunk)
            else:
                from corruptions import perturbation_sequence

                seeds = ctx.seeds(self.seed_token, indices[start:start + budget])
                sizes = window_sizes[start:start + budget] if window_sizes is not None else None
                videos = perturbation_sequence(from_uint8(chunk), self.perturbation,
                                               difficulty, seed=seeds, crop_size=self.crop_size,
                                               sizes=sizes, preset=preset, check_values=False)
            flat = videos.flatten(0, 1)
            step = ctx.batch_size
            out = torch.cat([ctx.classifier(flat[i:i + step]) for i in range(0, flat.shape[0], step)])
            logits.append(out.view(videos.shape[0], videos.shape[1], -1))
        logits = torch.cat(logits)
        results = []
        for d in self.difficulties:
            flips, distances, pairs = flip_totals(logits, mode=flip_mode(self.perturbation),
                                                  difficulty=stride(self.perturbation, d))
            # totals and per-video rates stay on the device; the engine brings a shard's to the
            # host once
            counts = rate_counts(flips, distances, pairs, on_device=True)
            per_video = torch.stack([flips, distances], dim=1).float() / pairs  # (no float64 on MPS)
            results.append(ShardResult(int(flips.numel()), counts, extra=per_video))
        return results


def per_video(r: CellResult) -> tuple[np.ndarray, np.ndarray]:
    """A cell's per-video numbers of flips and total top-5 distances (float64 integers), and so
    its figures as the report has them, to the bit: the mean over videos divided by the pairs
    each video compares (:func:`~robustbench_gcp.metrics.figures_of_counts`). The store keeps
    each video's rates in float32, integers over those pairs (k / 30): times the pairs they round
    to the integers again (averaging the float32 rates put a comparison's mT5D 5e-9 off the
    report's, and float64 rates 1 ulp)."""
    pairs = pairs_of(r)
    return tuple(np.rint(r.extra[:, column].astype(np.float64) * pairs) for column in (0, 1))


def pairs_of(r: CellResult) -> int:
    """The frame pairs each video of a cell compares (every video as many)."""
    return r.counts["comparisons"] // max(r.counts["videos"], 1)


def mean_relative(chosen: Sequence[tuple[str, int]], prefix: str, figures: Mapping, column: int,
                   pairs: Mapping[tuple[str, int], int], base_pairs: Mapping[tuple[str, int], int] | None,
                   joint: set[str]):
    """A comparison's mFR (``fp``, column 0 of the baseline's ``figures``) or mT5D (``t5d``, 1) of the
    per-image means ``m`` of the per-video totals (:func:`per_video`, each cell's over its ``pairs``);
    the baseline's figures are its resampled means (rows ``base fp p/d``, over ``base_pairs``) in the
    cells of ``joint``, else its stored ones."""
    def relative(m, p, d):
        cell = f"{prefix} {p}/{d}"
        if cell not in joint:
            return relative_rate(m[cell] / pairs[(p, d)], figures[(p, d)][column])
        # a resample where the baseline never flips: inf
        return percent_of(m[cell] / pairs[(p, d)], m[f"base {cell}"] / base_pairs[(p, d)])

    return lambda m: sum(relative(m, p, d) for p, d in chosen) / len(chosen)


def mean_raw(chosen: Sequence[tuple[str, int]], prefix: str, pairs: Mapping[tuple[str, int], int]):
    """The unnormalized mean over the chosen cells of a comparison's per-image means ``m`` of the
    per-video totals, each over its ``pairs``."""
    return lambda m: sum(m[f"{prefix} {p}/{d}"] / pairs[(p, d)] for p, d in chosen) / len(chosen)
