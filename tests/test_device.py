"""Bad device choices and an out-of-memory device, on CPU: each is one line naming the fix.

``--device`` / ``--amp`` are checked when the command is planned (before a model is loaded);
the CUDA answers are simulated by monkeypatching ``torch.cuda``. An out-of-memory model goes
through the engine of every suite and nothing is stored for its shard. The torchrun backend
choice (``GCP_ROBUST_DIST_BACKEND``) and the rank -> GPU map are unit-tested here too.
"""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from robustbench_gcp.cli import main
from robustbench_gcp.engine import device as device_module
from robustbench_gcp.engine.device import amp_dtype, check_amp, out_of_memory, resolve_device
from robustbench_gcp.engine.distributed import BACKEND_VARIABLE, choose_backend, rank_gpu
from robustbench_gcp.errors import ConfigError, DeviceMemoryError, ModelCodeError
from robustbench_gcp.store import Store


def one_line(result) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture
def one_gpu(monkeypatch):
    """A machine that says it has one CUDA device (nothing is run on it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


# --------------------------------------------------------------------------------------
# --device


def test_cuda_without_cuda(no_gpu):
    with pytest.raises(ConfigError, match=r"^`--device cuda`: CUDA is not available on this machine; "
                                          r"use --device cpu$"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")


def test_a_gpu_index_beyond_the_machine(one_gpu):
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    assert resolve_device("auto") == torch.device("cuda")
    with pytest.raises(ConfigError, match=r"^`--device cuda:7`: this machine has 1 CUDA device \(cuda:0\)$"):
        resolve_device("cuda:7")


def test_a_gpu_index_beyond_several(monkeypatch, one_gpu):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    with pytest.raises(ConfigError, match=r"this machine has 4 CUDA devices \(cuda:0 to cuda:3\)$"):
        resolve_device("cuda:4")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "tpu", "cpu:a"])
def test_not_a_device(spec):
    with pytest.raises(ConfigError, match=r"^`--device` should be cpu, cuda, cuda:N, mps or auto\. Got "):
        resolve_device(spec)


@pytest.mark.parametrize("spec", [0, 1.0, ["cpu"]])
def test_a_device_of_another_type_is_refused_by_load_model_as_by_plan(spec):
    """torch takes 0 as cuda:0: load_model did, where plan refused it ("`device` should be a device")."""
    from robustbench_gcp import plan
    from robustbench_gcp.models import load_model

    said = r"^`device` should be cpu, cuda, cuda:N, mps or auto \(text or a torch\.device\)\. Got "
    with pytest.raises(ConfigError, match=said):
        load_model("demo-gap", device=spec)
    with pytest.raises(ConfigError, match=said):
        plan("demo-gap", device=spec)


def test_load_model_names_its_keyword_not_the_flag(one_gpu):
    """load_model is the library's alone: its refusals said `--device`, a flag it has not."""
    from robustbench_gcp.models import load_model

    with pytest.raises(ConfigError, match=r"^`device` should be cpu, cuda, cuda:N, mps or auto\. Got 'gpu'$"):
        load_model("demo-gap", device="gpu")
    with pytest.raises(ConfigError, match=r"^`device='cuda:7'`: this machine has 1 CUDA device \(cuda:0\)$"):
        load_model("demo-gap", device="cuda:7")
    with pytest.raises(ConfigError, match=r"^`device='cpu:1'`: the CPU takes no index; use device='cpu'$"):
        load_model("demo-gap", device=torch.device("cpu", 1))


def test_load_model_on_cuda_without_cuda(no_gpu):
    from robustbench_gcp.models import load_model

    with pytest.raises(ConfigError, match=r"^`device='cuda'`: CUDA is not available on this machine; "
                                          r"use device='cpu'$"):
        load_model("demo-gap", device="cuda")


def test_mps_without_mps(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^`--device mps`: MPS is not available on this machine; use "
                                          r"--device cpu$"):
        resolve_device("mps")


