"""``gcp-robust bench scaling``: throughput of one process against two under torchrun."""

from __future__ import annotations

import click

from robustbench_gcp.cli.options import device_option, json_option


def measure(processes: int, args: list[str], env: dict) -> dict:
    """Run ``gcp-robust eval`` with ``processes`` ranks; images and engine seconds from rank 0's JSON."""
    import json
    import subprocess
    import sys

    from robustbench_gcp.errors import GcpRobustError

    launcher = [sys.executable, "-m", "robustbench_gcp"]
    if processes > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                    str(processes), "-m", "robustbench_gcp"]
    done = subprocess.run([*launcher, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise GcpRobustError(f"the {processes}-process run failed: {last}")
    report = json.loads(done.stdout)
    computed = report["computed"]
    return {"processes": processes, "images": computed["images"], "seconds": computed["seconds"],
            "images_per_s": computed["images"] / computed["seconds"] if computed["seconds"] else None}


@click.command("scaling")
@click.option("--model", default="demo-gap", show_default=True, help="Model to evaluate.")
@click.option("--data", type=click.Path(), default=None, metavar="DIR",
              help="Images (default: the embedded demo data, generated in a temporary folder).")
@click.option("--suite", default="imagenet-c", show_default=True, help="Suite of benchmarks.yaml to run.")
@click.option("--corruptions", default="benchmark", show_default=True, help="Corruptions (imagenet-c).")
@click.option("--severities", default="3", show_default=True, help="Severities (imagenet-c).")
@click.option("--limit", type=int, default=None, help="Class-balanced subset of the images.")
@device_option
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Images per forward pass.")
@click.option("--shard-size", type=click.IntRange(min=1), default=20, show_default=True,
              help="Images per shard (the unit the ranks share out).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Threads per process (OMP_NUM_THREADS).")
@click.option("--processes", type=click.IntRange(min=2), default=2, show_default=True,
              help="Processes of the parallel run.")
@json_option
def bench_scaling(model, data, suite, corruptions, severities, limit, device, batch_size, shard_size, threads,
                  processes, as_json) -> None:
    """Images per second with 1 process and with N under torchrun (gloo on CPU, NCCL on GPUs).

    Both runs evaluate the same plan from an empty store, with THREADS threads per
    process, and count only the engine's time (not start-up); the ratio is the
    speed-up of the parallel run.
    """
    import os
    import tempfile
    from pathlib import Path

    from robustbench_gcp.cli.output import emit
    from robustbench_gcp.reports.tables import Column

    with tempfile.TemporaryDirectory(prefix="gcp-robust-scaling-") as tmp:
        if data is None:
            from robustbench_gcp.data.demo_images import build_demo_dataset

            data = str(build_demo_dataset(Path(tmp) / "data") / "val")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "GIT_PYTHON_REFRESH": "quiet"}
        rows = []
        for n in (1, processes):
            args = ["eval", "--model", model, "--suite", suite, "--data", data, "--store",
                    str(Path(tmp) / f"store-{n}.db"), "--device", device, "--batch-size", str(batch_size),
                    "--shard-size", str(shard_size), "--workers", "0", "--format", "json"]
            if suite != "clean":
                args += ["--corruptions", corruptions, "--severities", severities]
            if limit:
                args += ["--limit", str(limit)]
            rows.append(measure(n, args, env))
    for row in rows:
        row["ratio"] = row["images_per_s"] / rows[0]["images_per_s"] if rows[0]["images_per_s"] else None
    emit(rows, [Column("processes"), Column("images"), Column("seconds", fmt=".2f"),
                Column("images_per_s", "images/s", ".1f"), Column("ratio", "× 1 process", ".2f")],
         fmt="json" if as_json else "table",
         title=f"{model} on {suite}, {threads} thread(s) per process, device {device}")
