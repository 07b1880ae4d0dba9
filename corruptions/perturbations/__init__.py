"""The 14 ImageNet-P perturbation sequences in PyTorch: batched, seeded, on any device.

A sequence is a short video made from one image: 31 frames (41 for translate)
in which a perturbation changes gradually (a rotation from -15 to +15 degrees,
a brightness ramp ...) or, for the noise perturbations, 30 fresh noise draws
after the clean frame 0. The formulas are those of the original generator
(hendrycks/robustness, ``ImageNet-P/create_p/make_imagenet_p.py``);
``corruptions/PERTURBATIONS.md`` lists every place where this port differs and
by how much.

The perturbations are entries of the registry the corruptions use
(:data:`corruptions._registry.PERTURBATIONS`), registered by the family modules
``noise_sequences``, ``blur_sequences``, ``weather_sequences`` and
``geometric_sequences``; each splits its random draws (``sample``, from an
:class:`~corruptions._rng.ImageRandom`: :func:`draw_parameters`) from the deterministic
computation of the frames (``apply``).

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

import numbers
from collections.abc import Iterable, Sequence

import torch

from corruptions._ops import new_output, work_images
from corruptions._registry import (
    DIFFICULTIES,
    NOISE_PERTURBATIONS,
    PERTURBATION_SUBSETS,
    Perturbation,
    check_difficulty,
    check_images,
    check_perturbation,
    get_perturbation,
    list_perturbations,
)
from corruptions._rng import ImageRandom, image_seeds, normalize_seeds
from corruptions.perturbations import (  # noqa: F401  (register the perturbations)
    blur_sequences,
    geometric_sequences,
    noise_sequences,
    weather_sequences,
)
from corruptions.perturbations._sequence import Job

__all__ = [
    "DIFFICULTIES",
    "NOISE_PERTURBATIONS",
    "PERTURBATION_SUBSETS",
    "Perturbation",
    "check_perturbation",
    "draw_parameters",
    "frame_count",
    "get_perturbation",
    "list_perturbations",
    "perturbation_sequence",
]


def frame_count(name: str) -> int:
    """Number of frames of a sequence: 41 for translate, 31 for the others.

    Raises:
        ValueError: unknown name (the closest name is suggested).

    Example:
        >>> frame_count("rotate"), frame_count("translate")
        (31, 41)
    """
    return get_perturbation(name).frames


def draw_parameters(spec: Perturbation, job: Job) -> dict:
    """The random parameters of a call: ``spec.sample``'s draws for ``job`` ({} if none).

    Per-video perturbations (snow, spatter) draw once per image, from ``job.seeds[i]``
    (or the batch generator). The noise perturbations draw one block per (image,
    requested noisy frame): with per-image seeds, frame j of image i draws from its own
    generator seeded with ``image_seeds(seeds[i], [j])``, so any subset of frames gets
    the numbers of the full sequence; with a batch generator (or torch's default one)
    the blocks of all noisy frames 1..T-1 are drawn at once (image by image), then the
    requested ones kept. Either way each value has shape (B, F', ...), F' the number of
    requested frames >= 1 in request order (nothing is drawn when there are none).
    """
    if spec.sample is None:
        return {}
    device = job.x.device
    if not spec.noise:
        rng = ImageRandom(job.batch, device, seeds=job.seeds, generator=job.generator)
        return spec.sample(rng, job.clean, job.difficulty)
    wanted = [j for j in job.frames if j >= 1]
    if not wanted:
        return {}
    if job.seeds is not None:
        unique = sorted(set(wanted))
        seeds = [int(s) for seed in job.seeds for s in image_seeds(seed, unique).tolist()]
        rng = ImageRandom(len(seeds), device, seeds=seeds)
        position = {j: k for k, j in enumerate(unique)}
        per_image, keep = len(unique), [position[j] for j in wanted]
    else:
        per_image = spec.frames - 1
        rng = ImageRandom(job.batch * per_image, device, generator=job.generator)
        keep = [j - 1 for j in wanted]
    params = spec.sample(rng, job.clean, job.difficulty)
    return {key: value.reshape(job.batch, per_image, *value.shape[1:])[:, keep]
            for key, value in params.items()}


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
            float64), on any device, in any memory layout (the result is that of the
            same images stored contiguously), S >= 32: each image resized so that its
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
        New contiguous (B, T', 3, c, c) tensor, same dtype and device, values in [0, 1], with
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
    difficulty = check_difficulty(difficulty)
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
    spec = get_perturbation(name)
    crop = _check_crop(crop_size, height)
    wanted = _check_frames(frames, name, spec.frames)
    seeds = normalize_seeds(seed, batch, images.device) if spec.random else None
    shape = (batch, len(wanted), 3, crop, crop)
    if batch == 0 or not wanted:
        return images.new_zeros(shape)
    job = Job(
        x=work_images(images), crop=crop, top=int(round((height - crop) / 2.0)),
        frames=wanted, difficulty=difficulty, seeds=seeds,
        generator=generator if spec.random else None, quantize=quantize,
    )
    out = new_output(spec.apply(job, draw_parameters(spec, job)), images)
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
