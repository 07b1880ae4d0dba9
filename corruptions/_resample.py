"""Resampling: a centre zoom, PIL's box-filter matrix and OpenCV's fixed-point bilinear resize."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["pil_box_matrix", "resize_linear_uint8", "zoom_center"]


def zoom_center(x: torch.Tensor, factor: float, mode: str = "bilinear") -> torch.Tensor:
    """The original ImageNet-C ``clipped_zoom``: zoom the centre by ``factor``, crop back.

    Crop ``ceil(n / factor)`` pixels around the centre (top = (n - crop) // 2), zoom
    them with scipy.ndimage.zoom's order-1 grid (output ``round(crop * factor)``
    pixels, corners aligned) and keep the centred ``n`` pixels, per axis.

    Args:
        x: (B, C, H, W).
        factor: zoom factor >= 1.
    """
    height, width = x.shape[-2:]
    crop_h, crop_w = math.ceil(height / factor), math.ceil(width / factor)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    out_h, out_w = int(round(crop_h * factor)), int(round(crop_w * factor))
    crop = x[..., top : top + crop_h, left : left + crop_w]
    trim_h, trim_w = (out_h - height) // 2, (out_w - width) // 2
    if mode == "bilinear" and x.device.type == "cpu":
        rows = _linear_weights(crop_h, out_h, x.dtype)
        cols = _linear_weights(crop_w, out_w, x.dtype)
        # along the columns (of the transposed crop), then the rows, as torch's formula nests them
        wide = _linear_pass(crop.transpose(-1, -2).contiguous(), [c[trim_w : trim_w + width] for c in cols])
        return _linear_pass(wide.transpose(-1, -2).contiguous(), [r[trim_h : trim_h + height] for r in rows])
    zoomed = F.interpolate(crop, size=(out_h, out_w), mode=mode, align_corners=True)
    return zoomed[..., trim_h : trim_h + height, trim_w : trim_w + width]


def _linear_weights(n: int, size: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Where each of ``size`` points resampled linearly from ``n`` with corners aligned reads
    (two indices) and their weights, in ``dtype``, as torch computes them: positions
    ``(n - 1) / (size - 1) * i``, floored as a C float (``floorf``)."""
    if size == n:  # (torch copies: weights 1 and 0)
        same = torch.arange(n)
        return same, same, torch.ones(n, dtype=dtype), torch.zeros(n, dtype=dtype)
    ratio = torch.tensor(float(n - 1), dtype=dtype) / (size - 1) if size > 1 else torch.zeros((), dtype=dtype)
    position = ratio * torch.arange(size, dtype=dtype)
    low = torch.floor(position.to(torch.float32)).to(torch.int64).clamp_(max=n - 1)
    weight1 = (position - low.to(dtype)).clamp_(0, 1)
    return low, low + (low < n - 1).to(torch.int64), 1 - weight1, weight1


def _linear_pass(x: torch.Tensor, weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """``x`` resampled along its rows (dim -2): ``x[low] * w0 + x[high] * w1``, each operation a
    kernel of its own, so that every value is rounded the same way at any thread count.

    On the CPU, ``F.interpolate(..., "bilinear", align_corners=True)`` takes other kernels by
    the thread count (a vectorized one for one thread; other roundings): zoom_blur's values
    changed with it (a torchrun rank runs one thread: a uint8 level off the original at a
    pixel). Rows, not columns: ``index_select`` along the last dimension is 7x slower."""
    low, high, weight0, weight1 = weights
    out = x.index_select(-2, low).mul_(weight0.unsqueeze(-1))
    return out.add_(x.index_select(-2, high).mul_(weight1.unsqueeze(-1)))


def pil_box_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) weights of PIL's ``Image.resize(..., Image.BOX)`` along one axis.

    PIL (``precompute_coeffs``) gives output pixel i the input pixels j with
    ``-0.5 < (j + 0.5 - centre_i) / filterscale <= 0.5`` (centre_i = (i + 0.5) * scale,
    filterscale = max(scale, 1)), equally weighted. Down-sampling is thus a partition of
    the input into blocks; up-sampling picks pixel ``floor((i + 0.5) * scale)``.
    """
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    matrix = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        center = (i + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), n_in)
        weights = []
        for j in range(xmin, xmax):
            arg = (j - center + 0.5) / filterscale
            weights.append(1.0 if -0.5 < arg <= 0.5 else 0.0)
        total = sum(weights)
        for j, w in zip(range(xmin, xmax), weights):
            if w:
                matrix[i, j] = w / total
    return matrix


def _cv2_linear_taps(n_in: int, n_out: int, factor: float, edges: bool) -> tuple[torch.Tensor, ...]:
    """OpenCV's INTER_LINEAR taps on one axis: the source offset (d + 0.5) / factor - 0.5 in float32,
    its floor and fraction, both neighbours clamped to the axis, and the 11-bit weights each rounded
    (half to even) from the float32 1 - f and f. With ``edges`` (its horizontal pass), an offset
    below 0 or at the last pixel takes the edge pixel whole; rows are only clamped."""
    position = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (1.0 / factor) - 0.5).float()
    first = torch.floor(position)
    fraction = position - first
    first = first.to(torch.int64)
    if edges:
        outside = (first < 0) | (first >= n_in - 1)
        fraction = torch.where(outside, 0.0, fraction)
        first = first.clamp(0, n_in - 1)
    return (first.clamp(0, n_in - 1), (first + 1).clamp(0, n_in - 1),
            torch.round((1 - fraction) * 2048).to(torch.int64), torch.round(fraction * 2048).to(torch.int64))


def resize_linear_uint8(pixels: torch.Tensor, factor: float) -> torch.Tensor:
    """``cv2.resize(pixels, (0, 0), fx=factor, fy=factor)`` (INTER_LINEAR) of a (C, H, W) uint8 tensor,
    on the CPU in OpenCV's fixed-point integers: output sides round(n factor) (half to even), rows
    S0 a0 + S1 a1, then its vectorized vertical pass, ((b0 (r0 >> 4)) >> 16 + (b1 (r1 >> 4)) >> 16
    + 2) >> 2 (its scalar path, (b0 r0 + b1 r1 + 2^21) >> 22, puts 11 % of the values of a 0.3
    resize a level apart; the installed OpenCV gives the vectorized values throughout)."""
    _, height, width = pixels.shape
    x0, x1, a0, a1 = _cv2_linear_taps(width, round(width * factor), factor, edges=True)
    y0, y1, b0, b1 = _cv2_linear_taps(height, round(height * factor), factor, edges=False)
    values = pixels.cpu().to(torch.int64)
    rows = values[..., x0] * a0 + values[..., x1] * a1
    top = (b0[:, None] * (rows[:, y0] >> 4)) >> 16
    bottom = (b1[:, None] * (rows[:, y1] >> 4)) >> 16
    return ((top + bottom + 2) >> 2).clamp_(0, 255).to(torch.uint8)
