"""Choosing and checking the torch device (and whether it can run ``--amp``)."""

from __future__ import annotations

import contextlib
import re

import torch

from robustbench_gcp.errors import ConfigError

DEVICE_KINDS = "cpu, cuda, cuda:N, mps or auto"
#: what the library's ``device`` keyword takes, as its refusal says
DEVICE_WORDS = f"{DEVICE_KINDS} (text or a torch.device)"


def resolve_device(spec: str | torch.device | None = "auto", *, amp: bool = False,
                   keyword: bool = False) -> torch.device:
    """Turn ``auto`` / ``cpu`` / ``cuda[:N]`` / ``mps`` into an available device.

    Called when a command is planned, before any model is loaded, so that a device this
    machine lacks (or ``--amp`` where the device cannot compute in half precision) is one
    line, not a traceback after minutes of loading.

    Args:
        spec: the ``--device`` value.
        amp: the run uses ``--amp``: check that the device supports its dtype
            (:func:`check_amp`).
        keyword: the errors name the library's ``device=`` keyword, not ``--device`` (a
            function of the library alone: :func:`~robustbench_gcp.models.load_model`).

    Raises:
        ConfigError: the device does not exist on this machine, or cannot run ``--amp``.

    Example:
        >>> resolve_device("cpu", amp=True)
        device(type='cpu')
    """
    if spec is not None and not isinstance(spec, (str, torch.device)):  # as plan checks it
        # (torch takes 0 as cuda:0: load_model did, where plan refused it)
        raise ConfigError(f"`device` should be {DEVICE_WORDS}. Got {spec!r}")
    if spec is None or str(spec) == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(spec)
        except (RuntimeError, TypeError) as error:
            raise ConfigError(_refused(spec, keyword)) from error
        _check_present(device, spec, keyword)
        if device.type == "cpu":
            device = torch.device("cpu")  # cpu:0: the CPU
    if amp:
        check_amp(device)
    return device


def _refused(spec, keyword: bool) -> str:
    return f"`{'device' if keyword else '--device'}` should be {DEVICE_KINDS}. Got {spec!r}"


def _check_present(device: torch.device, spec, keyword: bool = False) -> None:
    if keyword:
        given, cpu = f"device={str(spec)!r}", "device='cpu'"
    else:
        given, cpu = f"--device {spec}", "--device cpu"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"`{given}`: CUDA is not available on this machine; use {cpu}")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            have = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
            raise ConfigError(f"`{given}`: this machine has {count} CUDA device"
                              f"{'' if count == 1 else 's'} ({have})")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"`{given}`: MPS is not available on this machine; use {cpu}")
    elif device.type != "cpu":
        raise ConfigError(_refused(spec, keyword))
    elif device.index:  # torch takes cpu:1 and computes on the CPU, as cpu does (cpu:0 is the CPU)
        raise ConfigError(f"`{given}`: the CPU takes no index; use {cpu}")


def cuda_graphs_on() -> bool:
    """Whether ``GCP_ROBUST_CUDA_GRAPHS`` turns the CUDA graphs of the corruptions' per-image draws on
    (corruptions/_graphs.py), read before a CUDA run or bench: a value neither on nor off, which the
    draws would refuse deep in the run, is one line here.

    Raises:
        ConfigError: the variable holds something else.
    """
    from corruptions._graphs import cuda_graphs_enabled

    try:
        return cuda_graphs_enabled()
    except ValueError as error:
        raise ConfigError(str(error)) from None


def amp_dtype(device: torch.device) -> torch.dtype:
    """The autocast dtype of ``--amp`` on ``device``: float16 on CUDA, bfloat16 elsewhere."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def precision_name(device: torch.device, amp: bool) -> str:
    """A run's precision as its identity and reports name it: ``float32``, or ``--amp``'s dtype."""
    return str(amp_dtype(device)).replace("torch.", "") if amp else "float32"


def exact_float32() -> None:
    """Turn TF32 off for CUDA's float32 convolutions and matrix products (cuDNN's convolutions use
    it by default): a float32 run then computes in float32, as its identity says and the CPU does.
    A process-wide setting of torch; autocast's float16 is not affected."""
    no_tf32(torch.backends.cudnn, torch.backends.cuda.matmul)