def test_a_cpu_with_an_index_is_refused():
    with pytest.raises(ConfigError, match=r"^`--device cpu:1`: the CPU takes no index; use --device cpu$"):
        resolve_device("cpu:1")
    assert resolve_device("cpu:0") == resolve_device(torch.device("cpu", 0)) == torch.device("cpu")


def test_eval_with_a_missing_gpu_is_one_line_before_the_model_loads(no_gpu, monkeypatch, image_folder,
                                                                     tmp_path):
    def never(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("robustbench_gcp.pipeline.execution.load_chosen", never)
    for spec in ("cuda", "cuda:7"):
        result = CliRunner().invoke(main, ["eval", "--model", "demo-gap", "--random-weights", "--data",
                                           str(image_folder), "--store", str(tmp_path / "r.db"),
                                           "--device", spec])
        assert result.exit_code == 2
        assert one_line(result) == f"Error: `--device {spec}`: CUDA is not available on this machine; " \
                                   "use --device cpu"
    assert not (tmp_path / "r.db").exists()


def test_a_bad_cuda_graphs_switch_is_one_line_before_the_model_loads(one_gpu, monkeypatch, image_folder,
                                                                      tmp_path):
    """GCP_ROBUST_CUDA_GRAPHS is read by the corruptions' draws, deep in a run on CUDA: a value
    neither on nor off is said when the run is planned (on the CPU it is not read)."""
    def never(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("robustbench_gcp.pipeline.execution.load_chosen", never)
    monkeypatch.setenv("GCP_ROBUST_CUDA_GRAPHS", "sometimes")
    result = CliRunner().invoke(main, ["eval", "--model", "demo-gap", "--random-weights", "--data",
                                       str(image_folder), "--store", str(tmp_path / "r.db"),
                                       "--device", "cuda"])
    assert result.exit_code == 2
    assert one_line(result) == ("Error: `GCP_ROBUST_CUDA_GRAPHS` should be 1 (CUDA graphs of the per-image "
                                "draws) or 0. Got 'sometimes'")
    assert not (tmp_path / "r.db").exists()
    from robustbench_gcp import plan

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert plan("resnet18-gap", random_weights=True, data=image_folder, device="cpu") is not None


# --------------------------------------------------------------------------------------
# --amp


def test_amp_dtypes():
    assert amp_dtype(torch.device("cuda", 0)) == torch.float16
    assert amp_dtype(torch.device("cpu")) == torch.bfloat16
    assert amp_dtype(torch.device("mps")) == torch.bfloat16


def test_amp_on_cpu_is_supported():
    # bfloat16 autocast runs on every CPU (emulated where the processor lacks it)
    assert resolve_device("cpu", amp=True) == torch.device("cpu")


@pytest.mark.parametrize("channels_last", [False, True])
def test_the_classifier_feeds_the_model_each_channel_less_its_mean_over_its_std(channels_last):
    """The only end-to-end check of normalization was a top-1 error on 12 images that a seeded
    random model gets the same with any mean (it calls nearly every image one class)."""
    from robustbench_gcp.engine.classifier import Classifier

    images = torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    fed = Classifier(torch.nn.Flatten(), torch.device("cpu"), mean=mean, std=std,
                     channels_last=channels_last)(images)
    expected = torch.stack([(images[:, c] - mean[c]) / std[c] for c in range(3)], dim=1)
    torch.testing.assert_close(fed, expected.flatten(1), rtol=1e-6, atol=1e-6)


def test_the_classifier_refuses_output_that_is_no_batch_of_logits():
    """A model you bring whose output is right for the plan's probe batches and wrong for another
    size (or integers) stopped the count with an IndexError, or counted integer ranks as logits."""
    from robustbench_gcp.engine.classifier import Classifier
    from robustbench_gcp.errors import ModelCodeError

    class OddAtThree(torch.nn.Module):
        def forward(self, x):
            out = x.flatten(1)
            return out[:2] if x.shape[0] == 3 else out

    classifier = Classifier(OddAtThree(), torch.device("cpu"), mean=(0.0,) * 3, std=(1.0,) * 3)
    assert classifier(torch.rand(2, 3, 2, 2)).shape == (2, 12)
    with pytest.raises(ModelCodeError, match=r"^the model's output for a batch of 3 images is \(2, 12\), "
                                             r"not \(3, classes\) logits$"):
        classifier(torch.rand(3, 3, 2, 2))
    ranks = Classifier(torch.nn.Flatten(), torch.device("cpu"), mean=(0.0,) * 3, std=(1.0,) * 3)
    ranks.model = lambda x: x.flatten(1).argsort(dim=1)
    with pytest.raises(ModelCodeError, match="^the model's output is torch.int64, not floating-point logits"):
        ranks(torch.rand(1, 3, 2, 2))


def test_amp_runs_the_convolutions_in_bfloat16_on_cpu_and_the_covariance_head_in_float32():
    """--amp's Classifier runs the body in the device's half type, the GCP head's matrix functions in
    float32, and returns float32 logits: nothing went through Classifier(amp=True) before (an
    autocast left out would have stored float32 runs labelled bfloat16)."""
    from robustbench_gcp.engine.classifier import Classifier
    from robustbench_gcp.models import create_model
    from robustbench_gcp.models.heads import CovariancePool

    torch.manual_seed(0)
    model = create_model("demo-isqrt").eval()
    seen = {}

    def record(name):
        def hook(module, args, output):  # returns None: the output stays as it is
            seen.setdefault(name, (args[0].dtype, output.dtype))
        return hook

    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    pool = next(m for m in model.modules() if isinstance(m, CovariancePool))
    first_conv.register_forward_hook(record("conv"))
    pool.register_forward_hook(record("pool"))
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    kwargs = {"mean": model.pretrained_cfg.mean, "std": model.pretrained_cfg.std}
    half = Classifier(model, torch.device("cpu"), amp=True, **kwargs)
    logits = half(images)
    assert half.precision == "bfloat16" and logits.dtype == torch.float32
    assert seen["conv"][1] == torch.bfloat16 and seen["pool"][1] == torch.float32
    seen.clear()
    full = Classifier(model, torch.device("cpu"), **kwargs)(images)
    assert seen["conv"] == (torch.float32, torch.float32) and not torch.equal(full, logits)
    assert torch.allclose(full, logits, atol=0.1 * full.abs().max().item())


def test_amp_without_autocast_on_the_device(monkeypatch):
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda kind: kind != "cpu")
    with pytest.raises(ConfigError, match=r"^`--amp`: this torch \(.*\) has no autocast on cpu; "
                                          r"run without --amp$"):
        check_amp(torch.device("cpu"))


def test_amp_where_the_half_type_does_not_run(monkeypatch):
    """A GPU whose half type fails (MPS before macOS 14 has no bfloat16): the probe says so."""
    real_ones = torch.ones

    def ones(*args, dtype=None, device=None, **kwargs):
        if torch.device(device).type == "mps":
            raise TypeError("MPS BFloat16 is only supported on MacOS 14 or newer")
        return real_ones(*args, dtype=dtype, device=device, **kwargs)

    monkeypatch.setattr(device_module.torch, "ones", ones)
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda kind: True)
    with pytest.raises(ConfigError, match=r"^`--amp` on mps: bfloat16 is not supported here \(MPS BFloat16 "
                                          r"is only supported on MacOS 14 or newer\); run without --amp$"):
        check_amp(torch.device("mps"))


