"""Run one gcp-robust command under torch.profiler and write where its time went.

Usage: python scripts/profile_cmd.py TABLES gcp-robust-arguments...

The command runs as ``gcp-robust`` would run it (its output on stdout, its exit status); the
profiler's operator tables go to the file TABLES: on CUDA the operators by their own time on the
device, then (everywhere) by their own time on the host. ``make gpu-check GPU_CHECK_ARGS=--profile``
runs it on the ImageNet-C evals, to show what a slow eval spends its time on. Every thread of the
process is profiled (where torch offers it); the loader's worker processes are not.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROWS = 30


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    import torch
    from torch.profiler import ProfilerActivity, profile

    from robustbench_gcp.cli import main as command

    tables, args = Path(argv[0]), argv[1:]
    cuda = torch.cuda.is_available()
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    status = 0
    extra = {}
    try:  # the loader's thread too (decoding, and on the CPU the storage round trip)
        extra["experimental_config"] = torch.profiler._ExperimentalConfig(profile_all_threads=True)
    except (AttributeError, TypeError):  # a torch without it: the main thread only
        pass
    with profile(activities=activities, **extra) as prof:
        try:
            command.main(args=args, prog_name="gcp-robust")
        except SystemExit as leaving:
            status = leaving.code if isinstance(leaving.code, int) else int(leaving.code is not None)
    averages = prof.key_averages()
    parts = [f"gcp-robust {' '.join(args)}\nexit status {status}\n"]
    if cuda:
        parts.append("by own time on the device\n" + averages.table(sort_by="self_cuda_time_total",
                                                                    row_limit=ROWS))
    parts.append("by own time on the host\n" + averages.table(sort_by="self_cpu_time_total", row_limit=ROWS))
    tables.write_text("\n".join(parts))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
