"""Generate a small ImageNet-style sample folder and a random-weight ResNet-18 checkpoint.

Usage: python scripts/make_sample_data.py [OUT_DIR]   (default: sample-data/)

The folder uses real ImageNet wnids, so labels get their standard indices; the
checkpoint is a torchvision-layout ResNet-18 with seeded random weights. The
numbers it gives are meaningless; they show the pipeline end to end offline.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from robustbench_gcp.data.folders import imagenet_wnids
from robustbench_gcp.data.synthetic import make_image_folder
from robustbench_gcp.models import create_model


def main(out: Path) -> None:
    wnids = [imagenet_wnids()[i] for i in (1, 94, 207, 281, 417, 530, 817, 948)]
    make_image_folder(out / "val", wnids, per_class=4, seed=0)
    torch.manual_seed(0)
    model = create_model("resnet18-gap")
    torch.save(model.state_dict(), out / "resnet18-random.pth")
    print(f"wrote {out / 'val'} ({len(wnids)} classes x 4 images) and {out / 'resnet18-random.pth'}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "sample-data"))
