"""The 19 ImageNet-C corruptions in PyTorch: batched, seeded, on any device, with the
parameters of ImageNet-C, CIFAR-10/100-C or Tiny-ImageNet-C (``preset=``, :data:`PRESETS`).

Example:
    >>> import torch
    >>> from corruptions import corrupt, list_corruptions
    >>> x = torch.rand(8, 3, 224, 224)
    >>> y = corrupt(x, "fog", 3, seed=[10, 11, 12, 13, 14, 15, 16, 17])
    >>> y.shape, len(list_corruptions("all"))
    (torch.Size([8, 3, 224, 224]), 19)

The 14 ImageNet-P perturbation sequences (:func:`perturbation_sequence`, from
:mod:`corruptions.perturbations`) are exported here too; both kinds are entries of one
registry mechanism (``corruptions/_registry.py``), which also defines the names and levels
the benchmark uses: :data:`SUBSETS`, :data:`SEVERITIES` (1..5), :data:`PERTURBATION_SUBSETS`,
:data:`DIFFICULTIES` (1..3) and :data:`NOISE_PERTURBATIONS` (the perturbations whose frames
are compared with the clean frame 0).

See ``corruptions/README.md`` for the semantics, the differences from the
original ImageNet-C code and the measured fidelity and speed, and
``corruptions/PERTURBATIONS.md`` for the perturbations.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from corruptions import blur, digital, noise, weather  # noqa: F401  (registers the corruptions)
from corruptions._ops import new_output, without_autocast, work_images
from corruptions._registry import (
    BENCHMARK,
    DIFFICULTIES,
    EXTRA,
    NOISE_PERTURBATIONS,
    PERTURBATION_SUBSETS,
    PRESET_SIZES,
    PRESETS,
    SEVERITIES,
    SUBSETS,
    Corruption,
    Level,
    Perturbation,
    check_images,
    check_name,
    check_preset,
    check_range,
    get_corruption,
    get_perturbation,
    list_corruptions,
    list_perturbations,
)
from corruptions._rng import Drawn, ImageRandom, check_randomness, image_seeds, normalize_seeds
from corruptions.perturbations import frame_count, perturbation_sequence  # ImageNet-P sequences
from corruptions.storage import from_uint8, storage_roundtrip

__all__ = [
    "BENCHMARK",
    "DIFFICULTIES",
    "EXTRA",
    "NOISE_PERTURBATIONS",
    "PERTURBATION_SUBSETS",
    "PRESETS",
    "PRESET_SIZES",
    "SEVERITIES",
    "SUBSETS",
    "Corruption",
    "Drawn",
    "Level",
    "Perturbation",
    "check_name",
    "check_preset",
    "corrupt",
    "frame_count",
    "get_corruption",
    "get_perturbation",
    "image_seeds",
    "list_corruptions",
    "list_perturbations",
    "perturbation_sequence",
    "sample_parameters",
    "from_uint8",
    "storage_roundtrip",
]


@without_autocast
def sample_parameters(
    images: torch.Tensor,
    name: str,
    severity: int,
    *,
    seed: int | Sequence[int] | torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    preset: str = "imagenet",
) -> dict:
    """Draw the random parameters ``corrupt`` would use (empty for deterministic ones).

    Same arguments and randomness as :func:`corrupt`; ``corrupt(x, n, s, seed=k)`` equals
    ``get_corruption(n).apply(x, s, sample_parameters(x, n, s, seed=k))`` clipped to
    [0, 1] (with the same ``preset=`` on both). Useful to reuse one draw (e.g. the same
    snow layer) on several images.
    """
    check_images(images)
    spec = get_corruption(name)
    level = spec.level(severity, preset)
    check_randomness(seed, generator, images.device)
    batch = images.shape[0]
    seeds = normalize_seeds(seed, batch, images.device)  # checked for deterministic ones too
    if not spec.random:
        return Drawn({}, spec.name, severity, preset)
    rng = ImageRandom(batch, images.device, seeds=seeds, generator=generator)
    return Drawn(spec.sampler(rng, work_images(images), level), spec.name, severity, preset)


@without_autocast
def corrupt(
    images: torch.Tensor,
    name: str,
    severity: int,
    *,
    seed: int | Sequence[int] | torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    preset: str = "imagenet",
    check_values: bool = True,
) -> torch.Tensor:
    """Apply an ImageNet-C (or CIFAR-10-C, Tiny-ImageNet-C) corruption to a batch of images.

    Args:
        images: (B, 3, H, W) float tensor (float16, bfloat16, float32, float64) in
            [0, 1], on any device, in any memory layout (channels-last, permuted,
            sliced, expanded: the result is that of the same images stored
            contiguously); H, W >= 32. Computed in float32 (float64 for float64
            input; brightness, saturate, contrast, frost, gaussian_blur, defocus_blur,
            glass_blur and (on the CPU) motion_blur in float64, as the original, on float32
            input too; zoom_blur in float32, as the original, on float64 input too). Not
            modified.
        name: one of :func:`list_corruptions` ``("all")``.
        severity: 1..5.
        seed: randomness of the random corruptions (checked, but unused, by deterministic ones):
            - an int: image i uses the seed ``image_seeds(seed, range(B))[i]``;
            - a sequence or 1-D integer tensor of B per-image seeds (e.g. from
              ``image_seeds(run_seed, dataset_indices)``): image i draws only from
              ``torch.Generator(device).manual_seed(seeds[i])``, so its corruption does
              not depend on the rest of the batch.
            Same seed, same device: same output. (On the CPU, large batches are
            processed a few images at a time; that changes no result.)
        generator: draw for the whole batch from this ``torch.Generator`` instead
            (results then depend on the batch composition). With neither ``seed``
            nor ``generator``, torch's default generator is used.
        preset: whose parameters (:data:`PRESETS`): ``"imagenet"`` (ImageNet-C's,
            made for 224 px), ``"cifar"`` (CIFAR-10/100-C's, 32 px) or
            ``"tinyimagenet"`` (Tiny-ImageNet-C's, 64 px), from the original
            generation scripts, which retune every corruption for each resolution.
            Size-dependent constants (fog's map, frost's texture scale, the elastic
            unit) follow the image size in proportion to the preset's size.
        check_values: refuse images outside [0, 1] (0-255 floats would come out white). The
            check is one reduction and, on CUDA, one wait for the device: False skips it, for
            images known to be in range (the tool's engine: decoded uint8 / 255).

    Returns:
        New contiguous (B, 3, H, W) tensor (whatever the input's layout), same dtype
        and device, values in [0, 1].

    Raises:
        TypeError: ``images`` not a float tensor, ``severity`` not an int, bad ``seed``.
        ValueError: unknown ``name`` (the closest name is suggested), ``severity``
            outside 1..5, unknown ``preset``, wrong shape, values outside [0, 1], both
            ``seed`` and ``generator``, or a seed sequence whose length is not B.

    Example:
        >>> x = torch.rand(2, 3, 64, 64)
        >>> corrupt(x, "gaussian_noise", 2, seed=0).shape
        torch.Size([2, 3, 64, 64])
    """
    check_images(images)
    name = check_name(name)
    spec = get_corruption(name)
    level = spec.level(severity, preset)
    check_randomness(seed, generator, images.device)
    spec.check_device(images)
    if check_values:  # after the cheap checks: on a GPU it waits for the device
        check_range(images)
    batch, _, height, width = images.shape
    seeds = normalize_seeds(seed, batch, images.device)  # checked for deterministic ones and B = 0 too
    if batch == 0:
        return images.detach().clone(memory_format=torch.contiguous_format)
    x = work_images(images)
    chunk = batch
    if images.device.type == "cpu" and spec.cpu_chunk is not None:
        chunk = max(1, spec.cpu_chunk * 224 * 224 // (height * width))
    if chunk >= batch:
        params = {}
        if spec.random:
            rng = ImageRandom(batch, images.device, seeds=seeds, generator=generator)
            params = spec.sampler(rng, x, level)
        out = new_output(spec.applier(x, level, params), images).clamp_(0, 1)
        return out if out.dtype == images.dtype else out.to(images.dtype)
    # CPU: a few images at a time (per-image seeds draw chunk by chunk, same numbers)
    out = torch.empty_like(images, memory_format=torch.contiguous_format)
    shared = None
    if spec.random and seeds is None:  # one generator for the whole batch
        shared = spec.sampler(ImageRandom(batch, images.device, generator=generator), x, level)
    for start in range(0, batch, chunk):
        stop = min(batch, start + chunk)
        part = x[start:stop]
        if not spec.random:
            params = {}
        elif shared is not None:
            params = {key: value[start:stop] for key, value in shared.items()}
        else:
            rng = ImageRandom(stop - start, images.device, seeds=seeds[start:stop])
            params = spec.sampler(rng, part, level)
        out[start:stop] = spec.applier(part, level, params).clamp_(0, 1)  # cast as it is copied in
    return out
