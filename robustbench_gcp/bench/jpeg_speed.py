"""Timing the JPEG round trips (``gcp-robust bench jpeg``).

Every codec takes the same uint8 photographs on ``device`` and returns them there, so what
a pipeline on that device pays is timed: for the CPU codec on a GPU that includes the copies
to the host and back.

- ``libjpeg``: torchvision's libjpeg-turbo on the CPU, on a small thread pool (what the
  round trip uses on the CPU; PIL's codec, the protocol's reference);
- ``tensor``: :func:`corruptions.jpeg.roundtrip`, the same arithmetic in integer tensors on
  ``device`` (what the round trip uses on CUDA);
- ``nvjpeg``: torchvision's CUDA codec (CUDA only, where this torchvision has it): not used by
  gcp-robust, timed for comparison; its encoder samples chroma 4:4:4, so its pixels differ.

Each row also says how far the codec's output is from libjpeg's (mean absolute difference in
uint8 levels, and whether it is identical).

Example:
    >>> from robustbench_gcp.bench.jpeg_speed import bench_jpeg
    >>> rows = bench_jpeg("cpu", batch_size=1, size=32, qualities=(85,), repeats=1)
    >>> [(r["codec"], r["identical"]) for r in rows]
    [('libjpeg', True), ('tensor', True)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from robustbench_gcp.bench.photos import photo_levels
from robustbench_gcp.bench.timing import time_calls
from robustbench_gcp.errors import ConfigError, check_integer

__all__ = ["bench_jpeg", "nvjpeg_roundtrip"]


def nvjpeg_roundtrip(pixels: torch.Tensor, quality: int) -> torch.Tensor:
    """(B, 3, H, W) uint8 CUDA images through torchvision's nvJPEG encoder and decoder (its bytes
    come to the host in between, as ``decode_jpeg`` takes them). For comparison only.

    Raises:
        RuntimeError, NotImplementedError: torchvision was built without nvJPEG.
    """
    from torchvision.io import decode_jpeg, encode_jpeg

    from corruptions._ops import quiet_torchvision_io

    with quiet_torchvision_io():
        encoded = encode_jpeg(list(pixels), quality=quality)
        return torch.stack(decode_jpeg([e.cpu() for e in encoded], device=pixels.device))


def _codecs(device: torch.device) -> dict[str, Callable[[torch.Tensor, int], torch.Tensor]]:
    from corruptions.digital import libjpeg_roundtrip
    from corruptions.jpeg import roundtrip

    codecs = {
        "libjpeg": lambda x, q: libjpeg_roundtrip(x.cpu(), q).to(device),
        "tensor": roundtrip,
    }
    if device.type == "cuda":
        try:
            nvjpeg_roundtrip(torch.zeros(1, 3, 16, 16, dtype=torch.uint8, device=device), 85)
            codecs["nvjpeg"] = nvjpeg_roundtrip
        except (RuntimeError, NotImplementedError):  # torchvision built without nvJPEG
            pass
    return codecs


def bench_jpeg(device: torch.device | str = "cpu", *, batch_size: int = 32, size: int = 224,
               qualities: Sequence[int] = (85, 25, 7), repeats: int = 3) -> list[dict]:
    """Time each JPEG codec on a batch of photographs at each quality.

    Args:
        device: where the images are (and the tensor and nvJPEG codecs run).
        batch_size: images per call.
        size: side of the square photographs, in pixels.
        qualities: JPEG qualities 1..100 (85: the released files' storage; 25 and 7:
            jpeg_compression's severities 1 and 5).
        repeats: timed rounds after one warm-up round; the codecs take turns, the best counts.

    Returns:
        One dict per codec and quality: ``codec``, ``quality``, ``ms_per_image``,
        ``images_per_second``, ``vs_libjpeg`` (libjpeg's time over this codec's: above 1 is
        faster), ``mad_levels`` (mean absolute difference from libjpeg's output, uint8
        levels) and ``identical``.

    Raises:
        ConfigError: a size, count or quality out of range.
    """
    for option, value in (("batch_size", batch_size), ("size", size), ("repeats", repeats)):
        check_integer(option, value)
    if not qualities or any(isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= 100
                            for q in qualities):
        raise ConfigError(f"`qualities` should be integers 1..100. Got {list(qualities)!r}")
    device = torch.device(device)
    codecs = _codecs(device)
    pixels = photo_levels(batch_size, size).to(device)
    rows = []
    for quality in qualities:
        calls = [lambda c=codec, q=quality: c(pixels, q) for codec in codecs.values()]
        timings = time_calls(calls, device=device, repeats=repeats, warmup=1)
        reference = timings[0].result.cpu().float()
        for name, timing in zip(codecs, timings):
            ms = timing.best / batch_size * 1000
            mad = float((timing.result.cpu().float() - reference).abs().mean())
            rows.append({
                "codec": name,
                "quality": quality,
                "ms_per_image": ms,
                "images_per_second": 1000 / ms if ms > 0 else None,
                "vs_libjpeg": timings[0].best / timing.best if timing.best > 0 else None,
                "mad_levels": mad,
                "identical": mad == 0.0,
            })
    return rows
