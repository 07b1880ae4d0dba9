"""Which torchrun rank this process is, from the environment alone: for the command line, which
asks before torch is imported (``-o`` is rank 0's to check; the other ranks stop quietly where
rank 0 says why). :mod:`robustbench_gcp.engine.distributed` runs the job."""

from __future__ import annotations

import os

from robustbench_gcp.errors import ConfigError


def env_int(name: str, default: int) -> int:
    """The whole number torchrun puts in the environment variable ``name`` (``default`` unset).

    Raises:
        ConfigError: it holds something else (a traceback, before).
    """
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name} is {value!r}, not a whole number: torchrun sets it; "
                          "unset it to run one process") from None


def launched_by_torchrun() -> bool:
    return env_int("WORLD_SIZE", 1) > 1 and "RANK" in os.environ


def under_the_launcher() -> bool:
    """Whether torchrun's launcher started this rank (its agent sets TORCHELASTIC_RUN_ID) and stops
    the others when one fails: not ranks started by hand, nor a shell or notebook that merely has
    RANK and WORLD_SIZE (a Kubeflow pod's), whose commands run as any process's (helper-265)."""
    return launched_by_torchrun() and "TORCHELASTIC_RUN_ID" in os.environ


def is_main_process() -> bool:
    """True unless this process is a torchrun rank other than 0 (cheap: reads the environment)."""
    return os.environ.get("RANK", "0") == "0"
