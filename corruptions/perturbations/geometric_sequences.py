"""The geometric perturbations (translate, rotate, tilt, scale, shear): torchvision 0.2's
``affine`` on PIL, computed as PIL does, and OpenCV's ``warpPerspective``. All
deterministic (no sampler; ``apply(job, params)`` gets empty ``params``).

They act on the whole S x S square, then crop (as the original, which worked on the
whole resized image); :func:`warp_affine` also makes zoom_blur's zooms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from corruptions._registry import Perturbation, register_perturbation
from corruptions.perturbations._sequence import Job

__all__ = ["TRANSLATE_MAX", "inverse_affine", "warp_affine"]

TRANSLATE_MAX = 20  # shift i - 20 pixels, 41 frames


def inverse_affine(size: int, *, angle: float = 0.0, scale: float = 1.0,
                   shear: float = 0.0) -> list[float]:
    """torchvision 0.2's ``_get_inverse_affine_matrix`` for a ``size`` square image.

    Centre ``(size / 2 + 0.5, size / 2 + 0.5)`` (in PIL's coordinates, where pixel k
    spans [k, k + 1)), ``RSS = scale [[cos a, -sin(a + shear)], [sin a, cos(a + shear)]]``;
    returns PIL's AFFINE data (a, b, c, d, e, f): output pixel centre (u, v) reads
    the input at ``(a u + b v + c, d u + e v + f)``.
    """
    center = size * 0.5 + 0.5
    angle, shear = math.radians(angle), math.radians(shear)
    inv = 1.0 / scale
    d = math.cos(angle + shear) * math.cos(angle) + math.sin(angle + shear) * math.sin(angle)
    m = [math.cos(angle + shear), math.sin(angle + shear), 0.0, -math.sin(angle), math.cos(angle), 0.0]
    m = [inv / d * v for v in m]
    # the original's steps, in its order (the float64 rounding decides PIL's truncations)
    m[2] += m[0] * (-center - 0) + m[1] * (-center - 0)
    m[5] += m[3] * (-center - 0) + m[4] * (-center - 0)
    m[2] += center
    m[5] += center
    return m


def _sample_zeros(job: Job, grids: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of every image at every frame's grid, reading 0 outside the image
    (OpenCV's constant border): (B, F, 3, c, c).

    Args:
        grids: (F, c, c, 2) normalized source coordinates (``align_corners=False``).
    """
    batch, channels, size, _ = job.x.shape
    folded = job.x.reshape(1, batch * channels, size, size)
    c = job.crop
    out = job.x.new_empty((batch, grids.shape[0], channels, c, c))
    for k in range(grids.shape[0]):
        frame = F.grid_sample(folded, grids[k : k + 1], mode="bilinear", padding_mode="zeros",
                              align_corners=False)[0]
        out[:, k] = frame.view(batch, channels, c, c)
    return out


#: values gathered per tap and call of the PIL sampler (frames are processed side by side)
_GATHER_BUDGET = 1 << 19


def warp_affine(job: Job, matrices: Sequence[Sequence[float]], *, truncate: bool) -> torch.Tensor:
    """PIL ``Image.transform(size, AFFINE, data, BILINEAR)`` of the full images, centre-cropped.

    PIL's float64 arithmetic, in PIL's order: output pixel (x, y) reads the input at
    ``xin = a (x + .5) + b (y + .5) + c``; a point outside [0, size) gives 0 (no fade
    at the border); inside, ``xin - .5`` is split into the pixel ``x0`` and the fraction
    ``dx``, taps beyond the image are clamped to it, and the value is
    ``v1 + (v2 - v1) dy`` with ``v1 = p00 + (p01 - p00) dx`` (``v2`` the next row), on the
    0..255 scale; with ``truncate`` it is then truncated to uint8 as PIL does. On
    images on the uint8 grid this is PIL's result bit for bit (at rational sample
    positions, e.g. scale 0.75, many values are integers up to the last bit of a double,
    so float32 would flip a few percent of the truncations). (B, F, 3, c, c).
    """
    batch, channels, size, _ = job.x.shape
    c, device = job.crop, job.x.device
    # k / 255 * 255 == k exactly (float32 and float64), so uint8 values are exact integers
    flat = (job.x * 255).to(job.exact).reshape(batch * channels, size * size)
    centres = torch.arange(c, dtype=job.exact, device=device) + (job.top + 0.5)
    u, v = centres.view(1, 1, c), centres.view(1, c, 1)
    out = job.x.new_empty((batch, len(matrices), channels, c, c))
    # frames side by side, a few at a time (about _GATHER_BUDGET gathered values per tap)
    step = max(1, _GATHER_BUDGET // (batch * channels * c * c))
    for start in range(0, len(matrices), step):
        m = torch.tensor(matrices[start : start + step], dtype=torch.float64).to(device, job.exact)
        a0, a1, a2, a3, a4, a5 = (m[:, i].view(-1, 1, 1) for i in range(6))
        xin = (u * a0 + v * a1) + a2  # (frames, c, c), PIL's order of operations
        yin = (u * a3 + v * a4) + a5
        inside = ((xin >= 0) & (xin < size) & (yin >= 0) & (yin < size)).view(-1)
        xin, yin = xin - 0.5, yin - 0.5
        x0, y0 = torch.floor(xin), torch.floor(yin)
        dx, dy = (xin - x0).view(-1), (yin - y0).view(-1)
        xa, xb = x0.clamp(0, size - 1).long(), (x0 + 1).clamp(0, size - 1).long()
        ya, yb = y0.clamp(0, size - 1).long() * size, (y0 + 1).clamp(0, size - 1).long() * size
        p00, p01 = flat[:, (ya + xa).view(-1)], flat[:, (ya + xb).view(-1)]
        p10, p11 = flat[:, (yb + xa).view(-1)], flat[:, (yb + xb).view(-1)]
        v1 = p01.sub_(p00).mul_(dx).add_(p00)  # separate operations: no fused multiply-add
        v2 = p11.sub_(p10).mul_(dx).add_(p10)
        value = v2.sub_(v1).mul_(dy).add_(v1).mul_(inside)
        if truncate:  # PIL: (UINT8) v, a truncation
            value = value.floor_().clamp_(0, 255)
        value = value.div_(255).view(batch, channels, -1, c, c)
        out[:, start : start + step] = value.transpose(1, 2)
    return out


def _tilt_matrix(size: int, degrees: float) -> list[list[float]]:
    """The original's tilt homography (source -> destination pixel centres), w = h = size."""
    w = h = float(size)
    theta = phi = math.radians(degrees)
    f = math.sqrt(w**2 + h**2)
    p1 = [[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1], [0, 0, 1]]
    rx = [[1, 0, 0, 0], [0, math.cos(theta), -math.sin(theta), 0],
          [0, math.sin(theta), math.cos(theta), 0], [0, 0, 0, 1]]
    ry = [[math.cos(phi), 0, -math.sin(phi), 0], [0, 1, 0, 0],
          [math.sin(phi), 0, math.cos(phi), 0], [0, 0, 0, 1]]
    t = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, f], [0, 0, 0, 1]]
    p2 = [[f, 0, w / 2, 0], [0, f, h / 2, 0], [0, 0, 1, 0]]

    def matmul(a, b):
        return [[sum(a[i][k] * b[k][j] for k in range(len(b))) for j in range(len(b[0]))]
                for i in range(len(a))]

    return matmul(p2, matmul(t, matmul(rx, matmul(ry, p1))))


