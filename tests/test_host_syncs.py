"""The per-batch path of a cell does not wait for the device (issue 16, on CPU as well).

On a GPU, ``.item()``, ``.cpu()``, ``bool(tensor)``, ``torch.equal`` and ``nonzero`` make the
host wait for the device. Two ways find them without a GPU:

- torch.profiler records some on CPU too (``aten::_local_scalar_dense``, ``aten::nonzero``),
  so they can be counted per batch;
- an applier run on "meta" tensors (shapes, no data) fails at every read of a value by the
  host, copies to the CPU and ``torch.equal`` included, which the profiler does not see on CPU.
"""

from __future__ import annotations

import collections
import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from corruptions import get_corruption, get_perturbation, list_corruptions, list_perturbations
from corruptions._rng import ImageRandom
from corruptions.perturbations import draw_parameters, frame_count, perturbation_sequence, window_size
from corruptions.perturbations._sequence import Job
from robustbench_gcp.engine.classifier import Classifier
from robustbench_gcp.engine.runner import Context, ImageSource, _Accumulator
from robustbench_gcp.models import create_model
from robustbench_gcp.store import CellKey
from robustbench_gcp.suites.imagenet_c import Corrupt
from robustbench_gcp.suites.imagenet_p import NOISE_PERTURBATIONS, PerturbationTask
from robustbench_gcp.suites.tasks import ClassifyTask

# one event per wait (``bool(t)`` records aten::is_nonzero around aten::_local_scalar_dense)
SYNCS = ("aten::_local_scalar_dense", "aten::nonzero")

#: the host syncs that corruptions make per batch, whatever its size: one each for the
#: random draws whose work depends on the data (shot_noise: how many values the Poisson guide
#: leaves short and how many lie off the uint8 grid; impulse_noise: whether an image ran out
#: of gaps; glass_blur: whether a chain outlived the unchecked doublings)
PER_BATCH = {"shot_noise": 1, "impulse_noise": 1, "glass_blur": 1}
#: and more on the first call only, while they build their cached tables and matrices (64 px,
#: severity 3, as measured)
FIRST_CALL = {"shot_noise": 1, "glass_blur": 6, "elastic_transform": 6, "pixelate": 3, "gaussian_blur": 6,
              "spatter": 6}


@pytest.fixture(scope="module")
def ctx():
    model = create_model("demo-isqrt").eval()
    cfg = model.pretrained_cfg
    return Context(Classifier(model, torch.device("cpu"), mean=cfg.mean, std=cfg.std), batch_size=4)


def syncs_of(call) -> collections.Counter:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    # the recorded events as they are: prof.events() builds Python objects and a tree of them
    # first (4 s for an ImageNet-P batch's 75,000 events), with the same names
    names = (event.name() for event in prof.profiler.kineto_results.events())
    return collections.Counter(name for name in names if name in SYNCS)


def batch(size: int = 4):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (size, 3, 64, 64), dtype=torch.uint8, generator=generator)
    return images, torch.arange(size)


def test_the_clean_cell_and_its_counting_never_wait_for_the_device(ctx):
    task = ClassifyTask(CellKey("clean", "clean"), ImageSource(Path(".")))
    images, labels = batch()
    accumulator = _Accumulator()

    def per_batch():
        for part in task.process(images, labels, [0, 1, 2, 3], ctx):
            accumulator.add(part)

    assert syncs_of(per_batch) == collections.Counter()
    # once per shard: the totals come to the host, and the non-finite check
    at_the_end = syncs_of(lambda: (accumulator.result(), ctx.classifier.check_finite()))
    assert at_the_end["aten::_local_scalar_dense"] <= 3
    result = accumulator.result()
    assert result.n == 4 and isinstance(result.counts["top1_errors"], int)
    assert result.correct.dtype == bool and result.correct.shape == (4,)


@pytest.mark.parametrize("name", list_corruptions("all"))
def test_corrupted_cells_wait_for_the_device_once_per_batch_at_most(ctx, name):
    task = ClassifyTask(CellKey("imagenet-c", name, "3"), ImageSource(Path(".")),
                        Corrupt(name, 3, "torch", True))
    found = []
    for size in (4, 4, 12):  # the second call finds the cached matrices; the third is larger
        images, labels = batch(size)
        call = functools.partial(task.process, images, labels, list(range(size)), ctx)
        found.append(sum(syncs_of(call).values()))
        ctx.classifier.check_finite()
    first, *later = found
    assert first <= FIRST_CALL.get(name, 0) + PER_BATCH.get(name, 0), found
    assert later == [PER_BATCH.get(name, 0)] * 2, found


