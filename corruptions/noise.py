"""Noise: gaussian_noise, shot_noise, impulse_noise (benchmark) and speckle_noise (extra)."""

from __future__ import annotations

import math

import torch

from corruptions._registry import Corruption, Level, presets, register
from corruptions._rng import ImageRandom

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


def poisson_tables(c: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """CDF and guide tables of Poisson(c * k / 255) for the 256 uint8 levels k.

    Returns:
        cdf: (256, J + 1) float32, ``cdf[k, j] = P(X <= j)``, the last column set to 1
            (J is beyond c + 12 sqrt(c) + 20: the tail cut is below 1e-16).
        guide: (256, 512) int64, ``guide[k, m]`` = the first j with ``cdf[k, j] > m / 512``
            (the cutpoint method: inversion starts there and steps up a few times).
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
        tables = (cdf.to(device), guide.to(device))
        _TABLES[key] = tables
    return tables


def poisson_from_uniform(uniform: torch.Tensor, x: torch.Tensor, c: float) -> torch.Tensor:
    """Poisson(x * c) counts by inversion of uniforms in [0, 1): exact in law.

    ``X = min{j : u < F(j)}`` with F the CDF of Poisson(c * k / 255) for the uint8 level
    k = floor(255 x) (tabulated, :func:`poisson_tables`). When x is off the uint8 grid,
    the remainder rate d = c (x - k / 255) adds an independent Poisson(d) count drawn by
    inversion of the position of u inside its CDF step (uniform, and independent of the
    first count).

    Args:
        uniform: uniforms, float32, shape of x.
        x: intensities in [0, 1].
        c: the rate at intensity 1.

    Returns:
        float32 counts, shape of x.
    """
    cdf, guide = poisson_tables(c, x.device)
    columns = cdf.shape[1]
    flat_cdf, flat_guide = cdf.view(-1), guide.view(-1)
    # flat, in (B, C, H, W) order whatever the layouts of x and uniform (reshape, not view)
    scaled = x.float().clamp(0, 1).mul_(255).reshape(-1)
    level = torch.floor(scaled + 1e-3).clamp_(0, 255)
    remainder = (scaled - level).clamp_(min=0)
    u = uniform.float().reshape(-1)
    slot = torch.floor(u * _GUIDE).clamp_(max=_GUIDE - 1)
    counts = flat_guide.index_select(0, slot.add_(level, alpha=_GUIDE).to(torch.int64))
    base = level.mul_(columns).to(torch.int64)
    # step up while F(X) <= u: a few steps at most with 512 cut points
    active = (flat_cdf.index_select(0, base + counts) <= u).nonzero().flatten()
    while active.numel():
        counts[active] += 1
        here = flat_cdf.index_select(0, base[active] + counts[active])
        active = active[here <= u[active]]
    out = counts.to(torch.float32)
    off_grid = (remainder > 1e-4).nonzero().flatten()  # float error of k / 255 * 255: 3e-5
    if off_grid.numel():
        # given X = j, u is uniform on [F(j - 1), F(j)): rescaled, a fresh uniform
        index = base[off_grid] + counts[off_grid]
        upper = flat_cdf.index_select(0, index)
        lower = flat_cdf.index_select(0, (index - 1).clamp_(min=0))
        lower = torch.where(counts[off_grid] > 0, lower, 0.0)
        v = ((u[off_grid] - lower) / (upper - lower).clamp_min(1e-30)).clamp_(0, 1 - 2**-24)
        out[off_grid] += _small_poisson(v, c / 255 * remainder[off_grid])
    return out.view(x.shape)


def _small_poisson(v: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
    """Poisson(rate) for small rates (1-D), by sequential-search inversion of v."""
    rate, v = rate.double(), v.double()
    prob = torch.exp(-rate)
    cdf = prob.clone()
    out = torch.zeros_like(rate)
    active = (v >= cdf).nonzero().flatten()
    j = 0
    while active.numel():
        j += 1
        prob[active] *= rate[active] / j
        cdf[active] += prob[active]
        out[active] = j
        active = active[v[active] >= cdf[active]]
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
    gaps = torch.empty(size, dtype=torch.int64, device=device).geometric_(amount, generator=generator)
    words = torch.empty(size // 63 + 1, dtype=torch.int64, device=device)
    return gaps, words.random_(0, 2**63 - 1, generator=generator)


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


def _impulse_sample(rng: ImageRandom, images: torch.Tensor, level: Level) -> dict:
    amount = level.c
    shape = images.shape[1:]
    count = shape.numel()
    device = images.device
    if rng.generators is None:
        masks = [impulse_mask(rng.generator, count, amount, device) for _ in range(rng.batch)]
    else:
        if device.type == "cpu" and rng.batch > 1:
            from corruptions._ops import thread_map

            draws = thread_map(lambda gen: _impulse_draws(gen, count, amount, device),
                               rng.generators)
        else:
            draws = [_impulse_draws(gen, count, amount, device) for gen in rng.generators]
        masks = [impulse_mask(gen, count, amount, device, d) for gen, d in zip(rng.generators, draws)]
    if not masks:
        return {"impulse": torch.zeros(0, *shape, dtype=torch.uint8, device=device)}
    return {"impulse": torch.stack(masks).view(-1, *shape)}


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
