"""The one timing helper of the benchmarks: wall time of calls, device-synchronized.

Example:
    >>> import torch
    >>> from robustbench_gcp.bench.timing import time_calls
    >>> a = torch.rand(64, 64)
    >>> (matmul,) = time_calls([lambda: a @ a], device="cpu", repeats=3, warmup=1)
    >>> len(matmul.seconds), matmul.best <= matmul.median
    (3, True)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from robustbench_gcp.engine.device import synchronize

__all__ = ["Timing", "time_calls"]


@dataclass(frozen=True)
class Timing:
    """The timed calls of one function.

    Attributes:
        seconds: wall time of each timed call, in call order.
        result: what the last timed call returned.
    """

    seconds: tuple[float, ...]
    result: Any = None

    @property
    def best(self) -> float:
        """Seconds of the fastest call (robust to other processes on a shared machine)."""
        return min(self.seconds)

    @property
    def median(self) -> float:
        """Median seconds of the calls."""
        return statistics.median(self.seconds)


def time_calls(
    calls: Sequence[Callable[[], object]],
    *,
    device: torch.device | str = "cpu",
    repeats: int = 3,
    warmup: int = 0,
) -> list[Timing]:
    """Time each function of ``calls``, taking turns, with the device synchronized around each call.

    ``warmup`` untimed rounds come first (caches, kernels, lazy imports); then
    ``repeats`` timed rounds. In every round each function is called once, in
    order, so that load from other processes hits all of them alike; compare
    their :attr:`Timing.best` (or :attr:`Timing.median`).

    Args:
        calls: functions without arguments (one, or several to compare).
        device: the device they run on (CUDA and MPS are synchronized: queued
            kernels count).
        repeats: timed rounds, >= 1.
        warmup: untimed rounds before them, >= 0.

    Returns:
        One :class:`Timing` per function, in the order of ``calls``.

    Raises:
        ValueError: ``repeats`` < 1 or ``warmup`` < 0.
    """
    if repeats < 1:
        raise ValueError(f"`repeats` should be >= 1. Got {repeats}")
    if warmup < 0:
        raise ValueError(f"`warmup` should be >= 0. Got {warmup}")
    device = torch.device(device)
    for _ in range(warmup):
        for fn in calls:
            fn()
    seconds: list[list[float]] = [[] for _ in calls]
    results: list[Any] = [None] * len(calls)
    for _ in range(repeats):
        for i, fn in enumerate(calls):
            synchronize(device)
            start = time.perf_counter()
            results[i] = fn()
            synchronize(device)
            seconds[i].append(time.perf_counter() - start)
    return [Timing(tuple(s), r) for s, r in zip(seconds, results, strict=True)]
