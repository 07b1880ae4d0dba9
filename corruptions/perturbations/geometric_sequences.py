"""The geometric perturbations (translate, rotate, tilt, scale, shear): torchvision 0.2's
``affine`` on PIL, computed as PIL does, and OpenCV's ``warpPerspective``. All
deterministic (no sampler; ``apply(job, params)`` gets empty ``params``).

They transform the whole image, then crop, as the original (which worked on the whole
resized image, e.g. 384 x 256): on a plain S x S input the whole image is that square;
with ``perturbation_sequence(..., sizes=...)`` the input is a W x W window centred on a
larger resized image (:class:`~corruptions.perturbations._sequence.Placement`), and the
transforms use that image's centre, extent and size (tilt's focal length), reading the
window. :data:`READS` says which pixels around the crop each one reads (how large the
window must be); :func:`warp_affine` also makes zoom_blur's zooms.

Their parameters by preset (:data:`~corruptions.PRESETS`) are the originals': ImageNet-P's,
CIFAR-10-P's (translate -7..8 px in 16 frames, tilt 0.75 degrees per frame, scale 0.70..1.30)
and Tiny-ImageNet-P's (translate -15..15 px in 31 frames); on the small presets the image
is the whole 32 / 64 px image (no crop margin). :data:`READS` and the windows are ImageNet-P's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from corruptions._ops import host_to_device, true_div_, uint8_levels
from corruptions._registry import Perturbation, presets, register_perturbation
from corruptions.perturbations._sequence import Job, Placement, window_origin

__all__ = ["AFFINE_FRAMES", "AFFINE_PRESETS", "FRAMES_BY_PRESET", "GEOMETRIC_PERTURBATIONS", "READS",
           "TILT_STEP", "TRANSLATE", "TRANSLATE_MAX", "Box", "affine_reads", "inverse_affine",
           "warp_affine"]

TRANSLATE_MAX = 20  # shift i - 20 pixels, 41 frames
FRAMES = 31  # frames of rotate, tilt, scale, shear (every preset)
#: translate by preset: (shift of frame 0, frames): frame i shifts by first + i pixels
TRANSLATE = presets((-TRANSLATE_MAX, 2 * TRANSLATE_MAX + 1), (-7, 16), (-15, 31))
#: tilt by preset: frame i turns by step * (i - 15) degrees about both axes
TILT_STEP = presets(1.0, 0.75, 1.0)
#: name -> preset -> frame count, where a preset's differs from the registered (ImageNet-P) one
FRAMES_BY_PRESET: dict[str, dict[str, int]] = {"translate": {k: v[1] for k, v in TRANSLATE.items()}}

#: the perturbations whose frames show pixels beyond the centre crop: they need the whole
#: resized image (the ImageNet-P suite gives them a window of it, the others its square)
GEOMETRIC_PERTURBATIONS = ("translate", "rotate", "tilt", "scale", "shear")


def _rotate(i: int) -> dict[str, float]:
    return {"angle": i - 15}


def _shear(i: int) -> dict[str, float]:
    return {"shear": i - 15}


#: name -> preset -> frame i of its affine sequence as the keyword arguments of
#: :func:`inverse_affine` (the originals' expressions)
AFFINE_PRESETS: dict[str, dict[str, Callable[[int], dict[str, float]]]] = {
    "rotate": presets(_rotate, _rotate, _rotate),
    "scale": presets(lambda i: {"scale": (i * 2.5 + 40) / 100},
                     lambda i: {"scale": (i * 2 + 70) / 100},  # CIFAR-10-P: 0.70 .. 1.30
                     lambda i: {"scale": (i * 2.5 + 40) / 100}),
    "shear": presets(_shear, _shear, _shear),
}
#: ImageNet-P's frames (:data:`READS`, the windows)
AFFINE_FRAMES: dict[str, Callable[[int], dict[str, float]]] = {
    name: table["imagenet"] for name, table in AFFINE_PRESETS.items()
}

#: the pixels a crop's frames read: (first row, last row, first column, last column),
#: relative to the crop's top-left pixel, of an image of (height, width)
Box = tuple[int, int, int, int]


def inverse_affine(size: int | tuple[int, int], *, angle: float = 0.0, scale: float = 1.0,
                   shear: float = 0.0) -> list[float]:
    """torchvision 0.2's ``_get_inverse_affine_matrix`` for an image of ``size`` (a side, or
    (height, width)).

    Centre ``(width / 2 + 0.5, height / 2 + 0.5)`` (in PIL's coordinates, where pixel k
    spans [k, k + 1)), ``RSS = scale [[cos a, -sin(a + shear)], [sin a, cos(a + shear)]]``;
    returns PIL's AFFINE data (a, b, c, d, e, f): output pixel centre (u, v) reads
    the input at ``(a u + b v + c, d u + e v + f)``.
    """
    height, width = (size, size) if isinstance(size, int) else size
    cx, cy = width * 0.5 + 0.5, height * 0.5 + 0.5
    angle, shear = math.radians(angle), math.radians(shear)
    inv = 1.0 / scale
    d = math.cos(angle + shear) * math.cos(angle) + math.sin(angle + shear) * math.sin(angle)
    m = [math.cos(angle + shear), math.sin(angle + shear), 0.0, -math.sin(angle), math.cos(angle), 0.0]
    m = [inv / d * v for v in m]
    # the original's steps, in its order (the float64 rounding decides PIL's truncations)
    m[2] += m[0] * (-cx - 0) + m[1] * (-cy - 0)
    m[5] += m[3] * (-cx - 0) + m[4] * (-cy - 0)
    m[2] += cx
    m[5] += cy
    return m


def _box(rows: Sequence[int], cols: Sequence[int]) -> Box:
    """The box of the taps, one pixel wider on each side (float rounding at pixel edges)."""
    return min(rows) - 1, max(rows) + 1, min(cols) - 1, max(cols) + 1


def affine_reads(transforms: Sequence[Mapping[str, float]], crop: int, height: int, width: int) -> Box:
    """The pixels (a :data:`Box`) that the crop of :func:`warp_affine` reads through
    ``transforms`` (keyword arguments of :func:`inverse_affine`) in a height x width image:
    the bilinear taps of the crop's corners (an affine map sends the crop to a
    parallelogram), before they are clamped to the image."""
    top, left = window_origin(height, crop), window_origin(width, crop)
    rows, cols = [], []
    for transform in transforms:
        a, b, c, d, e, f = inverse_affine((height, width), **transform)
        for u in (left + 0.5, left + crop - 0.5):
            for v in (top + 0.5, top + crop - 0.5):
                x, y = math.floor(a * u + b * v + c - 0.5), math.floor(d * u + e * v + f - 0.5)
                cols += [x - left, x + 1 - left]
                rows += [y - top, y + 1 - top]
    return _box(rows, cols)


def _tilt_reads(crop: int, height: int, width: int) -> Box:
    top, left = window_origin(height, crop), window_origin(width, crop)
    rows, cols = [], []
    for j in range(FRAMES):  # a homography (positive w here) sends the crop to a quadrilateral
        m = _inverse3(_tilt_matrix(height, width, j - 15))
        for u in (left, left + crop - 1):
            for v in (top, top + crop - 1):
                w = m[2][0] * u + m[2][1] * v + m[2][2]
                x = math.floor((m[0][0] * u + m[0][1] * v + m[0][2]) / w)
                y = math.floor((m[1][0] * u + m[1][1] * v + m[1][2]) / w)
                cols += [x - left, x + 1 - left]
                rows += [y - top, y + 1 - top]
    return _box(rows, cols)


#: name -> (crop, height, width) -> the :data:`Box` its frames read (all frames); the
#: perturbations not listed here (and in ``blur_sequences.READS``) read the crop only
READS: dict[str, Callable[[int, int, int], Box]] = {
    "translate": lambda crop, height, width: (0, crop - 1, -TRANSLATE_MAX, crop - 1 + TRANSLATE_MAX),
    **{name: (lambda crop, height, width, frame=frame:
              affine_reads([frame(i) for i in range(FRAMES)], crop, height, width))
       for name, frame in AFFINE_FRAMES.items()},
    "tilt": _tilt_reads,
}


def _sample_zeros(x: torch.Tensor, grids: torch.Tensor, crop: int) -> torch.Tensor:
    """Bilinear samples of every image of ``x`` at every frame's grid, reading 0 outside the
    input (OpenCV's constant border): (B, F, 3, c, c).

    Args:
        grids: (F, c, c, 2) normalized source coordinates (``align_corners=False``).
    """
    batch, channels, size, _ = x.shape
    folded = x.reshape(1, batch * channels, size, size)
    out = x.new_empty((batch, grids.shape[0], channels, crop, crop))
    for k in range(grids.shape[0]):
        frame = F.grid_sample(folded, grids[k : k + 1], mode="bilinear", padding_mode="zeros",
                              align_corners=False)[0]
        out[:, k] = frame.view(batch, channels, crop, crop)
    return out


def _by_placement(job: Job, frames: int,
                  render: Callable[[torch.Tensor, Placement], torch.Tensor]) -> torch.Tensor:
    """``render(images, placement)`` -> (b, F, 3, c, c) for each group of images whose whole
    image lies alike (one group, all images, on plain squares), gathered in batch order."""
    groups = job.placements()
    if len(groups) == 1 and groups[0][0] is None:
        return render(job.x, groups[0][1])
    out = job.x.new_empty((job.batch, frames, job.x.shape[1], job.crop, job.crop))
    for positions, place in groups:
        index = host_to_device(torch.tensor(positions), job.x.device)
        out[index] = render(job.x[index], place)
    return out


#: values gathered per tap and call of the PIL sampler (frames are processed side by side)
_GATHER_BUDGET = 1 << 19


def warp_affine(job: Job, transforms: Sequence[Mapping[str, float]], *, truncate: bool) -> torch.Tensor:
    """PIL ``Image.transform(size, AFFINE, data, BILINEAR)`` of the whole images, centre-cropped,
    for each of ``transforms`` (keyword arguments of :func:`inverse_affine`, about each whole
    image's centre).

    PIL's float64 arithmetic, in PIL's order: output pixel (x, y) reads the image at
    ``xin = a (x + .5) + b (y + .5) + c`` (x, y in the whole image's pixels); a point outside
    the whole image gives 0 (no fade at the border); inside, ``xin - .5`` is split into the
    pixel ``x0`` and the fraction ``dx``, taps beyond the image are clamped to it, and the
    value is ``v1 + (v2 - v1) dy`` with ``v1 = p00 + (p01 - p00) dx`` (``v2`` the next row), on
    the 0..255 scale; with ``truncate`` it is then truncated to uint8 as PIL does. On
    images on the uint8 grid this is PIL's result bit for bit (at rational sample
    positions, e.g. scale 0.75, many values are integers up to the last bit of a double,
    so float32 would flip a few percent of the truncations). (B, F, 3, c, c).
    """

    def render(x: torch.Tensor, place: Placement) -> torch.Tensor:
        matrices = [inverse_affine((place.height, place.width), **t) for t in transforms]
        return _warp_pil(x, matrices, place, job, truncate)

    return _by_placement(job, len(transforms), render)


def _warp_pil(x: torch.Tensor, matrices: Sequence[Sequence[float]], place: Placement, job: Job,
              truncate: bool) -> torch.Tensor:
    batch, channels, size, _ = x.shape
    c, device = job.crop, x.device
    # the uint8 values as exact integers (float32's k / 255 * 255 is k; the work images are float32
    # since 0.7.13: a float64 image, warped as it was before, read 126.99999999999999)
    flat = uint8_levels(x).to(job.exact).reshape(batch * channels, size * size)
    steps = torch.arange(c, dtype=job.exact, device=device)
    # the crop's pixel centres in the whole image's coordinates
    u = (steps + (job.top + place.left + 0.5)).view(1, 1, c)
    v = (steps + (job.top + place.top + 0.5)).view(1, c, 1)
    out = x.new_empty((batch, len(matrices), channels, c, c))
    # frames side by side, a few at a time (about _GATHER_BUDGET gathered values per tap)
    step = max(1, _GATHER_BUDGET // (batch * channels * c * c))
    for start in range(0, len(matrices), step):
        m = host_to_device(torch.tensor(matrices[start : start + step], dtype=torch.float64).to(job.exact),
                           device)
        a0, a1, a2, a3, a4, a5 = (m[:, i].view(-1, 1, 1) for i in range(6))
        xin = (u * a0 + v * a1) + a2  # (frames, c, c), PIL's order of operations
        yin = (u * a3 + v * a4) + a5
        inside = ((xin >= 0) & (xin < place.width) & (yin >= 0) & (yin < place.height)).view(-1)
        xin, yin = xin - 0.5, yin - 0.5
        x0, y0 = torch.floor(xin), torch.floor(yin)
        dx, dy = (xin - x0).view(-1), (yin - y0).view(-1)
        # taps clamped to the whole image, then found in the input (the checked window holds them)
        xa = x0.clamp(0, place.width - 1).long() - place.left
        xb = (x0 + 1).clamp(0, place.width - 1).long() - place.left
        ya = (y0.clamp(0, place.height - 1).long() - place.top) * size
        yb = ((y0 + 1).clamp(0, place.height - 1).long() - place.top) * size
        p00, p01 = flat[:, (ya + xa).view(-1)], flat[:, (ya + xb).view(-1)]
        p10, p11 = flat[:, (yb + xa).view(-1)], flat[:, (yb + xb).view(-1)]
        v1 = p01.sub_(p00).mul_(dx).add_(p00)  # separate operations: no fused multiply-add
        v2 = p11.sub_(p10).mul_(dx).add_(p10)
        value = v2.sub_(v1).mul_(dy).add_(v1).mul_(inside)
        if truncate:  # PIL: (UINT8) v, a truncation
            value = value.floor_().clamp_(0, 255)
        value = true_div_(value, 255.0).view(batch, channels, -1, c, c)
        out[:, start : start + step] = value.transpose(1, 2)
    return out


def _tilt_matrix(height: int, width: int, degrees: float) -> list[list[float]]:
    """The original's tilt homography (source -> destination pixel centres) for a height x
    width image: focal length sqrt(w^2 + h^2), centre (w / 2, h / 2)."""
    w, h = float(width), float(height)
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
    # cv2.warpPerspective(x, mat, (w, h)) of the whole image: dst(p) = src(mat^-1 p), pixel
    # centres at integers, bilinear, constant 0 border (taps outside the image read 0: the
    # input is 0 outside the whole image, grid_sample 0 beyond the input)
    dtype, device = job.x.dtype, job.x.device

    step = TILT_STEP[job.preset]

    def render(x: torch.Tensor, place: Placement) -> torch.Tensor:
        inverses = [_inverse3(_tilt_matrix(place.height, place.width, step * (j - 15))) for j in job.frames]
        m = host_to_device(torch.tensor(inverses, dtype=torch.float64).to(dtype), device)
        steps = torch.arange(job.crop, device=device, dtype=dtype)
        # pixel centres of the crop, in the whole image's coordinates
        u, v = (steps + (job.top + place.left)).view(1, 1, -1), (steps + (job.top + place.top)).view(1, -1, 1)

        def row(r: int) -> torch.Tensor:
            return m[:, r, 0, None, None] * u + m[:, r, 1, None, None] * v + m[:, r, 2, None, None]

        w = row(2)
        w = torch.where(w != 0, 1 / torch.where(w != 0, w, torch.ones_like(w)), torch.zeros_like(w))
        xs, ys = row(0) * w - place.left, row(1) * w - place.top  # in the input's pixels
        size = x.shape[-1]
        grids = torch.stack([(2 * xs + 1) / size - 1, (2 * ys + 1) / size - 1], dim=-1)
        return _sample_zeros(x, grids, job.crop)

    return _by_placement(job, len(job.frames), render)


def _affine(name: str) -> Callable[[Job, dict], torch.Tensor]:
    table = AFFINE_PRESETS[name]

    def apply(job: Job, params: dict) -> torch.Tensor:
        frame = table[job.preset]
        return warp_affine(job, [frame(j) for j in job.frames], truncate=job.quantize)

    return apply


def _translate(job: Job, params: dict) -> torch.Tensor:
    # PIL NEAREST with an integer translation t = first + i (ImageNet-P i - 20): out[x] =
    # in[x - t], zeros enter (the input is 0 outside the whole image; the padding is 0 beyond it)
    first, count = TRANSLATE[job.preset]
    pad = max(-first, first + count - 1, 0)
    padded = F.pad(job.x[..., job.top : job.top + job.crop, :], (pad, pad))
    frames = []
    for j in job.frames:
        start = pad + job.top - (first + j)
        frames.append(padded[..., start : start + job.crop])
    return torch.stack(frames, dim=1)


register_perturbation(Perturbation(
    "translate", 2 * TRANSLATE_MAX + 1, _translate,
    doc="horizontal shift by i - 20 pixels (nearest, zeros enter; CIFAR-10-P: i - 7, 16 frames; "
        "Tiny-ImageNet-P: i - 15, 31 frames)",
))
register_perturbation(Perturbation(
    "rotate", FRAMES, _affine("rotate"), doc="rotation by i - 15 degrees about the centre (bilinear)",
))
register_perturbation(Perturbation(
    "tilt", FRAMES, _tilt, storage="round",
    doc="perspective warp: rotations by i - 15 degrees about both image axes, focal length "
        "sqrt(w^2 + h^2) (CIFAR-10-P: 0.75 (i - 15) degrees)",
))
register_perturbation(Perturbation(
    "scale", FRAMES, _affine("scale"),
    doc="zoom by (2.5 i + 40) / 100 about the centre (bilinear; CIFAR-10-P: (2 i + 70) / 100)",
))
register_perturbation(Perturbation(
    "shear", FRAMES, _affine("shear"), doc="shear by i - 15 degrees about the centre (bilinear)",
))
