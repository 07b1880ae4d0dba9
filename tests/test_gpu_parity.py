"""The GPU path against the CPU path (all skipped without CUDA; ``make gpu-check`` runs them).

Complements the quick CUDA tests of test_corruptions.py, test_perturbations.py and
test_models.py (severity 3 on 64 px noise images, deterministic sequences only, random
features) with what a user's numbers rest on:

- every corruption at every severity and every perturbation sequence, on real photographs,
  with the same random draws (made on the CPU and moved to the GPU: CPU and CUDA generators
  give other numbers for the same seed), within the fidelity target the port meets against the
  reference (mean absolute difference below one uint8 level, tests/test_corruptions_fidelity.py);
- how often each corruption makes the host wait for the device (torch.profiler's CUDA
  synchronizations per batch), against the counts tests/test_host_syncs.py finds on the CPU;
- the JPEG round trips on CUDA (storage at q85, jpeg_compression's five qualities) against
  PIL's libjpeg, bit for bit, and nvJPEG's difference from it (printed; not used);
- ``eval`` on CUDA against ``eval`` on CPU: the same per-image correctness, except where float
  rounding flips a near-tie (at most 1 image of the folder's 12 per cell; printed);
- ``--amp`` (float16 autocast): the GCP matrix functions still run in float32 (float64 for SVD),
  and the pooled features equal float32's within float16's precision.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

import corruptions.perturbations as perturbations_module
from corruptions import get_corruption, list_corruptions, sample_parameters, storage_roundtrip
from corruptions.perturbations import list_perturbations, perturbation_sequence

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

DEVICE = "cuda"
LEVEL = 1 / 255  # the fidelity target: mean absolute difference below one uint8 level
SEEDS = [11, 12]


def _moved(params: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in params.items()}


def _mad_levels(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double().cpu() - b.double().cpu()).abs().mean() / LEVEL)


@pytest.fixture(scope="module")
def photos224() -> torch.Tensor:
    from robustbench_gcp.bench.photos import photos

    return photos(2, 224)


# --------------------------------------------------------------------------------------
# corruptions and perturbations


#: waits for the device per call of a batch of 8 at severity 3 (tests/test_host_syncs.py finds
#: the same without a GPU): one for the draws whose work depends on the data, and Canny's
#: hysteresis checks for spatter
WAITS = {"shot_noise": 1, "impulse_noise": 1, "glass_blur": 1, "spatter": 2}


#: the CUDA runtime calls that make the host wait for the device
WAIT_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpy")


def _device_waits(work) -> list[str]:
    """The waits for the device while ``work()`` runs and the device is then synchronized, each
    named by the operator that made it (torch.profiler's CUDA runtime events)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        work()
        torch.cuda.synchronize()
    return [e.cpu_parent.name if e.cpu_parent is not None else e.name
            for e in prof.events() if e.name in WAIT_CALLS]


def test_device_waits_counts_what_it_is_shown():
    """The counter itself: the profiler's own waits (its start and stop, the synchronize at the
    end) are the baseline the corruptions' counts are taken over; a copy to the host is one more."""
    baseline = len(_device_waits(lambda: None))
    x = torch.ones(8, device=DEVICE)
    assert len(_device_waits(lambda: x.sum().item())) > baseline


@pytest.mark.parametrize("name", list_corruptions("all"))
def test_corruption_on_cuda_waits_for_the_device_as_known(name, photos224):
    from corruptions import corrupt

    images = photos224.repeat(4, 1, 1, 1).to(DEVICE)
    seeds = list(range(8))
    # as the engine calls it: its decoded images are in range (the check is one wait of its own)
    corrupt(images, name, 3, seed=seeds, check_values=False)  # builds the cached tables and matrices
    torch.cuda.synchronize()
    # what the profiler and the synchronize cost by themselves: counted, not assumed (on an H200
    # with torch 2.11 the profiler adds a wait of its own to the synchronize's)
    baseline = len(_device_waits(lambda: None))
    made_by = _device_waits(lambda: corrupt(images, name, 3, seed=seeds, check_values=False))
    waits = len(made_by) - baseline
    print(f"{name}: {waits} waits for the device per batch of 8 (over a baseline of {baseline}; "
          f"all: {', '.join(made_by)})")
    assert waits <= WAITS.get(name, 0), f"{name}: waits made by {made_by}, baseline {baseline}"


@pytest.mark.parametrize("name", [name for name in list_corruptions("all") if get_corruption(name).random])
def test_per_image_draws_on_cuda_are_the_loops_on_the_callers_stream(name, photos224):
    """Each image's draws on CUDA give the numbers of one thread's loop whatever the pool's size,
    and go to the caller's stream (a pool thread would launch on the default one unless told). The
    default stream is kept busy meanwhile (``torch.cuda._sleep``): a draw put there would land
    after the side stream read it. Threaded launches were tried and were 4x slower
    (``_rng.per_image_map``); this keeps a second try honest."""
    from corruptions import corrupt

    images = photos224.repeat(4, 1, 1, 1).to(DEVICE)
    seeds = list(range(8))
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # the pool's map is then a loop in this thread
        loop = corrupt(images, name, 3, seed=seeds)
        torch.set_num_threads(max(previous, 4))
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        torch.cuda._sleep(200_000_000)  # about 0.1 s of the default stream's time
        with torch.cuda.stream(side):
            threaded = corrupt(images, name, 3, seed=seeds)
            threaded = threaded.clone()  # a kernel of the side stream's, reading the draws' results
        torch.cuda.synchronize()
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(loop, threaded), f"{name}: threaded draws differ from the loop's"


@pytest.mark.parametrize("name", list_corruptions("all"))
def test_corruption_on_cuda_equals_cpu_at_every_severity(name, photos224):
    spec = get_corruption(name)
    worst = 0.0
    for severity in range(1, 6):
        params = sample_parameters(photos224, name, severity, seed=SEEDS)  # the CPU's draws
        cpu = spec.apply(photos224, severity, params).clamp(0, 1)
        gpu = spec.apply(photos224.to(DEVICE), severity, _moved(params, DEVICE)).clamp(0, 1)
        assert gpu.device.type == torch.device(DEVICE).type and gpu.shape == cpu.shape
        mad = _mad_levels(gpu, cpu)
        assert mad < 1.0, f"{name} severity {severity}: CUDA differs from CPU by {mad:.3f} levels"
        worst = max(worst, mad)
    print(f"{name}: largest mean difference CUDA - CPU {worst:.4f} levels")


@pytest.mark.parametrize("name", ["brightness", "saturate", "contrast"])
def test_the_originals_bytes_on_cuda_as_on_the_cpu(name, photos224):
    """The float64 HSV arithmetic divides as NumPy on CUDA too (a Python divisor would be a
    reciprocal multiplication there): after the storage truncation, the CPU's bytes exactly."""
    from corruptions import corrupt
    from corruptions.storage import truncate_to_uint8

    # flat images too: a flat channel's mean decides which side of its level all of it lands
    # (contrast's running mean; CUDA's cumsum adds in parallel)
    flat = torch.arange(1, 256, 4, dtype=torch.float32).div(255).view(-1, 1, 1, 1).expand(-1, 3, 224, 224)
    for images in (photos224, flat.contiguous()):
        for severity in range(1, 6):
            cpu = truncate_to_uint8(corrupt(images, name, severity))
            gpu = truncate_to_uint8(corrupt(images.to(DEVICE), name, severity)).cpu()
            assert torch.equal(gpu, cpu), (name, severity, int((gpu != cpu).sum()))


@pytest.fixture
def draws_on_the_cpu(monkeypatch):
    """Perturbation draws made on the CPU and moved to the images' device (as the corruptions)."""
    import dataclasses

    draw = perturbations_module.draw_parameters

    def on_cpu(spec, job):
        return _moved(draw(spec, dataclasses.replace(job, x=job.x.cpu())), job.x.device)

    monkeypatch.setattr(perturbations_module, "draw_parameters", on_cpu)


@pytest.mark.parametrize("name", list_perturbations("all"))
def test_perturbation_on_cuda_equals_cpu(name, draws_on_the_cpu):
    from robustbench_gcp.bench.photos import photos

    x = photos(2, 128)
    for difficulty in (1, 3) if name in ("gaussian_noise", "shot_noise", "speckle_noise") else (1,):
        cpu = perturbation_sequence(x, name, difficulty, seed=SEEDS)
        gpu = perturbation_sequence(x.to(DEVICE), name, difficulty, seed=SEEDS)
        assert gpu.device.type == torch.device(DEVICE).type and gpu.shape == cpu.shape
        mad = _mad_levels(gpu, cpu)
        worst_frame = max(_mad_levels(gpu[:, t], cpu[:, t]) for t in range(cpu.shape[1]))
        assert mad < 1.0, f"{name} difficulty {difficulty}: CUDA differs from CPU by {mad:.3f} levels"
        print(f"{name} difficulty {difficulty}: CUDA - CPU {mad:.4f} levels (worst frame {worst_frame:.3f})")


# --------------------------------------------------------------------------------------
# JPEG: the tensor codec (corruptions/jpeg.py), and nvJPEG for the record


def _pil_jpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    from PIL import Image

    out = []
    for image in images:
        pixels = (image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=quality, optimize=True)
        out.append(torch.from_numpy(np.array(Image.open(buffer))).permute(2, 0, 1).float() / 255)
    return torch.stack(out)


def test_jpeg_on_cuda_equals_pil_bit_for_bit(photos224):
    from robustbench_gcp.bench.jpeg_speed import nvjpeg_roundtrip

    out = storage_roundtrip(photos224.to(DEVICE))
    assert out.device.type == torch.device(DEVICE).type and out.dtype == photos224.dtype
    assert torch.equal(out.cpu(), _pil_jpeg(photos224, 85))
    for severity, quality in enumerate((25, 18, 15, 10, 7), 1):
        spec = get_corruption("jpeg_compression")
        got = spec.apply(photos224.to(DEVICE), severity, {}).cpu()
        assert torch.equal(got, _pil_jpeg(photos224, quality)), quality
    # torchvision's nvJPEG codec, which the round trip does not use (4:4:4 sampling)
    pixels = (photos224 * 255).round().to(torch.uint8).to(DEVICE)
    try:
        decoded = nvjpeg_roundtrip(pixels, 85)
    except (RuntimeError, NotImplementedError) as error:
        print(f"nvJPEG: not available in this torchvision ({error})")
        return
    mad = _mad_levels(decoded.float() / 255, _pil_jpeg(photos224, 85))
    print(f"nvJPEG - libjpeg at quality 85: {mad:.3f} levels on average (not used)")


# --------------------------------------------------------------------------------------
# eval


def _correctness(store) -> dict:
    from robustbench_gcp.store import Store

    with Store(store, read_only=True) as s:
        (run,) = s.runs()
        return {key.label: s.cell_result(cell, key, run.n_shards) for cell, key in s.cells(run.id)}


def test_eval_on_cuda_counts_as_on_cpu(image_folder, gap_checkpoint, tmp_path):
    """The same decisions image by image; float rounding may flip a near-tie (<= 1 of 12 per cell).

    Deterministic corruptions only: random ones draw other numbers on CUDA generators."""
    from robustbench_gcp import evaluate

    common = dict(checkpoint=str(gap_checkpoint), data=image_folder, suite="imagenet-c",
                  corruptions="defocus_blur,zoom_blur,contrast,pixelate,jpeg_compression",
                  severities=[1, 5], workers=0, batch_size=4, shard_size=6)
    evaluate("resnet18-gap", device="cpu", store=tmp_path / "cpu.db", **common)
    evaluate("resnet18-gap", device=DEVICE, store=tmp_path / "cuda.db", **common)
    cpu, gpu = _correctness(tmp_path / "cpu.db"), _correctness(tmp_path / "cuda.db")
    assert cpu.keys() == gpu.keys() and len(cpu) == 11
    flips = {}
    for label in cpu:
        a, b = cpu[label], gpu[label]
        assert a.complete and b.complete and a.n == b.n == 12
        flips[label] = int((a.correct != b.correct).sum())
        # counts follow the bitmaps (a top-5 near-tie may flip as well)
        assert abs(a.counts["top1_errors"] - b.counts["top1_errors"]) <= flips[label]
        assert abs(a.counts["top5_errors"] - b.counts["top5_errors"]) <= 1
    print(f"images whose top-1 decision differs CUDA vs CPU: {sum(flips.values())} of "
          f"{12 * len(flips)} ({', '.join(f'{k}: {v}' for k, v in flips.items() if v) or 'none'})")
    assert max(flips.values()) <= 1, flips


# --------------------------------------------------------------------------------------
# --amp


@pytest.mark.parametrize("name", ["resnet50-isqrt", "resnet50-mpncov", "resnet50-svdpade",
                                  "resnet50-dropcov"])
def test_amp_keeps_matrix_functions_in_float32(name, photos224, monkeypatch):
    from robustbench_gcp.models import create_model, heads

    torch.manual_seed(0)
    model = create_model(name).eval().to(DEVICE)
    cfg = model.pretrained_cfg
    mean = torch.tensor(cfg.mean, device=DEVICE).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std, device=DEVICE).view(1, 3, 1, 1)
    x = (photos224.to(DEVICE) - mean) / std
    with torch.no_grad():
        feats = model.forward_features(x)  # float32: both heads see the same features
        reference = model.forward_head(feats, pre_logits=True)

        seen = []

        def recording(function):
            def wrapper(a, *args, **kwargs):
                out = function(a, *args, **kwargs)
                seen.append((function.__name__, a.dtype, out.dtype, torch.is_autocast_enabled(DEVICE)))
                return out
            return wrapper

        monkeypatch.setattr(heads, "covariance", recording(heads.covariance))
        monkeypatch.setattr(heads, "matrix_sqrt", recording(heads.matrix_sqrt))
        with torch.autocast(DEVICE, dtype=torch.float16):
            pooled = model.forward_head(feats, pre_logits=True)
    assert pooled.dtype == torch.float32 and torch.isfinite(pooled).all()  # the classifier's input too
    assert seen and all(dtype_in in (torch.float32, torch.float64) and dtype_out == dtype_in and not autocast
                        for _, dtype_in, dtype_out, autocast in seen), seen
    error = float((pooled - reference).norm() / reference.norm())
    print(f"{name}: pooled features under float16 autocast, relative error {error:.2e}")
    assert error < 1e-2  # float16 keeps 11 bits (5e-4 per value): the 1x1 reduction and output rounding


def test_uint8_levels_become_the_cpus_floats_on_cuda():
    """``x / 255`` on CUDA multiplies by 1/255 (126 of the 256 levels one float32 step off the
    CPU's k / 255); from_uint8 divides as the CPU does."""
    from corruptions import from_uint8

    levels = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(from_uint8(levels.to(DEVICE)).cpu(), from_uint8(levels))
    assert torch.equal(from_uint8(levels), levels.float() / 255)
