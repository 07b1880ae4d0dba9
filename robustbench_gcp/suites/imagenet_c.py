"""The ImageNet-C suite: cells (corruption, severity), computed on the fly or read
from the released files, summarized as errors, CE, mCE and relative mCE."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from robustbench_gcp.config import Baseline
from robustbench_gcp.engine.runner import ImageSource
from robustbench_gcp.metrics import corruption_errors, mean_corruption_error, rate
from robustbench_gcp.store import CellKey, CellResult, canonical_json
from robustbench_gcp.suites.clean import ClassifyTask

BACKENDS = ("torch", "reference")


@dataclass(frozen=True)
class Corrupt:
    """The transform of an on-the-fly ImageNet-C cell.

    ``backend="torch"`` runs :func:`corruptions.corrupt` on the device;
    ``"reference"`` runs imagecorruptions on CPU (slow; for validation).
    ``roundtrip`` adds what the released files went through: uint8 truncation
    and a JPEG quality-85 round trip.
    """

    corruption: str
    severity: int
    backend: str = "torch"
    roundtrip: bool = True

    def __call__(self, images: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        if self.backend == "reference":
            from corruptions.reference import corrupt_reference as apply
        else:
            from corruptions import corrupt as apply
        out = apply(images, self.corruption, self.severity, seed=list(seeds))
        if self.roundtrip:
            from corruptions import storage_roundtrip

            out = storage_roundtrip(out)
        return out


def cell_key(corruption: str, severity: int, variant: dict) -> CellKey:
    return CellKey("imagenet-c", corruption, str(severity), canonical_json(variant))


def build_tasks(
    corruptions: Sequence[str],
    severities: Sequence[int],
    *,
    clean_source: ImageSource | None,
    corrupted_dir: Path | None = None,
    backend: str = "torch",
    roundtrip: bool = True,
) -> list[ClassifyTask]:
    """The tasks of an ImageNet-C plan: the clean cell (when clean data is given),
    then every (corruption, severity) in report order."""
    tasks = []
    if clean_source is not None:
        tasks.append(ClassifyTask(CellKey("clean"), clean_source))
    for corruption in corruptions:
        for severity in severities:
            if corrupted_dir is not None:
                source = ImageSource(corrupted_dir / corruption / str(severity), resize_size=None,
                                     released=True)
                tasks.append(ClassifyTask(cell_key(corruption, severity, {"source": "released"}), source))
            else:
                variant = {"source": backend, "roundtrip": roundtrip}
                tasks.append(
                    ClassifyTask(
                        cell_key(corruption, severity, variant),
                        clean_source,
                        Corrupt(corruption, severity, backend, roundtrip),
                    )
                )
    return tasks


def classification_entry(result: CellResult) -> dict:
    return {
        "n": result.n,
        "top1_error": rate(result.counts.get("top1_errors", 0), result.n),
        "top5_error": rate(result.counts.get("top5_errors", 0), result.n),
    }


def summarize(
    results: Sequence[CellResult],
    *,
    benchmark: Sequence[str],
    baseline: Baseline | None,
) -> dict:
    """The ``clean``, ``cells``, ``per_corruption`` and ``metrics`` sections of a report.

    ``results`` are the stored cells of the plan (clean first if present).
    """
    clean = next((classification_entry(r) for r in results if r.key.kind == "clean"), None)
    cells, errors = [], {}
    for result in results:
        if result.key.kind != "imagenet-c":
            continue
        entry = classification_entry(result)
        severity = int(result.key.level)
        cells.append({"corruption": result.key.name, "severity": severity, **entry})
        errors[(result.key.name, severity)] = entry["top1_error"]
    clean_error = clean["top1_error"] if clean else None
    summaries = corruption_errors(errors, clean_error, baseline)
    metrics = mean_corruption_error(summaries, benchmark)
    notes = []
    if metrics["missing"] and metrics["corruptions"]:
        notes.append(
            f"mCE averages {len(metrics['corruptions'])} of the {len(benchmark)} benchmark "
            f"corruptions; missing: {', '.join(metrics['missing'])}"
        )
    if clean_error is None and cells:
        notes.append("relative mCE needs the clean error: give --data with the clean images")
    severities = sorted({c["severity"] for c in cells})
    if cells and severities != [1, 2, 3, 4, 5]:
        notes.append(
            "CE sums over severities " + ",".join(map(str, severities))
            + " only, in both the model's errors and the baseline's"
        )
    return {
        "clean": clean,
        "cells": cells,
        "per_corruption": [
            {
                "corruption": s.corruption,
                "severities": list(s.severities),
                "mean_error": s.mean_error,
                "CE": s.CE,
                "relative_CE": s.relative_CE,
            }
            for s in summaries
        ],
        "metrics": {
            "mCE": metrics["mCE"],
            "relative_mCE": metrics["relative_mCE"],
            "mean_error": metrics["mean_error"],
            "baseline": baseline.name if baseline else None,
            "corruptions": metrics["corruptions"],
            "missing": metrics["missing"],
        },
        "notes": notes,
    }