def _inverse3(m: list[list[float]]) -> list[list[float]]:
    """Inverse of a 3x3 matrix (adjugate / determinant, in Python floats)."""
    (a, b, c), (d, e, f), (g, h, i) = m
    cof = [[e * i - f * h, c * h - b * i, b * f - c * e],
           [f * g - d * i, a * i - c * g, c * d - a * f],
           [d * h - e * g, b * g - a * h, a * e - b * d]]
    det = a * cof[0][0] + b * cof[1][0] + c * cof[2][0]
    return [[v / det for v in row] for row in cof]


def _tilt(job: Job, params: dict) -> torch.Tensor:
    # cv2.warpPerspective(x, mat, (w, h)): dst(p) = src(mat^-1 p), pixel centres at
    # integers, bilinear, constant 0 border (taps outside the image read 0)
    size = job.size
    inverses = [_inverse3(_tilt_matrix(size, j - 15)) for j in job.frames]
    m = torch.tensor(inverses, dtype=torch.float64).to(job.x.dtype).to(job.x.device)
    centres = torch.arange(job.crop, device=job.x.device, dtype=job.x.dtype) + job.top
    u, v = centres.view(1, 1, -1), centres.view(1, -1, 1)  # pixel centres of the crop

    def row(r: int) -> torch.Tensor:
        return m[:, r, 0, None, None] * u + m[:, r, 1, None, None] * v + m[:, r, 2, None, None]

    w = row(2)
    w = torch.where(w != 0, 1 / torch.where(w != 0, w, torch.ones_like(w)), torch.zeros_like(w))
    xs, ys = row(0) * w, row(1) * w
    grids = torch.stack([(2 * xs + 1) / size - 1, (2 * ys + 1) / size - 1], dim=-1)
    return _sample_zeros(job, grids)


def _rotate(job: Job, params: dict) -> torch.Tensor:
    return warp_affine(job, [inverse_affine(job.size, angle=j - 15) for j in job.frames],
                       truncate=job.quantize)


def _scale(job: Job, params: dict) -> torch.Tensor:
    return warp_affine(job, [inverse_affine(job.size, scale=(j * 2.5 + 40) / 100) for j in job.frames],
                       truncate=job.quantize)


def _shear(job: Job, params: dict) -> torch.Tensor:
    return warp_affine(job, [inverse_affine(job.size, shear=j - 15) for j in job.frames],
                       truncate=job.quantize)


def _translate(job: Job, params: dict) -> torch.Tensor:
    # PIL NEAREST with an integer translation t = i - 20: out[x] = in[x - t], zeros enter
    pad = TRANSLATE_MAX
    padded = F.pad(job.x[..., job.top : job.top + job.crop, :], (pad, pad))
    frames = []
    for j in job.frames:
        start = pad + job.top - (j - TRANSLATE_MAX)
        frames.append(padded[..., start : start + job.crop])
    return torch.stack(frames, dim=1)


register_perturbation(Perturbation(
    "translate", 2 * TRANSLATE_MAX + 1, _translate,
    doc="horizontal shift by i - 20 pixels (nearest, zeros enter)",
))
register_perturbation(Perturbation(
    "rotate", 31, _rotate, doc="rotation by i - 15 degrees about the centre (bilinear)",
))
register_perturbation(Perturbation(
    "tilt", 31, _tilt, storage="round",
    doc="perspective warp: rotations by i - 15 degrees about both image axes, focal length "
        "sqrt(w^2 + h^2)",
))
register_perturbation(Perturbation(
    "scale", 31, _scale, doc="zoom by (2.5 i + 40) / 100 about the centre (bilinear)",
))
register_perturbation(Perturbation(
    "shear", 31, _shear, doc="shear by i - 15 degrees about the centre (bilinear)",
))
