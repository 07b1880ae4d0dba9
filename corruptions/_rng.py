"""Seeding: per-image seeds and the per-image random source used by the corruptions.

Randomness enters a corruption only through :class:`ImageRandom`, which draws
a block of random numbers *per image* (shape ``(B, *shape)``):

- with per-image seeds, image ``i`` draws from its own ``torch.Generator``
  seeded with ``seeds[i]`` on the images' device, so its draws do not depend on
  the other images of the batch (results are independent of batching);
- with a ``torch.Generator``, the whole batch draws from it (one call per
  block; results depend on the batch composition);
- with neither, torch's default generator of the device is used (reproducible
  only through ``torch.manual_seed``).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence, Set
from typing import Any

import torch

from corruptions._draws import CUDA_DRAW_CHUNK, draw_in_chunks, draw_slices
from corruptions._graphs import draw_graph

__all__ = [
    "CUDA_DRAW_CHUNK",
    "Drawn",
    "ImageRandom",
    "check_randomness",
    "draw_in_chunks",
    "draw_slices",
    "draws_equal",
    "image_seeds",
    "normalize_seeds",
    "per_image_map",
]

_MASK64 = (1 << 64) - 1


def check_randomness(seed, generator, device: torch.device) -> None:
    """``seed`` or ``generator`` (not both) for images on ``device``: a generator of that device
    type (torch's own error, from deep inside a draw, named neither; a deterministic corruption
    ignored the mismatch).

    Raises:
        TypeError: ``generator`` is not a ``torch.Generator``.
        ValueError: both given, or a generator of another device type than the images'.
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"`generator` should be a torch.Generator. Got {type(generator).__name__}")
    if seed is not None and generator is not None:
        raise ValueError("pass `seed` or `generator`, not both")
    kind = torch.device(device).type
    if generator is not None and kind != "meta" and generator.device.type != kind:
        raise ValueError(f"`generator` is a {generator.device.type} generator and `images` are on {kind}: "
                         f"make it with torch.Generator(device={kind!r})")


def per_image_map(device: torch.device, fn, items: list) -> list:
    """``[fn(item) for item in items]``, one per image's generator: on the small thread pool of
    :func:`corruptions._ops.thread_map` on the CPU, whose generators are sequential (each image's
    advances in the same order whichever thread draws, so the numbers are the loop's); in order
    elsewhere.

    Not on CUDA, where a batch's draws are thousands of small launches (:func:`draw_slices`):
    launched from 8 threads (each on the caller's stream) they ran about 4x slower than from one
    on an H200 (torch 2.11; noise corruptions 2,600 images/s against 9,900), the threads
    contending for the launch path.
    """
    if len(items) < 2 or torch.device(device).type != "cpu":
        return [fn(item) for item in items]
    from corruptions._ops import thread_map

    return thread_map(fn, items)


