"""``gcp-robust eval`` end to end against the plain loop a user would write (``gcp-robust bench pipeline``).

The plain loop (:func:`plain_loop`) is torchvision's ``ImageFolder`` with imagecorruptions
in the transform (on the 224 px crop, as ImageNet-C), the released files' storage (uint8
truncation, JPEG quality 85, through PIL and a ``BytesIO``), a ``DataLoader`` and the
model: one loader per cell. The tool is ``python -m robustbench_gcp eval`` with a fresh
store. Both run as whole processes on the same images, weights, corruptions and
severities, and are timed wall-clock from launch to exit (start-up, imports and model
loading included), ``repeats`` times each in turns (tool first, then plain first, and so
on; the median counts): a clean-only pass (``--suite clean`` against the clean cell), then
the corrupted pass (``--suite imagenet-c``: the clean cell and every (corruption, severity)
cell, on both paths).

The images are scikit-image's colour photographs (:data:`robustbench_gcp.bench.photos.PHOTOS`),
randomly cropped and resized to varied sizes, saved as JPEG. They have no ImageNet labels:
each is filed under the ImageNet class (wnid folder) the model predicts for it clean, so
the clean error is about 0 and a corrupted cell's error is the share of predictions the
corruption changes, which both paths should give alike (within the sampling noise of the
corruptions' random draws and the fidelity bounds of the torch port). Without
``checkpoint`` the weights are torchvision's initialization, seeded, with the batch-norm
statistics taken from the clean images (a freshly initialized network predicts one class
for every image); both paths load them from one torchvision-layout file.

Example:
    >>> rows = pipeline_speed("resnet18-gap", images=6, corruptions="contrast",
    ...                       severities="1", device="cpu")            # doctest: +SKIP
    >>> [(r["pass"], r["path"]) for r in rows]                          # doctest: +SKIP
    [('clean', 'tool'), ('clean', 'plain'), ('corrupted', 'tool'), ('corrupted', 'plain')]

Run the plain loop alone (what :func:`pipeline_speed` launches)::

    python -m robustbench_gcp.bench.pipeline_speed --data DIR --arch resnet18 \\
        --weights W.pth --cells clean,contrast:3 --device cpu
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from robustbench_gcp.errors import counted

__all__ = [
    "TORCHVISION_ARCHS",
    "PlainCorruption",
    "photo_folder",
    "pipeline_speed",
    "plain_loop",
    "plain_transform",
]

#: the registry models with a torchvision twin of the same checkpoint layout -> its builder
TORCHVISION_ARCHS = {
    "resnet18-gap": "resnet18",
    "resnet34-gap": "resnet34",
    "resnet50-gap": "resnet50",
    "resnet101-gap": "resnet101",
    "mobilenetv2-gap": "mobilenet_v2",
    "shufflenetv2-gap": "shufflenet_v2_x1_0",
}

_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------------------
# the plain loop (run in its own process)


class PlainCorruption:
    """The ImageNet-C step of a plain transform: imagecorruptions, then the released files' storage.

    Calls imagecorruptions' function (with the compatibility fixes of
    :func:`corruptions.reference.load_imagecorruptions`) on a PIL image, truncates to
    uint8 (``np.uint8``, as ``imagecorruptions.corrupt``), and saves and reopens it as a
    JPEG of quality 85. Unseeded, as a user's loop would be.
    """

    def __init__(self, corruption: str, severity: int):
        self.corruption, self.severity = corruption, severity

    def __call__(self, image):
        import numpy as np
        from PIL import Image

        from corruptions.reference import load_imagecorruptions

        out = getattr(load_imagecorruptions(), self.corruption)(image, self.severity)
        buffer = io.BytesIO()
        Image.fromarray(np.uint8(np.clip(np.asarray(out), 0, 255))).save(buffer, format="JPEG", quality=85)
        buffer.seek(0)
        return Image.open(buffer).convert("RGB")


#: the plain loop's name for the uncorrupted cell in --cells
UNCORRUPTED = "none"


def plain_transform(corruption: str | None = None, severity: int = 1) -> Callable:
    """torchvision's ImageNet evaluation transform (resize 256, centre crop 224), with the
    corruption and its storage between the crop and the tensor when ``corruption`` is given."""
    from torchvision import transforms

    steps = [transforms.Resize(256), transforms.CenterCrop(224)]
    if corruption is not None:
        steps.append(PlainCorruption(corruption, severity))
    return transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize(_MEAN, _STD)])


def plain_loop(data: str | Path, *, arch: str, weights: str | Path,
               cells: Sequence[tuple[str | None, int]], batch_size: int = 32, workers: int = 0,
               device: str = "cpu") -> list[dict]:
    """Top-1 error of every cell, computed the plain way: one ``ImageFolder`` + ``DataLoader`` per cell.

    Args:
        data: ``<data>/<wnid>/*.JPEG`` (a subset of the ImageNet classes).
        arch: a torchvision builder (``resnet18``); weights: its state dict.
        cells: ``(corruption, severity)`` pairs; ``(None, 0)`` is the clean cell.
        batch_size, workers: the ``DataLoader``'s.
        device: where the model runs.

    Returns:
        One ``{"corruption", "severity", "n", "top1_error"}`` per cell, in order.
    """
    import torchvision
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    from corruptions.reference import load_imagecorruptions
    from robustbench_gcp.data.folders import imagenet_wnids

    if any(corruption is not None for corruption, _ in cells):  # a clean pass alone has no use for it
        load_imagecorruptions()  # imported once, as a script's top would: the loader's workers inherit it
    dev = torch.device(device)
    if dev.type == "cuda":  # the same arithmetic as the tool's float32 (no TF32)
        from robustbench_gcp.engine.device import exact_float32

        exact_float32()
    net = getattr(torchvision.models, arch)()
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    net.eval().to(dev)
    index = {wnid: i for i, wnid in enumerate(imagenet_wnids())}
    results = []
    for corruption, severity in cells:
        dataset = ImageFolder(str(data), transform=plain_transform(corruption, severity))
        # ImageFolder numbers the folders present; the ImageNet index of each
        to_imagenet = torch.tensor([index[name] for name in dataset.classes])
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                            pin_memory=dev.type == "cuda")
        wrong = 0
        with torch.inference_mode():
            for x, y in loader:
                predicted = net(x.to(dev, non_blocking=True)).argmax(1).cpu()
                wrong += int((predicted != to_imagenet[y]).sum())
        results.append({"corruption": corruption, "severity": severity, "n": len(dataset),
                        "top1_error": wrong / len(dataset)})
    return results


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m robustbench_gcp.bench.pipeline_speed",
                                     description="The plain ImageNet-C loop; prints its cells as JSON.")
    parser.add_argument("--data", required=True)
    parser.add_argument("--arch", required=True, help="torchvision builder, e.g. resnet18")
    parser.add_argument("--weights", required=True, help="its state dict")
    parser.add_argument("--cells", required=True, help="none (uncorrupted),<corruption>:<severity>,...")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    cells = [(None, 0) if c == UNCORRUPTED else (c.split(":")[0], int(c.split(":")[1]))
             for c in args.cells.split(",")]
    results = plain_loop(args.data, arch=args.arch, weights=args.weights, cells=cells,
                         batch_size=args.batch_size, workers=args.workers, device=args.device)
    print(json.dumps(results))


# --------------------------------------------------------------------------------------
# the images and the weights


def _photo_files(root: Path, count: int, seed: int) -> list[Path]:
    """``count`` JPEG photographs of varied sizes in ``root``: random crops (60-100 % of each side)
    of scikit-image's photographs (mirrored or transposed beyond the first 8), shorter side
    240-480 px."""
    import numpy as np
    import skimage.data
    from PIL import Image

    from robustbench_gcp.bench.photos import PHOTOS

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    paths = []
    for i in range(count):
        array = getattr(skimage.data, PHOTOS[i % len(PHOTOS)])()
        if isinstance(array, tuple):  # stereo_motorcycle: (left, right, disparity)
            array = array[0]
        variant = (i // len(PHOTOS)) % 4
        array = [array, array[:, ::-1], array.transpose(1, 0, 2), array[::-1]][variant]
        height, width = array.shape[:2]
        h, w = (int(side * rng.uniform(0.6, 1.0)) for side in (height, width))
        top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        image = Image.fromarray(np.ascontiguousarray(array[top:top + h, left:left + w])).convert("RGB")
        scale = int(rng.integers(240, 481)) / min(h, w)
        image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
        paths.append(root / f"photo_{i:04d}.JPEG")
        image.save(paths[-1], quality=90)
    return paths


def _batches(paths: Sequence[Path], size: int = 32):
    from PIL import Image

    transform = plain_transform()
    for i in range(0, len(paths), size):
        yield torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[i:i + size]])


def photo_folder(root: str | Path, net: torch.nn.Module, count: int, *, seed: int = 0,
                 calibrate: bool = False) -> Path:
    """Write ``count`` photographs into ``root/<wnid>/``, each under the class ``net`` predicts for it.

    Args:
        root: a folder to create.
        net: a torchvision classifier of the 1000 ImageNet classes, on the CPU.
        count: images.
        seed: of the crops and sizes.
        calibrate: first set ``net``'s batch-norm statistics to those of the clean images
            (preprocessed as :func:`plain_transform`), so that a randomly initialized
            network's predictions depend on the image.

    Returns:
        ``root``.
    """
    from robustbench_gcp.data.folders import imagenet_wnids

    root = Path(root)
    paths = _photo_files(root / ".unsorted", count, seed)
    if calibrate:
        norms = {m: m.momentum for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
        for module in norms:
            module.reset_running_stats()
            module.momentum = None  # a cumulative average over the batches
        net.train()
        with torch.no_grad():
            for x in _batches(paths):
                net(x)
        for module, momentum in norms.items():
            module.momentum = momentum
    net.eval()
    with torch.no_grad():
        predicted = torch.cat([net(x).argmax(1) for x in _batches(paths)]).tolist()
    wnids = imagenet_wnids()
    for path, label in zip(paths, predicted, strict=True):
        (root / wnids[label]).mkdir(exist_ok=True)
        path.rename(root / wnids[label] / path.name)
    (root / ".unsorted").rmdir()
    return root


# --------------------------------------------------------------------------------------
# the measurement


def _timed(command: list[str], env: dict, what: str) -> tuple[float, str]:
    from robustbench_gcp.errors import GcpRobustError

    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise GcpRobustError(f"the {what} failed (exit {done.returncode}): {last}")
    return seconds, done.stdout


def _turn(turn: int, repeats: int) -> str:
    return f", turn {turn + 1} of {repeats}" if repeats > 1 else ""


def _corrupted_error(cells: Sequence[dict]) -> float | None:
    corrupted = [c["top1_error"] for c in cells if c["corruption"] is not None]
    return sum(corrupted) / len(corrupted) if corrupted else None


def pipeline_speed(model: str = "resnet18-gap", *, checkpoint: str | None = None, images: int = 64,
                   corruptions: str = "benchmark", severities: str = "3", batch_size: int = 32,
                   workers: int = 0, device: str = "cpu", seed: int = 0, repeats: int = 1,
                   log: Callable[[str], None] | None = None) -> list[dict]:
    """Wall time of ``gcp-robust eval`` and of :func:`plain_loop`, as whole processes, on the same work.

    Args:
        model: a key of :data:`TORCHVISION_ARCHS`.
        checkpoint: torchvision-layout weights for it (default: seeded random weights with
            batch-norm statistics from the images, see :func:`photo_folder`).
        images: photographs (see :func:`photo_folder`).
        corruptions: comma list of names or subsets (``benchmark``, ``noise`` ...).
        severities: comma list of severities.
        batch_size, workers, device: of both paths (``device`` resolved: cpu, cuda:0 ...).
        seed: of the photographs and the random weights.
        repeats: processes per path and pass, in turns: the tool first in odd turns, the
            plain loop first in even ones (load from other processes and warm file caches
            then favour neither); each path's median counts.
        log: called with a line before each process starts (progress).

    Returns:
        Four rows, the clean pass (tool, plain) then the corrupted pass (tool, plain): pass,
        path, cells, images, seconds (the median), runs (every process's seconds, in the
        order run), cell_images_per_s (images x cells / seconds), top1_error (clean pass: of
        the clean cell; corrupted pass: the mean over the corrupted cells; of the first turn:
        the tool's is the same in every turn, the plain loop's random corruptions are
        unseeded, as a user's loop is, so its error varies from turn to turn), and on the plain
        rows ``ratio``: its seconds over the tool's.

    Raises:
        UnknownNameError: a model without a torchvision twin, or an unknown corruption.
        ConfigError: a bad severity list, image count or number of repeats.
        GcpRobustError: a process failed (its last line of stderr in the message).
    """
    import torchvision

    from corruptions import SEVERITIES, SUBSETS
    from robustbench_gcp.errors import ConfigError, UnknownNameError
    from robustbench_gcp.suites.flag_values import resolve_levels, resolve_names

    if model not in TORCHVISION_ARCHS:
        raise UnknownNameError("model with a torchvision twin", model, TORCHVISION_ARCHS)
    if images < 1:
        raise ConfigError(f"`--images` should be >= 1. Got {images}")
    if repeats < 1:
        raise ConfigError(f"`--repeats` should be >= 1. Got {repeats}")
    names = resolve_names(corruptions, SUBSETS["benchmark"], SUBSETS, "corruption", "--corruptions")
    levels = resolve_levels(severities, SEVERITIES, "--severities", SEVERITIES)
    say = log or (lambda line: None)
    arch = TORCHVISION_ARCHS[model]
    torch.manual_seed(seed)
    net = getattr(torchvision.models, arch)()
    if checkpoint is not None:
        _load_torchvision_weights(net, checkpoint, arch)
    env = {**os.environ, "GIT_PYTHON_REFRESH": "quiet"}
    common = ["--batch-size", str(batch_size), "--workers", str(workers), "--device", str(device)]
    passes = {
        "clean": (["--suite", "clean"], [(None, 0)]),
        "corrupted": (["--suite", "imagenet-c", "--corruptions", ",".join(names),
                       "--severities", ",".join(map(str, levels))],
                      [(None, 0), *[(c, s) for c in names for s in levels]]),
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="gcp-robust-pipeline-") as tmp:
        say(f"writing {images} photographs and the weights")
        data = photo_folder(Path(tmp) / "data", net, images, seed=seed, calibrate=checkpoint is None)
        weights = Path(tmp) / f"{arch}.pth"
        torch.save(net.state_dict(), weights)
        for name, (suite_args, cells) in passes.items():
            spec = ",".join(UNCORRUPTED if c is None else f"{c}:{s}" for c, s in cells)

            def tool(turn: int, name=name, suite_args=suite_args, cells=cells) -> tuple[float, float | None]:
                say(f"{name} pass: gcp-robust eval ({counted(len(cells), 'cell')}){_turn(turn, repeats)}")
                seconds, out = _timed(
                    [sys.executable, "-m", "robustbench_gcp", "eval", "--model", model,
                     "--checkpoint", str(weights), "--data", str(data),  # a fresh store each turn
                     "--store", str(Path(tmp) / f"store-{name}-{turn}.db"), "--format", "json",
                     *suite_args, *common],
                    env, f"tool's {name} pass")
                report = json.loads(out)
                return seconds, (report["clean"]["top1_error"] if len(cells) == 1
                                 else _corrupted_error(report["cells"]))

            def plain(turn: int, name=name, cells=cells, spec=spec) -> tuple[float, float | None]:
                say(f"{name} pass: plain loop ({counted(len(cells), 'cell')}){_turn(turn, repeats)}")
                seconds, out = _timed(
                    [sys.executable, "-m", "robustbench_gcp.bench.pipeline_speed", "--data", str(data),
                     "--arch", arch, "--weights", str(weights), "--cells", spec, *common], env,
                    f"plain loop's {name} pass")
                plain_cells = json.loads(out)
                return seconds, (plain_cells[0]["top1_error"] if len(cells) == 1
                                 else _corrupted_error(plain_cells))

            runs: dict[str, list[tuple[float, float | None]]] = {"tool": [], "plain": []}
            for turn in range(repeats):
                order = [("tool", tool), ("plain", plain)][:: 1 if turn % 2 == 0 else -1]
                for path, measure in order:
                    runs[path].append(measure(turn))
            for path in ("tool", "plain"):
                seconds = [s for s, _ in runs[path]]
                rows.append({"pass": name, "path": path, "cells": len(cells),
                             "seconds": statistics.median(seconds), "runs": seconds,
                             "top1_error": runs[path][0][1]})
    for row in rows:
        row["images"] = images
        row["cell_images_per_s"] = images * row["cells"] / row["seconds"]
    for tool, plain in zip(rows[::2], rows[1::2], strict=True):
        plain["ratio"] = plain["seconds"] / tool["seconds"]
    return rows


def _load_torchvision_weights(net: torch.nn.Module, checkpoint: str | Path, arch: str) -> None:
    """``--checkpoint``'s state dict into torchvision's ``arch``, unwrapped as ``eval`` and
    ``inspect`` read it (``{"state_dict": ...}``, ``{"model": ...}``, ``module.``) and checked as
    they check it (names, shapes, finite weights: ``load_strict``), before either process runs."""
    from robustbench_gcp.errors import CheckpointError
    from robustbench_gcp.models.checkpoint import AS_SAVED, read_state_dict
    from robustbench_gcp.models.loading import load_strict

    loaded = read_state_dict(checkpoint, compute_sha256=False, layout=AS_SAVED, own_keys=net.state_dict())
    try:
        load_strict(net, loaded, name=f"torchvision's {arch} (bench pipeline takes its state dicts)")
    except CheckpointError as error:
        fit = error.fit
        if fit is None or fit.model in TORCHVISION_ARCHS:
            raise
        # "use --model demo-gap", which bench pipeline then refused (helper-244)
        raise CheckpointError(f"{error.args[0]}\n  It fits '{fit.model}', which has no torchvision twin: "
                              f"bench pipeline times {', '.join(TORCHVISION_ARCHS)} (`gcp-robust eval` "
                              "evaluates it)") from None


if __name__ == "__main__":
    _main()
