"""Stored baseline runs as normalizers (``gcp-robust baseline``: ImageNet-P's FR and T5D, CE on
CIFAR and Tiny-ImageNet): whether one fits the run it normalizes, and its per-image values for
comparisons that resample both together."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def normalizer_for_run(normalizer: Any, run: Any) -> tuple[Any, list[str]]:
    """A normalizer as it serves the stored ``run``'s report, and notes. A stored baseline run
    (``normalizer.run``) normalizes the protocol's way only when it saw the same images with the
    same seed (the same videos, the same random draws); otherwise its figures stay fixed in
    comparisons (its per-image ``samples`` are dropped) and a note says what differs."""
    stored = getattr(normalizer, "run", None)
    if stored is None:
        return normalizer, []
    differ = []
    if stored.identity.get("data") != run.identity.get("data"):
        differ.append(f"other images ({stored.n_images}, this run {run.n_images})"
                      if stored.n_images != run.n_images else "other images")
    if stored.identity.get("seed") != run.identity.get("seed"):
        differ.append(f"seed {stored.identity.get('seed')} (this run {run.identity.get('seed')})")
    if not differ:
        return normalizer, []
    return dataclasses.replace(normalizer, samples=None), [
        f"baseline '{normalizer.name}' was evaluated on {' and with '.join(differ)}: its figures "
        "normalize a different sample, which the protocol does not; store a baseline with this run's "
        "--data, --limit and --seed (gcp-robust baseline)"]


def joint_rows(samples: Mapping[str, Any] | None, names: Sequence[str], n: int,
               optional: Sequence[str] = ()) -> dict[str, Any]:
    """The per-image values of a stored baseline run's cells ``names`` (from its ``samples``), for
    a comparison to resample with a run's ``n`` images (the baseline's figures are sample means of
    the same images): all of them, and those of ``optional`` it has; none when one of ``names`` is
    missing or of another length (the baseline's figures then stay fixed)."""
    def fits(name: str) -> bool:
        return name in samples and len(samples[name]) == n

    if not samples or not n or not all(fits(name) for name in names):
        return {}
    return {name: np.asarray(samples[name], dtype=np.float64)
            for name in [*names, *optional] if fits(name)}
