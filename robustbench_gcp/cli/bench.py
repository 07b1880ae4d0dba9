"""``gcp-robust bench``: speed and fidelity measurements users can run."""

from __future__ import annotations

import click

from robustbench_gcp.cli import LazyGroup
from robustbench_gcp.errors import counted


class BenchGroup(LazyGroup):
    """The bench commands: sizes asked beyond the machine's memory are one line, not a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (MemoryError, RuntimeError) as error:
            from robustbench_gcp.engine.device import first_words, out_of_memory

            if not (isinstance(error, MemoryError) or out_of_memory(error)):
                raise
            command = self.get_command(ctx, ctx.invoked_subcommand)
            raise click.ClickException(
                f"bench {ctx.invoked_subcommand}: the sizes asked need more memory than this machine has "
                f"({first_words(error)}); lower {size_options(command)}") from None


#: the options that size a bench's work, in the order its advice names them
SIZE_OPTIONS = ("--batch-size", "--model-batch-size", "--images", "--size")


def size_options(command: click.Command | None, skip: tuple[str, ...] = ()) -> str:
    """The options of ``command`` among :data:`SIZE_OPTIONS` (less ``skip``), as advice ("--batch-size
    or --size"): it named --size and --images to commands without them."""
    given = {opt for param in (command.params if command else ()) for opt in param.opts} - set(skip)
    return " or ".join(opt for opt in SIZE_OPTIONS if opt in given) or "the sizes asked"


#: the most float32 values a bench of corruptions holds at once per value of its batch on the CPU
#: (glass_blur at 2048 px: 2 GB above the process's own for a batch of 200 MB; fog 4.5x)
CPU_WORKING_SET = 12


def check_host_memory(command: str, images: int, side: int, device: str = "cpu", frames: int = 1,
                      working_set: int = CPU_WORKING_SET) -> None:
    """Refuse a bench whose ``images`` of ``side`` px (``frames`` each) would not fit this machine's
    available memory (``working_set`` float32 copies of them on the CPU, 2 elsewhere): the kernel
    killed ``bench corruptions --size 100000`` ("Killed", no word of why) before any allocation
    failed. Where the memory cannot be read (no ``/proc/meminfo``), nothing is checked.

    Raises:
        click.ClickException: naming the sizes, the need and what is available.
    """
    try:
        with open("/proc/meminfo") as info:
            fields = dict(line.split(":", 1) for line in info if ":" in line)
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return
    values = images * frames * side * side * 3
    need = values * 4 * (working_set if str(device).startswith("cpu") else 2)  # else: staged
    if need > available:
        command_run = getattr(click.get_current_context(silent=True), "command", None)  # None: a library call
        raise click.ClickException(
            f"bench {command}: {counted(images, 'image')}{f' x {frames} frames' if frames > 1 else ''} "
            f"of {side} px "
            f"need about {need / 2**30:,.1f} GiB of memory here, and {available / 2**30:,.1f} GiB are "
            f"available; lower {size_options(command_run, skip=('--model-batch-size',))}")  # images


@click.group(
    cls=BenchGroup,
    lazy_commands={
        "corruptions": "robustbench_gcp.cli.bench_corruptions:bench_corruptions",
        "fidelity": "robustbench_gcp.cli.bench_corruptions:bench_fidelity",
        "heads": "robustbench_gcp.cli.bench_heads:bench_heads",
        "jpeg": "robustbench_gcp.cli.bench_jpeg:bench_jpeg",
        "perturbations": "robustbench_gcp.cli.bench_perturbations:bench_perturbations",
        "scaling": "robustbench_gcp.cli.bench_scaling:bench_scaling",
        "attack": "robustbench_gcp.cli.bench_attack:bench_attack",
        "landscape": "robustbench_gcp.cli.bench_landscape:bench_landscape",
        "pipeline": "robustbench_gcp.cli.bench_pipeline:bench_pipeline",
    },
)
def bench() -> None:
    """Measure speed (and corruption fidelity) on this machine.

    Figures are ratios measured side by side in one run, so they stay
    meaningful on a busy machine. Every subcommand prints a table on stdout and
    takes --json for machine-readable output.
    """
