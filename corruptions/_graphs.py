"""CUDA graphs of a batch's per-image random draws (opt-in: ``GCP_ROBUST_CUDA_GRAPHS=1``).

On CUDA a seeded batch draws image by image, each image from its own generator, in pieces of
:data:`~corruptions._rng.CUDA_DRAW_CHUNK` values (:func:`~corruptions._rng.draw_slices`): a
224 px image's noise is 10 launches, a batch of 256 of them 2,560, and the noise corruptions are
bound by launching them. A CUDA graph of the whole loop, captured once per (device, batch,
shape, dtype, draw), launches them as one (and two small launches an image, which set its
generator's seed and offset on the device).

A graph holds generators of its own, one per image, registered with it (by torch itself since
2.14, with ``CUDAGraph.register_generator_state`` before): torch reads a registered generator's
seed and offset when a replay starts and moves the offset on by what the graph draws. Before a
replay each is
given its image's seed and offset; after it, each image's generator is moved on as far. The
numbers, and what the images' generators draw next, are the loop's bit for bit (the CUDA tests
of tests/test_cuda_graphs.py check it). The graph writes into a buffer of its own, copied
out after each replay.

Off unless ``GCP_ROBUST_CUDA_GRAPHS`` is ``1``: a probe on an H200 made the noise corruptions'
draws 3.5x as fast (22.5 ms against 6.6 ms a batch of 256), but this module has not yet run on
a GPU as written; ``make gpu-check`` runs its parity tests and times ``bench corruptions`` with
and without it.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import torch

from corruptions._draws import draw_in_chunks, draw_slices

__all__ = ["CACHE_BYTES", "ENV", "MAX_CAPTURES", "MIN_PIECES", "DrawGraph", "clear", "cuda_graphs_enabled",
           "draw_graph", "graph_stats", "worthwhile"]

#: the environment variable that turns the graphs on
ENV = "GCP_ROBUST_CUDA_GRAPHS"

#: the fewest launches an image's draw is made in for a graph to pay: a replay sets each
#: registered generator's seed and offset on the device (two small launches an image)
MIN_PIECES = 4

#: the most bytes the cached graphs' buffers hold together, and at most an eighth of the GPU's
#: memory (the least recently used go first): 4 GiB holds an ImageNet-C run's at batch 256 (the
#: noise's 154 MB a kind, glass_blur's five severities' 2 GB, snow's and spatter's 51 MB each)
CACHE_BYTES = 4 << 30

_ON = ("1", "true", "yes", "on")
_OFF = ("", "0", "false", "no", "off")


def cuda_graphs_enabled() -> bool:
    """Whether ``GCP_ROBUST_CUDA_GRAPHS`` turns the graphs on (``1``/``true``/``yes``/``on``).

    Raises:
        ValueError: it holds something else, named.
    """
    value = os.environ.get(ENV, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(f"`{ENV}` should be 1 (CUDA graphs of the per-image draws) or 0. "
                     f"Got {os.environ[ENV]!r}")


def worthwhile(batch: int, numel: int, device: torch.device) -> bool:
    """Whether a graph is used for ``batch`` images' draws of ``numel`` values each on
    ``device``: on CUDA, for two images or more whose draw is :data:`MIN_PIECES` launches or
    more, when :func:`cuda_graphs_enabled`."""
    device = torch.device(device)
    if device.type != "cuda" or batch < 2 or len(draw_slices(numel, device)) < MIN_PIECES:
        return False
    return cuda_graphs_enabled()


#: torch registers a generator with the capture that draws from it since 2.14, where
#: ``CUDAGraph.register_generator_state`` became a no-op that warns; before, it must be called
REGISTERS_ITSELF = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 14)


class DrawGraph:
    """One batch's per-image draws of one kind, captured as a CUDA graph.

    Args:
        batch: images B.
        shape: each image's block.
        dtype: of the draws.
        device: a CUDA device.
        fill: ``fill(view, generator)`` draws into ``view`` (as ``ImageRandom._fill``'s).
    """

    def __init__(self, batch: int, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
                 fill: Callable[[torch.Tensor, torch.Generator], object]) -> None:
        self.device = torch.device(device)
        # (out of inference mode: torch before 2.14 made the generators' graph state here, and a
        # replay outside inference mode could not write an inference tensor)
        with torch.cuda.device(self.device), torch.inference_mode(False):
            self.generators = [torch.Generator(device=self.device) for _ in range(batch)]
            self.out = torch.empty((batch, *shape), dtype=dtype, device=self.device)
            self.done = torch.cuda.Event()  # the last replay's buffer was copied out
            self.graph = torch.cuda.CUDAGraph()
            if not REGISTERS_ITSELF:
                for generator in self.generators:
                    self.graph.register_generator_state(generator)
            self.stream = torch.cuda.current_stream()  # the buffer's, as the allocator knows it
            side = torch.cuda.Stream()
            side.wait_stream(self.stream)
            with torch.cuda.stream(side):
                self._loop(fill)  # loads the kernels before the capture
                self._capture(fill)
            self.stream.wait_stream(side)
        self.lock = threading.Lock()
        self.released = False
        self.nbytes = self.out.numel() * self.out.element_size()

    def _capture(self, fill) -> None:
        # thread_local: a loader's thread pinning memory meanwhile does not end the capture
        self.graph.capture_begin(capture_error_mode="thread_local")
        try:
            self._loop(fill)
        except BaseException:  # the draw's own error is the one said, not capture_end's after it
            with contextlib.suppress(Exception):
                self.graph.capture_end()
            with contextlib.suppress(Exception):
                self.graph.reset()
            raise
        self.graph.capture_end()

    def _loop(self, fill) -> None:
        for image, generator in enumerate(self.generators):
            draw_in_chunks(self.out[image], generator, fill)

    def draw(self, generators: Sequence[torch.Generator]) -> torch.Tensor | None:
        """What ``draw_in_chunks(out[i], generators[i], fill)`` for each image gives, in a new
        tensor; each of ``generators`` is moved on as far as its draw takes it. None where the
        graph was dropped from the cache meanwhile (by another thread: draw with the loop)."""
        if len(generators) != len(self.generators):
            raise ValueError(f"this graph draws for {len(self.generators)} images. "
                             f"Got {len(generators)} generators")
        with self.lock, torch.cuda.device(self.device):
            if self.released:  # (its graph's memory may be freed once the last reference goes)
                return None
            stream = torch.cuda.current_stream()
            stream.wait_event(self.done)  # the buffer is not overwritten before it was copied out
            if stream != self.stream:  # freed, the buffer waits for this stream's use too
                self.out.record_stream(stream)
            for mine, theirs in zip(self.generators, generators):
                mine.manual_seed(theirs.initial_seed())  # (which sets the offset to 0: first)
                mine.set_offset(theirs.get_offset())
            self.graph.replay()
            for mine, theirs in zip(self.generators, generators):
                theirs.set_offset(mine.get_offset())
            out = self.out.clone()
            self.done.record(stream)
        return out

    def release(self) -> None:
        """Waits for the last copy out, so that the buffer can be freed; no replay follows."""
        with self.lock:
            self.released = True
            self.done.synchronize()


_cache: OrderedDict[Hashable, DrawGraph] = OrderedDict()
_cache_lock = threading.Lock()
_captures: dict[Hashable, int] = {}  # how often each key was captured (a third time: the loop)
_failed: str | None = None  # why a capture failed: none is tried again in this process

#: the most captures of one key: a key dropped from the cache and asked for again and again (the
#: cache too small for a run's draws) takes the loop rather than a capture each time
MAX_CAPTURES = 2


def _cached_bytes(device: torch.device) -> int:
    return sum(entry.nbytes for key, entry in _cache.items() if key[0] == device)


def _plain(part) -> bool:
    """A part of a draw's key that equals itself (a tensor's hash is its identity, NaN is not
    NaN: a capture for every call)."""
    return isinstance(part, (str, int)) or (isinstance(part, float) and math.isfinite(part))


def draw_graph(batch: int, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, kind: Hashable,
               fill: Callable[[torch.Tensor, torch.Generator], object]) -> DrawGraph | None:
    """The graph of ``batch`` images' draws of ``kind`` (what ``fill`` draws, with its parameters:
    ``("normal", mean, std)``), captured on first use; None where the loop is to be used: not
    :func:`worthwhile`, a buffer over the cache's limit (:data:`CACHE_BYTES`), a key captured
    :data:`MAX_CAPTURES` times already, or after a capture failed (said once, in a warning: none
    is tried again in this process)."""
    if _failed is not None or not all(_plain(part) for part in kind):
        return None
    device = torch.device(device)
    numel = 1
    for side in shape:
        numel *= side
    if not worthwhile(batch, numel, device):
        return None
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        with torch.cuda.device(device):
            if torch.cuda.is_current_stream_capturing():
                return None  # the caller's own capture: the loop is captured in it
    key = (device, batch, tuple(shape), dtype, kind)
    nbytes = batch * numel * dtype.itemsize
    limit = CACHE_BYTES
    if device.type == "cuda":
        limit = min(limit, torch.cuda.get_device_properties(device).total_memory // 8)
    if nbytes > limit:
        return None
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        if _captures.get(key, 0) >= MAX_CAPTURES:
            return None
        while _cached_bytes(device) + nbytes > limit:  # the device's least recently used first
            _cache.pop(next(old for old in _cache if old[0] == device)).release()
        try:
            entry = DrawGraph(batch, tuple(shape), dtype, device, fill)
        except torch.cuda.OutOfMemoryError:  # no room for its buffer: the loop, for this key
            _captures[key] = MAX_CAPTURES
            return None
        except Exception as error:  # noqa: BLE001 - the loop gives the same numbers
            _give_up(f"{type(error).__name__}: {error}")
            return None
        _captures[key] = _captures.get(key, 0) + 1
        _cache[key] = entry
        return entry


def _give_up(reason: str) -> None:
    global _failed
    _failed = reason
    # torch before 2.14 registered its default generator with every capture and left it half-captured
    # when the capture failed: its draws then raise "Offset increment outside graph capture"
    older = "" if REGISTERS_ITSELF else (f"; with torch {torch.__version__} its own CUDA generator may be "
                                         f"unusable in this process: start it again with {ENV}=0")
    warnings.warn(f"a CUDA graph of the per-image draws could not be captured ({reason}); the draws are "
                  f"launched one by one from now on{older} ({ENV}=0 turns the graphs off)", RuntimeWarning,
                  stacklevel=4)


def graph_stats() -> dict:
    """What this process's graphs came to, for a bench to say: ``enabled`` (the switch),
    ``captured`` (captures in all), ``cached`` (graphs held now) and ``failed`` (why a capture
    failed, or None)."""
    with _cache_lock:
        return {"enabled": cuda_graphs_enabled(), "captured": sum(_captures.values()), "cached": len(_cache),
                "failed": _failed}


def clear() -> None:
    """Drops the cached graphs (their buffers are freed once their last copy out is done) and
    what was learnt of captures (a failed one: graphs are tried again)."""
    global _failed
    with _cache_lock:
        for entry in _cache.values():
            entry.release()
        _cache.clear()
        _captures.clear()
        _failed = None
