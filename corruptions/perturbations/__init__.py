"""The 14 ImageNet-P perturbation sequences in PyTorch: batched, seeded, on any device.

A sequence is a short video made from one image: 31 frames (41 for translate)
in which a perturbation changes gradually (a rotation from -15 to +15 degrees,
a brightness ramp ...) or, for the noise perturbations, 30 fresh noise draws
after the clean frame 0. The formulas are those of the original generator
(hendrycks/robustness, ``ImageNet-P/create_p/make_imagenet_p.py``);
``corruptions/PERTURBATIONS.md`` lists every place where this port differs and
by how much.

The original transformed the whole resized image (e.g. 384 x 256) for its geometric
perturbations (translate, rotate, tilt, scale, shear), then cropped 224 px. Square inputs
stand for that image; to reproduce the original on non-square photographs, pass W x W
windows centred on the resized images (zero outside them) with their ``sizes``
(:func:`window_size` says how large W must be; the ImageNet-P suite makes such windows).

Presets: ``preset="cifar"`` and ``preset="tinyimagenet"`` give CIFAR-10-P's and
Tiny-ImageNet-P's sequences (the originals' ``make_cifar_p.py`` and
``make_tinyimagenet_p.py``: other noise levels, blur and snow parameters, ranges, and frame
counts: 21 for CIFAR-10-P's motion_blur, 16 and 31 for their translate, :func:`frame_count`).
Their images are used as they are, 32 / 64 px: the frames are the whole image, and the
geometric perturbations transform it whole.

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
    >>> frame_count("translate"), frame_count("translate", preset="cifar")
    (41, 16)
    >>> perturbation_sequence(torch.rand(2, 3, 32, 32), "motion_blur", preset="cifar").shape
    torch.Size([2, 21, 3, 32, 32])
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Iterable, Sequence

import torch

from corruptions._ops import host_to_device, new_output, true_div_, without_autocast, work_images
from corruptions._registry import (
    DIFFICULTIES,
    NOISE_PERTURBATIONS,
    PERTURBATION_SUBSETS,
    PRESETS,
    Perturbation,
    check_difficulty,
    check_images,
    check_perturbation,
    check_preset,
    check_range,
    get_perturbation,
    list_perturbations,
    refuse_meta,
)
from corruptions._rng import ImageRandom, check_randomness, image_seeds, normalize_seeds
from corruptions.perturbations import (  # noqa: F401  (register the perturbations)
    blur_sequences,
    geometric_sequences,
    noise_sequences,
    weather_sequences,
)
from corruptions.perturbations._sequence import Job, window_origin
from corruptions.perturbations.geometric_sequences import GEOMETRIC_PERTURBATIONS, Box

__all__ = [
    "DIFFICULTIES",
    "GEOMETRIC_PERTURBATIONS",
    "NOISE_PERTURBATIONS",
    "PERTURBATION_SUBSETS",
    "PRESETS",
    "Perturbation",
    "check_perturbation",
    "draw_parameters",
    "frame_count",
    "get_perturbation",
    "list_perturbations",
    "perturbation_sequence",
    "read_box",
    "window_size",
]

#: name -> (crop, height, width) -> the pixels its frames read (the others read the crop only)
_READS = {**geometric_sequences.READS, **blur_sequences.READS}
#: name -> preset -> frame count where a preset's differs from the registered (ImageNet-P) one
_FRAMES = {**geometric_sequences.FRAMES_BY_PRESET, **blur_sequences.FRAMES}


def frame_count(name: str, *, preset: str = "imagenet") -> int:
    """Number of frames of a sequence: ImageNet-P 41 for translate, 31 for the others;
    CIFAR-10-P 16 for translate, 21 for motion_blur, 31 for the others; Tiny-ImageNet-P 31.

    Raises:
        ValueError: unknown name (the closest name is suggested) or preset.

    Example:
        >>> frame_count("rotate"), frame_count("translate"), frame_count("translate", preset="cifar")
        (31, 41, 16)
    """
    spec = get_perturbation(name)
    return _FRAMES.get(spec.name, {}).get(check_preset(preset), spec.frames)


@functools.lru_cache(maxsize=4096)
def read_box(name: str, crop: int, height: int, width: int) -> Box:
    """The pixels that the frames of ``name`` read from a height x width image to make its
    centre crop of side ``crop``: (first row, last row, first column, last column) relative to
    the crop's top-left pixel, over all frames (bilinear taps and a pixel of margin; the
    affine perturbations clamp them to the image, the others read 0 beyond it).

    Example:
        >>> read_box("brightness", 224, 256, 384)
        (0, 223, 0, 223)
        >>> read_box("translate", 224, 256, 384)
        (0, 223, -20, 243)
    """
    name = check_perturbation(name)
    reads = _READS.get(name)
    return (0, crop - 1, 0, crop - 1) if reads is None else reads(crop, height, width)


def window_size(crop_size: int, perturbations: str | Iterable[str] = "all") -> int:
    """The smallest window side W (W - ``crop_size`` a multiple of 4) from which
    ``perturbations`` (names, one name, or a subset: ``all``, ``test``, ``validation``) make their
    frames of whole images of any size (both sides >= ``crop_size``): pass such windows with
    ``sizes`` to :func:`perturbation_sequence`.

    The widest reach is scale's zoom out to 0.40: 564 px for 224 px frames.

    Example:
        >>> window_size(224), window_size(224, ["rotate", "tilt"])
        (564, 312)
    """
    if isinstance(crop_size, bool) or not isinstance(crop_size, numbers.Integral) or crop_size < 1:
        raise ValueError(f"`crop_size` should be a positive int. Got {crop_size!r}")
    if isinstance(perturbations, str):  # a subset, or one name ("rotate": a subset named it wrongly)
        names = list_perturbations(perturbations) if perturbations in PERTURBATION_SUBSETS else \
            [check_perturbation(perturbations)]
    else:
        names = list(perturbations)
    crop, margin = int(crop_size), 0
    for name in names:
        # the reach depends on the image's size through the parity of its excess over the
        # crop (the centre's half pixel) and, for tilt, its focal length sqrt(w^2 + h^2),
        # which only weakens the perspective as the image grows: the smallest sizes of each
        # parity are the widest (tests/test_perturbation_geometry.py checks larger ones)
        for extra_h in range(4):
            for extra_w in range(4):
                r0, r1, c0, c1 = read_box(name, crop, crop + extra_h, crop + extra_w)
                margin = max(margin, -r0, -c0, r1 - (crop - 1), c1 - (crop - 1))
    return crop + 2 * (margin + margin % 2)  # (W - crop) / 2 even: every image's crop at its centre


def draw_parameters(spec: Perturbation, job: Job) -> dict:
    """The random parameters of a call: ``spec.sample``'s draws for ``job`` ({} if none),
    called as ``spec.sample(rng, clean crops, difficulty, preset=job.preset)``.

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
        return spec.sample(rng, job.clean, job.difficulty, preset=job.preset)
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
        per_image = frame_count(spec.name, preset=job.preset) - 1
        rng = ImageRandom(job.batch * per_image, device, generator=job.generator)
        keep = [j - 1 for j in wanted]
    params = spec.sample(rng, job.clean, job.difficulty, preset=job.preset)
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


