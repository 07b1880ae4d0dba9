"""The noise perturbations: frame 0 clean, frames 1..30 fresh noise (gaussian_noise,
shot_noise, speckle_noise).

Their samplers draw one noise block per random source, and
:func:`corruptions.perturbations.draw_parameters` gives every (image, noisy frame) its own
source (or draws all 30 frames' blocks from the batch generator), so a chunk of frames
gets the numbers of the whole sequence.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from corruptions._ops import grid_doubles, thread_map
from corruptions._registry import Perturbation, presets, register_perturbation
from corruptions._rng import ImageRandom, draw_slices
from corruptions.perturbations._sequence import Job, finish

__all__ = ["GAUSSIAN_NOISE", "GAUSSIAN_NOISE_CIFAR", "GAUSSIAN_NOISE_TINY", "NOISE_LEVELS", "SHOT_NOISE",
           "SHOT_NOISE_CIFAR", "SHOT_NOISE_TINY", "SPECKLE_NOISE", "SPECKLE_NOISE_CIFAR",
           "SPECKLE_NOISE_TINY", "poisson_draws"]

# the originals' constants, for difficulty 1, 2, 3 (the released <name>, <name>_2, <name>_3):
# make_imagenet_p.py, make_cifar_p.py (CIFAR-10-P), make_tinyimagenet_p.py (Tiny-ImageNet-P)
GAUSSIAN_NOISE = (0.03, 0.05, 0.08)  # sigma
GAUSSIAN_NOISE_CIFAR, GAUSSIAN_NOISE_TINY = (0.02, 0.04, 0.06), (0.025, 0.05, 0.075)
SHOT_NOISE = (300, 120, 60)  # lambda: Poisson(x lambda) / lambda
SHOT_NOISE_CIFAR, SHOT_NOISE_TINY = (700, 400, 200), (500, 250, 125)
SPECKLE_NOISE = (0.05, 0.10, 0.15)  # sigma of x + x N
SPECKLE_NOISE_CIFAR, SPECKLE_NOISE_TINY = (0.05, 0.07, 0.10), (0.05, 0.10, 0.15)
#: name -> preset -> the levels of difficulty 1, 2, 3
NOISE_LEVELS: dict[str, dict[str, tuple]] = {
    "gaussian_noise": presets(GAUSSIAN_NOISE, GAUSSIAN_NOISE_CIFAR, GAUSSIAN_NOISE_TINY),
    "shot_noise": presets(SHOT_NOISE, SHOT_NOISE_CIFAR, SHOT_NOISE_TINY),
    "speckle_noise": presets(SPECKLE_NOISE, SPECKLE_NOISE_CIFAR, SPECKLE_NOISE_TINY),
}


def _level(name: str, preset: str, difficulty: int) -> float:
    return NOISE_LEVELS[name][preset][difficulty - 1]


def _noise_frames(job: Job, noisy: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                  params: dict) -> torch.Tensor:
    """Frame 0 the clean crop, frames >= 1 ``noisy(clean, params["noise"][:, n])`` (then
    :func:`~corruptions.perturbations._sequence.finish`), one frame at a time (float64
    temporaries stay small); n counts the requested frames >= 1 in order."""
    clean = job.clean
    out = clean.new_empty((job.batch, len(job.frames), *clean.shape[1:]))
    noisy_at = [k for k, j in enumerate(job.frames) if j >= 1]
    for k, j in enumerate(job.frames):
        if j == 0:
            out[:, k] = clean
    if noisy_at:
        blocks = params["noise"]
        for n, k in enumerate(noisy_at):
            out[:, k] = finish(noisy(clean, blocks[:, n]), job)
    return out


# --------------------------------------------------------------------------------------
# gaussian_noise


def _normal_sample(rng: ImageRandom, images: torch.Tensor, difficulty: int, *,
                   preset: str = "imagenet") -> dict:
    """A standard normal (3, c, c) block per source (the level is applied by ``apply``)."""
    del difficulty, preset
    c = images.shape[-1]
    return {"noise": rng.normal(3, c, c)}


def _gaussian_noise(job: Job, params: dict) -> torch.Tensor:
    # torch float32 in the original: clamp(x + sigma * randn, 0, 1).mul(255).byte()
    sigma = _level("gaussian_noise", job.preset, job.difficulty)
    return _noise_frames(job, lambda x, n: n.to(x.dtype).mul(sigma).add_(x), params)


# --------------------------------------------------------------------------------------
# shot_noise


def poisson_draws(rng: ImageRandom, rates: torch.Tensor) -> torch.Tensor:
    """Poisson counts, one draw of a row of ``rates`` per random source.

    Args:
        rng: the random sources (per-source generators, or one for the whole block),
            grouped by row of ``rates``: with n = ``rng.batch // len(rates)``, sources
            ``k n .. k n + n - 1`` draw ``rates[k]``.
        rates: (N, ...) float rates, on the sources' device.

    Returns:
        (rng.batch, ...) float32 counts (``torch.poisson``: exact in law; on the CPU
        the sources run on a small thread pool, each from its own generator).
    """
    n = rng.batch // rates.shape[0]
    shape = rates.shape[1:]
    rates = rates.float()
    out = torch.empty((rng.batch, *shape), dtype=torch.float32, device=rates.device)

    def draw(target: torch.Tensor, source: torch.Tensor, generator) -> None:
        target, source = target.view(-1), source.reshape(-1)
        for piece in draw_slices(source.numel(), source.device):  # the whole, but on CUDA
            target[piece] = torch.poisson(source[piece], generator=generator)

    if rng.generators is None:
        draw(out, rates.unsqueeze(1).expand(-1, n, *shape), rng.generator)
        return out

    def one(k: int) -> None:
        draw(out[k], rates[k // n], rng.generators[k])

    if rates.device.type == "cpu" and rng.batch > 1:
        thread_map(one, list(range(rng.batch)))
    else:
        for k in range(rng.batch):
            one(k)
    return out


def _shot_noise_sample(rng: ImageRandom, images: torch.Tensor, difficulty: int, *,
                       preset: str = "imagenet") -> dict:
    """Poisson(x L) counts per source, x the clean crop of the source's image."""
    lam = _level("shot_noise", preset, difficulty)
    return {"noise": poisson_draws(rng, images.clamp(0, 1) * lam)}


