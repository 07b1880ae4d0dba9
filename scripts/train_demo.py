"""Train the two demo checkpoints (demo-gap, demo-isqrt) from scratch on the demo dataset.

Usage:
    python scripts/train_demo.py [--out robustbench_gcp/resources/demo] [--epochs 20]
                                 [--seed 0] [--threads 1] [--data DIR]

Builds the embedded demo dataset (:func:`robustbench_gcp.data.demo_images.build_demo_dataset`,
in a temporary folder unless ``--data`` is given), trains both models with SGD
(Nesterov momentum, cosine learning rate, label smoothing; random 64 px crops
of the 73 px-resized train images and horizontal flips), evaluates each on the
val split with the engine's preprocessing (PIL decode, shorter side to 73 px
bilinear, center crop 64, [0, 1], the model's mean and std) and saves
``demo-gap.pth`` and ``demo-isqrt.pth`` (bare state dicts) to ``--out`` only if
both reach ``--min-accuracy`` (90 %); otherwise it exits with status 1 and
writes nothing. Prints the val accuracy, the sha256 of each file and the
``benchmarks.yaml`` entries.

Deterministic: the same seed, torch build and thread count (default 1) give
the same weights (and files). About 40 s on one CPU core.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_gcp.data.demo_images import DEMO_CLASSES, build_demo_dataset
from robustbench_gcp.data.folders import scan_folder
from robustbench_gcp.data.loader import Preprocess, iterate_batches
from robustbench_gcp.models import create_model

MODELS = ("demo-gap", "demo-isqrt")
REPO = Path(__file__).resolve().parents[1]


def load_split(root: Path, split: str, preprocess: Preprocess) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of ``root/split`` as uint8 ``(N, 3, H, W)`` and their labels, via the project's loader."""
    images = scan_folder(root / split, class_order="sorted")
    if images.classes != DEMO_CLASSES:
        raise SystemExit(f"{root / split} has classes {images.classes}, expected {DEMO_CLASSES}")
    batches = [batch for batch, _ in iterate_batches(images.paths(), preprocess, batch_size=256)]
    return torch.cat(batches), torch.tensor(images.labels)


def normalize(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> [0, 1] -> the model's mean and std (as the engine's Classifier)."""
    cfg = model.pretrained_cfg
    mean = torch.tensor(cfg.mean).view(1, -1, 1, 1)
    std = torch.tensor(cfg.std).view(1, -1, 1, 1)
    return (images.float() / 255.0 - mean) / std


def augment(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """A random ``size`` crop and a random horizontal flip of each uint8 image."""
    n, _, h, w = images.shape
    tops = torch.randint(0, h - size + 1, (n,), generator=generator).tolist()
    lefts = torch.randint(0, w - size + 1, (n,), generator=generator).tolist()
    flips = (torch.rand(n, generator=generator) < 0.5).tolist()
    out = torch.stack([images[i, :, t:t + size, l:l + size]
                       for i, (t, l) in enumerate(zip(tops, lefts))])
    flip = torch.tensor(flips)
    out[flip] = out[flip].flip(-1)
    return out


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent, in eval mode."""
    model.eval()
    correct = 0
    for start in range(0, len(images), 256):
        logits = model(normalize(model, images[start:start + 256]))
        correct += int((logits.argmax(1) == labels[start:start + 256]).sum())
    return 100.0 * correct / len(images)


def train(name: str, train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor,
          val_y: torch.Tensor, *, epochs: int, seed: int, batch_size: int, lr: float) -> nn.Module:
    """Train ``name`` from scratch; prints the loss and val accuracy as it goes."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = create_model(name, num_classes=len(DEMO_CLASSES))
    size = model.pretrained_cfg.input_size
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=lr, momentum=0.9, nesterov=True)
    steps_per_epoch = math.ceil(len(train_x) / batch_size)
    total, warmup = epochs * steps_per_epoch, steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: (step + 1) / warmup if step < warmup
        else 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))))
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(train_x), generator=generator)
        running, seen = 0.0, 0
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            x = normalize(model, augment(train_x[index], size, generator))
            loss = F.cross_entropy(model(x), train_y[index], label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            running += float(loss.detach()) * len(index)
            seen += len(index)
        if epoch % 5 == 0 or epoch == epochs:
            print(f"  {name} epoch {epoch:3d}/{epochs}: loss {running / seen:.3f}, "
                  f"val top-1 {accuracy(model, val_x, val_y):.1f} %", flush=True)
    return model.eval()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "robustbench_gcp" / "resources" / "demo",
                        help="folder for demo-gap.pth and demo-isqrt.pth")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="seed of the dataset and the training")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (default 1; 0: torch's default). Tiny models gain little "
                             "from more threads and slow down badly when other processes share "
                             "the cores; the weights depend on the thread count")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--min-accuracy", type=float, default=90.0,
                        help="val top-1 (percent) both models must reach, else exit 1")
    parser.add_argument("--data", type=Path, default=None,
                        help="build (or reuse) the demo dataset here instead of a temporary folder")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"`--epochs` should be >= 1. Got {args.epochs}")
    if args.threads < 0:
        parser.error(f"`--threads` should be >= 0. Got {args.threads}")
    # Raising the thread count above torch's default is never needed and some
    # builds misbehave after set_num_threads(n >= 2); only lowering is applied.
    if 0 < args.threads < torch.get_num_threads():
        torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gcp-robust-demo-") as tmp:
        root = build_demo_dataset(args.data or Path(tmp) / "demo", seed=args.seed)
        probe = create_model(MODELS[0]).pretrained_cfg
        train_x, train_y = load_split(root, "train", Preprocess(probe.resize_size, probe.resize_size))
        val_x, val_y = load_split(root, "val", Preprocess(probe.resize_size, probe.input_size))
    print(f"demo dataset (seed {args.seed}): {len(DEMO_CLASSES)} classes, {len(train_x)} train and "
          f"{len(val_x)} val images ({time.perf_counter() - started:.1f} s); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)

    results = {}
    for name in MODELS:
        begin = time.perf_counter()
        model = train(name, train_x, train_y, val_x, val_y, epochs=args.epochs, seed=args.seed,
                      batch_size=args.batch_size, lr=args.lr)
        top1 = accuracy(model, val_x, val_y)
        params = sum(p.numel() for p in model.parameters())
        print(f"{name}: val top-1 {top1:.1f} % ({params:,} parameters, "
              f"trained in {time.perf_counter() - begin:.0f} s)", flush=True)
        results[name] = (model, top1)

    elapsed = time.perf_counter() - started
    failed = [name for name, (_, top1) in results.items() if top1 < args.min_accuracy]
    if failed:
        print(f"FAILED: {', '.join(failed)} below {args.min_accuracy:.0f} % val top-1; "
              f"nothing written ({elapsed:.0f} s)", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"\nall models reached >= {args.min_accuracy:.0f} % in {elapsed:.0f} s; benchmarks.yaml entries:")
    for name, (model, top1) in results.items():
        path = args.out / f"{name}.pth"
        torch.save(model.state_dict(), path)
        try:
            shown = path.resolve().relative_to(REPO)
        except ValueError:
            shown = path
        print(f"  {name}:\n    arch: {name}\n    checkpoint: {shown}\n    sha256: {sha256(path)}\n"
              f"    source: trained by scripts/train_demo.py (embedded demo)"
              f"  # val top-1 {top1:.1f} %, {path.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