#: the appliers that still read device values on the host, and why
ON_THE_HOST = {
    "shot_noise": "how many values the Poisson guide leaves short (one read per batch)",
    "glass_blur": "whether a chain outlived the unchecked doublings (one per batch)",
    "spatter": "Canny hysteresis: whether the edges stopped growing (1 or 2 per batch at 224 px)",
}


class _HostToDevice(TorchDispatchMode):
    """Records the copies of CPU tensors to the "meta" device (host-to-device copies in real
    life: on CUDA a blocking one waits for all queued work) and ``torch.tensor(..., device=)``
    calls (their copy happens below the dispatcher)."""

    def __init__(self, monkeypatch):
        super().__init__()
        self.copies: list[str] = []
        for name in ("tensor", "as_tensor"):
            made = getattr(torch, name)

            def record(*args, _made=made, _name=name, **kwargs):
                if kwargs.get("device") is not None and torch.device(kwargs["device"]).type != "cpu":
                    self.copies.append(f"torch.{_name}(..., device={kwargs['device']})")
                return _made(*args, **kwargs)

            monkeypatch.setattr(torch, name, record)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        queued = func is torch.ops.aten.copy_.default and args[2:3] == (True,)
        if (kwargs or {}).get("non_blocking") or queued:
            return out  # queued behind the device's work: the host does not wait (host_to_device)
        inputs = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        outputs = [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
        if any(t.device.type == "cpu" for t in inputs) and any(t.device.type == "meta" for t in outputs):
            self.copies.append(f"{func}: {[tuple(t.shape) for t in inputs if t.device.type == 'cpu']}")
        return out


@pytest.mark.parametrize("name", list_corruptions("all"))
def test_appliers_never_read_the_device_but_the_known(name, monkeypatch):
    """And, once their cached tables are on the device, copy nothing from the host to it."""
    corruption = get_corruption(name)
    images = torch.rand(2, 3, 48, 40, generator=torch.Generator().manual_seed(0))
    params = corruption.sample(ImageRandom(2, "cpu", seeds=[1, 2]), images, 3)
    on_meta = {k: v.to("meta") if isinstance(v, torch.Tensor) else v for k, v in params.items()}
    images = images.to("meta")
    assert bool(corruption.host_read) == (name in ON_THE_HOST)  # which says so to a caller on "meta"
    if name in ON_THE_HOST:
        with pytest.raises((RuntimeError, NotImplementedError)):
            corruption.applier(images, corruption.level(3), on_meta)
        with pytest.raises(ValueError, match=rf"^{name} cannot run on 'meta' images, which hold no values: "
                                             "once per batch the host reads "):
            corruption.apply(images, 3, on_meta)  # torch's "Tensor.item() cannot be called on meta tensors"
        return
    corruption.apply(images, 3, on_meta)  # builds the cached tables
    with _HostToDevice(monkeypatch) as watch:
        out = corruption.apply(images, 3, on_meta)
    assert out.device.type == "meta" and out.shape == images.shape
    assert watch.copies == []


def test_device_constants_are_copied_once_and_the_least_recently_used_go_first(monkeypatch):
    """Each constant crosses to the device once while it is among the 256 last used; a process
    with more (many image sizes, qualities) drops the oldest, not the whole cache."""
    from corruptions import _ops

    monkeypatch.setattr(_ops, "_CONSTANTS", collections.OrderedDict())
    first = _ops.device_constant((0.0,), torch.float32, torch.device("cpu"))
    for k in range(1, 256):
        _ops.device_constant((float(k),), torch.float32, torch.device("cpu"))
    assert _ops.device_constant((0.0,), torch.float32, torch.device("cpu")) is first  # used again
    _ops.device_constant((256.0,), torch.float32, torch.device("cpu"))  # one too many: (1.0,) goes
    assert len(_ops._CONSTANTS) == 256
    assert _ops.device_constant((0.0,), torch.float32, torch.device("cpu")) is first
    assert ((1.0,), torch.float32, "cpu") not in _ops._CONSTANTS
    assert ((2.0,), torch.float32, "cpu") in _ops._CONSTANTS
    assert _ops.device_constant((1.0,), torch.float32, torch.device("cpu")).item() == 1.0


def test_a_perturbation_batch_never_waits_for_the_device(ctx):
    """ImageNet-P: the frames' logits, flip rates, their sums and per-video values stay on the
    device until the shard ends (one task per sequence; the noise levels' tasks alike). The
    geometric sequences of whole images (``ImageSource.window``) read their sizes once per
    batch (``Preprocess.window_sizes``)."""
    for name in list_perturbations("all"):
        difficulties = (1,) if name in NOISE_PERTURBATIONS else (1, 2, 3)
        task = PerturbationTask(name, difficulties, ImageSource(Path("."), resize_size=64, crop_size=56), 56)
        images, labels = batch()
        call = functools.partial(task.process, images, labels, [0, 1, 2, 3], ctx)
        call()  # cached tables
        assert syncs_of(call) == collections.Counter(), name
        parts = call()
        assert all(isinstance(v, (int, torch.Tensor)) for part in parts for v in part.counts.values())
        accumulator = _Accumulator()
        accumulator.add(parts[0])
        result = accumulator.result()
        assert result.extra.shape == (4, 2) and result.extra.dtype == np.float32, name
        rates = result.extra[:, 0].astype(np.float64)
        assert result.counts["flip_rate_sum"] == pytest.approx(float(rates.sum()))


@pytest.mark.parametrize("name", list_perturbations("all"))
def test_perturbations_never_read_the_device_nor_wait_to_copy_to_it(name, monkeypatch):
    """The appliers on "meta" images (shapes only): a read of a device value fails, and copies
    from the host are queued (pinned, non-blocking on CUDA), not waited for."""
    spec = get_perturbation(name)
    images = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    job = Job(x=images, crop=32, top=4, frames=list(range(frame_count(name))), difficulty=2,
              seeds=[1, 2] if spec.random else None, generator=None, quantize=True)
    params = {k: v.to("meta") for k, v in draw_parameters(spec, job).items()}
    on_meta = Job(**{**job.__dict__, "x": images.to("meta")})
    assert bool(spec.host_read) == (name == "spatter")  # which says so to a caller on "meta" (helper-261)
    if name == "spatter":  # its Canny, as in ImageNet-C (the noise is drawn before, by the sampler)
        with pytest.raises((RuntimeError, NotImplementedError)):
            spec.apply(on_meta, params)
        with pytest.raises(ValueError, match=r"^spatter cannot run on 'meta' images, which hold no values: "
                                             "once per batch the host reads whether the Canny"):
            perturbation_sequence(images.to("meta"), name, frames=[0])  # torch's aten::equal named neither
        return
    spec.apply(on_meta, params)  # builds the cached tables
    with _HostToDevice(monkeypatch) as watch:
        out = spec.apply(on_meta, params)
    assert out.device.type == "meta" and out.shape == (2, frame_count(name), 3, 32, 32)
    assert watch.copies == []


def test_windows_of_larger_images_are_cut_without_waiting_for_the_device(monkeypatch):
    """ImageNet-P's geometric sequences of whole non-square images (``sizes``): the windows'
    placement comes from the host, queued to the device."""
    crop = 32
    window = window_size(crop, ["rotate"])
    images = torch.zeros(3, 3, window, window, device="meta")
    sizes = [(36, 48), (36, 48), (48, 36)]
    perturbation_sequence(images, "rotate", sizes=sizes, crop_size=crop, frames=[0, 1])
    with _HostToDevice(monkeypatch) as watch:
        out = perturbation_sequence(images, "rotate", sizes=sizes, crop_size=crop, frames=[0, 1])
    assert out.shape == (3, 2, 3, crop, crop) and watch.copies == []


def test_the_landscape_waits_for_the_device_once_per_batch(ctx):
    """Each pass checked its logits and gradient on the host, and each image's values were copied
    alone: 4 waits per image at the default 50 steps, and a copy per image."""
    from robustbench_gcp.suites.landscape_measure import DEFAULT_ETAS, LandscapeSettings, measure

    settings = LandscapeSettings("stem", "ascent", DEFAULT_ETAS["stem"])
    images, labels = batch(3)
    x = images.float() / 255
    found = syncs_of(lambda: measure(x, labels, ctx.classifier, settings))
    assert found["aten::_local_scalar_dense"] <= 1, found  # the batch's one look at the passes' checks


def test_the_attacks_counts_stay_on_the_device_until_the_shard_ends(ctx):
    """Three counts and the robust images came to the host per epsilon and batch (4 waits each)."""
    from robustbench_gcp.suites.attacks import AttackSpec, AttackTask

    task = AttackTask(AttackSpec("fgsm", (1 / 255, 4 / 255)), ImageSource(Path(".")), 10)
    images, labels = batch(4)
    parts = task.process(images, labels, list(range(4)), ctx)
    assert all(isinstance(value, torch.Tensor) for part in parts for value in part.counts.values())
    assert all(isinstance(part.correct, torch.Tensor) for part in parts)


def test_the_range_check_reads_its_minimum_and_maximum_at_once():
    """corrupt's default check of [0, 1] read them one by one: two waits on CUDA, where the GPU
    kit counts every wait of a corruption (there, one copy of both)."""
    from corruptions._registry import check_range

    images = torch.rand(2, 3, 32, 32)
    assert syncs_of(lambda: check_range(images)) == collections.Counter()
    images[0] = 2
    images[1] = -0.5
    with pytest.raises(ValueError, match="Got values from -0.5 to 2"):
        check_range(images)
