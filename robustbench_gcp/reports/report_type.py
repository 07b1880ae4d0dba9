"""The one report type: an evaluation of one model on one suite, from stored counts.

``eval`` returns it (:func:`robustbench_gcp.pipeline.execution`), ``report`` rebuilds it from
the store alone (:func:`robustbench_gcp.reports.stored.collect`), and ``compare`` and
``demo`` use both. :meth:`Report.to_json` is the ``eval`` JSON schema (README, "JSON
output"); the suite's own sections (``clean``, ``cells``, ``perturbations``, ``attacks``,
``metrics`` ...) sit at its top level, between the run's facts and its provenance.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from robustbench_gcp.store import CellResult


@dataclass
class Report:
    """One model on one suite.

    Attributes:
        model, arch: the label reports show and the registry architecture.
        checkpoint, checkpoint_sha256: the weights (None for seeded random weights).
        suite, kind: the suite's name (from a store, which keeps no names: its kind) and its kind.
        source: how its cells were made, for people ("torch, JPEG round trip", "released";
            None where the suite has one way only); reports of different :attr:`experiment`
            are never compared, tabulated or plotted together.
        seed, n_images, data, corrupted_dir: how the cells were made.
        backend, storage_roundtrip: how generated cells were made (None otherwise).
        device, precision: where and in which precision the model ran; memory_format: its
            activations' layout (``channels_last`` under ``--channels-last``, else ``contiguous``).
        sections: the suite's own sections, keyed as in the JSON.
        notes: partial results, normalization and other caveats, for people.
        run, data_fingerprint: the stored run and the identity of its images.
        store, computed: the store file and what this call computed (None when rebuilt
            from the store).
        partial: None, or how far an unfinished run got (``cells_complete``, ``cells``,
            ``shards``, ``of_shards``): the means cover its complete cells only, or, with
            ``images``, ``of_images`` and ``image_range``, every cell on the ``images`` (of
            ``of_images``; then :attr:`n_images`) of the shards all its cells have. Every view
            marks such a report.
        cells: the stored cells the sections were made from (not in the JSON).
        normalizer: the baseline the metrics were normalized by (not in the JSON).
    """

    model: str
    arch: str
    checkpoint: str | None
    checkpoint_sha256: str | None
    suite: str
    kind: str
    seed: int | None
    n_images: int
    data: str | None
    corrupted_dir: str | None
    backend: str | None
    storage_roundtrip: bool | None
    device: str | None
    precision: str | None
    sections: dict[str, Any]
    notes: list[str]
    run: str
    data_fingerprint: str | None
    store: str | None = None
    computed: dict | None = None
    partial: dict | None = None
    memory_format: str = "contiguous"
    cells: list[CellResult] = field(default_factory=list, repr=False)
    normalizer: Any = field(default=None, repr=False)
    source: str | None = None

    @property
    def heading(self) -> str:
        """The suite and the source of its cells: ``imagenet-c (torch, JPEG round trip)``."""
        return f"{self.suite} ({self.source})" if self.source else self.suite

    @property
    def experiment(self) -> tuple[str, str]:
        """What reports must share to be compared, tabulated or plotted together: the suite and
        source (:attr:`heading`) and the image set (its fingerprint, else the run; for a partial
        run reported on the shards all its cells have, the range of those images too)."""
        images = self.data_fingerprint or self.run
        subset = (self.partial or {}).get("image_range")
        return self.heading, f"{images} images {subset}" if subset else images

    def to_json(self) -> dict:
        """The ``eval`` JSON object (plain types only)."""
        out = {
            "model": self.model,
            "arch": self.arch,
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256,
            "suite": self.suite,
            "kind": self.kind,
            "source": self.source,
            "seed": self.seed,
            "n_images": self.n_images,
            "data": self.data,
            "corrupted_dir": self.corrupted_dir,
            "backend": self.backend,
            "storage_roundtrip": self.storage_roundtrip,
            "device": self.device,
            "precision": self.precision,
            "memory_format": self.memory_format,
            **copy.deepcopy(self.sections),  # the caller's to change: the report stays as it was
            "partial": self.partial,
            "notes": list(self.notes),
        }
        if self.store is not None:
            out["store"] = self.store
        out["run"] = self.run
        out["data_fingerprint"] = self.data_fingerprint
        if self.computed is not None:
            out["computed"] = self.computed
        return out


def experiments(reports: Sequence[Report]) -> dict[tuple[str, str], list[Report]]:
    """``reports`` grouped by :attr:`Report.experiment`, in order of first appearance."""
    groups: dict[tuple[str, str], list[Report]] = {}
    for report in reports:
        groups.setdefault(report.experiment, []).append(report)
    return groups


def partial_marked(reports: Sequence[Report]) -> list[Report]:
    """``reports`` with `` (partial)`` after the model name of a partial run, for the views that
    name models by ``Report.model`` alone (figures' legends, Markdown's paper-style tables), as
    every table marks it."""
    return [dataclasses.replace(r, model=f"{r.model} (partial)") if r.partial else r for r in reports]