def _splitmix64(value: int) -> int:
    """The SplitMix64 finalizer (Steele et al. 2014): a bijective 64-bit mix."""
    z = (value + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def image_seeds(seed: int, indices: Iterable[int] | torch.Tensor) -> torch.Tensor:
    """Per-image seeds derived from one seed and the images' indices.

    ``image_seeds(seed, indices)[i] = splitmix64(splitmix64(seed mod 2**64) XOR
    indices[i]) >> 1``, a 63-bit non-negative integer: distinct indices give
    distinct, well-mixed seeds, and the seed of an image depends only on
    ``(seed, index)``, so a dataset image gets the same corruption whatever the
    batch it falls in.

    Args:
        seed: any Python int (negative values are taken modulo 2**64).
        indices: image indices, an iterable of ints or a 1-D integer tensor.

    Returns:
        1-D int64 CPU tensor with one seed per index.

    Raises:
        TypeError: ``seed`` or an index is not an integer.

    Example:
        >>> image_seeds(0, range(3)).shape
        torch.Size([3])
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"`seed` should be an int. Got {type(seed).__name__}")
    if isinstance(indices, torch.Tensor):
        if indices.dtype.is_floating_point or indices.dtype == torch.bool or indices.ndim != 1:
            raise TypeError(
                f"`indices` should be a 1-D integer tensor. Got {indices.dtype} "
                f"with shape {tuple(indices.shape)}"
            )
        indices = indices.tolist()
    elif not isinstance(indices, Iterable):
        count = isinstance(indices, numbers.Integral)
        hint = f" (range({indices}) for the first {indices} images)" if count else ""
        raise TypeError(f"`indices` should be an iterable of ints{hint}. Got {type(indices).__name__}")
    base = _splitmix64(int(seed) & _MASK64)
    out = []
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"`indices` should hold ints. Got {type(index).__name__}")
        out.append(_splitmix64(base ^ (int(index) & _MASK64)) >> 1)
    return torch.tensor(out, dtype=torch.int64)


def normalize_seeds(
    seed: int | Sequence[int] | torch.Tensor | None, batch: int, device: torch.device
) -> list[int] | None:
    """Turn the ``seed`` argument of ``corrupt`` into one int per image (or None).

    Raises:
        TypeError: ``seed`` is neither an int, a sequence of ints nor an integer tensor.
        ValueError: the number of seeds is not the batch size.
    """
    del device  # seeds are plain ints; the generators are made on the images' device
    if seed is None:
        return None
    if not isinstance(seed, torch.Tensor) and getattr(seed, "ndim", None) == 0 and hasattr(seed, "item"):
        seed = seed.item()  # a 0-d NumPy array or scalar: its value (an int, or refused below)
    if isinstance(seed, bool):  # (NumPy's True too, as its item)
        raise TypeError("`seed` should be an int or one int per image. Got bool")
    if isinstance(seed, numbers.Integral):
        return image_seeds(int(seed), range(batch)).tolist()
    if isinstance(seed, torch.Tensor):
        if seed.dtype.is_floating_point or seed.dtype == torch.bool or seed.is_complex():
            raise TypeError(f"`seed` should be an int64 tensor of per-image seeds. Got {seed.dtype}")
        if seed.ndim == 0:
            return image_seeds(int(seed), range(batch)).tolist()
        if seed.ndim != 1:
            raise ValueError(
                f"`seed` should be a 1-D tensor of {batch} per-image seeds. "
                f"Got shape {tuple(seed.shape)}"
            )
        seeds = seed.tolist()
    elif isinstance(seed, (str, bytes, Set, Mapping)) or not isinstance(seed, Iterable):  # a set: no order
        raise TypeError(
            f"`seed` should be an int or a sequence of per-image ints. Got {type(seed).__name__}"
        )
    else:
        seeds = list(seed)
        for value in seeds:
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"`seed` should hold ints. Got {type(value).__name__}")
    if len(seeds) != batch:
        raise ValueError(
            f"`seed` should have one entry per image ({batch}). Got {len(seeds)}"
        )
    return [int(value) & _MASK64 for value in seeds]


class ImageRandom:
    """Random blocks of shape ``(B, *shape)``, drawn per image or for the batch.

    Args:
        batch: number of images B.
        device: device of the draws (the images' device).
        seeds: B ints: image i draws from ``torch.Generator(device).manual_seed(seeds[i])``.
        generator: one generator for the whole batch (mutually exclusive with ``seeds``).

    All floating-point draws are float32, whatever the images' dtype, so the same
    seed gives the same corruption for float32 and float64 images.
    """

    def __init__(
        self,
        batch: int,
        device: torch.device,
        *,
        seeds: Sequence[int] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if seeds is not None and generator is not None:
            raise ValueError("pass `seeds` or `generator`, not both")
        self.batch = batch
        self.device = torch.device(device)
        if self.device.type == "meta" and seeds is not None:  # torch has no generator there
            raise ValueError("'meta' images hold no values and take no seeded draws: pass seed=None (the "
                             "shapes are the same), or draw the parameters for CPU images of the same "
                             "shape and move them to 'meta'")
        self.generator = generator
        self.generators = None
        if seeds is not None:
            self.generators = []
            for value in seeds:
                gen = torch.Generator(device=self.device)
                gen.manual_seed(int(value))
                self.generators.append(gen)

    @property
    def per_image(self) -> bool:
        return self.generators is not None

    def _fill(self, shape: tuple[int, ...], dtype: torch.dtype, kind: tuple, fill) -> torch.Tensor:
        """A new (B, *shape) tensor; ``fill(view, generator)`` draws into each image's block
        (``kind``: what it draws, with its parameters).

        Per-image blocks are filled in place (no stacking copy), on a small thread pool
        (:func:`per_image_map`): each image has its own generator. On CUDA, with
        ``GCP_ROBUST_CUDA_GRAPHS=1``, a batch's many launches are replayed as one CUDA graph
        (:mod:`corruptions._graphs`: the same numbers).
        """
        if self.generators is not None:
            graph = draw_graph(self.batch, shape, dtype, self.device, kind, fill)
            drawn = None if graph is None else graph.draw(self.generators)
            if drawn is not None:
                return drawn
        out = torch.empty((self.batch, *shape), dtype=dtype, device=self.device)
        if self.generators is None:
            draw_in_chunks(out, self.generator, fill)
        else:
            per_image_map(self.device, lambda item: draw_in_chunks(out[item[0]], item[1], fill),
                          list(enumerate(self.generators)))
        return out

    def uniform(self, *shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        """Uniform floats in [low, high), float32, shape (B, *shape)."""
        return self._fill(tuple(shape), torch.float32, ("uniform", low, high),
                          lambda view, gen: view.uniform_(low, high, generator=gen))

    def normal(self, *shape: int, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
        """Normal floats, float32, shape (B, *shape)."""
        return self._fill(tuple(shape), torch.float32, ("normal", mean, std),
                          lambda view, gen: view.normal_(mean, std, generator=gen))

    def randint(self, low: int, high: int, *shape: int) -> torch.Tensor:
        """Integers in [low, high) (high exclusive, like NumPy's randint), int64, (B, *shape)."""
        return self._fill(tuple(shape), torch.int64, ("randint", low, high),
                          lambda view, gen: view.random_(low, high, generator=gen))


class Drawn(dict):
    """The random parameters :func:`corruptions.sample_parameters` (or :meth:`Corruption.sample`)
    drew: a dict of tensors, which says what it was drawn for (``corruption``, ``severity``,
    ``preset``), so that :meth:`Corruption.apply` refuses it for another (a severity-1 draw applied
    at severity 5 gave an image of neither, silently: helper-291). A plain dict, made by hand or
    copied (``dict(params)``), is not checked."""

    def __init__(self, draws: Mapping[str, Any], corruption: str, severity: int, preset: str):
        super().__init__(draws)
        self.corruption, self.severity, self.preset = corruption, severity, preset

    def __reduce__(self):  # pickled (a DataLoader worker's) with what it was drawn for
        return Drawn, (dict(self), self.corruption, self.severity, self.preset)


def draws_equal(first: Mapping[str, Any], second: Mapping[str, Any]) -> bool:
    """Whether two draws hold the same names and values (tensors of one shape, equal)."""
    def same(a: Any, b: Any) -> bool:
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            return a.shape == b.shape and torch.equal(a, b)
        return type(a) is type(b) and a == b

    return first.keys() == second.keys() and all(same(first[k], second[k]) for k in first)