def _check_crop(crop_size, size: int, preset: str = "imagenet") -> int:
    if crop_size is None:  # ImageNet-P's 224 of 256; the small presets' whole image
        return round(size * 224 / 256) if preset == "imagenet" else size
    if isinstance(crop_size, bool) or not isinstance(crop_size, numbers.Integral):
        raise TypeError(f"`crop_size` should be an int. Got {type(crop_size).__name__}")
    if not 1 <= int(crop_size) <= size:
        raise ValueError(f"`crop_size` should be 1..{size} (the image side). Got {crop_size}")
    return int(crop_size)


def _check_sizes(sizes, batch: int) -> tuple[tuple[int, int], ...]:
    if isinstance(sizes, torch.Tensor):
        if sizes.dtype.is_floating_point or sizes.dtype == torch.bool or tuple(sizes.shape) != (batch, 2):
            raise TypeError(f"`sizes` should be a ({batch}, 2) integer tensor of (height, width). "
                            f"Got {sizes.dtype} with shape {tuple(sizes.shape)}")
        sizes = sizes.tolist()
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Iterable):
        raise TypeError(f"`sizes` should be one (height, width) per image. Got {type(sizes).__name__}")
    out = []
    for hw in sizes:
        if (isinstance(hw, (str, bytes)) or not isinstance(hw, Iterable) or len(hw := tuple(hw)) != 2
                or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in hw)):
            raise TypeError(f"`sizes` should hold (height, width) pairs of ints. Got {hw!r}")
        out.append((int(hw[0]), int(hw[1])))
    if len(out) != batch:
        raise ValueError(f"`sizes` should hold one (height, width) per image ({batch}). Got {len(out)}")
    return tuple(out)


