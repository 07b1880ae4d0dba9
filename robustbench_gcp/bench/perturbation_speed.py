"""How fast ImageNet-P sequences are generated, next to how fast a model classifies frames.

Used by ``gcp-robust bench perturbations``; usable from Python too. Both figures
are frames per second measured in the same run on the same device, so their
ratio tells whether generating the sequences on the fly slows an evaluation
down (ratio > 1: generation outpaces the model).

Example:
    >>> from robustbench_gcp.bench.perturbation_speed import measure
    >>> report = measure(["rotate"], device="cpu", model="demo-gap", batch_size=2,
    ...                  repeats=1)  # doctest: +SKIP
    >>> report["rows"][0]["frames_per_second"] > 0  # doctest: +SKIP
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from robustbench_gcp.bench.photos import photos
from robustbench_gcp.bench.timing import time_calls
from robustbench_gcp.engine.device import first_words, out_of_memory, resolve_device
from robustbench_gcp.errors import ConfigError

__all__ = ["frame_sizes", "measure", "model_speed", "sequence_speed"]

Progress = Callable[[str], None]


def sequence_speed(
    images: torch.Tensor, name: str, *, difficulty: int = 1, crop_size: int | None = None,
    repeats: int = 3, beside: Callable[[], object] | None = None,
) -> dict:
    """Frames per second of :func:`corruptions.perturbation_sequence` on ``images``.

    Args:
        images: (B, 3, S, S) photographs on the device to measure.
        name: a perturbation.
        difficulty: 1..3.
        crop_size: frame side (default round(S * 224 / 256)).
        repeats: timed calls after a warm-up call; the fastest counts.
        beside: another call timed in turns with the sequence (the classifier's forward pass),
            so that load from other processes hits both alike; its best time is
            ``beside_seconds``.

    Returns:
        ``{"perturbation", "frames", "seconds", "frames_per_second", "videos_per_second"}``
        for one call on the whole batch (seeded per image, uint8-quantized frames).
    """
    from corruptions.perturbations import frame_count, perturbation_sequence

    seeds = list(range(images.shape[0]))

    def run() -> torch.Tensor:
        return perturbation_sequence(images, name, difficulty, seed=seeds, crop_size=crop_size,
                                     check_values=False)  # timed as the engine runs it

    timings = time_calls([run, *([beside] if beside else [])], device=images.device, repeats=repeats,
                         warmup=1)
    seconds = timings[0].best
    frames = frame_count(name) * images.shape[0]
    row = {
        "perturbation": name,
        "frames": frames,
        "seconds": seconds,
        "frames_per_second": frames / seconds,
        "videos_per_second": images.shape[0] / seconds,
    }
    if beside:
        row["beside_seconds"] = timings[1].best
    return row


def model_speed(
    model: torch.nn.Module, *, crop_size: int, batch_size: int, device: torch.device, repeats: int = 3,
) -> dict:
    """Frames per second of ``model`` (inference mode) on batches of random frames.

    Args:
        model: a classifier on ``device``.
        crop_size: frame side.
        batch_size: frames per forward pass.
        device: where the model runs.
        repeats: timed calls after a warm-up call; the fastest counts.

    Returns:
        ``{"seconds", "frames_per_second"}`` of one forward pass.
    """
    from robustbench_gcp.engine.device import float32_as_eval

    with float32_as_eval(device):  # IEEE float32 on CUDA, as eval
        (timing,) = time_calls([_forward(model, crop_size, batch_size, device)], device=device,
                               repeats=repeats, warmup=1)
    return {"seconds": timing.best, "frames_per_second": batch_size / timing.best}


def _forward(model: torch.nn.Module, crop_size: int, batch_size: int, device: torch.device) -> Callable:
    """A call of ``model`` (inference mode) on a batch of random frames."""
    frames = torch.rand(batch_size, 3, crop_size, crop_size, device=device)

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model(frames)

    return run


def _check_frames_fit(net: torch.nn.Module, model: str, crop_size: int, device: torch.device) -> None:
    """One frame through the model before anything is timed, so that a frame its layers shrink
    to nothing (AlexNet's at 32 px) is named rather than a torch traceback midway."""
    try:
        with torch.inference_mode():
            net(torch.zeros(1, 3, crop_size, crop_size, device=device))
    except RuntimeError as error:
        if out_of_memory(error):
            raise
        raise ConfigError(f"model {model} cannot classify {crop_size} px frames ({first_words(error)}): "
                          "give a larger `--crop-size` (or `--size`)") from None


def frame_sizes(config, size: int | None, crop_size: int | None) -> tuple[int, int]:
    """(image side, frame side) of the bench: those given, else the model's (``config``, its
    ``pretrained_cfg``) resize and input sizes, a crop of round(S * 224 / 256) for another S."""
    size = config.resize_size if size is None else size
    if crop_size is None:
        crop_size = config.input_size if size == config.resize_size else round(size * 224 / 256)
    return size, crop_size


def measure(
    perturbations: Sequence[str],
    *,
    device: str | torch.device = "auto",
    model: str = "resnet50-gap",
    batch_size: int = 8,
    size: int | None = None,
    crop_size: int | None = None,
    model_batch_size: int = 32,
    difficulty: int = 1,
    repeats: int = 3,
    progress: Progress | None = None,
) -> dict:
    """Per perturbation, frames generated per second, next to the model's frames per second.

    Args:
        perturbations: names (see :func:`corruptions.list_perturbations`).
        device: torch device (``auto``: CUDA when available).
        model: a registered model (random weights); it sets the default sizes.
        batch_size: images per :func:`~corruptions.perturbation_sequence` call.
        size: side S of the square input images (default: the model's resize size,
            256 for the ResNets, 73 for the demo models).
        crop_size: frame side (default: the model's input size when ``size`` is its
            resize size, else round(S * 224 / 256)).
        model_batch_size: frames per forward pass of the model.
        difficulty: 1..3 (only the noise perturbations depend on it).
        repeats: timed calls after a warm-up call; the fastest counts.
        progress: called with the name of each item before it is timed.

    Returns:
        ``{"settings": {...}, "model": {"name", "frames_per_second", ...},
        "rows": [{"perturbation", "frames", "seconds", "frames_per_second",
        "videos_per_second", "model_frames_per_second", "vs_model"}, ...]}``; ``vs_model`` is the
        generation rate divided by the model's, ``model_frames_per_second``, timed in turns with the
        sequence (the model's own figure is its best beside any of them).

    Raises:
        UnknownNameError: unknown model.
        ConfigError: a crop size larger than the images, or too small for the model.
        ValueError: unknown perturbation or bad difficulty.
    """
    from corruptions.perturbations import check_perturbation
    from robustbench_gcp.models import create_model

    names = [check_perturbation(n) for n in perturbations]
    torch_device = resolve_device(device)
    net = create_model(model).eval().to(torch_device)
    config = net.pretrained_cfg
    size, crop_size = frame_sizes(config, size, crop_size)
    if crop_size > size:  # (the command line checks the two it is given; here the model's defaults too)
        whose = ", the model's resize size" if size == config.resize_size else ""
        raise ConfigError(f"`--crop-size` should be at most --size ({size}{whose}). Got {crop_size}")
    _check_frames_fit(net, model, crop_size, torch_device)
    if progress:
        progress(model)
    classify = _forward(net, crop_size, model_batch_size, torch_device)
    images = photos(batch_size, size).to(torch_device)
    rows, model_seconds = [], []
    from robustbench_gcp.engine.device import float32_as_eval

    # IEEE float32 on CUDA, as eval computes the sequences and the model (cuDNN's default TF32 timed
    # the model beside them faster than eval runs it, helper-244)
    with float32_as_eval(torch_device):
        for name in names:
            if progress:
                progress(name)
            # the model timed in turns with each sequence: load from other processes hits both alike
            row = sequence_speed(images, name, difficulty=difficulty, crop_size=crop_size, repeats=repeats,
                                 beside=classify)
            model_seconds.append(row.pop("beside_seconds"))
            row["model_frames_per_second"] = model_batch_size / model_seconds[-1]  # what vs_model divides by
            row["vs_model"] = row["frames_per_second"] / row["model_frames_per_second"]
            rows.append(row)
    if model_seconds:  # the model's own figure: its best beside any sequence
        fastest = min(model_seconds)
        model_row = {"seconds": fastest, "frames_per_second": model_batch_size / fastest}
    else:
        model_row = model_speed(net, crop_size=crop_size, batch_size=model_batch_size, device=torch_device,
                                repeats=repeats)
    settings = {
        "device": str(torch_device), "batch_size": batch_size, "size": size, "crop_size": crop_size,
        "difficulty": difficulty, "repeats": repeats, "threads": torch.get_num_threads(),
    }
    model_info = {"name": model, "batch_size": model_batch_size, "input_size": crop_size, **model_row}
    return {"settings": settings, "model": model_info, "rows": rows}
