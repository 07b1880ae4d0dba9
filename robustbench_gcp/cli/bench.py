"""``gcp-robust bench``: speed and fidelity measurements users can run."""

from __future__ import annotations

import click

from robustbench_gcp.cli import LazyGroup


class BenchGroup(LazyGroup):
    """The bench commands: sizes asked beyond the machine's memory are one line, not a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (MemoryError, RuntimeError) as error:
            from robustbench_gcp.engine.device import first_words, out_of_memory

            if not (isinstance(error, MemoryError) or out_of_memory(error)):
                raise
            raise click.ClickException(
                f"bench {ctx.invoked_subcommand}: the sizes asked need more memory than this machine has "
                f"({first_words(error)}); lower --batch-size or --size (or --images)") from None


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
