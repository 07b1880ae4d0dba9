"""Noise: gaussian_noise, shot_noise, impulse_noise (benchmark) and speckle_noise (extra)."""

from __future__ import annotations

import functools
import math

import torch

from corruptions._registry import Corruption, Level, presets, register
from corruptions._rng import ImageRandom, draw_in_chunks, per_image_map

GAUSSIAN_NOISE = (0.08, 0.12, 0.18, 0.26, 0.38)
SHOT_NOISE = (60, 25, 12, 5, 3)
IMPULSE_NOISE = (0.03, 0.06, 0.09, 0.17, 0.27)
SPECKLE_NOISE = (0.15, 0.2, 0.35, 0.45, 0.6)
# CIFAR-10/100-C (make_cifar_c.py, 32 px) and Tiny-ImageNet-C (make_tinyimagenet_c.py, 64 px)
GAUSSIAN_NOISE_CIFAR, GAUSSIAN_NOISE_TINY = (0.04, 0.06, 0.08, 0.09, 0.10), (0.04, 0.08, 0.12, 0.15, 0.18)
SHOT_NOISE_CIFAR, SHOT_NOISE_TINY = (500, 250, 100, 75, 50), (250, 100, 50, 30, 15)
IMPULSE_NOISE_CIFAR, IMPULSE_NOISE_TINY = (0.01, 0.02, 0.03, 0.05, 0.07), (0.01, 0.02, 0.05, 0.08, 0.14)
SPECKLE_NOISE_CIFAR, SPECKLE_NOISE_TINY = (0.06, 0.1, 0.12, 0.16, 0.2), (0.15, 0.2, 0.25, 0.3, 0.35)


def _normal(rng: ImageRandom, images: torch.Tensor, level: Level) -> dict:
    return {"noise": rng.normal(*images.shape[1:])}


def _gaussian_noise(x: torch.Tensor, level: Level, params: dict) -> torch.Tensor:
    return torch.add(x, params["noise"].to(x.dtype), alpha=level.c)


def _speckle_noise(x: torch.Tensor, level: Level, params: dict) -> torch.Tensor:
    return torch.addcmul(x, x, params["noise"].to(x.dtype), value=level.c)


# --------------------------------------------------------------------------------------
# shot_noise: Poisson counts by inversion of tabulated CDFs


_GUIDE = 512
_TABLES: dict = {}


