"""Digital: contrast, elastic_transform, pixelate, jpeg_compression (benchmark), saturate (extra)."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from corruptions import jpeg
from corruptions._ops import (
    axis_matrix,
    device_constant,
    float64_device,
    gaussian_matrix,
    grid_doubles,
    hsv_factors,
    on_grid,
    quiet_torchvision_io,
    rgb_to_hsv,
    thread_map,
    true_div,
    uint8_levels,
)
from corruptions._registry import Corruption, Level, presets, register
from corruptions._resample import pil_box_matrix
from corruptions._rng import ImageRandom

CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)
#: (scale a, shift b): S <- clip(S * a + b)
SATURATE = ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2))
PIXELATE = (0.6, 0.5, 0.4, 0.3, 0.25)
JPEG_COMPRESSION = (25, 18, 15, 10, 7)
#: (alpha, sigma, affine jitter) as multiples of the original's 244 (for a 224 px image)
ELASTIC_TRANSFORM = (
    (2.0, 0.7, 0.1),
    (2.0, 0.08, 0.2),
    (0.05, 0.01, 0.02),
    (0.07, 0.01, 0.02),
    (0.12, 0.01, 0.02),
)
# CIFAR-10/100-C (make_cifar_c.py, 32 px) and Tiny-ImageNet-C (make_tinyimagenet_c.py, 64 px)
CONTRAST_CIFAR, CONTRAST_TINY = (0.75, 0.5, 0.4, 0.3, 0.15), (0.4, 0.3, 0.2, 0.1, 0.05)
SATURATE_CIFAR = ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2))
SATURATE_TINY = ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (30, 0.2))
PIXELATE_CIFAR, PIXELATE_TINY = (0.95, 0.9, 0.85, 0.75, 0.65), (0.9, 0.8, 0.7, 0.6, 0.5)
JPEG_COMPRESSION_CIFAR, JPEG_COMPRESSION_TINY = (80, 65, 58, 50, 40), (65, 58, 50, 40, 25)
#: (alpha, sigma, affine jitter) as multiples of the image size IMSIZE (32 / 64 px)
ELASTIC_TRANSFORM_CIFAR = (
    (0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03),
)
ELASTIC_TRANSFORM_TINY = (
    (0, 0, 0.08), (0.05, 0.3, 0.06), (0.1, 0.08, 0.06), (0.1, 0.03, 0.03), (0.16, 0.03, 0.02),
)
#: the multiplier of ELASTIC_TRANSFORM and the image side it was made for, by preset: ImageNet-C's
#: 244 at 224 px ("244 should have been 224", the original says), CIFAR's and Tiny's IMSIZE;
#: other sizes scale by min(H, W) / that side
ELASTIC_UNIT = {"imagenet": (244.0, 224), "cifar": (32.0, 32), "tinyimagenet": (64.0, 64)}


# --------------------------------------------------------------------------------------
# contrast, saturate


def _contrast(x: torch.Tensor, level: Level, params: dict) -> torch.Tensor:
    # the original's arithmetic: uint8 / 255. doubles, (x - mean) * c + mean, np.uint8. NumPy's
    # mean over (H, W) adds the pixels one after another (a running sum: cumsum's last value, on
    # the CPU); a flat region's result lands a hair below its level, and np.uint8 drops it one.
    # In float32 the port put whole channels a level up where mean * (1 - c) * 255 sat within 1e-4
    # below a level (on_grid keeps such values below, as the original's truncation does).
    c = level.c
    batch, channels = x.shape[:2]
    table = x.device.type == "cpu" and not x.requires_grad  # (on a GPU torch.equal would wait)
    if table:  # uint8 images: levels 0 .. 255 exactly
        scaled = x * 255
        k = scaled.to(torch.int32).clamp_(0, 255)  # a level out of 0 .. 255 is not k: no table
        table = torch.equal(k.to(scaled.dtype), scaled)
    if not table:
        return contrast_arithmetic(x, c)
    # uint8 images on the CPU: each channel's 256 results computed once, then looked up (2.5x faster)
    grid = true_div(torch.arange(256, dtype=torch.float64), 255.0)  # the doubles k / 255
    means = _running_means(grid.index_select(0, k.flatten()).view(batch, channels, -1))
    table = on_grid(((grid - means) * c + means).clamp_(0, 1), x)  # (B, C, 256)
    starts = (torch.arange(batch * channels, dtype=torch.int32) * 256).view(batch, channels, 1, 1)
    return table.flatten().index_select(0, (k + starts).flatten()).view_as(x)  # each channel's row


def contrast_arithmetic(x: torch.Tensor, c: float) -> torch.Tensor:
    """contrast of every value (:func:`_contrast` looks uint8 images' results up on the CPU)."""
    doubles = grid_doubles(x)
    means = _running_means(doubles.flatten(2)).unsqueeze(-1)
    return on_grid(((doubles - means) * c + means).clamp_(0, 1), x)


def _running_means(values: torch.Tensor) -> torch.Tensor:
    """(B, C, N) -> (B, C, 1): each row's mean as NumPy's mean over (H, W) of an HWC image sums it,
    one value after another (cumsum's last value, on the CPU).

    CUDA's cumsum is a parallel scan, which adds in another order: a flat channel's mean then
    lands on the other side of its level (41 of 64 flat channels were a level apart, emulated),
    and the whole channel with it. A flat row of a level's double is therefore given the CPU's
    running mean of N copies (:func:`flat_means`); other rows' means may still differ by a hair
    (a level apart where a channel's result sits within about 1e-12 of one)."""
    n = values.shape[-1]
    means = true_div(values.cumsum(-1)[..., -1:], n)
    return _flat_rows_exact(values, means) if values.device.type == "cuda" and n else means


def _flat_rows_exact(values: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """``means`` with those of flat rows of a level's double replaced by :func:`flat_means`'."""
    n = values.shape[-1]
    first = values[..., :1]
    levels = uint8_levels(first).nan_to_num_(0).round_().clamp_(0, 255).long()  # NaN: no level, no index
    grid = device_constant(tuple(k / 255 for k in range(256)), torch.float64, values.device)
    flat = (values == first).all(-1, keepdim=True) & (grid[levels] == first)
    return torch.where(flat, device_constant(flat_means(n), torch.float64, values.device)[levels], means)


@functools.lru_cache(maxsize=8)
def flat_means(n: int) -> tuple[float, ...]:
    """NumPy's mean of ``n`` copies of each double k / 255 (k = 0 .. 255), added one after another
    as :func:`_running_means` adds on the CPU (once per image size, in pieces of 4096 copies)."""
    grid = true_div(torch.arange(256, dtype=torch.float64), 255.0)
    total = torch.zeros(256, dtype=torch.float64)
    for start in range(0, n, 4096):
        copies = grid.unsqueeze(1).expand(256, min(4096, n - start))
        total = torch.cat([total.unsqueeze(1), copies], 1).cumsum(1)[:, -1]  # going on from the total
    return tuple((total / n).tolist())


def _saturate(x: torch.Tensor, level: Level, params: dict) -> torch.Tensor:
    # the original's arithmetic: scikit-image's rgb2hsv, S = clip(S a + b, 0, 1), hsv2rgb, in
    # float64 and its order of operations (as _brightness). Grey pixels (S = 0, hue 0) become
    # (v, v (1 - S'), v (1 - S')), reddish, as in the original.
    a, b = level.c
    h, s, v = rgb_to_hsv(grid_doubles(x))  # the doubles k / 255 of uint8 input
    return on_grid(v * hsv_factors(h, (s * a + b).clamp_(0, 1)), x)


# --------------------------------------------------------------------------------------
# pixelate


def _box_counts(n_in: int, n_out: int) -> torch.Tensor:
    return (pil_box_matrix(n_in, n_out) > 0).to(torch.float64)


def _box_down(k: torch.Tensor, n_out: int, dim: int) -> torch.Tensor:
    """PIL BOX down-sampling along dim (-1 or -2) of uint8 values held in floats.

    PIL gives output pixel i the input pixels whose centre lies in its footprint,
    equally weighted (for down-sampling, a partition into contiguous blocks), and
    rounds half up in fixed point. The block sums (a banded 0/1 matrix product) are
    exact integers; ``floor(sum / n + 0.5)`` is exact at the ties (sum / n is then
    representable) and far from them otherwise.
    """
    n_in = k.shape[dim]
    op = axis_matrix(("boxcount", n_in, n_out), lambda: _box_counts(n_in, n_out), k.dtype, k.device)
    counts = op.matrix.sum(1)
    if dim == -1:
        sums, counts = op.cols(k), counts.view(1, 1, 1, -1)
    else:
        sums, counts = op.rows(k), counts.view(1, 1, -1, 1)
    return sums.div_(counts).add_(0.5).floor_()


_UP_INDEX: dict = {}


def _box_up(k: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """PIL BOX up-sampling of (B, C, h, w) to ``size``: output pixel i copies input pixel
    ``floor((i + 0.5) * h / H)``, which is torch's ``nearest-exact`` interpolation when
    torch's float index arithmetic agrees (checked once per size pair), else a gather."""
    batch, channels, small_h, small_w = k.shape
    key = ((small_h, small_w), size, str(k.device))
    index = _UP_INDEX.get(key)
    if index is None:
        rows = pil_box_matrix(small_h, size[0]).argmax(1)
        cols = pil_box_matrix(small_w, size[1]).argmax(1)
        flat = rows.view(-1, 1) * small_w + cols.view(1, -1)
        probe = torch.arange(small_h * small_w, dtype=torch.float32).view(1, 1, small_h, small_w)
        exact = F.interpolate(probe, size=size, mode="nearest-exact")
        # (checked on the CPU kernel; other devices use the exact gather)
        same = k.device.type == "cpu" and torch.equal(exact.view(size).long(), flat)
        index = True if same else flat.flatten().to(k.device)
        if len(_UP_INDEX) > 64:
            _UP_INDEX.clear()
        _UP_INDEX[key] = index
    if index is True:
        return F.interpolate(k, size=size, mode="nearest-exact")
    out = k.reshape(batch, channels, small_h * small_w).index_select(-1, index)
    return out.view(batch, channels, *size)


def _pixelate(x: torch.Tensor, level: Level, params: dict) -> torch.Tensor:
    c = level.c
    height, width = x.shape[-2:]
    small_h, small_w = max(1, int(height * c)), max(1, int(width * c))
    k = x.mul(255).round_().clamp_(0, 255)  # the original works on the uint8 image
    k = _box_down(k, small_w, -1)  # PIL: horizontal pass, then vertical
    k = _box_down(k, small_h, -2)
    return true_div(_box_up(k, (height, width)), 255.0)


# --------------------------------------------------------------------------------------
# jpeg_compression


def jpeg_roundtrip(pixels: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode and decode (B, 3, H, W) uint8 images as JPEG at ``quality``, as PIL's default
    save does (baseline, 4:2:0 chroma subsampling, islow DCT), on the images' device.

    On the CPU, :func:`libjpeg_roundtrip`. On CUDA (and any other device but MPS),
    :func:`corruptions.jpeg.roundtrip` computes the same round trip in integer tensor arithmetic,
    bit for bit, without leaving the device. (nvJPEG is not used: torchvision's CUDA encoder fixes
    4:4:4 sampling, and its bytes would have to come back to the host to be decoded.) MPS images
    go through the CPU codec: MPS has integer shifts only from torch 2.5, and this arithmetic has
    not been run there.
    """
    if pixels.shape[0] == 0:
        return pixels.clone()
    if pixels.device.type == "cpu":
        return libjpeg_roundtrip(pixels, quality)
    if pixels.device.type == "mps":
        return libjpeg_roundtrip(pixels.cpu(), quality).to(pixels.device)
    return jpeg.roundtrip(pixels, quality)


def libjpeg_roundtrip(pixels: torch.Tensor, quality: int) -> torch.Tensor:
    """The JPEG round trip of (B, 3, H, W) uint8 CPU images with torchvision's libjpeg-turbo
    (PIL's codec and settings), the images coded on a small thread pool."""
    from torchvision.io import decode_jpeg, encode_jpeg

    def code(image: torch.Tensor) -> torch.Tensor:
        return decode_jpeg(encode_jpeg(image, quality=quality))

    with quiet_torchvision_io():
        return torch.stack(thread_map(code, list(pixels)))


def _jpeg_compression(x: torch.Tensor, level: Level, params: dict) -> torch.Tensor:
    pixels = torch.round(x.clamp(0, 1) * 255).to(torch.uint8)
    return true_div(jpeg_roundtrip(pixels, level.c).to(x.dtype), 255.0)


# --------------------------------------------------------------------------------------
# elastic_transform (the original ImageNet-C algorithm)


def _elastic_sample(rng: ImageRandom, images: torch.Tensor, level: Level) -> dict:
    height, width = images.shape[-2:]
    return {
        "jitter": rng.uniform(3, 2, low=-1.0, high=1.0),
        "field": rng.uniform(2, height, width, low=-1.0, high=1.0),
    }


def _affine_from_points(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """(B, 2, 3) affine maps taking the 3 points ``src`` to ``dst`` (B, 3, 2), float64.

    Cramer's rule (no LU), like cv2.getAffineTransform.
    """
    x, y = src[..., 0], src[..., 1]
    det = x[:, 0] * (y[:, 1] - y[:, 2]) - y[:, 0] * (x[:, 1] - x[:, 2]) + (
        x[:, 1] * y[:, 2] - x[:, 2] * y[:, 1]
    )
    rows = []
    for k in range(2):
        u = dst[..., k]
        a = (u[:, 0] * (y[:, 1] - y[:, 2]) - y[:, 0] * (u[:, 1] - u[:, 2])
             + (u[:, 1] * y[:, 2] - u[:, 2] * y[:, 1])) / det
        b = (x[:, 0] * (u[:, 1] - u[:, 2]) - u[:, 0] * (x[:, 1] - x[:, 2])
             + (x[:, 1] * u[:, 2] - x[:, 2] * u[:, 1])) / det
        c = (x[:, 0] * (y[:, 1] * u[:, 2] - y[:, 2] * u[:, 1])
             - y[:, 0] * (x[:, 1] * u[:, 2] - x[:, 2] * u[:, 1])
             + u[:, 0] * (x[:, 1] * y[:, 2] - x[:, 2] * y[:, 1])) / det
        rows.append(torch.stack([a, b, c], dim=-1))
    return torch.stack(rows, dim=1)


def _grid_sample(
    x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, mode: str
) -> torch.Tensor:
    """Bilinear samples of x (B, C, H, W) at pixel coordinates (rows, cols), (B, H, W).

    ``mode="mirror"``: whole-sample reflection (OpenCV BORDER_REFLECT_101);
    ``mode="reflect"``: half-sample reflection (scipy.ndimage ``reflect``). Both are
    grid_sample's ``reflection`` padding, with ``align_corners`` True and False
    respectively (checked against OpenCV and scipy in the tests).
    """
    height, width = x.shape[-2:]
    grid_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    rows, cols = rows.to(grid_dtype), cols.to(grid_dtype)
    if mode == "mirror":
        grid = torch.stack([cols * (2 / (width - 1)) - 1, rows * (2 / (height - 1)) - 1], -1)
    elif mode == "reflect":
        grid = torch.stack([(2 * cols + 1) / width - 1, (2 * rows + 1) / height - 1], -1)
    else:
        raise ValueError(f"`mode` should be mirror or reflect. Got {mode!r}")
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="reflection",
                         align_corners=mode == "mirror")


def warp_affine_cv2(
    x: torch.Tensor, matrix: torch.Tensor, subpixel_bits: int | None = None
) -> torch.Tensor:
    """``cv2.warpAffine(x, M, (W, H), borderMode=BORDER_REFLECT_101)`` (bilinear).

    Args:
        x: (B, C, H, W).
        matrix: (B, 2, 3) forward maps (source -> destination), float64; inverted
            as ``cv2.invertAffineTransform`` does.
        subpixel_bits: None samples at the exact source coordinates, as OpenCV 5
            does for float images; 5 rounds them to 1/32 pixel in fixed point
            (INTER_BITS = 5), as OpenCV 3/4 (which made ImageNet-C) did.
    """
    batch, _, height, width = x.shape
    a, b, c = matrix[:, 0, 0], matrix[:, 0, 1], matrix[:, 0, 2]
    d, e, f = matrix[:, 1, 0], matrix[:, 1, 1], matrix[:, 1, 2]
    det = a * e - b * d
    det = torch.where(det != 0, 1.0 / det, torch.zeros_like(det))
    ia, ib, id_, ie = e * det, -b * det, -d * det, a * det
    ic, if_ = -ia * c - ib * f, -id_ * c - ie * f
    inverse = torch.stack([ia, ib, ic, id_, ie, if_], dim=1).to(x.device).view(batch, 6, 1, 1)
    coord = torch.float32 if x.device.type == "mps" else torch.float64  # MPS has no float64
    inverse = inverse.to(coord)
    ys = torch.arange(height, dtype=coord, device=x.device).view(1, -1, 1)
    xs = torch.arange(width, dtype=coord, device=x.device).view(1, 1, -1)
    if subpixel_bits is None:
        src_x = inverse[:, 0] * xs + inverse[:, 1] * ys + inverse[:, 2]
        src_y = inverse[:, 3] * xs + inverse[:, 4] * ys + inverse[:, 5]
    else:
        # OpenCV 3/4: X = (round((M1 y + M2) 1024) + delta + round(M0 x 1024)) >> (10 - bits)
        scale, steps = 1024.0, 1 << subpixel_bits
        delta = scale / steps / 2
        fx = torch.round((inverse[:, 1] * ys + inverse[:, 2]) * scale) + delta + torch.round(
            inverse[:, 0] * xs * scale)
        fy = torch.round((inverse[:, 4] * ys + inverse[:, 5]) * scale) + delta + torch.round(
            inverse[:, 3] * xs * scale)
        src_x = torch.floor(fx / (scale / steps)) / steps
        src_y = torch.floor(fy / (scale / steps)) / steps
    return _grid_sample(x, src_y, src_x, "mirror")


def map_coordinates_reflect(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``scipy.ndimage.map_coordinates(order=1, mode='reflect')`` per channel.

    Args:
        x: (B, C, H, W); rows, cols: (B, H, W) float sample coordinates.
    """
    return _grid_sample(x, rows, cols, "reflect")


def elastic_scale(height: int, width: int, preset: str = "imagenet") -> float:
    """The multiplier of the elastic parameters for an image size (244 at 224 px for ImageNet-C)."""
    unit, side = ELASTIC_UNIT[preset]
    return unit * min(height, width) / side


def _elastic_transform(x: torch.Tensor, level: Level, params: dict) -> torch.Tensor:
    batch, _, height, width = x.shape
    unit = elastic_scale(height, width, level.preset)
    alpha, sigma, jitter = (v * unit for v in level.c)
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    # random affine: three points around the centre, each moved by U(-jitter, jitter)
    center_x, center_y = float(width // 2), float(height // 2)
    third = float(min(height, width) // 3)
    device = float64_device(params["jitter"].device)  # where the draws are: the host never waits
    src = device_constant(
        ((center_x + third, center_y + third),
         (center_x + third, center_y - third),
         (center_x - third, center_y - third)),
        torch.float32, device,
    ).expand(batch, 3, 2)
    dst = src + (params["jitter"].to(device) * jitter).to(torch.float32)
    matrix = _affine_from_points(src.double(), dst.double())
    warped = warp_affine_cv2(x.to(work), matrix)
    # smooth displacement fields: gaussian(U(-1, 1), sigma, mode='reflect', truncate=3) * alpha
    # (the original smooths in float64 and keeps float32; float32 here: 1e-6 px)
    field = params["field"].to(work)
    op_h = axis_matrix(("gauss", height, sigma, "reflect", 3.0),
                       lambda: gaussian_matrix(height, sigma, "reflect", 3.0), field.dtype, x.device)
    op_w = axis_matrix(("gauss", width, sigma, "reflect", 3.0),
                       lambda: gaussian_matrix(width, sigma, "reflect", 3.0), field.dtype, x.device)
    field = (op_w.cols(op_h.rows(field)) * alpha).to(torch.float32)
    dx, dy = field[:, 0], field[:, 1]
    rows = torch.arange(height, device=x.device, dtype=torch.float32).view(1, -1, 1) + dy
    cols = torch.arange(width, device=x.device, dtype=torch.float32).view(1, 1, -1) + dx
    return map_coordinates_reflect(warped, rows.to(work), cols.to(work)).to(x.dtype)


register(Corruption(
    "contrast", "digital", presets(CONTRAST, CONTRAST_CIFAR, CONTRAST_TINY), _contrast,
    doc="(x - mean) * c + mean, per channel mean.",
    revision=2,  # 0.7.12: the original's float64 arithmetic (NumPy's running mean) and truncation side
))
register(Corruption(
    "elastic_transform", "digital",
    presets(ELASTIC_TRANSFORM, ELASTIC_TRANSFORM_CIFAR, ELASTIC_TRANSFORM_TINY),
    _elastic_transform, _elastic_sample,
    doc="the original: random affine warp (reflect-101), then a Gaussian-smoothed random "
        "displacement field (bilinear, reflect).",
))
register(Corruption(
    "pixelate", "digital", presets(PIXELATE, PIXELATE_CIFAR, PIXELATE_TINY), _pixelate,
    doc="PIL BOX down-sampling to c * size, BOX (pixel-replicating) up-sampling, uint8.",
))
register(Corruption(
    "jpeg_compression", "digital",
    presets(JPEG_COMPRESSION, JPEG_COMPRESSION_CIFAR, JPEG_COMPRESSION_TINY), _jpeg_compression,
    doc="JPEG encode/decode at the given quality (libjpeg through torchvision).",
))
register(Corruption(
    "saturate", "digital", presets(SATURATE, SATURATE_CIFAR, SATURATE_TINY), _saturate,
    doc="HSV saturation * a + b (scikit-image's HSV).",
    revision=2,  # 0.7.1: the original's float64 arithmetic and truncation side
))
