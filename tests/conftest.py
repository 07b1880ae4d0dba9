"""Shared fixtures: generated ImageNet-style folders and random-weight checkpoints on disk."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
# The processes tests start and stop with Ctrl-C take SIGINT as a terminal gives it. A test session
# started in the background without job control (`make test &`, `nohup`, some CI runners) inherits
# SIGINT ignored, and so did they: seven tests failed, the tool rightly leaving an ignored SIGINT
# ignored. The one test of that case ignores it in its own child.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
# gcp-robust's cache (model descriptions, fetched checkpoints) in a folder of this session, not ~/.cache
os.environ["GCP_ROBUST_CACHE"] = tempfile.mkdtemp(prefix="gcp-robust-test-cache-")
atexit.register(shutil.rmtree, os.environ["GCP_ROBUST_CACHE"], ignore_errors=True)
# The temporary folders of the subprocesses tests start (torchrun's torchelastic_*, multiprocessing's
# pymp-* of a process a test kills) in one of this session too: they were left in /tmp by the hundred.
# This process keeps its own (pytest keeps its last folders there for a look after a failure).
tempfile.gettempdir()
os.environ["TMPDIR"] = tempfile.mkdtemp(prefix="gcp-robust-test-tmp-")
atexit.register(shutil.rmtree, os.environ["TMPDIR"], ignore_errors=True)

# Under pytest-xdist (`make test` runs one worker per usable core) each worker keeps to its share of
# them: torch's default of one thread per core in every worker made them fight over the same ones.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    import torch

    from robustbench_gcp.engine.cpus import usable_cpus

    torch.set_num_threads(max(1, usable_cpus() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

# Three real ImageNet wnids (standard indices 0, 1, 2) and one further away.
WNIDS = ("n01440764", "n01443537", "n01484850", "n02123045")


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """An ImageNet-style folder: 4 wnid classes x 3 JPEGs of varied sizes."""
    from robustbench_gcp.data.synthetic import make_image_folder

    return make_image_folder(tmp_path_factory.mktemp("data") / "val", WNIDS, per_class=3, seed=1)


@pytest.fixture(scope="session")
def gap_checkpoint(tmp_path_factory, image_folder) -> Path:
    """A torchvision-layout ResNet-18 (bare state dict) with seeded random weights whose prediction
    depends on the image: a cell of other pictures has other correctness bitmaps."""
    import torch
    from PIL import Image
    from torchvision import transforms

    from robustbench_gcp.data.folders import imagenet_wnids, scan_folder
    from robustbench_gcp.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet18-gap").eval()
    # Keep the predictions among the folder's classes so that errors and correctness bitmaps are
    # neither all 0 nor all 1; and centre the logits on image_folder's mean feature (a random ResNet's
    # pooled features share a large common part, which made it predict one class for every image).
    pre = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                              transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    pictures = []
    for path in scan_folder(image_folder).paths():
        with Image.open(path) as image:
            pictures.append(pre(image.convert("RGB")))
    pooled = []
    hook = model.fc.register_forward_hook(lambda module, inputs, output: pooled.append(inputs[0]))
    keep = torch.tensor([imagenet_wnids().index(w) for w in WNIDS])
    with torch.no_grad():
        model(torch.stack(pictures))
        hook.remove()
        weight = torch.zeros_like(model.fc.weight)
        weight[keep] = model.fc.weight[keep] * 20
        bias = torch.full_like(model.fc.bias, -100.0)
        bias[keep] = -weight[keep] @ pooled[0].mean(0)
        model.fc.weight.copy_(weight)
        model.fc.bias.copy_(bias)
    path = tmp_path_factory.mktemp("ckpt") / "resnet18-random.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def demo_val(tmp_path_factory) -> Path:
    """The embedded demo's validation folder (10 classes x 10 images, 80-96 px)."""
    from robustbench_gcp.data.demo_images import build_demo_dataset

    return build_demo_dataset(tmp_path_factory.mktemp("demo") / "data") / "val"


@pytest.fixture
def store_path(tmp_path) -> Path:
    return tmp_path / "results.db"


@pytest.fixture
def on_sys_path(tmp_path, monkeypatch):
    """Put ``tmp_path`` first on sys.path for the test; modules imported from it are forgotten
    afterwards. (Not monkeypatch.syspath_prepend: it trips over the pkg_resources namespace
    stub that a dependency leaves in sys.modules.)"""
    import sys

    before = set(sys.modules)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    yield tmp_path
    for name in set(sys.modules) - before:
        module = sys.modules.get(name)
        if str(getattr(module, "__file__", "") or "").startswith(str(tmp_path)):
            del sys.modules[name]
