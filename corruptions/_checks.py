"""The checks of the images every public call takes: a (B, 3, H, W) float tensor of a dtype the
corruptions compute in, at least :data:`MIN_SIZE` px a side, its values in [0, 1]."""

from __future__ import annotations

import math

import torch

__all__ = ["FLOAT_DTYPES", "MIN_SIZE", "check_images", "check_range"]

#: the image dtypes the corruptions take (their output keeps it)
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: smallest image side accepted (as imagecorruptions)
MIN_SIZE = 32


def check_images(images: torch.Tensor, min_size: int = MIN_SIZE) -> None:
    if not isinstance(images, torch.Tensor):
        kind = type(images).__name__
        hint = ""
        if kind == "ndarray":
            hint = f" ({_array_advice(images)})"
        elif any(c.__module__.startswith("PIL.") for c in type(images).__mro__):
            hint = (" (torchvision.transforms.functional.pil_to_tensor(image)[None], then "
                    "corruptions.from_uint8)")
        raise TypeError(f"`images` should be a torch.Tensor of shape (B, 3, H, W). Got {kind}{hint}")
    if images.ndim != 4:
        hint = ""
        if images.ndim == 3 and images.shape[0] == 3:
            hint = " (add a batch dimension: images.unsqueeze(0))"
        elif images.ndim == 3 and images.shape[0] == 1:
            hint = " (one grayscale image: images.expand(3, -1, -1).unsqueeze(0))"
        elif images.ndim == 3 and images.shape[0] == 4:
            hint = " (one RGBA image: images[:3].unsqueeze(0))"
        elif images.ndim == 3 and images.shape[-1] == 3:
            hint = " (one image, channels last: images.permute(2, 0, 1).unsqueeze(0))"
        elif images.ndim == 3 and images.shape[-1] == 4:
            hint = " (one RGBA image, channels last: images[..., :3].permute(2, 0, 1).unsqueeze(0))"
        raise ValueError(
            f"`images` should have shape (B, 3, H, W). Got {tuple(images.shape)}{hint}"
        )
    if images.shape[1] != 3:
        hint = (
            " (repeat a grayscale image: images.expand(-1, 3, -1, -1))"
            if images.shape[1] == 1
            else " (channels first: images.permute(0, 3, 1, 2))"
            if images.shape[-1] == 3
            else " (drop the alpha channel: images[:, :3])"
            if images.shape[1] == 4
            else ""
        )
        raise ValueError(
            f"`images` should have 3 channels, shape (B, 3, H, W). Got {tuple(images.shape)}{hint}"
        )
    if not images.dtype.is_floating_point:
        integer = images.dtype != torch.bool and not images.is_complex()
        raise TypeError(
            f"`images` should be a float tensor in [0, 1]. Got {images.dtype}"
            + (" (convert uint8 images with corruptions.from_uint8(images))" if integer else "")
        )
    if images.dtype not in FLOAT_DTYPES:  # float8: torch computes little in it (aminmax did not)
        raise TypeError(f"`images` should be float16, bfloat16, float32 or float64. Got {images.dtype} "
                        "(images.float() computes in float32)")
    if images.shape[2] < min_size or images.shape[3] < min_size:
        raise ValueError(
            f"`images` should be at least {min_size}x{min_size} pixels. Got {tuple(images.shape)}"
        )


def check_range(images: torch.Tensor, slack: float = 1e-3) -> None:
    """Refuse images outside [0, 1] (by more than ``slack``), or holding NaN: 0-255 floats
    (``uint8.float()``) would be clamped to white, silently. One reduction, and on CUDA one
    device sync."""
    if images.numel() == 0 or images.device.type == "meta":  # no values to look at
        return
    low, high = torch.stack(torch.aminmax(images.detach())).tolist()  # one read: one wait on CUDA
    if math.isnan(low) or math.isnan(high):  # comparisons with NaN are false: it would pass
        raise ValueError("`images` should be in [0, 1]. Got NaN values")
    if low < -slack or high > 1 + slack:
        hint = ""
        if 3 < high < math.inf:  # (a resampling's overshoot takes 0-255 images below 0 too)
            hint = " (0-255 values: divide by 255, or pass uint8 images to corruptions.from_uint8)"
        elif (low < -slack and 1 + slack < high <= 3 or -3 <= low <= -1 + slack) and math.isfinite(low):
            # both sides of [0, 1]: Normalize's; [-1, 1]: its mean = std = 0.5 (timm's ViTs, Inception)
            hint = (" (normalized images? corrupt the [0, 1] images before transforms.Normalize, or undo it: "
                    "images * std + mean)")
        raise ValueError(f"`images` should be in [0, 1]. Got values from {low:g} to {high:g}{hint}")


def _array_advice(array) -> str:
    """How to make a NumPy ``array`` of images the (B, 3, H, W) tensor in [0, 1] the corruptions
    take, from its dtype and layout: uint8 through :func:`corruptions.from_uint8` (k / 255 as NumPy
    divides), channels last moved first, an alpha channel dropped, one image given a batch axis."""
    shape, uint8 = tuple(getattr(array, "shape", ())), str(getattr(array, "dtype", "")) == "uint8"
    tensor = "torch.from_numpy(array"
    if len(shape) in (3, 4) and shape[-1] in (3, 4) and shape[-3] not in (3, 4):  # channels last
        tensor += "[..., :3]" if shape[-1] == 4 else ""
        tensor += ").permute(2, 0, 1)[None]" if len(shape) == 3 else ").permute(0, 3, 1, 2)"
    elif len(shape) == 3 and shape[0] == 3:
        tensor += ")[None]"
    else:
        tensor += ")"
    made = f"corruptions.from_uint8({tensor})" if uint8 else tensor
    return f"{'a uint8' if uint8 else 'an'} array of shape {shape}: {made}" + (
        "" if uint8 else ", its values in [0, 1]")
