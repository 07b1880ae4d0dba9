"""Which torchrun rank this process is, from the environment alone: for the command line, which
asks before torch is imported (``-o`` is rank 0's to check; the other ranks stop quietly where
rank 0 says why). :mod:`robustbench_gcp.engine.distributed` runs the job."""

from __future__ import annotations

import os


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def is_main_process() -> bool:
    """True unless this process is a torchrun rank other than 0 (cheap: reads the environment)."""
    return os.environ.get("RANK", "0") == "0"
