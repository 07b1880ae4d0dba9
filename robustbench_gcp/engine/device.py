"""Choosing and checking the torch device."""

from __future__ import annotations

import torch

from robustbench_gcp.errors import ConfigError


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Turn ``auto`` / ``cpu`` / ``cuda[:N]`` / ``mps`` into an available device.

    Raises:
        ConfigError: the device does not exist on this machine.
    """
    if spec is None or str(spec) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as error:
        raise ConfigError(f"`--device` should be cpu, cuda, cuda:N, mps or auto. Got {spec!r}") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"`--device {spec}`: CUDA is not available on this machine; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"`--device {spec}`: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"`--device {spec}`: MPS is not available on this machine")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"`--device` should be cpu, cuda, cuda:N, mps or auto. Got {spec!r}")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels (for timing)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
