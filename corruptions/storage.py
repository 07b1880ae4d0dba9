"""The storage round trip of the released ImageNet-C files.

The released ImageNet-C images were saved as ``np.uint8(corrupted)`` (truncation,
not rounding) and written as JPEG at quality 85. Evaluating on-the-fly
corruptions through the same round trip makes them match the released files'
pipeline (jpeg_compression included: its output was re-encoded at q85 too).
"""

from __future__ import annotations

import numbers

import torch

from corruptions._ops import true_div_, without_autocast
from corruptions._registry import check_images, check_range

__all__ = ["STORAGE_QUALITY", "from_uint8", "storage_roundtrip", "truncate_to_uint8"]

#: the JPEG quality each released benchmark was stored at, by preset: ImageNet-C and
#: Tiny-ImageNet-C as JPEG q85 files, CIFAR-10/100-C as ``np.uint8`` arrays (.npy, no JPEG: None)
STORAGE_QUALITY = {"imagenet": 85, "cifar": None, "tinyimagenet": 85}

# x * 255 may land just below an integer k for an image that was exactly k / 255
# (float error); the tolerance keeps it at k. It covers the representation error of
# k / 255 in the dtype (about 128 ulp of 1.0; 1.5e-5 in float32), at most 0.5.
_TOLERANCE = {
    torch.float64: 1e-4,
    torch.float32: 1e-4,
    torch.float16: 0.126,
    torch.bfloat16: 0.5,
}


def truncate_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """``np.uint8(np.clip(x * 255, 0, 255))`` for float images in [0, 1], tolerant to float error.

    Args:
        images: float tensor of any shape, values in [0, 1].

    Returns:
        uint8 tensor of the same shape: ``floor(x * 255 + tol)`` clipped to 0..255,
        where tol (1e-4 for float32/float64, 0.126 for float16, 0.5 for bfloat16,
        whose precision cannot hold k/255) only absorbs the representation error
        of k/255, so an image that was k/255 comes back as k.
    """
    tolerance = _TOLERANCE.get(images.dtype, 1e-4)
    # a copy, rounded in place: the same operations without three temporaries of the batch's size
    work = images.to(torch.float64 if images.device.type != "mps" else torch.float32, copy=True)
    return work.mul_(255).add_(tolerance).floor_().clamp_(0, 255).to(torch.uint8)


@without_autocast
def storage_roundtrip(images: torch.Tensor, quality: int | None = 85, *,
                      check_values: bool = True) -> torch.Tensor:
    """Pass corrupted images through the ImageNet-C storage: uint8 truncation, JPEG q85.

    Args:
        images: (B, 3, H, W) float tensor in [0, 1], any device, any memory layout.
        quality: JPEG quality 1..100 (85 as the released files), or None to
            truncate to uint8 only.
        check_values: refuse images outside [0, 1] (0-255 floats would come out white), as
            :func:`corruptions.corrupt` does; on CUDA one device sync.

    Returns:
        New contiguous (B, 3, H, W) tensor of the input's dtype and device, values k / 255.

    Raises:
        TypeError, ValueError: bad images (see :func:`corruptions.corrupt`) or quality.

    Example:
        >>> x = torch.full((1, 3, 32, 32), 100 / 255)
        >>> bool((storage_roundtrip(x, quality=None) * 255).round().eq(100).all())
        True
    """
    check_images(images, min_size=1)
    if quality is not None:
        if isinstance(quality, bool) or not isinstance(quality, numbers.Integral):
            raise TypeError(f"`quality` should be an int 1..100 or None. Got {quality!r}")
        quality = int(quality)  # NumPy's integers too
        if not 1 <= quality <= 100:
            raise ValueError(f"`quality` should be 1..100. Got {quality}")
    if check_values:
        check_range(images)
    pixels = truncate_to_uint8(images.detach().contiguous())
    if quality is not None:
        from corruptions.digital import jpeg_roundtrip

        pixels = jpeg_roundtrip(pixels, quality)
    return from_uint8(pixels, images.dtype)


def from_uint8(pixels: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 images (any shape) as floats k / 255 of ``dtype``, divided as NumPy divides on every
    device: on CUDA, ``x / 255`` multiplies by 1/255 (one rounding more), which puts 126 of the 256
    levels one float32 step away from the CPU's value.

    Example:
        >>> from_uint8(torch.tensor([0, 51, 255], dtype=torch.uint8))
        tensor([0.0000, 0.2000, 1.0000])
    """
    if not isinstance(pixels, torch.Tensor) or pixels.dtype != torch.uint8:
        if isinstance(pixels, torch.Tensor):
            hint = " (floats are divided by 255 already)" if pixels.dtype.is_floating_point else ""
            raise TypeError(f"`pixels` should be a uint8 tensor. Got a {pixels.dtype} tensor{hint}")
        hint = " (torch.from_numpy(array); an (H, W, 3) image: .permute(2, 0, 1)[None])" \
            if type(pixels).__name__ == "ndarray" else ""
        raise TypeError(f"`pixels` should be a uint8 tensor. Got {type(pixels).__name__}{hint}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:  # "Invalid device string"
        raise TypeError(f"`dtype` should be a floating torch.dtype (torch.float32). Got {dtype!r}")
    return true_div_(pixels.to(dtype, copy=True), 255.0)