def test_eval_amp_refused_before_the_model_loads(monkeypatch, image_folder, tmp_path):
    def no_autocast(kind):
        return False

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(torch.amp, "is_autocast_available", no_autocast)
    monkeypatch.setattr("robustbench_gcp.pipeline.execution.load_chosen", never)
    result = CliRunner().invoke(main, ["eval", "--model", "demo-gap", "--random-weights", "--data",
                                       str(image_folder), "--store", str(tmp_path / "r.db"), "--device",
                                       "cpu", "--amp"])
    assert result.exit_code == 2
    assert one_line(result).startswith("Error: `--amp`: this torch (")


# --------------------------------------------------------------------------------------
# torchrun: backend and GPU of each rank


def test_backend_default_and_forced(monkeypatch):
    """gloo on GPUs too: the ranks exchange host objects only, and a lost rank is noticed at once."""
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    monkeypatch.delenv(BACKEND_VARIABLE, raising=False)
    assert (choose_backend(cuda), choose_backend(cpu)) == ("gloo", "gloo")
    monkeypatch.setenv(BACKEND_VARIABLE, "Gloo")
    assert (choose_backend(cuda), choose_backend(cpu)) == ("gloo", "gloo")
    monkeypatch.setenv(BACKEND_VARIABLE, "nccl")
    assert choose_backend(cuda) == "nccl"
    with pytest.raises(ConfigError, match=r"^`GCP_ROBUST_DIST_BACKEND=nccl` needs --device cuda"):
        choose_backend(cpu)
    monkeypatch.setenv(BACKEND_VARIABLE, "mpi")
    with pytest.raises(ConfigError, match=r"^`GCP_ROBUST_DIST_BACKEND` should be nccl or gloo\. Got 'mpi'$"):
        choose_backend(cuda)


