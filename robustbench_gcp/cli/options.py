"""Options shared by several commands, as decorators."""

from __future__ import annotations

import click

device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="Torch device: cpu, cuda, cuda:1, mps, or auto (cuda when available, else cpu).",
)

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON instead of a table."
)

format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json", "markdown"]),
    default="table",
    show_default=True,
    help="Output format.",
)

output_option = click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write the output to this file instead of stdout.",
)