def _check_window(name: str, crop: int, window: int, sizes: tuple[tuple[int, int], ...]) -> None:
    """Every pixel of each whole image that the frames read lies in its window."""
    if (window - crop) % 4:
        raise ValueError(f"`images` should be windows whose side minus the crop is a multiple of 4 "
                         f"(so that every image's centre crop is the window's): crop {crop}, "
                         f"window {window}; use window_size({crop}) = {window_size(crop)}")
    top = (window - crop) // 2  # the crop's place in the window, in every image
    for height, width in sorted(set(sizes)):
        if min(height, width) < crop:
            raise ValueError(f"`sizes` should be at least the crop ({crop}) on both sides. "
                             f"Got ({height}, {width})")
        r0, r1, c0, c1 = read_box(name, crop, height, width)
        for lo, hi, side in ((r0, r1, height), (c0, c1, width)):
            first = window_origin(side, crop)  # the crop's first pixel in the image
            lo, hi = max(lo, -first), min(hi, side - 1 - first)  # what the image has there
            if lo < -top or hi > window - 1 - top:
                raise ValueError(
                    f"`images` ({window} px windows) are too small for {name} on a {height} x "
                    f"{width} image: use windows of window_size({crop}, ['{name}']) = "
                    f"{window_size(crop, [name])} px")


