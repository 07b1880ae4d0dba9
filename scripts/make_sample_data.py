"""Generate a small ImageNet-style sample folder and a random-weight ResNet-18 checkpoint.

Usage: python scripts/make_sample_data.py [OUT_DIR]   (default: sample-data/)

The folder uses real ImageNet wnids, so labels get their standard indices; the
checkpoint is a torchvision-layout ResNet-18 with seeded random weights. The
numbers it gives are meaningless; they show the pipeline end to end offline.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: one optional OUT_DIR; ``--help`` prints usage, unknown options are errors.

    Parsed before torch is imported, so that ``--help`` and a mistyped option answer at once
    and write nothing.
    """
    parser = argparse.ArgumentParser(
        description="Write a small wnid-named sample folder (OUT_DIR/val: 8 classes x 4 images) "
        "and a seeded random-weight ResNet-18 (OUT_DIR/resnet18-random.pth) for trying "
        "`gcp-robust eval` offline. The accuracies it gives are meaningless.",
    )
    parser.add_argument("out", metavar="OUT_DIR", type=Path, nargs="?", default=Path("sample-data"),
                        help="folder to write into (default: sample-data)")
    return parser.parse_args(argv)


def main(out: Path) -> None:
    """Write the sample folder and the checkpoint under ``out``."""
    import torch

    from robustbench_gcp.data.folders import imagenet_wnids
    from robustbench_gcp.data.synthetic import make_image_folder
    from robustbench_gcp.models import create_model

    wnids = [imagenet_wnids()[i] for i in (1, 94, 207, 281, 417, 530, 817, 948)]
    make_image_folder(out / "val", wnids, per_class=4, seed=0)
    torch.manual_seed(0)
    model = create_model("resnet18-gap")
    torch.save(model.state_dict(), out / "resnet18-random.pth")
    print(f"wrote {out / 'val'} ({len(wnids)} classes x 4 images) and {out / 'resnet18-random.pth'}")


if __name__ == "__main__":
    main(parse_args().out)