def test_rank_gpus():
    assert [rank_gpu(r, 4, "nccl") for r in range(4)] == [0, 1, 2, 3]
    assert [rank_gpu(r, 1, "gloo") for r in range(3)] == [0, 0, 0]  # ranks share the one GPU
    assert [rank_gpu(r, 2, "gloo") for r in range(4)] == [0, 1, 0, 1]
    with pytest.raises(ConfigError, match=r"^local rank 1 has no GPU of its own \(this machine has 1\) and "
                                          r"NCCL needs one per rank: .* unset GCP_ROBUST_DIST_BACKEND"):
        rank_gpu(1, 1, "nccl")


# --------------------------------------------------------------------------------------
# out of memory


def test_out_of_memory_errors_are_recognized():
    assert out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 4"))
    assert out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    assert out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate"))
    assert out_of_memory(RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"))
    assert not out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not out_of_memory(ValueError("out of memory"))


HUNGRY = '''
import torch


class Hungry(torch.nn.Module):
    """Its first batch of more than 2 images fits; every later one asks for more memory than the
    device has (so the clean cell's first shard is stored and the suite's own cell fails)."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 10)
        self.big_batches = 0

    def forward(self, x):
        if x.shape[0] > 2:
            self.big_batches += 1
            if self.big_batches > 1:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; "
                                             "79.15 GiB total capacity)\\nmore details")
        return self.fc(x.mean((2, 3)))


def make():
    return Hungry()
'''


# one small selection per suite; the suites' own cells go through the engine's compute loop
SUITES = {
    "clean": [],
    "imagenet-c": ["--corruptions", "fog", "--severities", "1"],
    "imagenet-p": ["--perturbations", "translate", "--difficulties", "1"],
    "adversarial": ["--attacks", "fgsm", "--epsilons", "1/255"],
    "landscape": ["--landscape-at", "pixels", "--etas", "0.01:0.1:2"],
}


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_out_of_memory_names_batch_size_and_stores_nothing(suite, on_sys_path, tmp_path, image_folder):
    (tmp_path / "hungry_net.py").write_text(HUNGRY)
    store = tmp_path / "r.db"
    result = CliRunner().invoke(main, ["eval", "--model", "hungry_net:make", "--suite", suite, "--data",
                                       str(image_folder), "--class-order", "sorted", "--store", str(store),
                                       "--device", "cpu", "--workers", "0", "--batch-size", "4",
                                       "--shard-size", "6", *SUITES[suite]])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.stderr
    line = errors[0]
    assert line.endswith("; lower --batch-size; nothing was stored for this shard"), line
    assert ("at batch size 4 needs more memory than cpu has (CUDA out of memory. Tried to allocate "
            "20.00 GiB (GPU 0; 79.15 GiB total capacity))") in line
    label, where = line.removeprefix("Error: ").split(", ", 1)
    # the clean cell's first shard fits; then the suite's own first cell fails on it
    assert where.startswith("shard 2 of 2: " if suite == "clean" else "shard 1 of 2: "), line
    assert (label == "clean") == (suite == "clean"), line
    with Store(store) as s:
        done = {key.label: s.done_shards(cell) for run in s.runs() for cell, key in s.cells(run.id)}
    assert done["clean"] == {0}
    assert not done.get(label.split(" (+")[0], set()) - ({0} if suite == "clean" else set())


class _FailsAboveTwo(torch.nn.Module):
    """A classifier that raises ``error`` on batches of more than 2 images."""

    def __init__(self, error: Exception):
        super().__init__()
        self.fc = torch.nn.Linear(3, 10)
        self.error = error

    def forward(self, x):
        if x.shape[0] > 2:
            raise self.error
        return self.fc(x.mean((2, 3)))


def test_the_engine_raises_a_device_memory_error(monkeypatch, tmp_path, image_folder):
    from robustbench_gcp import evaluate

    message = (r"^clean, shard 1 of 1: the cell at batch size 3 needs more memory than cpu has \(CUDA out "
               r"of memory\. Tried to allocate 2\.00 GiB\); lower --batch-size; nothing was stored for this "
               r"shard$")
    hungry = _FailsAboveTwo(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    with pytest.raises(DeviceMemoryError, match=message):
        evaluate(hungry, data=image_folder, class_order="sorted", store=tmp_path / "r.db", device="cpu",
                 batch_size=3, workers=0)


def test_other_runtime_errors_are_the_models_not_memory_and_the_tools_own_pass(tmp_path, image_folder):
    from robustbench_gcp import evaluate

    bug = RuntimeError("a bug in the model")
    broken = _FailsAboveTwo(bug)
    with pytest.raises(ModelCodeError) as error:  # not taken for a memory error: the model's own
        evaluate(broken, data=image_folder, class_order="sorted", store=tmp_path / "r.db", device="cpu",
                 batch_size=3, workers=0)
    assert error.value.__cause__ is bug and not isinstance(error.value, DeviceMemoryError)
    assert "the forward pass of '_FailsAboveTwo' raised RuntimeError: a bug in the model (at " \
        "test_device.py:" in str(error.value)
    # the tool's own, raised while the model runs (a torchrun rank that the launcher stopped), pass
    # as they are: they are not the model's code to mend
    from robustbench_gcp.engine.distributed import RankFailure

    stopped = RankFailure("rank 1 of 2: stopped by the launcher (signal 15)")
    with pytest.raises(RankFailure) as error:
        evaluate(_FailsAboveTwo(stopped), data=image_folder, class_order="sorted", store=tmp_path / "r.db",
                 device="cpu", batch_size=3, workers=0)
    assert error.value is stopped


def test_float32_on_cuda_means_float32_not_tf32():
    """cuDNN convolves float32 in TF32 by default; a float32 run turns that off (set on any machine),
    through torch 2.9's fp32_precision or, before it, the allow_tf32 flags."""
    from types import SimpleNamespace

    from robustbench_gcp.engine.device import exact_float32, no_tf32

    new = SimpleNamespace(conv=SimpleNamespace(fp32_precision="tf32")), SimpleNamespace(fp32_precision="none")
    no_tf32(*new)
    assert (new[0].conv.fp32_precision, new[1].fp32_precision) == ("ieee", "ieee")
    old = SimpleNamespace(allow_tf32=True), SimpleNamespace(allow_tf32=True)  # torch before 2.9
    no_tf32(*old)
    assert (old[0].allow_tf32, old[1].allow_tf32) == (False, False)
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul  # this torch's own
    saved = conv.fp32_precision, matmul.fp32_precision
    try:
        exact_float32()
        assert (conv.fp32_precision, matmul.fp32_precision) == ("ieee", "ieee")
    finally:
        conv.fp32_precision, matmul.fp32_precision = saved


def test_amp_in_float16_is_refused_for_suites_that_differentiate(demo_val, tmp_path, monkeypatch):
    """float16 rounds the input gradients of confident images to 0 (no loss scaling): attacks refuse
    it, and the landscape refuses bfloat16 too (its differences of gradients at small steps); the
    other suites, and attacks in bfloat16 (the CPU's autocast), take --amp."""
    from robustbench_gcp.pipeline import plan, planning

    common = dict(data=str(demo_val), class_order="sorted", store=str(tmp_path / "s.db"), amp=True)
    assert plan("demo-gap", suite="adversarial", **common).options.amp  # bfloat16 here
    with pytest.raises(ConfigError, match="`--amp` computes in bfloat16 on cpu, whose rounding swamps the "
                                          "landscape suite's differences of gradients"):
        plan("demo-gap", suite="landscape", **common)
    monkeypatch.setattr(planning, "amp_dtype", lambda device: torch.float16)  # as on CUDA
    with pytest.raises(ConfigError, match="`--amp` computes in float16 on cpu, whose input gradients "
                                          "round to 0 .* the adversarial suite would overstate"):
        plan("demo-gap", suite="adversarial", **common)
    with pytest.raises(ConfigError, match="`--amp` computes in float16 on cpu, whose rounding swamps"):
        plan("demo-gap", suite="landscape", **common)
    assert plan("demo-gap", suite="imagenet-c", **common).options.amp


def test_bench_scaling_on_one_gpu_says_before_any_run_that_nccl_needs_a_gpu_per_rank(one_gpu, monkeypatch):
    """The 1-process run went first; then rank 1 failed: 'local rank 1 has no GPU of its own'."""
    import robustbench_gcp.bench.process_scaling as process_scaling

    monkeypatch.setenv(BACKEND_VARIABLE, "nccl")
    monkeypatch.setattr(process_scaling, "eval_throughput", lambda *args: pytest.fail("a run started"))
    result = CliRunner().invoke(main, ["bench", "scaling", "--device", "cuda"])
    assert result.exit_code == 2
    assert ("--processes 2 needs 2 GPUs under NCCL, one per process, and this machine has 1: unset "
            "GCP_ROBUST_DIST_BACKEND to use gloo") in " ".join(result.stderr.split())
    monkeypatch.setenv(BACKEND_VARIABLE, "glo")  # said as a wrong name, not as NCCL's (helper-229)
    result = CliRunner().invoke(main, ["bench", "scaling", "--device", "cuda"])
    assert result.exit_code == 2 and "`GCP_ROBUST_DIST_BACKEND` should be nccl or gloo. Got 'glo'" \
        in result.stderr, result.output


def test_a_bad_torchrun_timeout_is_one_line(monkeypatch):
    from robustbench_gcp.engine.distributed import DEFAULT_TIMEOUT, dist_timeout

    monkeypatch.delenv("GCP_ROBUST_DIST_TIMEOUT", raising=False)
    assert dist_timeout() == DEFAULT_TIMEOUT
    monkeypatch.setenv("GCP_ROBUST_DIST_TIMEOUT", "90")
    assert dist_timeout() == 90.0
    for bad in ("ten", "-1", "0", "inf", "nan"):  # 0: every wait would time out at once
        monkeypatch.setenv("GCP_ROBUST_DIST_TIMEOUT", bad)
        with pytest.raises(ConfigError, match=r"`GCP_ROBUST_DIST_TIMEOUT` should be a positive number"):
            dist_timeout()