def _shot_noise(job: Job, params: dict) -> torch.Tensor:
    # float64 in the original: np.uint8(255 * np.clip(poisson(x * L) / L, 0, 1))
    lam = _level("shot_noise", job.preset, job.difficulty)
    return _noise_frames(job, lambda x, counts: counts.to(job.exact) / lam, params)


# --------------------------------------------------------------------------------------
# speckle_noise


def _speckle_noise(job: Job, params: dict) -> torch.Tensor:
    # float64 in the original: np.uint8(255 * np.clip(x + x * normal(scale=s), 0, 1))
    sigma = _level("speckle_noise", job.preset, job.difficulty)

    def noisy(x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        exact = grid_doubles(x)
        return exact + exact * (n.to(job.exact) * sigma)

    return _noise_frames(job, noisy, params)


register_perturbation(Perturbation(
    "gaussian_noise", 31, _gaussian_noise, _normal_sample, storage="truncate-exact",
    doc="frame 0 clean; frames 1..30 x + sigma N, sigma .03 / .05 / .08 (difficulty 1 / 2 / 3; "
        "CIFAR-10-P .02 / .04 / .06, Tiny-ImageNet-P .025 / .05 / .075)",
))
register_perturbation(Perturbation(
    "shot_noise", 31, _shot_noise, _shot_noise_sample, storage="truncate-exact",
    doc="frame 0 clean; frames 1..30 Poisson(x L) / L, L = 300 / 120 / 60 (CIFAR-10-P 700 / 400 / "
        "200, Tiny-ImageNet-P 500 / 250 / 125)",
))
register_perturbation(Perturbation(
    "speckle_noise", 31, _speckle_noise, _normal_sample, storage="truncate-exact",
    doc="frame 0 clean; frames 1..30 x + x sigma N, sigma .05 / .10 / .15 (CIFAR-10-P .05 / .07 / "
        ".10, Tiny-ImageNet-P as ImageNet-P)",
))
