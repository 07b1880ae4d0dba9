"""The values the store holds, and how a shard's arrays become bytes in its rows and back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from robustbench_gcp.errors import StoreError


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class CellKey:
    """The identity of a cell within a run.

    ``level`` is a severity, difficulty or epsilon written as text (``"3"``,
    ``"0.00392156862745098"``), empty for the clean cell; ``variant`` is the
    canonical JSON of the cell's settings (backend, storage round trip,
    released files, attack budget ...).
    """

    kind: str
    name: str = ""
    level: str = ""
    variant: str = "{}"

    @property
    def label(self) -> str:
        return "/".join(part for part in (self.kind, self.name, self.level) if part)


#: the ``weights`` of a run's identity with seeded random weights, before the seed
RANDOM_INIT = "random-init-seed-"


@dataclass(frozen=True)
class RunInfo:
    id: int
    key: str
    model: str
    arch: str
    checkpoint: str | None
    data: str | None
    n_images: int
    shard_size: int
    identity: dict
    created: str

    @property
    def n_shards(self) -> int:
        return -(-self.n_images // self.shard_size)

    @property
    def random_weights_seed(self) -> str | None:
        """The seed of a run with seeded random weights (``--random-weights``), else None."""
        weights = str(self.identity.get("weights"))
        return weights.removeprefix(RANDOM_INIT) if weights.startswith(RANDOM_INIT) else None

    @classmethod
    def from_row(cls, row: Sequence) -> RunInfo:
        """A row of the ``runs`` table (``SELECT *``).

        Raises:
            DamagedRow: a row edited by hand (an identity that is not a JSON object, no image).
        """
        identity = json_object(row[8], f"run {row[1]}: its identity")
        if not positive_counts(row[6], row[7]):
            raise DamagedRow(f"run {row[1]}: n_images {row[6]!r} and shard_size {row[7]!r} should be "
                             "positive integers")
        return cls(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], identity, row[9])


def positive_counts(*values: Any) -> bool:
    """Whether a run's ``n_images`` and ``shard_size`` are positive integers, as the store writes
    them (:meth:`Store.run`) and reads them (:meth:`RunInfo.from_row`)."""
    return all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in values)


class DamagedRow(ValueError):
    """A row of the store that does not read as gcp-robust writes it (edited by hand)."""


def json_object(text: Any, what: str) -> dict:
    """``text`` read as a JSON object.

    Raises:
        DamagedRow: ``what`` is not one.
    """
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as error:
        raise DamagedRow(f"{what} is not JSON ({error})") from None
    if not isinstance(value, dict):
        raise DamagedRow(f"{what} is not a JSON object")
    return value


@dataclass
class ShardResult:
    """What one shard of one cell produced."""

    n: int
    counts: dict[str, float]
    correct: np.ndarray | None = None  # bool (n,), top-1 correctness
    extra: np.ndarray | None = None  # float32 (n,) or (n, k) per-image values
    # (a task's per-batch results may hold device tensors instead, which the engine brings
    # to the host once per shard: counts as 0-dim tensors, correct and extra as tensors)


@dataclass
class CellResult:
    """All stored shards of a cell, combined in shard order."""

    key: CellKey
    n: int
    counts: dict[str, float]
    shards: list[int]
    complete: bool
    correct: np.ndarray | None = None
    extra: np.ndarray | None = None
    seconds: float = 0.0


def encode_shard(shard: int, result: ShardResult) -> tuple[int, str, bytes | None, bytes | None]:
    """The ``n``, ``counts``, ``bitmap`` and ``extra`` columns of a shard row.

    Raises:
        StoreError: the arrays do not have ``result.n`` rows, a count is not a number, or a count
            the bitmap repeats (``top1_errors``, ``robust``) comes without it.
    """
    bitmap = None
    told_by_bits = [name for name in _BITMAP_COUNTS if name in result.counts]
    if result.correct is None and told_by_bits:
        raise StoreError(f"shard {shard}: counts {', '.join(told_by_bits)} come with the per-image bitmap "
                         "they count, and it has none")
    if result.correct is not None:
        correct = np.asarray(result.correct, dtype=bool)
        if correct.shape != (result.n,):
            raise StoreError(
                f"correctness of shard {shard} has shape {correct.shape}, expected ({result.n},)"
            )
        bitmap = np.packbits(correct).tobytes()
    extra = None
    if result.extra is not None:
        values = np.ascontiguousarray(result.extra, dtype=np.float32)
        if values.shape[:1] != (result.n,):
            raise StoreError(
                f"per-image values of shard {shard} have {values.shape[0]} rows, expected {result.n}"
            )
        extra = canonical_json(list(values.shape[1:])).encode() + b"\n" + values.tobytes()
    counts = canonical_json({k: _plain_number(v) for k, v in result.counts.items()})
    return result.n, counts, bitmap, extra


#: the count a shard's bitmap repeats: top-1 errors are its zeros, robust images its ones
_BITMAP_COUNTS = {"top1_errors": False, "robust": True}


def combine_shards(key: CellKey, rows: Sequence[Sequence], n_shards: int | None) -> CellResult:
    """A cell's result from its shard rows (shard, n, counts, bitmap, extra, seconds) in shard order.

    Raises:
        ValueError: a row that cannot be what the engine wrote (a bitmap of another length than its
            images, none beside the counts it repeats or one that disagrees with them, a shard
            beyond ``n_shards``).
    """
    counts: dict[str, float] = {}
    correct, extra, n, seconds = [], [], 0, 0.0
    for index, (shard, shard_n, shard_counts, bitmap, shard_extra, shard_seconds) in enumerate(rows):
        if n_shards is not None and not 0 <= shard < n_shards:  # (the run's n_images edited)
            raise ValueError(f"shard {shard} of a run of {n_shards} shards")
        n += shard_n
        seconds += shard_seconds or 0.0
        these = json.loads(shard_counts)
        if not isinstance(these, dict):
            raise ValueError(f"shard {shard}: its counts are a JSON {type(these).__name__}, not an object")
        told_by_bits = [name for name in _BITMAP_COUNTS if name in these]
        if index == 0:
            first, first_told = these, told_by_bits
        # every shard of a cell repeats its bitmap's count (others may differ: ImageNet-P's shards
        # before 0.7.7 lack the integer totals that later shards of a resumed cell hold)
        elif told_by_bits != first_told:
            raise ValueError(f"shard {shard}: its counts hold {', '.join(sorted(these)) or 'nothing'}, "
                             f"shard {rows[0][0]}'s {', '.join(sorted(first)) or 'nothing'}")
        if bitmap is not None and not these:  # a count of 0 read into every figure of the cell
            raise ValueError(f"shard {shard}: its counts are empty beside its bitmap")
        for name, value in these.items():
            counts[name] = counts.get(name, 0) + value
        if bitmap is None and told_by_bits:  # the engine writes the two together
            raise ValueError(f"shard {shard}: its counts hold {told_by_bits[0]}, and it has no bitmap")
        if bitmap is not None:
            if len(bitmap) != (shard_n + 7) // 8:
                raise ValueError(f"shard {shard}: a bitmap of {len(bitmap)} bytes for {shard_n} images")
            bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), count=shard_n).astype(bool)
            for name, ones in _BITMAP_COUNTS.items():
                told = int(bits.sum()) if ones else shard_n - int(bits.sum())
                if name in these and these[name] != told:
                    raise ValueError(f"shard {shard}: its bitmap tells {told} {name}, "
                                     f"its counts {these[name]}")
            correct.append(bits)
        if shard_extra is not None:
            header, _, payload = shard_extra.partition(b"\n")
            tail = tuple(json.loads(header))
            extra.append(np.frombuffer(payload, dtype=np.float32).reshape((shard_n, *tail)))
    shards = [r[0] for r in rows]
    return CellResult(
        key=key,
        n=n,
        counts=counts,
        shards=shards,
        complete=n_shards is not None and shards == list(range(n_shards)),
        correct=np.concatenate(correct) if correct and len(correct) == len(rows) else None,
        extra=np.concatenate(extra) if extra and len(extra) == len(rows) else None,
        seconds=seconds,
    )


def _plain_number(value: Any) -> float | int:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StoreError(f"counts must be numbers, got {value!r}")
    return value