def poisson_tables(c: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """CDF and guide tables of Poisson(c * k / 255) for the 256 uint8 levels k.

    Returns:
        cdf: (256, J + 1) float32, ``cdf[k, j] = P(X <= j)``, the last column set to 1
            (J is beyond c + 12 sqrt(c) + 20: the tail cut is below 1e-16).
        guide: (256, 513) int64, ``guide[k, m]`` = the first j with ``cdf[k, j] > m / 512``
            for m < 512, and J for m = 512 (the cutpoint method: a u in [m / 512, (m + 1) / 512)
            inverts to a j in [guide[k, m], guide[k, m + 1]]).
        rounds: the bisection rounds that settle every such range (its largest span, in bits).
    """
    key = (float(c), str(device))
    tables = _TABLES.get(key)
    if tables is None:
        top = int(math.ceil(c + 12 * math.sqrt(c) + 20))
        rate = torch.arange(256, dtype=torch.float64).view(-1, 1) * (c / 255)
        j = torch.arange(top + 1, dtype=torch.float64).view(1, -1)
        log_pmf = j * torch.log(rate.clamp_min(1e-300)) - rate - torch.lgamma(j + 1)
        pmf = torch.where(rate > 0, torch.exp(log_pmf), (j == 0).to(torch.float64))
        cdf = pmf.cumsum(1).clamp_(max=1.0)
        cdf[:, -1] = 1.0
        cdf = cdf.to(torch.float32)
        levels = torch.arange(_GUIDE, dtype=torch.float32).view(1, -1).expand(256, -1) / _GUIDE
        guide = torch.searchsorted(cdf, levels.contiguous(), right=True)
        guide = torch.cat([guide, torch.full((256, 1), top, dtype=torch.int64)], 1)
        rounds = int((guide[:, 1:] - guide[:, :-1]).max()).bit_length()
        tables = (cdf.to(device), guide.to(device), rounds)
        _TABLES[key] = tables
    return tables


def poisson_from_uniform(uniform: torch.Tensor, x: torch.Tensor, c: float) -> torch.Tensor:
    """Poisson(x * c) counts by inversion of uniforms in [0, 1): exact in law.

    ``X = min{j : u < F(j)}`` with F the CDF of Poisson(c * k / 255) for the uint8 level
    k = floor(255 x) (tabulated, :func:`poisson_tables`). When x is off the uint8 grid,
    the remainder rate d = c (x - k / 255) adds an independent Poisson(d) count drawn by
    inversion of the position of u inside its CDF step (uniform, and independent of the
    first count).

    The guide's j is the answer for most values. The host waits for the device once per
    batch, to learn how many values it leaves short (F(j) <= u) and how many lie off the
    grid; those are gathered and take a fixed number of rounds: bisection of their guide
    range, and the remainder count's sequential search.

    Args:
        uniform: uniforms, float32, shape of x.
        x: intensities in [0, 1].
        c: the rate at intensity 1.

    Returns:
        float32 counts, shape of x.
    """
    cdf, guide, rounds = poisson_tables(c, x.device)
    columns = cdf.shape[1]
    flat_cdf, flat_guide = cdf.view(-1), guide.view(-1)
    # flat, in (B, C, H, W) order whatever the layouts of x and uniform (reshape, not view)
    scaled = x.float().clamp(0, 1).mul_(255).reshape(-1)
    level = torch.floor(scaled + 1e-3).clamp_(0, 255)
    remainder = (scaled - level).clamp_(min=0)
    u = uniform.float().reshape(-1)
    slot = torch.floor(u * _GUIDE).clamp_(max=_GUIDE - 1).add_(level, alpha=_GUIDE + 1).to(torch.int64)
    counts = flat_guide.index_select(0, slot)
    base = level.mul_(columns).to(torch.int64)
    short = flat_cdf.index_select(0, base + counts) <= u
    off_grid = remainder > 1e-4  # float error of k / 255 * 255: 3e-5
    # both sizes in one read (the batch's one host sync): fewer than 2**32 values each
    n_short, n_off = divmod(int(short.sum() * 2**32 + off_grid.sum()), 2**32)
    if n_short:
        # X lies in (guide[k, m], guide[k, m + 1]] for a short u in slot m: bisect it
        rest = _indices(short, n_short)
        at, target = base[rest], u[rest]
        low, high = counts[rest] + 1, flat_guide.index_select(0, slot[rest] + 1)
        for _ in range(rounds):  # a settled range stays put
            middle = (low + high) // 2
            above = flat_cdf.index_select(0, at + middle) > target
            high = torch.where(above, middle, high)
            low = torch.where(above, low, middle + 1)
        counts[rest] = low
    out = counts.to(torch.float32)
    if n_off:
        # given X = j, u is uniform on [F(j - 1), F(j)): rescaled, a fresh uniform
        rest = _indices(off_grid, n_off)
        index = base[rest] + counts[rest]
        upper = flat_cdf.index_select(0, index)
        lower = flat_cdf.index_select(0, (index - 1).clamp_(min=0))
        lower = torch.where(counts[rest] > 0, lower, 0.0)
        v = ((u[rest] - lower) / (upper - lower).clamp_min(1e-30)).clamp_(0, 1 - 2**-24)
        out[rest] += _small_poisson(v, c / 255 * remainder[rest], _small_poisson_steps(c / 255))
    return out.view(x.shape)


def _indices(mask: torch.Tensor, count: int) -> torch.Tensor:
    """The flat indices of the ``count`` True values of ``mask``, without a second wait for
    the device where it has ``nonzero_static`` (not MPS)."""
    try:
        return torch.nonzero_static(mask, size=count).flatten()
    except (NotImplementedError, RuntimeError):
        return mask.nonzero().flatten()


@functools.lru_cache(maxsize=64)
def _small_poisson_steps(rate: float) -> int:
    """Steps of :func:`_small_poisson` that settle every v <= 1 - 2**-24 at rates up to
    ``rate`` (the CDF at a step falls as the rate grows), with two to spare for rounding."""
    prob = cdf = math.exp(-rate)
    j = 0
    while cdf <= 1 - 2**-24:
        j += 1
        prob *= rate / j
        cdf += prob
    return j + 2


def _small_poisson(v: torch.Tensor, rate: torch.Tensor, steps: int) -> torch.Tensor:
    """Poisson(rate) for small rates (1-D), by sequential-search inversion of v, ``steps``
    steps for every value (a settled value stays)."""
    rate, v = rate.double(), v.double()
    prob = torch.exp(-rate)
    cdf = prob.clone()
    out = torch.zeros_like(rate)
    for j in range(1, steps + 1):
        short = v >= cdf
        prob = torch.where(short, prob * (rate / j), prob)
        cdf = torch.where(short, cdf + prob, cdf)
        out = torch.where(short, float(j), out)
    return out.to(torch.float32)


def _shot_sample(rng: ImageRandom, images: torch.Tensor, level: Level) -> dict:
    return {"uniform": rng.uniform(*images.shape[1:])}


def _shot_noise(x: torch.Tensor, level: Level, params: dict) -> torch.Tensor:
    c = level.c
    counts = poisson_from_uniform(params["uniform"], x, c)
    return counts.to(x.dtype).div_(c)


def _impulse_draws(generator, count: int, amount: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Random draws of one image (sequential generator ops only: safe on a worker thread).

    Geometric gaps (about ``amount * count`` of them, plus a margin) and random words
    for one bit per replaced value.
    """
    expected = amount * count
    size = int(expected + 6 * math.sqrt(expected) + 16)
    gaps = draw_in_chunks(torch.empty(size, dtype=torch.int64, device=device), generator,
                          lambda view, gen: view.geometric_(amount, generator=gen))
    # a gap is >= 1; CUDA's geometric_ gives 0 when its uniform draw is exactly 1 (~3e-8 a draw),
    # which would place a value at position -1 or twice (the CPU's never does: unchanged there)
    gaps.clamp_(min=1)
    words = torch.empty(size // 63 + 1, dtype=torch.int64, device=device)
    return gaps, draw_in_chunks(words, generator, lambda view, gen: view.random_(0, 2**63 - 1, generator=gen))


def impulse_mask(
    generator: torch.Generator | None, count: int, amount: float, device: torch.device,
    draws: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """One image's salt-and-pepper draw: uint8 (count,), 0 keep, 1 pepper, 2 salt.

    Each value is replaced with probability ``amount`` (half salt, half pepper),
    independently, as scikit-image's ``random_noise(mode='s&p')``; drawn here as
    geometric gaps between replaced values (the same law) and one random bit per
    replaced value, so only about ``2 * amount * count`` random numbers are needed.
    """
    gaps, words = draws if draws is not None else _impulse_draws(generator, count, amount, device)
    positions = gaps.cumsum(0) - 1
    while int(positions[-1]) < count - 1:  # rare: more gaps than the margin
        more, _ = _impulse_draws(generator, count, amount, device)
        positions = torch.cat([positions, more.cumsum(0) + positions[-1]])
    positions = positions[positions < count]
    while words.numel() * 63 < positions.numel():
        words = torch.cat([words, _impulse_draws(generator, count, amount, device)[1]])
    bits = (words.view(-1, 1) >> torch.arange(63, device=device)) & 1
    mask = torch.zeros(count, dtype=torch.uint8, device=device)
    mask[positions] = (1 + bits.flatten()[: positions.numel()]).to(torch.uint8)
    return mask


def impulse_masks(
    generators: list[torch.Generator | None], count: int, amount: float, device: torch.device,
    draws: list[tuple[torch.Tensor, torch.Tensor]],
) -> torch.Tensor:
    """:func:`impulse_mask` of every image at once: (B, count) uint8, equal row by row.

    The rows' gaps are summed and scattered together; the host waits for the device once
    per batch, to learn whether a row ran out of gaps (beyond the 6-sigma margin: about
    1e-9 per image). Such a row is drawn again by :func:`impulse_mask`, which draws more.
    """
    gaps = torch.stack([g for g, _ in draws])
    words = torch.stack([w for _, w in draws])
    positions = gaps.cumsum(1) - 1  # increasing: the gaps are >= 1
    bits = ((words.unsqueeze(-1) >> torch.arange(63, device=device)) & 1).flatten(1)
    # the positions past the image land in a spare last column, then cut off
    masks = torch.zeros(len(draws), count + 1, dtype=torch.uint8, device=device)
    masks.scatter_(1, positions.clamp_(max=count), (1 + bits[:, : positions.shape[1]]).to(torch.uint8))
    masks = masks[:, :count]
    short = positions[:, -1] < count - 1
    if device.type != "meta" and bool(short.any()):  # the batch's one host sync ("meta": shapes only)
        for row in short.nonzero().flatten().tolist():
            masks[row] = impulse_mask(generators[row], count, amount, device, draws[row])
    return masks


def _impulse_sample(rng: ImageRandom, images: torch.Tensor, level: Level) -> dict:
    amount = level.c
    shape = images.shape[1:]
    count = shape.numel()
    device = images.device
    if rng.batch == 0:
        return {"impulse": torch.zeros(0, *shape, dtype=torch.uint8, device=device)}
    generators = rng.generators or [rng.generator] * rng.batch
    if rng.generators is not None:
        draws = per_image_map(device, lambda gen: _impulse_draws(gen, count, amount, device), generators)
    else:
        draws = [_impulse_draws(gen, count, amount, device) for gen in generators]
    return {"impulse": impulse_masks(generators, count, amount, device, draws).view(-1, *shape)}


def _impulse_noise(x: torch.Tensor, level: Level, params: dict) -> torch.Tensor:
    mask = params["impulse"]
    return torch.where(mask == 0, x, (mask == 2).to(x.dtype))


register(Corruption(
    "gaussian_noise", "noise", presets(GAUSSIAN_NOISE, GAUSSIAN_NOISE_CIFAR, GAUSSIAN_NOISE_TINY),
    _gaussian_noise, _normal,
    doc="x + N(0, sigma^2) per pixel and channel.",
))
register(Corruption(
    "shot_noise", "noise", presets(SHOT_NOISE, SHOT_NOISE_CIFAR, SHOT_NOISE_TINY), _shot_noise, _shot_sample,
    doc="Poisson(x * lambda) / lambda (inversion of uniforms with tabulated CDFs).",
    host_read="how many values the Poisson guide leaves short",
))
register(Corruption(
    "impulse_noise", "noise", presets(IMPULSE_NOISE, IMPULSE_NOISE_CIFAR, IMPULSE_NOISE_TINY),
    _impulse_noise, _impulse_sample,
    doc="salt and pepper on a fraction `amount` of the values (per channel), half each.",
))
register(Corruption(
    "speckle_noise", "noise", presets(SPECKLE_NOISE, SPECKLE_NOISE_CIFAR, SPECKLE_NOISE_TINY),
    _speckle_noise, _normal,
    doc="x + x * N(0, c^2).",
))
