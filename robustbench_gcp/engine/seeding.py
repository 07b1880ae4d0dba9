"""Randomness as a function of (seed, cell, image index) only.

Every image of every cell gets its own 63-bit seed, derived by hashing; the
transforms draw from generators seeded with it. So the same seed gives the same
numbers whatever the batch size, worker count, shard size, device count or order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def image_seed(seed: int, token: str, index: int) -> int:
    """The seed of image ``index`` in the cell named ``token`` (e.g. ``imagenet-c/fog/3``)."""
    digest = hashlib.blake2b(f"{seed}|{token}|{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def image_seeds(seed: int, token: str, indices: Iterable[int]) -> list[int]:
    return [image_seed(seed, token, int(i)) for i in indices]