@contextlib.contextmanager
def float32_default():
    """Inside, torch's default dtype is float32 (layers built in it), the caller's outside."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(default)


@contextlib.contextmanager
def kept_float32_settings():
    """Restore torch's TF32 settings (those :func:`exact_float32` writes) on exit, so that a library
    call leaves the caller's later training as it was; inside, models are built in float32 whatever
    the caller's default dtype (``torch.set_default_dtype(torch.float64)`` built float64 layers
    that the float32 images then did not fit)."""
    # only the settings exact_float32 writes are read (torch 2.9+ refuses a read of allow_tf32 once
    # fp32_precision is set)
    switches, _ = _tf32_switches(torch.backends.cudnn, torch.backends.cuda.matmul)
    saved = [(owner, name, getattr(owner, name)) for owner, name in switches]
    try:
        with float32_default():
            yield
    finally:
        for owner, name, value in saved:
            if getattr(owner, name) != value:
                setattr(owner, name, value)


@contextlib.contextmanager
def float32_as_eval(device: torch.device):
    """Inside, float32 is computed as ``eval`` computes it on ``device`` (:func:`exact_float32` on
    CUDA, whose cuDNN convolutions use TF32 by default): for timings of what eval runs."""
    with kept_float32_settings():
        if torch.device(device).type == "cuda":
            exact_float32()
        yield


def no_tf32(cudnn, matmul) -> None:
    """TF32 off in torch's ``backends.cudnn`` and ``backends.cuda.matmul``: through their
    ``fp32_precision`` (torch 2.9+), else the ``allow_tf32`` flags."""
    switches, off = _tf32_switches(cudnn, matmul)
    for owner, name in switches:
        setattr(owner, name, off)


def _tf32_switches(cudnn, matmul) -> tuple[list[tuple[object, str]], object]:
    """The settings that allow TF32 and the value that turns them off: ``fp32_precision`` of
    cuDNN's convolutions and of matmul (torch 2.9+; ``"ieee"``), else the ``allow_tf32`` flags."""
    conv = getattr(cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        return [(conv, "fp32_precision"), (matmul, "fp32_precision")], "ieee"
    return [(cudnn, "allow_tf32"), (matmul, "allow_tf32")], False


def check_amp(device: torch.device) -> None:
    """``--amp`` on ``device`` is possible: autocast exists there and computes in :func:`amp_dtype`.

    CPU: always (bfloat16 autocast; emulated where the processor lacks bfloat16
    instructions: slower, same numbers). CUDA: float16, on every GPU torch supports. MPS:
    bfloat16 needs macOS 14 or newer. A GPU is asked with a tiny matrix product in the dtype.

    Raises:
        ConfigError: ``--amp`` is not possible on ``device`` (run without it).
    """
    dtype = amp_dtype(device)
    name = str(dtype).replace("torch.", "")
    if not torch.amp.is_autocast_available(device.type):
        raise ConfigError(f"`--amp`: this torch ({torch.__version__}) has no autocast on {device.type}; "
                          "run without --amp")
    if device.type == "cpu":
        return
    try:
        probe = torch.ones(2, 2, dtype=dtype, device=device)
        (probe @ probe).sum().item()
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"`--amp` on {device}: {name} is not supported here ({first_words(error)}); "
                          "run without --amp") from None


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure: ``torch.OutOfMemoryError`` (CUDA), the
    RuntimeError of the CPU ("can't allocate memory") and MPS ("out of memory") allocators, or
    cuBLAS / cuDNN failing to allocate their workspace (``CUBLAS_STATUS_ALLOC_FAILED``)."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        sign in text for sign in ("out of memory", "can't allocate memory", "STATUS_ALLOC_FAILED"))


def first_words(error: BaseException, limit: int = 160) -> str:
    """The first line of ``error``'s message, cut at a word within ``limit`` characters ("..."
    marks the cut), or its type's name where it says nothing. The CPU allocator's failure is its
    size, "can't allocate 45.8 GiB" (its first line is 200 characters of which the size is the news).
    """
    text = str(error).strip()
    asked = re.search(r"can't allocate memory: you tried to allocate (\d+) bytes", text)
    if asked:
        return f"can't allocate {int(asked.group(1)) / 2**30:.1f} GiB"
    first = text.splitlines()[0] if text else type(error).__name__
    if len(first) <= limit:
        return first
    return first[:limit - 3].rsplit(" ", 1)[0].rstrip(" ,;:") + "..."


def memory_message(what: str, batch_size: int, device: torch.device, error: BaseException) -> str:
    """``<what> at batch size N needs more memory than <device> has (<first words>); lower
    --batch-size``."""
    return (f"{what} at batch size {batch_size} needs more memory than {device} has "
            f"({first_words(error)}); lower --batch-size")


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels (for timing)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
