"""CUDA random draws in pieces: the same numbers from a seed on every GPU model.

Used by the per-image draws (:mod:`corruptions._rng`), their CUDA graphs
(:mod:`corruptions._graphs`) and the PGD start (``robustbench_gcp/suites/attacks.py``).
"""

from __future__ import annotations

import torch

__all__ = ["CUDA_DRAW_CHUNK", "draw_in_chunks", "draw_slices"]

#: the most values one CUDA random draw makes (see :func:`draw_in_chunks`)
CUDA_DRAW_CHUNK = 16384


def draw_slices(numel: int, device: torch.device) -> list[slice]:
    """The pieces a random draw of ``numel`` values on ``device`` is made in, one after another
    from one generator: on CUDA consecutive pieces of at most :data:`CUDA_DRAW_CHUNK` values, so
    that the same seed gives the same numbers on every GPU; elsewhere the whole.

    torch's CUDA random kernels give each element the numbers of one thread of the launch's grid,
    and cap the grid at what the GPU holds at once (its SMs times its threads per SM, in blocks of
    256): a larger draw (a 224 px image's 150,528 values on an L4; glass_blur's 290,400 on an A100
    or H100) is spread over another grid, and so gets other numbers, on another GPU model. A piece
    of 16,384 values, 64 blocks, is launched whole on a GPU of 8 SMs of 2048 threads (16 of 1024).
    The CPU's generators are sequential: one draw there gives what the pieces would.
    """
    if torch.device(device).type != "cuda" or numel <= CUDA_DRAW_CHUNK:
        return [slice(0, numel)]
    return [slice(start, start + CUDA_DRAW_CHUNK) for start in range(0, numel, CUDA_DRAW_CHUNK)]


def draw_in_chunks(out: torch.Tensor, generator: torch.Generator | None, draw) -> torch.Tensor:
    """``draw(view, generator)`` into ``out`` (contiguous), piece by piece (:func:`draw_slices`)."""
    pieces = draw_slices(out.numel(), out.device)
    if len(pieces) == 1:
        draw(out, generator)
        return out
    flat = out.view(-1)
    for piece in pieces:
        draw(flat[piece], generator)
    return out