def _zero_outside(x: torch.Tensor, sizes: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """A copy of the windows ``x`` with every pixel outside its whole image set to 0."""
    window = x.shape[-1]
    steps = torch.arange(window, device=x.device)
    origins = torch.tensor([[window_origin(h, window), window_origin(w, window)] for h, w in sizes])
    starts = host_to_device(origins, x.device).view(-1, 2, 1) + steps
    ends = host_to_device(torch.tensor(sizes), x.device).view(-1, 2, 1)
    inside = (starts >= 0) & (starts < ends)  # (B, 2, W): rows, columns
    return x * (inside[:, 0, None, :, None] & inside[:, 1, None, None, :])


@without_autocast
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
    sizes: Sequence[tuple[int, int]] | torch.Tensor | None = None,
    preset: str = "imagenet",
    check_values: bool = True,
) -> torch.Tensor:
    """The ImageNet-P (CIFAR-10-P, Tiny-ImageNet-P) sequences of a batch of images, as
    centre-cropped frames.

    Args:
        images: (B, 3, S, S) float tensor in [0, 1] (float16, bfloat16, float32,
            float64), on any device, in any memory layout (the result is that of the
            same images stored contiguously), S >= 32: each image resized so that its
            shorter side is S (256 for ImageNet) and centre-cropped to a square.
            zoom_blur and the geometric perturbations (translate, rotate, tilt,
            scale, shear) act on this square, the others on the crop. With ``sizes``:
            W x W windows of larger images instead (see ``sizes``). Computed in float32,
            float64 input too, as the original's float32 steps (its float64 steps are
            float64 here from the uint8 levels): a float64 image gives the frames of the
            same image in float32, as float64 (quantized: k / 255 in float64). Not modified.
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
            S = 256, 64 for S = 73; with ``sizes``, S is their shorter side, which must
            then be the same for all images; the small presets: S); the centre crop starts
            at ``round((S - c) / 2)``.
        frames: frame indices to compute (default all); the result equals
            ``perturbation_sequence(...)[:, frames]`` for the same seed, so long
            sequences can be computed in chunks.
        quantize: store every frame on the uint8 grid k / 255 as the original did
            before encoding its videos (truncation, or rounding where the original's
            tool rounded: motion_blur, snow's layer, tilt). False keeps floats.
        sizes: None (the images are the whole images), or the (height, width) of each
            whole resized image (B pairs, or a (B, 2) integer tensor) when ``images``
            are W x W windows of them, each centred as a centre crop of side W would be
            (it starts at ``round((h - W) / 2)``, ``round((w - W) / 2)`` of the image;
            pixels outside the image are ignored: read as 0). The perturbations then do
            what the original did with the whole image: the frames are its centre crop
            (``round((h - c) / 2)``, ``round((w - c) / 2)``), the geometric ones transform
            it about its own centre (tilt with focal length sqrt(w^2 + h^2)), and
            zoom_blur zooms about that centre. W - c must be a multiple of 4, both sides
            at least c, and the window large enough for what the frames read
            (:func:`window_size`; checked). ImageNet-P's preset only.
        preset: whose parameters and frame counts (:data:`PRESETS`): ``imagenet``
            (ImageNet-P, made from 256 px images cropped to 224), ``cifar`` (CIFAR-10-P, 32 px
            images) or ``tinyimagenet`` (Tiny-ImageNet-P, 64 px images). The small presets'
            images are the whole images: ``crop_size`` defaults to S (no crop).
        check_values: refuse images outside [0, 1] or holding NaN (0-255 floats would come
            out white), as :func:`corruptions.corrupt` does; on CUDA one device sync.

    Returns:
        New contiguous (B, T', 3, c, c) tensor, same dtype and device, values in [0, 1], with
        T' = ``len(frames)`` (default :func:`frame_count` of the preset: 31, or 41 for
        translate; CIFAR-10-P 16 for translate, 21 for motion_blur).

    Raises:
        TypeError: ``images`` not a float tensor, ``difficulty`` / ``crop_size`` not
            ints, bad ``seed``, ``frames`` or ``generator``.
        ValueError: unknown ``name`` (the closest name is suggested) or ``preset``,
            ``difficulty`` outside 1..3, wrong shape, values or non-square images, frame indices out
            of range, both ``seed`` and ``generator``, a seed sequence whose length
            is not B, or ``sizes`` that do not fit the windows (or with a small preset).

    Example:
        >>> x = torch.rand(4, 3, 73, 73)
        >>> video = perturbation_sequence(x, "gaussian_noise", 2, seed=[1, 2, 3, 4])
        >>> part = perturbation_sequence(x, "gaussian_noise", 2, seed=[1, 2, 3, 4], frames=range(10, 20))
        >>> video.shape, torch.equal(part, video[:, 10:20])
        (torch.Size([4, 31, 3, 64, 64]), True)
        >>> window = torch.zeros(1, 3, 564, 564)        # a 256 x 384 photograph, centred
        >>> window[..., 154:410, 90:474] = torch.rand(3, 256, 384)
        >>> perturbation_sequence(window, "scale", sizes=[(256, 384)], crop_size=224).shape
        torch.Size([1, 31, 3, 224, 224])
        >>> perturbation_sequence(torch.rand(1, 3, 32, 32), "translate", preset="cifar").shape
        torch.Size([1, 16, 3, 32, 32])
    """
    check_images(images)
    name = check_perturbation(name)
    refuse_meta(name, get_perturbation(name).host_read, images)
    difficulty = check_difficulty(difficulty)
    preset = check_preset(preset)
    batch, _, height, width = images.shape
    if height != width:
        raise ValueError(
            f"`images` should be square, (B, 3, S, S): resize the shorter side to S and "
            f"centre-crop S x S. Got {tuple(images.shape)}"
        )
    check_randomness(seed, generator, images.device)
    if not isinstance(quantize, bool):
        raise TypeError(f"`quantize` should be a bool. Got {type(quantize).__name__}")
    spec = get_perturbation(name)
    if sizes is not None and preset != "imagenet":
        raise ValueError(f"`sizes` (windows of larger resized images) applies to the imagenet preset; "
                         f"{preset!r} takes its {height} px images whole. Got sizes with preset {preset!r}")
    if sizes is None:
        crop = _check_crop(crop_size, height, preset)
    else:
        sizes = _check_sizes(sizes, batch)
        shorter = {min(hw) for hw in sizes}
        if crop_size is None and len(shorter) > 1:
            raise ValueError(f"pass `crop_size` for images of different shorter sides {sorted(shorter)}")
        crop = _check_crop(crop_size, height if crop_size is not None else min(shorter, default=height))
        _check_window(name, crop, height, sizes)
    wanted = _check_frames(frames, name, frame_count(name, preset=preset))
    if check_values:  # after the cheap checks: on a GPU it waits for the device
        check_range(images)
    seeds = normalize_seeds(seed, batch, images.device)  # checked for deterministic ones too
    seeds = seeds if spec.random else None
    shape = (batch, len(wanted), 3, crop, crop)
    if batch == 0 or not wanted:
        return images.new_zeros(shape)
    # float32 as the original's arithmetic, float64 input too (its float64 sums and products put
    # values on the other side of a level: flat 254 gave 253 in 24 of zoom_blur's 31 frames)
    x = work_images(images.float())
    job = Job(
        x=x if sizes is None else _zero_outside(x, sizes), crop=crop,
        top=int(round((height - crop) / 2.0)), frames=wanted, difficulty=difficulty, seeds=seeds,
        generator=generator if spec.random else None, quantize=quantize, sizes=sizes, preset=preset,
    )
    out = new_output(spec.apply(job, draw_parameters(spec, job)), images)
    return _store(out, spec.storage if quantize else None, images.dtype)


def _store(frames: torch.Tensor, storage: str | None, dtype: torch.dtype) -> torch.Tensor:
    """Clip to [0, 1] and, as the original stored its frames, put them on the uint8 grid.

    In place (the frames are a new tensor). ``truncate``: ``np.uint8(255 x)`` with a 1e-3
    tolerance so that k / 255 stays k after float32 arithmetic in another order than the
    original's; ``truncate-exact``: a plain
    truncation, where the frames went through the original's float operations;
    ``round``: half up (``corruptions._ops.quantize``);
    None: clip only. Returns ``dtype``: float64 frames are k / 255 in float64 (divided there, not
    float32's k / 255 widened).
    """
    if storage is None:
        return frames.clamp_(0, 1).to(dtype)
    offset = {"truncate": 1e-3, "truncate-exact": 0.0, "round": 0.5}[storage]
    levels = frames.mul_(255).add_(offset).floor_().clamp_(0, 255)
    if dtype == torch.float64:
        levels = levels.to(dtype)
    return true_div_(levels, 255.0).to(dtype)
