"""The ImageNet-P suite: perturbation sequences -> flip probability and top-5 distance.

Cells are (perturbation, difficulty). Sequences are generated on the device by
:func:`corruptions.perturbation_sequence` from the resized (not yet cropped)
images, or decoded from the released MP4 files (``--corrupted-dir``).

Difficulty follows the original ``test.py``: for the noise perturbations it
selects the noise level (the ``_2`` / ``_3`` folders) and every frame is compared
with the clean frame 0; for the others the frames are those of difficulty 1 and
consecutive frames are compared at a stride of ``difficulty``.

The store keeps, per shard, the number of videos, the number of frame pairs, the
sums of per-video flip rates and mean top-5 distances, and each video's two
values (for paired statistics). FR and T5D are normalized at report time by a
stored baseline run (``gcp-robust baseline``), as percentages (baseline = 100).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from corruptions.perturbations import PERTURBATION_SUBSETS, frame_count
from robustbench_gcp.engine.runner import Context, ImageSource
from robustbench_gcp.metrics import NOISE_PERTURBATIONS, flip_mode, flip_rates, rate_counts
from robustbench_gcp.store import CellKey, CellResult, ShardResult, canonical_json


def stride(perturbation: str, difficulty: int) -> int:
    """The frame stride of the flip rule (1 for the noise perturbations)."""
    return 1 if perturbation in NOISE_PERTURBATIONS else difficulty


def released_folder(root: Path, perturbation: str, difficulty: int) -> Path:
    """``<root>/<p>`` or, for the noise perturbations at difficulty 2 / 3, ``<root>/<p>_<d>``."""
    if perturbation in NOISE_PERTURBATIONS and difficulty > 1:
        return root / f"{perturbation}_{difficulty}"
    return root / perturbation


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
    keys: tuple[CellKey, ...] = field(init=False)

    def __post_init__(self):
        noise = self.perturbation in NOISE_PERTURBATIONS
        if noise and len(self.difficulties) != 1:
            raise ValueError(f"a {self.perturbation} task has one difficulty. Got {self.difficulties}")
        variant = canonical_json({"source": "released" if self.source.video_frames else "torch"})
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
        frames = frame_count(self.perturbation)
        budget = max(1, (4 * ctx.batch_size) // frames)  # videos per chunk: bounded memory
        difficulty = self.difficulties[0]  # selects the frames of noise perturbations only
        logits = []
        for start in range(0, images.shape[0], budget):
            chunk = images[start:start + budget]
            if self.source.video_frames:
                videos = chunk.float().div_(255.0)
            else:
                from corruptions import perturbation_sequence

                seeds = ctx.seeds(self.seed_token, indices[start:start + budget])
                videos = perturbation_sequence(chunk.float().div_(255.0), self.perturbation,
                                               difficulty, seed=seeds, crop_size=self.crop_size)
            flat = videos.flatten(0, 1)
            step = ctx.batch_size
            out = torch.cat([ctx.classifier(flat[i:i + step]) for i in range(0, flat.shape[0], step)])
            logits.append(out.view(videos.shape[0], videos.shape[1], -1))
        logits = torch.cat(logits)
        results = []
        for d in self.difficulties:
            rates, distances, pairs = flip_rates(logits, mode=flip_mode(self.perturbation),
                                                 difficulty=stride(self.perturbation, d))
            per_video = torch.stack([rates, distances], dim=1).cpu().numpy().astype(np.float32)
            results.append(ShardResult(int(rates.numel()), rate_counts(rates, distances, pairs),
                                       extra=per_video))
        return results


def build_tasks(
    perturbations: Sequence[str],
    difficulties: Sequence[int],
    *,
    clean_source: ImageSource | None,
    crop_size: int,
    corrupted_dir: Path | None = None,
) -> list[PerturbationTask]:
    """The tasks of an ImageNet-P plan, in report order: per noise perturbation one per
    difficulty, per other perturbation one for all difficulties.

    Generated sequences take the images resized (shorter side) and center-cropped
    to a square of that size (``clean_source``); released ones read
    ``<corrupted_dir>/<p>[_d]/<wnid>/<stem>.mp4``.
    """
    tasks = []
    for perturbation in perturbations:
        groups = ([(d,) for d in difficulties] if perturbation in NOISE_PERTURBATIONS
                  else [tuple(difficulties)])
        for group in groups:
            if corrupted_dir is not None:
                source = ImageSource(released_folder(corrupted_dir, perturbation, group[0]),
                                     resize_size=None, crop_size=crop_size, released=True,
                                     video_frames=frame_count(perturbation))
            else:
                source = clean_source
            tasks.append(PerturbationTask(perturbation, group, source, crop_size))
    return tasks


def raw_figures(results: Sequence[CellResult]) -> dict[tuple[str, int], tuple[float, float, int]]:
    """(perturbation, difficulty) -> (flip probability, top-5 distance, videos)."""
    figures = {}
    for r in results:
        if r.key.kind == "imagenet-p" and r.counts.get("videos"):
            videos = r.counts["videos"]
            figures[(r.key.name, int(r.key.level))] = (
                r.counts["flip_rate_sum"] / videos, r.counts["distance_rate_sum"] / videos, videos)
    return figures


def summarize(
    results: Sequence[CellResult],
    *,
    baseline: dict[tuple[str, int], tuple[float, float, int]] | None,
    baseline_name: str | None,
) -> dict:
    """The ``perturbations`` and ``metrics`` sections (FR, T5D, mFR, mT5D in percent)."""
    entries = []
    for (perturbation, difficulty), (fp, t5d, videos) in raw_figures(results).items():
        base = (baseline or {}).get((perturbation, difficulty))
        entries.append({
            "perturbation": perturbation,
            "difficulty": difficulty,
            "n_videos": videos,
            "flip_probability": fp,
            "top5_distance": t5d,
            "FR": 100.0 * fp / base[0] if base and base[0] > 0 else None,
            "T5D": 100.0 * t5d / base[1] if base and base[1] > 0 else None,
        })
    test = PERTURBATION_SUBSETS["test"]
    by_difficulty = {}
    for difficulty in sorted({e["difficulty"] for e in entries}):
        chosen = [e for e in entries if e["difficulty"] == difficulty and e["perturbation"] in test]
        frs = [e["FR"] for e in chosen]
        t5ds = [e["T5D"] for e in chosen]
        by_difficulty[str(difficulty)] = {
            "mFR": sum(frs) / len(frs) if chosen and None not in frs else None,
            "mT5D": sum(t5ds) / len(t5ds) if chosen and None not in t5ds else None,
            "mean_flip_probability": sum(e["flip_probability"] for e in chosen) / len(chosen)
            if chosen else None,
            "perturbations": [e["perturbation"] for e in chosen],
            "missing": [p for p in test if p not in {e["perturbation"] for e in chosen}],
        }
    first = by_difficulty[min(by_difficulty, key=int)] if by_difficulty else {}
    notes = []
    if entries and baseline is None:
        notes.append(
            f"ImageNet-P figures are unnormalized: no stored baseline named '{baseline_name}' "
            "(compute one with `gcp-robust baseline --model alexnet --checkpoint PATH --suite imagenet-p`)"
        )
    elif entries and any(e["FR"] is None for e in entries):
        missing = sorted({f"{e['perturbation']}/{e['difficulty']}" for e in entries if e["FR"] is None})
        notes.append(f"FR / T5D left empty for {', '.join(missing)}: baseline '{baseline_name}' has no "
                     "figures for them, or never flips on them (a zero normalizer)")
    if first.get("missing") and first.get("perturbations"):
        notes.append(f"mFR averages {len(first['perturbations'])} of the 10 test perturbations; "
                     f"missing: {', '.join(first['missing'])}")
    return {
        "perturbations": entries,
        "metrics": {
            "mFR": first.get("mFR"),
            "mT5D": first.get("mT5D"),
            "baseline": baseline_name if baseline is not None else None,
            "difficulty": int(min(by_difficulty, key=int)) if by_difficulty else None,
            "by_difficulty": by_difficulty,
        },
        "notes": notes,
    }
