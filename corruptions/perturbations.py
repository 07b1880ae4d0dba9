"""The 14 ImageNet-P perturbation sequences in PyTorch: batched, seeded, on any device.

A sequence is a short video made from one image: 31 frames (41 for translate)
in which a perturbation changes gradually (a rotation from -15 to +15 degrees,
a brightness ramp ...) or, for the noise perturbations, 30 fresh noise draws
after the clean frame 0. The formulas are those of the original generator
(hendrycks/robustness, ``ImageNet-P/create_p/make_imagenet_p.py``);
``corruptions/PERTURBATIONS.md`` lists every place where this port differs and
by how much.

Example:
    >>> import torch
    >>> from corruptions.perturbations import perturbation_sequence, frame_count
    >>> x = torch.rand(2, 3, 96, 96)          # resized to 96 px and centre-cropped square
    >>> perturbation_sequence(x, "rotate", seed=0).shape
    torch.Size([2, 31, 3, 84, 84])
    >>> frame_count("translate")
    41
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from corruptions._ops import gaussian_blur2d, rgb_to_gray, thread_map, zoom_center
from corruptions._registry import check_images
from corruptions._rng import ImageRandom, image_seeds, normalize_seeds
from corruptions.blur import motion_blur
from corruptions.weather import water_mask

__all__ = [
    "DIFFICULTIES",
    "PERTURBATION_SUBSETS",
    "Perturbation",
    "frame_count",
    "get_perturbation",
    "list_perturbations",
    "perturbation_sequence",
]

#: the 10 test perturbations, in the order of every report (PROTOCOL.md section 2)
TEST = (
    "gaussian_noise",
    "shot_noise",
    "motion_blur",
    "zoom_blur",
    "snow",
    "brightness",
    "translate",
    "rotate",
    "tilt",
    "scale",
)
#: the 4 validation perturbations
VALIDATION = ("speckle_noise", "gaussian_blur", "spatter", "shear")
PERTURBATION_SUBSETS: dict[str, tuple[str, ...]] = {
    "test": TEST,
    "validation": VALIDATION,
    "all": TEST + VALIDATION,
}
DIFFICULTIES = (1, 2, 3)

# --- the original's constants (difficulty 1, 2, 3 for the noise perturbations) ---------
GAUSSIAN_NOISE = (0.03, 0.05, 0.08)  # sigma
SHOT_NOISE = (300, 120, 60)  # lambda: Poisson(x lambda) / lambda
SPECKLE_NOISE = (0.05, 0.10, 0.15)  # sigma of x + x N
MOTION_BLUR = (10, 3)  # radius, sigma; angle (i - 30) * 4 degrees
ZOOM_STEP = 0.004  # zoom 1 + 0.004 k, running mean over k <= i
#: loc, scale, zoom, threshold, motion radius, motion sigma, blend; angle 4 i - 150
SNOW = (0.05, 0.3, 3, 0.5, 14, 4, 0.85)
BRIGHTNESS_SHIFT = (-15, 2 / 100)  # HSV V + (i - 15) * 2 / 100, as the original spells it
TRANSLATE_MAX = 20  # shift i - 20 pixels, 41 frames
GAUSSIAN_BLUR = (0.25, 0.035, 6.0)  # sigma 0.25 + 0.035 i, truncate 6
#: loc, scale, sigma, threshold, intensity; per frame the layer drifts down by this filter
SPATTER = (0.65, 0.27, 3.7, 0.69, 0.6)
SPATTER_DRIFT = (0.05, 0.1, 0.15, 0.7)  # np.convolve(column, DRIFT, mode="same")
SPATTER_COLOR = (175 / 255, 238 / 255, 238 / 255)  # pale turquoise, in array order


# --------------------------------------------------------------------------------------
# the job: one call's checked arguments


@dataclass
class _Job:
    """The checked arguments of one :func:`perturbation_sequence` call."""

    x: torch.Tensor  # (B, 3, S, S) in the work dtype, never written to
    crop: int  # c
    top: int  # offset of the centre crop (rows and columns)
    frames: list[int]
    difficulty: int
    seeds: list[int] | None
    generator: torch.Generator | None
    quantize: bool

    @property
    def batch(self) -> int:
        return self.x.shape[0]

    @property
    def size(self) -> int:
        return self.x.shape[-1]

    @property
    def exact(self) -> torch.dtype:
        """float64, the type of the original's NumPy / PIL arithmetic (float32 on MPS,
        which has no float64: a few truncations may then differ by a level)."""
        return torch.float32 if self.x.device.type == "mps" else torch.float64

    @property
    def clean(self) -> torch.Tensor:
        """The centre crop (B, 3, c, c) (a view)."""
        return self.x[..., self.top : self.top + self.crop, self.top : self.top + self.crop]

    def image_random(self) -> ImageRandom:
        """One random source per image (fixed layers: snow, spatter)."""
        return ImageRandom(self.batch, self.x.device, seeds=self.seeds, generator=self.generator)

    def frame_draws(self, draw: Callable[[ImageRandom, int, list[int]], torch.Tensor],
                    total: int) -> torch.Tensor:
        """Random blocks for the requested frames >= 1, shape (B, F', ...), F' = their number.

        With per-image seeds, frame j of image i draws from its own generator seeded with
        ``image_seeds(seeds[i], [j])``: any subset of frames gets the numbers of the full
        sequence. With a batch generator (or torch's default one) the blocks of all
        ``total`` noisy frames 1..total are drawn at once, then the requested ones kept.
        ``draw(rng, n, owners)`` returns ``n`` blocks for each of the ``rng.batch`` random
        sources, shape (rng.batch, n, ...); ``owners[k]`` is the image of source k.
        """
        wanted = [j for j in self.frames if j >= 1]
        if self.seeds is not None:
            unique = sorted(set(wanted))
            seeds = [int(s) for seed in self.seeds for s in image_seeds(seed, unique).tolist()]
            owners = [i for i in range(self.batch) for _ in unique]
            rng = ImageRandom(len(seeds), self.x.device, seeds=seeds)
            blocks = draw(rng, 1, owners)
            blocks = blocks.view(self.batch, len(unique), *blocks.shape[2:])
            position = {j: k for k, j in enumerate(unique)}
            return blocks[:, [position[j] for j in wanted]]
        rng = ImageRandom(self.batch, self.x.device, generator=self.generator)
        blocks = draw(rng, total, list(range(self.batch)))
        return blocks[:, [j - 1 for j in wanted]]


def _finish(frame: torch.Tensor, job: _Job) -> torch.Tensor:
    """Clip a frame computed in the original's float type and, with ``job.quantize``,
    truncate it to uint8 there (``np.uint8(255 x)``, ``tensor.mul(255).byte()``); returns
    the work dtype (k / 255 is exact: the final storage step leaves it unchanged)."""
    frame = frame.clamp(0, 1)
    if job.quantize:
        frame = frame.mul_(255).floor_()
        return frame.to(job.x.dtype).div_(255)
    return frame.to(job.x.dtype)


def _noise_frames(job: _Job, noisy: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                  draw: Callable[[ImageRandom, int, list[int]], torch.Tensor]) -> torch.Tensor:
    """Frame 0 the clean crop, frames >= 1 ``noisy(clean, random block)`` (then
    :func:`_finish`), one frame at a time (float64 temporaries stay small)."""
    clean = job.clean
    out = clean.new_empty((job.batch, len(job.frames), *clean.shape[1:]))
    noisy_at = [k for k, j in enumerate(job.frames) if j >= 1]
    for k, j in enumerate(job.frames):
        if j == 0:
            out[:, k] = clean
    if noisy_at:
        blocks = job.frame_draws(draw, 30)
        for n, k in enumerate(noisy_at):
            out[:, k] = _finish(noisy(clean, blocks[:, n]), job)
    return out


# --------------------------------------------------------------------------------------
# noise


def _gaussian_noise(job: _Job) -> torch.Tensor:
    # torch float32 in the original: clamp(x + sigma * randn, 0, 1).mul(255).byte()
    sigma = GAUSSIAN_NOISE[job.difficulty - 1]
    c = job.crop
    return _noise_frames(
        job,
        lambda x, n: n.to(x.dtype).mul(sigma).add_(x),
        lambda rng, k, owners: rng.normal(k, 3, c, c),
    )


def poisson_draws(rng: ImageRandom, rates: torch.Tensor, count: int, owners: Sequence[int]) -> torch.Tensor:
    """Poisson counts: ``count`` draws of ``rates[owners[k]]`` from random source k.

    Args:
        rng: the random sources (per-source generators, or one for the whole block).
        rates: (N, ...) float rates, on the sources' device.
        count: draws per source.
        owners: for each of the ``rng.batch`` sources, the row of ``rates`` it uses.

    Returns:
        (rng.batch, count, ...) float32 counts (``torch.poisson``: exact in law; on the
        CPU the sources run on a small thread pool, each from its own generator).
    """
    shape = rates.shape[1:]
    rates = rates.float()
    out = torch.empty((rng.batch, count, *shape), dtype=torch.float32, device=rates.device)
    if rng.generators is None:
        block = rates[list(owners)].unsqueeze(1).expand(-1, count, *shape).contiguous()
        return out.copy_(torch.poisson(block, generator=rng.generator))

    def one(k: int) -> None:
        block = rates[owners[k]].unsqueeze(0).expand(count, *shape).contiguous()
        out[k] = torch.poisson(block, generator=rng.generators[k])

    if rates.device.type == "cpu" and rng.batch > 1:
        thread_map(one, list(range(rng.batch)))
    else:
        for k in range(rng.batch):
            one(k)
    return out


def _shot_noise(job: _Job) -> torch.Tensor:
    # float64 in the original: np.uint8(255 * np.clip(poisson(x * L) / L, 0, 1))
    lam = SHOT_NOISE[job.difficulty - 1]
    rates = job.clean.clamp(0, 1) * lam
    return _noise_frames(
        job,
        lambda x, counts: counts.to(job.exact) / lam,
        lambda rng, k, owners: poisson_draws(rng, rates, k, owners),
    )


def _speckle_noise(job: _Job) -> torch.Tensor:
    # float64 in the original: np.uint8(255 * np.clip(x + x * normal(scale=s), 0, 1))
    sigma = SPECKLE_NOISE[job.difficulty - 1]
    c = job.crop

    def noisy(x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        exact = (x * 255).to(job.exact) / 255
        return exact + exact * (n.to(job.exact) * sigma)

    return _noise_frames(job, noisy, lambda rng, k, owners: rng.normal(k, 3, c, c))


# --------------------------------------------------------------------------------------
# blur


def _per_frame(job: _Job, render: Callable[[torch.Tensor, int], torch.Tensor],
               source: torch.Tensor | None = None) -> torch.Tensor:
    """Stack ``render(images, frame)`` over the requested frames: (B, F, C, c, c).

    ``render`` gets the batch folded into the channels, (1, B * C, c, c), so every
    frame is one call over the whole batch.
    """
    source = job.clean if source is None else source
    batch, channels, height, width = source.shape
    folded = source.reshape(1, batch * channels, height, width)
    out = source.new_empty((batch, len(job.frames), channels, height, width))
    for k, j in enumerate(job.frames):
        out[:, k] = render(folded, j).view(batch, channels, height, width)
    return out


def _motion_blur(job: _Job) -> torch.Tensor:
    radius, sigma = MOTION_BLUR

    def render(x: torch.Tensor, j: int) -> torch.Tensor:
        return motion_blur(x, radius, sigma, torch.tensor([(j - 30) * 4.0], dtype=torch.float64))

    return _per_frame(job, render)


def _gaussian_blur(job: _Job) -> torch.Tensor:
    # float64, as scikit-image: at sigma .25 the neighbours weigh 3e-4 and many values land
    # a hair below a uint8 level, which the original's truncation drops (so does _finish)
    base, step, truncate = GAUSSIAN_BLUR
    clean = job.clean.to(job.exact)
    out = job.clean.new_empty((job.batch, len(job.frames), *clean.shape[1:]))
    for k, j in enumerate(job.frames):
        blurred = gaussian_blur2d(clean, base + step * j, mode="nearest", truncate=truncate)
        out[:, k] = _finish(blurred, job)
    return out


def _zoom_blur(job: _Job) -> torch.Tensor:
    # frame i = mean of the clean crop and the centre zooms 1 + 0.004 k, k = 1..i, of the
    # whole image: PIL images (uint8, truncated), summed in float32 in the original's
    # order (avg += z_k; torch.cumsum would accumulate in double), divided, truncated
    last = max(job.frames)
    matrices = [_inverse_affine(job.size, scale=1 + ZOOM_STEP * k) for k in range(1, last + 1)]
    zooms = _warp_affine(job, matrices, truncate=True) if matrices else None
    running = job.clean.clone()
    sums = [running.clone()]
    for k in range(last):
        running += zooms[:, k]
        sums.append(running.clone() if k + 1 in job.frames else None)
    return torch.stack([sums[j] / (j + 1) for j in job.frames], dim=1)


# --------------------------------------------------------------------------------------
# weather


def _snow(job: _Job) -> torch.Tensor:
    loc, scale, zoom, threshold, radius, sigma, blend = SNOW
    c = job.crop
    layer = job.image_random().normal(1, c, c, mean=loc, std=scale).to(job.x.dtype)
    layer = zoom_center(layer, zoom)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer)
    layer = torch.floor(layer.clamp(0, 1) * 255) / 255  # the 8-bit PNG the original blurred
    x = job.clean
    # the original's arithmetic: float64 image, OpenCV's float32 grey, float64 composite
    exact = (x * 255).to(job.exact) / 255
    grey = rgb_to_gray(exact.float()) * 1.5 + 0.5
    base = blend * exact + (1 - blend) * torch.maximum(exact, grey.to(job.exact))
    out = x.new_empty((job.batch, len(job.frames), *x.shape[1:]))
    folded = layer.reshape(1, job.batch, c, c)
    for k, j in enumerate(job.frames):
        angle = torch.tensor([4.0 * j - 150], dtype=torch.float64)
        blurred = motion_blur(folded, radius, sigma, angle).view(job.batch, 1, c, c)
        snow = torch.floor(blurred.to(job.exact) * 255 + 0.5).clamp_(0, 255) / 255  # 8-bit PNG
        out[:, k] = _finish(base + snow + snow.flip(-1, -2), job)
    return out


def _hsv_factors(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-image's ``rgb2hsv`` then the channel factors of its ``hsv2rgb``, in float64.

    ``hsv2rgb`` makes each channel one of v, p = v (1 - s), q = v (1 - f s) or
    t = v (1 - (1 - f) s) with f and the choice depending on the hue only, so
    ``hsv2rgb(h, s, v') = v' * factors``. The operations and their order are
    scikit-image's, so the results are the same doubles.

    Args:
        rgb: (B, 3, H, W) float64.

    Returns:
        v (B, 1, H, W) and factors (B, 3, H, W).
    """
    r, g, b = rgb.unbind(1)
    v = rgb.amax(1)
    delta = v - rgb.amin(1)
    flat = delta == 0
    safe = torch.where(flat, torch.ones_like(delta), delta)
    s = torch.where(flat, torch.zeros_like(v), delta / torch.where(v > 0, v, torch.ones_like(v)))
    h = torch.zeros_like(v)
    h = torch.where(r == v, (g - b) / safe, h)  # later maxima overwrite earlier ones
    h = torch.where(g == v, 2.0 + (b - r) / safe, h)
    h = torch.where(b == v, 4.0 + (r - g) / safe, h)
    h = torch.where(flat, torch.zeros_like(h), torch.remainder(h / 6.0, 1.0))
    h6 = h * 6
    hi = torch.floor(h6)
    f = h6 - hi
    one = torch.ones_like(s)
    p, q, t = 1 - s, 1 - f * s, 1 - (1 - f) * s
    sector = hi.to(torch.uint8).remainder(6).long()
    table = torch.stack([
        torch.stack(row) for row in ((one, t, p), (q, one, p), (p, one, t),
                                     (p, q, one), (t, p, one), (one, p, q))
    ])  # (6, 3, B, H, W)
    factors = table.gather(0, sector.unsqueeze(0).unsqueeze(0).expand(1, 3, *sector.shape))[0]
    return v.unsqueeze(1), factors.transpose(0, 1)


def _brightness(job: _Job) -> torch.Tensor:
    # the original: rgb2hsv, V = clip(V + (i - 15) * 2 / 100, 0, 1), hsv2rgb, np.uint8(255 x),
    # all in float64 on x = uint8 / 255; the round trip alone leaves some values a hair
    # below their level, which the truncation drops: reproduced bit for bit
    x = job.clean
    exact = (x * 255).to(job.exact) / 255  # the double k / 255 of uint8 input
    v, factors = _hsv_factors(exact)
    out = x.new_empty((job.batch, len(job.frames), *x.shape[1:]))
    for k, j in enumerate(job.frames):
        out[:, k] = _finish((v + (j - 15) * 2 / 100.0).clamp_(0, 1) * factors, job)
    return out


def _drift(liquid: torch.Tensor) -> torch.Tensor:
    """``np.convolve(column, (0.05, 0.1, 0.15, 0.7), mode="same")`` down every column.

    ``out[n] = 0.05 a[n + 1] + 0.1 a[n] + 0.15 a[n - 1] + 0.7 a[n - 2]`` (zeros outside).
    """
    padded = F.pad(liquid, (0, 0, 2, 1))
    w0, w1, w2, w3 = SPATTER_DRIFT
    height = liquid.shape[-2]
    out = padded[..., 3 : 3 + height, :] * w0
    out += padded[..., 2 : 2 + height, :] * w1
    out += padded[..., 1 : 1 + height, :] * w2
    out += padded[..., 0:height, :] * w3
    return out


def _spatter(job: _Job) -> torch.Tensor:
    loc, scale, sigma, threshold, intensity = SPATTER
    c = job.crop
    liquid = job.image_random().normal(1, c, c, mean=loc, std=scale).to(job.x.dtype)
    liquid = gaussian_blur2d(liquid, sigma, mode="nearest")
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    layers = []
    wanted = set(job.frames)
    for j in range(max(job.frames) + 1):
        if j in wanted:
            layers.append((j, liquid))
        liquid = _drift(liquid)
    index = {j: k for k, (j, _) in enumerate(layers)}
    stacked = torch.stack([layer for _, layer in layers], dim=1)  # (B, F_unique, 1, c, c)
    masks = water_mask(stacked.flatten(0, 1)).view_as(stacked) * intensity
    masks = masks[:, [index[j] for j in job.frames]]
    color = torch.tensor(SPATTER_COLOR, dtype=masks.dtype, device=masks.device).view(1, 1, 3, 1, 1)
    return job.clean.unsqueeze(1) + masks.to(job.x.dtype) * color.to(job.x.dtype)


# --------------------------------------------------------------------------------------
# geometry: old torchvision ``affine`` (PIL) and OpenCV ``warpPerspective``


def _inverse_affine(size: int, *, angle: float = 0.0, scale: float = 1.0,
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


def _sample_zeros(job: _Job, grids: torch.Tensor) -> torch.Tensor:
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


def _warp_affine(job: _Job, matrices: Sequence[Sequence[float]], *, truncate: bool) -> torch.Tensor:
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


def _tilt(job: _Job) -> torch.Tensor:
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


def _rotate(job: _Job) -> torch.Tensor:
    return _warp_affine(job, [_inverse_affine(job.size, angle=j - 15) for j in job.frames],
                        truncate=job.quantize)


def _scale(job: _Job) -> torch.Tensor:
    return _warp_affine(job, [_inverse_affine(job.size, scale=(j * 2.5 + 40) / 100) for j in job.frames],
                        truncate=job.quantize)


def _shear(job: _Job) -> torch.Tensor:
    return _warp_affine(job, [_inverse_affine(job.size, shear=j - 15) for j in job.frames],
                        truncate=job.quantize)


def _translate(job: _Job) -> torch.Tensor:
    # PIL NEAREST with an integer translation t = i - 20: out[x] = in[x - t], zeros enter
    pad = TRANSLATE_MAX
    padded = F.pad(job.x[..., job.top : job.top + job.crop, :], (pad, pad))
    frames = []
    for j in job.frames:
        start = pad + job.top - (j - TRANSLATE_MAX)
        frames.append(padded[..., start : start + job.crop])
    return torch.stack(frames, dim=1)


# --------------------------------------------------------------------------------------
# registry


@dataclass(frozen=True)
class Perturbation:
    """One ImageNet-P perturbation.

    Attributes:
        name: its name (the released folder's).
        subset: ``test`` or ``validation``.
        frames: number of frames (31, or 41 for translate).
        random: whether the frames depend on random draws.
        storage: how the original stored a frame as uint8: ``truncate`` (``np.uint8(255 x)``,
            PIL's filters; a 1e-3 tolerance absorbs float32 error), ``truncate-exact`` (the
            frames went through the original's float operations: plain truncation) or
            ``round`` (ImageMagick, OpenCV).
        doc: what frame i is.
    """

    name: str
    subset: str
    frames: int
    random: bool
    storage: str
    render: Callable[[_Job], torch.Tensor]
    doc: str


_PERTURBATIONS: dict[str, Perturbation] = {}


def _register(name: str, render: Callable, doc: str, *, frames: int = 31, random: bool = False,
              storage: str = "truncate") -> None:
    if name in _PERTURBATIONS:
        raise ValueError(f"perturbation {name!r} is registered twice")
    subset = "test" if name in TEST else "validation"
    _PERTURBATIONS[name] = Perturbation(name, subset, frames, random, storage, render, doc)


_register("gaussian_noise", _gaussian_noise, random=True, storage="truncate-exact",
          doc="frame 0 clean; frames 1..30 x + sigma N, sigma .03 / .05 / .08 (difficulty 1 / 2 / 3)")
_register("shot_noise", _shot_noise, random=True, storage="truncate-exact",
          doc="frame 0 clean; frames 1..30 Poisson(x L) / L, L = 300 / 120 / 60")
_register("motion_blur", _motion_blur, storage="round",
          doc="ImageMagick-style motion blur, radius 10, sigma 3, angle (i - 30) * 4 degrees")
_register("zoom_blur", _zoom_blur, storage="truncate-exact",
          doc="mean of the clean crop and the centre zooms 1 + 0.004 k (k = 1..i) of the image")
_register("snow", _snow, random=True, storage="truncate-exact",
          doc="fixed snow layer (N(.05, .3), zoom 3, threshold .5), motion-blurred (radius 14, "
              "sigma 4, angle 4 i - 150), added with its 180-degree rotation to a whitened image")
_register("brightness", _brightness, storage="truncate-exact", doc="HSV value + (i - 15) * 0.02")
_register("translate", _translate, frames=2 * TRANSLATE_MAX + 1,
          doc="horizontal shift by i - 20 pixels (nearest, zeros enter)")
_register("rotate", _rotate, doc="rotation by i - 15 degrees about the centre (bilinear)")
_register("tilt", _tilt, storage="round",
          doc="perspective warp: rotations by i - 15 degrees about both image axes, focal length "
              "sqrt(w^2 + h^2)")
_register("scale", _scale, doc="zoom by (2.5 i + 40) / 100 about the centre (bilinear)")
_register("speckle_noise", _speckle_noise, random=True, storage="truncate-exact",
          doc="frame 0 clean; frames 1..30 x + x sigma N, sigma .05 / .10 / .15")
_register("gaussian_blur", _gaussian_blur, storage="truncate-exact",
          doc="scikit-image Gaussian blur, sigma 0.25 + 0.035 i, truncate 6")
_register("spatter", _spatter, random=True, storage="truncate-exact",
          doc="ImageNet-C's water spatter (intensity .6) of a liquid layer that drifts down "
              "(np.convolve with [.05, .1, .15, .7]) after every frame")
_register("shear", _shear, doc="shear by i - 15 degrees about the centre (bilinear)")


# --------------------------------------------------------------------------------------
# public API


def list_perturbations(subset: str = "test") -> list[str]:
    """Names of the perturbations of a subset, in the order of the reports.

    Args:
        subset: ``test`` (the 10 of ImageNet-P), ``validation`` (speckle_noise,
            gaussian_blur, spatter, shear) or ``all`` (the 14).

    Returns:
        A new list of names.

    Raises:
        ValueError: unknown subset.

    Example:
        >>> list_perturbations("validation")
        ['speckle_noise', 'gaussian_blur', 'spatter', 'shear']
    """
    if subset not in PERTURBATION_SUBSETS:
        close = difflib.get_close_matches(str(subset), PERTURBATION_SUBSETS, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"`subset` should be one of {', '.join(PERTURBATION_SUBSETS)}. Got {subset!r}.{hint}"
        )
    return list(PERTURBATION_SUBSETS[subset])


def check_perturbation(name: str) -> str:
    """``name`` if it is a perturbation, else an error suggesting the closest one."""
    if not isinstance(name, str):
        raise TypeError(f"`name` should be a perturbation name (str). Got {type(name).__name__}")
    if name not in _PERTURBATIONS:
        choices = PERTURBATION_SUBSETS["all"]
        close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
        if not close:
            squashed = {c.replace("_", ""): c for c in choices}
            key = name.lower().replace("_", "").replace("-", "").replace(" ", "")
            close = [squashed[k] for k in difflib.get_close_matches(key, squashed, n=1, cutoff=0.6)]
        hint = (f" Did you mean {close[0]!r}?" if close
                else " See list_perturbations('all') for the 14 names.")
        raise ValueError(f"unknown perturbation {name!r}.{hint}")
    return name


def get_perturbation(name: str) -> Perturbation:
    """The registry entry of ``name`` (frame count, subset, documentation).

    Raises:
        ValueError: unknown name (the closest name is suggested).
    """
    return _PERTURBATIONS[check_perturbation(name)]


def frame_count(name: str) -> int:
    """Number of frames of a sequence: 41 for translate, 31 for the others.

    Raises:
        ValueError: unknown name (the closest name is suggested).

    Example:
        >>> frame_count("rotate"), frame_count("translate")
        (31, 41)
    """
    return get_perturbation(name).frames


def _check_difficulty(difficulty: int) -> int:
    if isinstance(difficulty, bool) or not isinstance(difficulty, numbers.Integral):
        raise TypeError(f"`difficulty` should be an int 1..3. Got {difficulty!r} "
                        f"({type(difficulty).__name__})")
    if int(difficulty) not in DIFFICULTIES:
        raise ValueError(f"`difficulty` should be 1..3. Got {difficulty}")
    return int(difficulty)


def _check_frames(frames, name: str, total: int) -> list[int]:
    if frames is None:
        return list(range(total))
    if isinstance(frames, torch.Tensor):
        if frames.dtype.is_floating_point or frames.dtype == torch.bool or frames.ndim != 1:
            raise TypeError(f"`frames` should be a 1-D integer tensor or a sequence of ints. "
                            f"Got {frames.dtype} with shape {tuple(frames.shape)}")
        frames = frames.tolist()
    if isinstance(frames, (str, bytes)) or not isinstance(frames, Iterable):
        raise TypeError(f"`frames` should be a sequence of frame indices (e.g. range(10, 20)). "
                        f"Got {type(frames).__name__}")
    out = []
    for j in frames:
        if isinstance(j, bool) or not isinstance(j, numbers.Integral):
            raise TypeError(f"`frames` should hold ints. Got {j!r} ({type(j).__name__})")
        if not 0 <= int(j) < total:
            raise ValueError(f"`frames` should hold indices 0..{total - 1} ({name} has {total} "
                             f"frames). Got {j}")
        out.append(int(j))
    return out


def _check_crop(crop_size, size: int) -> int:
    if crop_size is None:
        return round(size * 224 / 256)
    if isinstance(crop_size, bool) or not isinstance(crop_size, numbers.Integral):
        raise TypeError(f"`crop_size` should be an int. Got {type(crop_size).__name__}")
    if not 1 <= int(crop_size) <= size:
        raise ValueError(f"`crop_size` should be 1..{size} (the image side). Got {crop_size}")
    return int(crop_size)


def perturbation_sequence(
    images: torch.Tensor,
    name: str,
    difficulty: int = 1,
    *,
    seed: int | Sequence[int] | torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    crop_size: int | None = None,
    frames: Sequence[int] | torch.Tensor | None = None,
    quantize: bool = True,
) -> torch.Tensor:
    """The ImageNet-P sequences of a batch of images, as centre-cropped frames.

    Args:
        images: (B, 3, S, S) float tensor in [0, 1] (float16, bfloat16, float32,
            float64), on any device, S >= 32: each image resized so that its
            shorter side is S (256 for ImageNet) and centre-cropped to a square.
            Geometric perturbations (zoom_blur, translate, rotate, tilt, scale,
            shear) act on this square, the others on the crop. Computed in float32
            (float64 for float64 input). Not modified.
        name: one of :func:`list_perturbations` ``("all")``.
        difficulty: 1..3. For gaussian_noise, shot_noise and speckle_noise it selects
            the noise level (the released ``_2`` / ``_3`` folders); for the others the
            original has one set of frames (difficulty is a frame stride of the flip
            metric, applied by the caller), so the frames do not depend on it.
        seed: randomness of the random perturbations (noise, snow, spatter):
            - an int: image i uses ``image_seeds(seed, range(B))[i]``;
            - B per-image seeds (sequence or 1-D integer tensor): image i draws only
              from them, so its frames do not depend on the rest of the batch. Noise
              frame j of image i draws from ``image_seeds(seeds[i], [j])``; the snow
              and spatter layers from ``seeds[i]``.
        generator: draw for the whole batch from this ``torch.Generator`` instead
            (results depend on the batch). With neither, torch's default generator.
        crop_size: side c of the frames (default ``round(S * 224 / 256)``: 224 for
            S = 256, 64 for S = 73); the centre crop starts at ``round((S - c) / 2)``.
        frames: frame indices to compute (default all); the result equals
            ``perturbation_sequence(...)[:, frames]`` for the same seed, so long
            sequences can be computed in chunks.
        quantize: store every frame on the uint8 grid k / 255 as the original did
            before encoding its videos (truncation, or rounding where the original's
            tool rounded: motion_blur, snow's layer, tilt). False keeps floats.

    Returns:
        New (B, T', 3, c, c) tensor, same dtype and device, values in [0, 1], with
        T' = ``len(frames)`` (default :func:`frame_count`: 31, or 41 for translate).

    Raises:
        TypeError: ``images`` not a float tensor, ``difficulty`` / ``crop_size`` not
            ints, bad ``seed``, ``frames`` or ``generator``.
        ValueError: unknown ``name`` (the closest name is suggested), ``difficulty``
            outside 1..3, wrong shape or non-square images, frame indices out of
            range, both ``seed`` and ``generator``, or a seed sequence whose length
            is not B.

    Example:
        >>> x = torch.rand(4, 3, 73, 73)
        >>> video = perturbation_sequence(x, "gaussian_noise", 2, seed=[1, 2, 3, 4])
        >>> part = perturbation_sequence(x, "gaussian_noise", 2, seed=[1, 2, 3, 4], frames=range(10, 20))
        >>> video.shape, torch.equal(part, video[:, 10:20])
        (torch.Size([4, 31, 3, 64, 64]), True)
    """
    check_images(images)
    name = check_perturbation(name)
    difficulty = _check_difficulty(difficulty)
    batch, _, height, width = images.shape
    if height != width:
        raise ValueError(
            f"`images` should be square, (B, 3, S, S): resize the shorter side to S and "
            f"centre-crop S x S. Got {tuple(images.shape)}"
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"`generator` should be a torch.Generator. Got {type(generator).__name__}")
    if seed is not None and generator is not None:
        raise ValueError("pass `seed` or `generator`, not both")
    if not isinstance(quantize, bool):
        raise TypeError(f"`quantize` should be a bool. Got {type(quantize).__name__}")
    spec = _PERTURBATIONS[name]
    crop = _check_crop(crop_size, height)
    wanted = _check_frames(frames, name, spec.frames)
    seeds = normalize_seeds(seed, batch, images.device) if spec.random else None
    shape = (batch, len(wanted), 3, crop, crop)
    if batch == 0 or not wanted:
        return images.new_zeros(shape)
    work = torch.float64 if images.dtype == torch.float64 else torch.float32
    job = _Job(
        x=images.detach().to(work), crop=crop, top=int(round((height - crop) / 2.0)),
        frames=wanted, difficulty=difficulty, seeds=seeds,
        generator=generator if spec.random else None, quantize=quantize,
    )
    out = spec.render(job)
    if out.data_ptr() == images.data_ptr():  # never hand back (or clip in place) the input
        out = out.clone()
    out = _store(out, spec.storage if quantize else None)
    return out if out.dtype == images.dtype else out.to(images.dtype)


def _store(frames: torch.Tensor, storage: str | None) -> torch.Tensor:
    """Clip to [0, 1] and, as the original stored its frames, put them on the uint8 grid.

    In place (the frames are a new tensor). ``truncate``: ``np.uint8(255 x)`` with a 1e-3
    tolerance so that k / 255 stays k after float32 arithmetic in another order than the
    original's (``corruptions._ops.truncate_uint8``); ``truncate-exact``: a plain
    truncation, where the frames went through the original's float operations;
    ``round``: half up (``corruptions._ops.quantize``);
    None: clip only.
    """
    if storage is None:
        return frames.clamp_(0, 1)
    offset = {"truncate": 1e-3, "truncate-exact": 0.0, "round": 0.5}[storage]
    return frames.mul_(255).add_(offset).floor_().clamp_(0, 255).div_(255)
