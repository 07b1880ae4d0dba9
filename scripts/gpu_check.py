"""``make gpu-check``: the GPU path of gcp-robust, verified and timed, in one JSON file.

Usage: python scripts/gpu_check.py [--out DIR] [--quick] [--only STEP,...] [--skip STEP,...]
                                  [--budget SECONDS] [--keep] [--profile]

On a CUDA machine it runs, each step as its own process under its own timeout:

- ``pytest-cuda``: the tests marked ``cuda`` (``pytest -m cuda tests/``: the CUDA tests of the
  corruptions, perturbations and heads, and tests/test_gpu_parity.py), with their counts and
  the figures the parity tests print;
- ``bench-corruptions``, ``bench-perturbations``, ``bench-heads``, ``bench-jpeg``,
  ``bench-attack``, ``bench-landscape`` and ``bench-pipeline`` (where this tree has it) with
  ``--device cuda --json``, their JSON kept; ``bench-corruptions-graphs``, right after
  ``bench-corruptions`` (which has ``GCP_ROBUST_CUDA_GRAPHS=0``), the same with
  ``GCP_ROBUST_CUDA_GRAPHS=1`` (corruptions/_graphs.py);
- ``eval-<model>[-amp]``: ``eval --suite imagenet-c`` of resnet50-isqrt and resnet50-gap (seeded
  random weights) on a generated folder of real-photo crops: with ``--amp --channels-last`` on
  all 500 at batch 256 (one shard, as each of a 50,000-image run's: the end-to-end target), in
  float32 on a class-balanced 128 at batch 64; cell-images per second, of the whole run and of
  the warm cells (:func:`warm_cells`: what the end-to-end target is measured by);
- ``torchrun``: the same kind of ``eval`` as 2 ranks (gloo, the default: on a one-GPU machine both
  ranks share it) against 1 process: the cells' counts must agree;
- ``profile-<model>-amp``, with ``--profile`` only (after the others; ``--only profile --profile``
  runs them alone): the ``--amp`` evals again, on 256 photographs at severity 3 (one batch per
  cell), under torch.profiler (scripts/profile_cmd.py),
  the operators that took the most time on the device and on the host, as lines of the JSON.

The JSON's ``targets`` holds what the steps measured against issue 16's speed targets
(:data:`TARGETS`: corruptions' geometric mean and slowest, ResNet-50 end to end, PGD against
a plain loop, Newton-Schulz against eigh), each with ``met``; a full run on a GPU prints them in
one line.

Without CUDA it says so in one line and runs the same steps on the CPU at tiny sizes (the
CUDA tests then all skip), so that the script itself is tested anywhere. ``--quick`` uses the
tiny sizes on a GPU too.

On a GPU machine that cannot reach a package index but has torch (an air-gapped node, a lent
accelerator), ``--wheels DIR`` installs the wheels in DIR (``make wheels`` downloads them where
there is a network) into the work folder without the network, and the steps import them from
there; ``make gpu-check WHEELS=DIR`` does this with that machine's own ``python3``. Either way the
run first lists, in one line and in the JSON, any package gcp-robust needs that is still missing.

The steps share a time budget (``--budget``, 450 s: with the install, under 8 minutes on one
GPU); each gets at most what is left, and those after it is spent are recorded as not run.
After the CUDA tests (each with 90 s at most where pytest-timeout is installed) come the ``--amp``
evals, where the targets are likeliest met, then torchrun, the benches and the float32 evals;
``bench-pipeline``, the longest, runs last. A step is not started with under 30 s left. A failed
pytest step still records which tests failed and what they printed. Where /dev/shm has under
1 GiB free (a container's 64 MiB), the steps run without loader workers, whose batches pass there.

The results go to ``$OUT/gpu-check.json`` when ``$OUT`` is set, else ``gpu-check/gpu-check.json``
(``--out`` overrides both), rewritten after every step so that a run stopped half-way still
leaves what it measured. A failed step (exit status, timeout, output that is not what was
expected) is recorded with the last lines of its output (the whole of it in ``gpu-check-logs.txt``
beside the JSON, one file for all steps) and the next step runs; processes it left behind
(torchrun's ranks live in sessions of their own) are ended. Wheels missing from ``--wheels`` are
said, and the steps run all the same. Exit status: 0
when every step ran and passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TAIL_LINES = 40
FILE_NAME = "gpu-check.json"
LOG_NAME = "gpu-check-logs.txt"  # the failed steps' whole outputs, beside the JSON
MIN_STEP_SECONDS = 30.0  # a step is not started with less time left (starting takes 6-10 s)
GRAPHS_ENV = "GCP_ROBUST_CUDA_GRAPHS"  # corruptions/_graphs.py's switch
DEFAULT_BUDGET = 450.0  # seconds: with the install, `make gpu-check` stays under 8 minutes on one GPU


class StepFailed(Exception):
    """A step ran but its output is not what was expected."""


@dataclass
class Step:
    """One check: commands run in turn (``name``, argv, extra environment), then ``finish``
    turns their stdout into the step's result (raising :class:`StepFailed` to fail it)."""

    name: str
    commands: list[tuple[str, list[str], dict]]
    timeout: float
    finish: Callable[[dict[str, str]], dict]
    unavailable: str | None = None  # why the step cannot run here
    #: ``finish`` reads a report the command writes even when it fails (pytest's JUnit file)
    reports_failures: bool = False


@dataclass
class Sizes:
    """How big each step is: ``full`` on a GPU, ``tiny`` on a CPU or with --quick."""

    device: str
    photos: int  # images of the eval folder
    photo_side: tuple[int, int]  # crop sides of the generated photographs
    eval_models: tuple[str, ...]
    eval_flags: tuple[str, ...]  # the suite selection of the eval steps
    batch_size: int  # the float32 evals and torchrun
    workers: int
    #: the --amp evals (where the end-to-end target is measured): their batch, None for batch_size
    amp_batch_size: int | None = None
    #: flags of the float32 evals and torchrun: a subset of the photographs (a check, not a target)
    subset: tuple[str, ...] = ()
    #: the suite selection of the --profile evals (None: eval_flags); the profiler keeps every
    #: kernel launch, and a noise corruption launches 10 per 224 px image
    profile_flags: tuple[str, ...] | None = None
    bench: dict[str, list[str]] = field(default_factory=dict)
    dist_model: str = "resnet50-gap"
    dist_flags: tuple[str, ...] = ()
    pytest_paths: tuple[str, ...] = ("tests",)
    timeouts: dict[str, float] = field(default_factory=dict)


def full_sizes(device: str, workers: int) -> Sizes:
    return Sizes(
        # 500 photographs: one shard (--shard-size 500), as each of the 50,000-image run's, in 2
        # batches of the target's 256 per cell
        device=device, photos=500, photo_side=(256, 352), eval_models=("resnet50-isqrt", "resnet50-gap"),
        eval_flags=("--corruptions", "benchmark", "--severities", "1,2,3,4,5"),
        batch_size=64, workers=workers, amp_batch_size=256, subset=("--limit", "128"),
        profile_flags=("--corruptions", "benchmark", "--severities", "3", "--limit", "256"),
        bench={
            "corruptions": ["--batch-size", "256", "--size", "224", "--severities", "3",
                            "--reference-images", "1", "--repeats", "3"],
            "perturbations": ["--model", "resnet50-gap", "--batch-size", "8", "--repeats", "2"],
            # as the target: d = 256; not the float64 SVD head (a GPU runs 256 SVDs of 256 x 256 one by one)
            "heads": ["--batch-size", "256", "--repeats", "2", "--pool-only", "--heads",
                      "isqrt,mpncov,dropcov,isqrt-relu6"],
            "jpeg": ["--batch-size", "256", "--size", "224", "--repeats", "3"],
            "attack": ["--model", "resnet50-isqrt", "--random-weights", "--images", "64",
                       "--batch-size", "32", "--steps", "10", "--repeats", "2"],
            "landscape": ["--model", "resnet50-isqrt", "--random-weights", "--images", "8",
                          "--batch-size", "8", "--repeats", "2"],
            # a batch for each loader worker of the plain loop (whole batches go to workers)
            "pipeline": ["--model", "resnet50-gap", "--images", str(8 * max(workers, 1)), "--severities", "3",
                         "--batch-size", "8", "--workers", str(workers)],
        },
        dist_flags=("--corruptions", "gaussian_noise,glass_blur,fog,jpeg_compression", "--severities", "1,3",
                    "--shard-size", "32", "--limit", "128"),
        timeouts={"pytest": 300, "bench": 150, "pipeline": 240, "eval": 180, "torchrun": 240},
    )


def tiny_sizes(device: str) -> Sizes:
    return Sizes(
        device=device, photos=8, photo_side=(72, 96), eval_models=("demo-isqrt",),
        eval_flags=("--corruptions", "fog,glass_blur", "--severities", "1"),
        batch_size=4, workers=0,
        bench={
            "corruptions": ["--corruptions", "fog", "--size", "32", "--batch-size", "2", "--severities", "1",
                            "--reference-images", "1", "--repeats", "1"],
            "perturbations": ["--model", "demo-gap", "--perturbations", "translate", "--batch-size", "1",
                              "--size", "32", "--model-batch-size", "2", "--repeats", "1"],
            "heads": ["--batch-size", "1", "--repeats", "1", "--pool-only"],
            "jpeg": ["--batch-size", "2", "--size", "32", "--qualities", "85", "--repeats", "1"],
            "attack": ["--model", "demo-gap", "--images", "2", "--batch-size", "2", "--steps", "1",
                       "--repeats", "1"],
            "landscape": ["--model", "demo-gap", "--images", "2", "--batch-size", "2", "--etas", "0.01:0.1:2",
                          "--repeats", "1"],
            "pipeline": ["--model", "resnet18-gap", "--images", "2", "--corruptions", "fog",
                         "--severities", "1", "--batch-size", "2", "--workers", "0"],
        },
        dist_model="demo-gap", dist_flags=("--corruptions", "fog", "--severities", "1", "--shard-size", "4"),
        pytest_paths=("tests",) if device == "cuda" else ("tests/test_gpu_parity.py",),  # CPU: all skip
        timeouts={"pytest": 120, "bench": 120, "pipeline": 180, "eval": 120, "torchrun": 180},
    )


# --------------------------------------------------------------------------------------
# the steps


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "robustbench_gcp", *args]


def _json(out: str, what: str):
    try:
        return json.loads(out)
    except json.JSONDecodeError as error:
        raise StepFailed(f"{what} did not print JSON ({error})") from None


def _shared_memory() -> int:
    """Bytes free in /dev/shm (a container's is often 64 MiB), or a large number where it is not."""
    try:
        return shutil.disk_usage("/dev/shm").free
    except OSError:
        return 1 << 40


def pytest_step(sizes: Sizes, work: Path) -> Step:
    junit = work / "pytest-cuda.xml"
    # a test file that cannot be imported here (a package missing) must not hide the others' results
    # -v: the output's last lines name the test that was running when a step ran out of time
    argv = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-m", "cuda", "-rfE",
            "--continue-on-collection-errors", f"--junitxml={junit}", "-o", "junit_logging=system-out",
            # one hung test fails alone (where pytest-timeout is installed) rather than the whole step
            *(["--timeout", "90"] if importlib.util.find_spec("pytest_timeout") else []),
            *sizes.pytest_paths]

    def finish(outputs: dict[str, str]) -> dict:
        return junit_summary(junit)

    return Step("pytest-cuda", [("pytest", argv, {})], sizes.timeouts["pytest"], finish,
                reports_failures=True)


def junit_summary(path: Path) -> dict:
    """Counts of a pytest JUnit XML file, failures by name, and what the tests printed."""
    if not path.exists():
        raise StepFailed("pytest wrote no report")
    root = ET.parse(path).getroot()
    counts = {"tests": 0, "failed": 0, "errors": 0, "skipped": 0}
    failures, printed, skip_reasons = {}, {}, {}
    for case in root.iter("testcase"):
        counts["tests"] += 1
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        for tag, key in (("failure", "failed"), ("error", "errors")):
            element = case.find(tag)
            if element is not None:
                counts[key] += 1
                failures[name] = (element.get("message") or "").strip().splitlines()[:3]
        skipped = case.find("skipped")
        if skipped is not None:
            counts["skipped"] += 1
            reason = skipped.get("message") or ""
            skip_reasons[reason] = skip_reasons.get(reason, 0) + 1
        out = case.find("system-out")
        if skipped is None and out is not None and out.text:
            lines = [line for line in out.text.splitlines() if line.strip() and "Captured Out" not in line]
            if lines:
                printed[name] = lines[-20:]
    counts["passed"] = counts["tests"] - counts["failed"] - counts["errors"] - counts["skipped"]
    result = {**counts, "failures": failures, "printed": printed, "skip_reasons": skip_reasons}
    if counts["failed"] or counts["errors"]:
        raise StepFailed(f"{counts['failed']} failed, {counts['errors']} errors", result)
    return result


def bench_step(kind: str, sizes: Sizes, available: str | None = None) -> Step:
    argv = cli("bench", kind, "--device", sizes.device, *sizes.bench[kind], "--json")

    def finish(outputs: dict[str, str]) -> dict:
        return _json(outputs[kind], f"bench {kind}")

    timeout = sizes.timeouts["pipeline" if kind == "pipeline" else "bench"]
    return Step(f"bench-{kind}", [(kind, argv, {})], timeout, finish, unavailable=available)


def corruptions_step(sizes: Sizes, graphs: bool) -> Step:
    """``bench corruptions`` without, or with, the per-image draws replayed as CUDA graphs
    (``GCP_ROBUST_CUDA_GRAPHS``, corruptions/_graphs.py: set either way, whatever the caller's
    environment says, so that the two steps side by side compare the two)."""
    step = bench_step("corruptions", sizes,
                      "CUDA graphs are for CUDA devices" if graphs and sizes.device != "cuda" else None)
    step.name += "-graphs" if graphs else ""
    step.commands = [(label, argv, {GRAPHS_ENV: "1" if graphs else "0"}) for label, argv, _ in step.commands]
    return step


def eval_args(model: str, sizes: Sizes, data: Path, store: Path, *extra: str, batch_size: int | None = None
              ) -> list[str]:
    # a demo model's 10 classes are not ImageNet's 1000: its labels are the folders' sorted order
    order = ("--class-order", "sorted") if model.startswith("demo-") else ()
    return cli("eval", "--model", model, "--random-weights", "--suite", "imagenet-c", "--data", str(data),
               "--device", sizes.device, "--batch-size", str(batch_size or sizes.batch_size), *order,
               "--workers", str(sizes.workers), "--store", str(store), "--format", "json", *extra)


def warm_cells(store: Path) -> dict:
    """The cells' own compute times, from the store (each (cell, shard) keeps its seconds): those
    after each corruption's first cell against the first ones. A corruption's first cell (and the
    clean cell, the model's first) pays for what is built once per process: kernels loaded at
    first use, cuDNN's choices, cached tables. A 50,000-image run pays that once in 100 shards;
    the warm rate is what the rest of it runs at (the next shard is decoded meanwhile)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT c.kind, c.name, s.n, s.seconds FROM shards s JOIN cells c ON c.id = "
                          "s.cell_id WHERE s.seconds IS NOT NULL ORDER BY s.rowid").fetchall()
    seen: set[tuple[str, str]] = set()
    first, warm = [0, 0.0], [0, 0.0]
    for kind, name, n, seconds in rows:
        part = warm if (kind, name) in seen else first
        seen.add((kind, name))
        part[0] += n
        part[1] += seconds
    return {"first_cells_seconds": round(first[1], 3), "warm_cell_images": warm[0],
            "warm_seconds": round(warm[1], 3),
            "warm_cell_images_per_s": warm[0] / warm[1] if warm[1] else None}


def eval_summary(report: dict, seconds: float, store: Path | None = None) -> dict:
    computed = report.get("computed") or {}
    images, busy = computed.get("images", 0), computed.get("seconds", 0.0)
    warm = warm_cells(store) if store is not None and store.exists() else {}
    return {
        "model": report.get("model"), "device": report.get("device"), "precision": report.get("precision"),
        "n_images": report.get("n_images"), "cells": 1 + len(report.get("cells", [])),
        "cell_images": images, "engine_seconds": busy,
        "cell_images_per_s": images / busy if busy else None,
        "process_seconds": round(seconds, 2),
        "clean_top1_error": (report.get("clean") or {}).get("top1_error"),
        "mean_error": (report.get("metrics") or {}).get("mean_error"),
        **warm,
    }


def eval_step(model: str, amp: bool, sizes: Sizes, data: Path, work: Path) -> Step:
    name = f"eval-{model}{'-amp' if amp else ''}"
    extra = (*sizes.eval_flags, *(("--amp", "--channels-last") if amp else sizes.subset))
    store = work / f"{name}.db"
    argv = eval_args(model, sizes, data, store, *extra, batch_size=sizes.amp_batch_size if amp else None)

    def finish(outputs: dict[str, str]) -> dict:
        report = _json(outputs["eval"], "eval")
        return eval_summary(report, outputs.get("seconds:eval", 0.0), store)

    return Step(name, [("eval", argv, {})], sizes.timeouts["eval"], finish)


def profile_step(model: str, sizes: Sizes, data: Path, work: Path) -> Step:
    """The ``--amp --channels-last`` eval of ``model`` under torch.profiler (scripts/profile_cmd.py):
    its summary and the operator tables, as lines (with --profile only: the profiler slows it)."""
    name = f"profile-{model}-amp"
    tables, store = work / f"{name}.txt", work / f"{name}.db"
    flags = sizes.eval_flags if sizes.profile_flags is None else sizes.profile_flags
    argv = eval_args(model, sizes, data, store, *flags, "--amp", "--channels-last",
                     batch_size=sizes.amp_batch_size)
    argv[1:3] = [str(ROOT / "scripts" / "profile_cmd.py"), str(tables)]  # for ``-m robustbench_gcp``

    def finish(outputs: dict[str, str]) -> dict:
        report = _json(outputs["eval"], "eval")
        return {**eval_summary(report, outputs.get("seconds:eval", 0.0), store),
                "tables": tables.read_text().splitlines()}

    return Step(name, [("eval", argv, {})], sizes.timeouts["eval"], finish)


def torchrun_step(sizes: Sizes, data: Path, work: Path, gpus: int) -> Step:
    """Two ranks against one process on the same plan, under the default backend (gloo); on a
    one-GPU machine both ranks share it."""
    env = {"OMP_NUM_THREADS": "1"} if sizes.device == "cpu" else {}
    env["GCP_ROBUST_DIST_BACKEND"] = backend = "gloo"  # the default, whatever the caller's environment
    flags = sizes.dist_flags
    dist = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "--monitor-interval", "0.2",
            *eval_args(sizes.dist_model, sizes, data, work / "torchrun.db", *flags)[1:]]
    single = eval_args(sizes.dist_model, sizes, data, work / "single.db", *flags)

    def finish(outputs: dict[str, str]) -> dict:
        ranks, one = _json(outputs["torchrun"], "torchrun eval"), _json(outputs["single"], "eval")
        errors = {}
        for report in (ranks, one):
            errors[id(report)] = {"clean": (report.get("clean") or {}).get("top1_error")}
            for cell in report.get("cells", []):
                errors[id(report)][f"{cell['corruption']}/{cell['severity']}"] = cell["top1_error"]
        a, b = errors[id(ranks)], errors[id(one)]
        n = ranks.get("n_images") or 1
        differing = {k: [a.get(k), b.get(k)] for k in set(a) | set(b) if a.get(k) != b.get(k)}
        result = {"backend": backend, "ranks": 2, "gpus": gpus, "device": ranks.get("device"),
                  "cells": len(a), "cells_differing": differing,
                  "torchrun": eval_summary(ranks, outputs["seconds:torchrun"]),
                  "single": eval_summary(one, outputs["seconds:single"])}
        # one image per cell may flip on a GPU (batches of other sizes pick other kernels)
        too_far = {k: v for k, v in differing.items()
                   if None in v or abs(v[0] - v[1]) * n > 1 + 1e-9}
        if set(a) != set(b) or too_far:
            raise StepFailed(f"2 ranks and 1 process disagree on {sorted(too_far) or 'the cells'}", result)
        return result

    return Step("torchrun", [("torchrun", dist, env), ("single", single, {})], sizes.timeouts["torchrun"],
                finish)


# --------------------------------------------------------------------------------------
# data


def photo_folder(root: Path, count: int, sides: tuple[int, int], seed: int = 0) -> Path:
    """``count`` JPEG crops of scikit-image's photographs (random windows, sides in ``sides``),
    spread over 8 ImageNet class folders."""
    import numpy as np
    from PIL import Image

    from robustbench_gcp.bench.photos import PHOTOS, photos
    from robustbench_gcp.data.folders import imagenet_wnids

    rng = np.random.default_rng(seed)
    big = photos(len(PHOTOS), sides[1] + 64)
    wnids = imagenet_wnids()[:8]
    for i in range(count):
        image = big[i % len(big)]
        side = int(rng.integers(sides[0], sides[1] + 1))
        top, left = (int(v) for v in rng.integers(0, image.shape[-1] - side + 1, size=2))
        crop = (image[:, top:top + side, left:left + side] * 255).round().byte().permute(1, 2, 0).numpy()
        folder = root / wnids[i % len(wnids)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(crop).save(folder / f"photo_{i:04d}.JPEG", quality=90)
    return root


# --------------------------------------------------------------------------------------
# running


def tail(*texts: str, lines: int = TAIL_LINES) -> list[str]:
    joined = "\n".join(t for t in texts if t).replace("\r", "\n").splitlines()
    return [line for line in joined if line.strip()][-lines:]


def run_command(argv: list[str], env: dict, timeout: float, log: Path) -> tuple[int | None, str, str, float]:
    """Run ``argv`` in its own process group; (exit status or None on timeout, stdout, stderr, seconds)."""
    started = time.monotonic()
    with open(log.with_suffix(".out"), "w+") as out, open(log.with_suffix(".err"), "w+") as err:
        proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            code = proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            _stop(proc)
            code = None
        except BaseException:  # Ctrl-C: take the step's processes down with us
            _stop(proc)
            raise
        out.seek(0)
        err.seek(0)
        return code, out.read(), err.read(), time.monotonic() - started


def _stop(proc: subprocess.Popen) -> None:
    """End the step's process group (the step and its children: torchrun's ranks, loaders)."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def end_leftovers(marker: str) -> int:
    """SIGKILL every process whose command line names ``marker`` (the work folder: the steps' stores
    and data) and that outlived its step: torchrun starts its ranks in sessions of their own, out of
    reach of the step's process group, and after a timeout they went on computing on the GPU.
    Returns how many were ended (Linux's /proc; 0 elsewhere)."""
    ended, me = 0, os.getpid()
    try:
        entries = [e for e in Path("/proc").iterdir() if e.name.isdigit() and int(e.name) != me]
    except OSError:
        return 0
    for entry in entries:
        try:
            if marker.encode() in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
                ended += 1
        except OSError:  # gone meanwhile, or not ours
            continue
    return ended


def keep_logs(step: Step, work: Path, logs: Path, limit: int = 256 << 10) -> list[str]:
    """Append the last ``limit`` bytes of each output of a step that did not pass to the file
    ``logs`` (:data:`LOG_NAME` beside the JSON, which holds only their last lines; the work folder
    is removed), each under a header naming it: the names. One file however many steps fail (a
    machine that returns a few files of its output folder kept the JSON). Its own commands' files
    only (a glob of eval-resnet50-gap-* took the -amp step's too)."""
    kept = []
    for suffix in (".out", ".err"):
        for label, _, _ in step.commands:
            log = work / f"{step.name}-{label}{suffix}"
            size = log.stat().st_size if log.is_file() else 0
            if not size:
                continue
            with open(log, "rb") as source, open(logs, "ab") as sink:
                source.seek(max(0, size - limit))
                cut = f", its last {limit} bytes" if size > limit else ""
                sink.write(f"===== {log.name} ({size} bytes{cut}) =====\n".encode())
                sink.write(source.read().rstrip(b"\n") + b"\n\n")
            kept.append(log.name)
    return kept


def run_step(step: Step, work: Path) -> dict:
    record: dict = {"name": step.name, "status": "passed", "seconds": 0.0,
                    "commands": [" ".join([*(f"{k}={v}" for k, v in env.items()), *argv])
                                 for _, argv, env in step.commands]}
    if step.unavailable:
        return {**record, "status": "not available", "reason": step.unavailable, "commands": []}
    outputs: dict = {}
    deadline = time.monotonic() + step.timeout
    for label, argv, env in step.commands:
        log = work / f"{step.name}-{label}"
        code, out, err, seconds = run_command(argv, env, deadline - time.monotonic(), log)
        if ended := end_leftovers(os.path.join(work, "")):  # the folder's files, not a longer name
            record["leftovers_ended"] = record.get("leftovers_ended", 0) + ended
        record["seconds"] = round(record["seconds"] + seconds, 2)
        outputs[label], outputs[f"seconds:{label}"] = out, seconds
        if code is None:
            return {**record, "status": "timeout", "failed_command": label,
                    "reason": f"{label} ran past the step's {step.timeout:.0f} s", "tail": tail(err, out)}
        if code != 0:
            failed = {**record, "status": "failed", "failed_command": label, "returncode": code,
                      "reason": f"{label} exited with status {code}", "tail": tail(err, out)}
            if step.reports_failures:  # which tests failed, and what they printed
                try:
                    failed["result"] = step.finish(outputs)
                except StepFailed as error:
                    failed["result"] = error.args[1] if len(error.args) > 1 else None
                except Exception:  # noqa: BLE001, S110 - the failure above is what counts
                    pass
            return failed
    try:
        record["result"] = step.finish(outputs)
    except StepFailed as error:
        record.update(status="failed", reason=str(error.args[0]))
        if len(error.args) > 1:
            record["result"] = error.args[1]
        record["tail"] = tail(*(v for k, v in outputs.items() if isinstance(v, str)))
    except Exception as error:  # noqa: BLE001 - recorded; the next step runs
        record.update(status="failed", reason=f"reading the output: {type(error).__name__}: {error}",
                      tail=tail(*(v for k, v in outputs.items() if isinstance(v, str))))
    return record


def machine(cuda: bool) -> dict:
    import torch

    try:  # a torchvision missing or built for another torch fails the steps, not this record
        import torchvision

        vision = torchvision.__version__
    except Exception as error:  # noqa: BLE001 - recorded
        vision = f"not importable: {type(error).__name__}: {error}"
    info = {"host": platform.node(), "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": vision, "cpus": os.cpu_count(), "cuda": cuda}
    if cuda:
        info.update(cuda_version=torch.version.cuda, gpus=[torch.cuda.get_device_name(i)
                                                           for i in range(torch.cuda.device_count())])
    return info


def write(path: Path, results: dict) -> None:
    """Replace the JSON file in one step (a reader never sees half a file)."""
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(partial, path)


def summary(steps: list[dict]) -> dict:
    counts: dict[str, int] = {}
    for step in steps:
        counts[step["status"]] = counts.get(step["status"], 0) + 1
    return counts


#: issue 16's speed targets (H100/H200 class, 224 px, batch 256): name -> (what, bound, at least?)
TARGETS = {
    "corruptions_geomean": ("corruptions, geometric mean over all, images/s", 20000.0, True),
    "corruptions_slowest": ("slowest corruption, images/s", 2000.0, True),
    "corruptions_geomean_graphs": ("corruptions, geometric mean, with GCP_ROBUST_CUDA_GRAPHS=1, images/s",
                                   20000.0, True),
    "eval_cell_images": ("ImageNet-C end to end, ResNet-50, cell-images/s", 3000.0, True),
    "pgd_suite_over_plain": ("PGD-10: the suite's time over a plain torch loop's", 1.2, False),
    "eigh_over_newton_schulz": ("Newton-Schulz iSQRT head against eigh, speed-up", 5.0, True),
}


def measured_targets(steps: list[dict]) -> dict[str, dict]:
    """What the passed steps measured against :data:`TARGETS`: for each, ``value`` (None when its
    step did not pass), ``target`` and ``met``, and where the value comes from."""
    results = {step["name"]: step.get("result") for step in steps if step.get("status") == "passed"}
    found: dict[str, tuple[float, str]] = {}
    if corruptions := results.get("bench-corruptions"):
        rows = [r for r in corruptions["rows"] if r.get("images_per_second")]
        if rows:
            found["corruptions_geomean"] = (corruptions["geometric_mean"]["images_per_second"],
                                            f"{len(rows)} corruptions")
            slowest = min(rows, key=lambda r: r["images_per_second"])
            found["corruptions_slowest"] = (slowest["images_per_second"], slowest["corruption"])
    if graphed := results.get("bench-corruptions-graphs"):
        mean = graphed["geometric_mean"]["images_per_second"]
        if mean and corruptions and corruptions["geometric_mean"]["images_per_second"]:
            source = f"{mean / corruptions['geometric_mean']['images_per_second']:.2f}x bench-corruptions'"
        else:
            source = "bench-corruptions-graphs"
        if said := graphed.get("cuda_graphs"):  # none captured, or a failed capture: the loop's figure
            source += f", {said['captured']} graphs captured"
            source += f", then the loop: {said['failed']}" if said.get("failed") else ""
        if mean:
            found["corruptions_geomean_graphs"] = (mean, source)
    # the --amp evals: at the target's batch, on all the photographs (the float32 ones on a subset);
    # their warm rate, what a 50,000-image run runs at after its first cells (else the whole run's)
    evals = [(name, r.get("warm_cell_images_per_s") or r["cell_images_per_s"],
              "warm cells" if r.get("warm_cell_images_per_s") else "whole run")
             for name, r in results.items()
             if name.startswith("eval-resnet50") and name.endswith("-amp") and r.get("cell_images_per_s")]
    if evals:
        name, best, how = max(evals, key=lambda item: item[1])
        found["eval_cell_images"] = (best, f"{name}, {how} (the faster of {len(evals)})")
    if attack := results.get("bench-attack"):
        suite = next((r for r in attack["rows"] if r.get("path") == "suite" and r.get("ratio")), None)
        if suite:
            found["pgd_suite_over_plain"] = (1 / suite["ratio"], "bench attack")
    if heads := results.get("bench-heads"):
        ms = {r["head"]: r["forward_ms"] for r in heads["rows"]}
        if ms.get("isqrt") and ms.get("mpncov"):
            found["eigh_over_newton_schulz"] = (ms["mpncov"] / ms["isqrt"],
                                                f"forward, batch {heads['batch_size']}, {heads['scope']}")
    out = {}
    for key, (what, bound, at_least) in TARGETS.items():
        value, source = found.get(key, (None, "not measured"))
        met = None if value is None else (value >= bound if at_least else value <= bound)
        out[key] = {"what": what, "value": value, "target": f"{'>=' if at_least else '<='} {bound:g}",
                    "met": met, "from": source}
    return out


def targets_line(targets: dict[str, dict]) -> str:
    measured = {k: t for k, t in targets.items() if t["value"] is not None}
    if not measured:
        return "targets: none measured"
    met = sum(bool(t["met"]) for t in measured.values())
    parts = [f"{k} {t['value']:{',.0f' if t['value'] >= 100 else '.2f'}} ({'met' if t['met'] else 'missed'})"
             for k, t in measured.items()]
    return f"targets: {met} of {len(measured)} measured met: " + "; ".join(parts)


# the modules of pyproject.toml's dependencies (and pytest), looked up before the steps run
NEEDED_MODULES = ("torch", "torchvision", "click", "rich", "yaml", "imagecorruptions", "foolbox",
                  "matplotlib", "numpy", "timm", "pytest",
                  # what those import in turn: foolbox requests; imagecorruptions OpenCV, SciPy and
                  # scikit-image (whose photographs make the parity tests' and the benches' images)
                  "requests", "cv2", "scipy", "skimage")


def install_wheels(folder: Path, site: Path) -> tuple[list[str], str | None]:
    """Install every wheel in ``folder`` into ``site`` offline (pip --no-index --no-deps) and put
    ``site`` and the repository first on this process's and the steps' import path.

    Returns:
        The wheels' names, and what went wrong (None when nothing did): the steps run either
        way, those that need a package still missing fail, and the run still writes its JSON.
    """
    paths = [str(site), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    sys.path[:0] = [str(site)]
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        return [], (f"--wheels {folder}: no .whl files there (`make wheels` downloads them; an ignored "
                    "folder travels to another machine only where it is named to)")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                           "--no-compile", "--disable-pip-version-check", "--upgrade", "--target", str(site),
                           *map(str, wheels)], capture_output=True, text=True)
    if done.returncode != 0:
        return [], f"installing the wheels of {folder} failed: " + " | ".join(
            tail(done.stderr, done.stdout, lines=5))
    return [wheel.name for wheel in wheels], None


def missing_modules() -> list[str]:
    import importlib.util

    return [name for name in NEEDED_MODULES if importlib.util.find_spec(name) is None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None,
                        help=f"folder of {FILE_NAME} (default: $OUT, else gpu-check/)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes on a GPU too (as on a CPU)")
    parser.add_argument("--only", default="", help="comma-separated step names (or prefixes) to run")
    parser.add_argument("--skip", default="", help="comma-separated step names (or prefixes) to leave out")
    parser.add_argument("--profile", action="store_true",
                        help="run the --amp evals once more under torch.profiler, last: the operators "
                             "that took the most time, in the JSON (profile-<model>-amp)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (data, stores, logs)")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET,
                        help="seconds for all steps together (default %(default)s): a step gets at most "
                             "what is left, and steps after it is spent are recorded as not run")
    parser.add_argument("--wheels", type=Path, default=None, metavar="DIR",
                        help="install the wheels in DIR offline first (`make wheels` downloads them)")
    args = parser.parse_args(argv)
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    sys.path.insert(0, str(ROOT))
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        installed, install_error = install_wheels(args.wheels, work / "site") if args.wheels else ([], None)
        if install_error:
            print(f"gpu-check: {install_error}; running the steps all the same", flush=True)
        missing = missing_modules()
        if "torch" in missing:
            raise SystemExit("gpu-check: this Python has no torch: use one that has (a CUDA build on a GPU)")
    except SystemExit:
        shutil.rmtree(work, ignore_errors=True)
        raise

    import torch

    cuda = torch.cuda.is_available()
    gpus = torch.cuda.device_count() if cuda else 0
    workers = min(8, os.cpu_count() or 1)
    shared = _shared_memory()
    if workers > 1 and shared < 1 << 30:  # loader workers hand batches over in /dev/shm
        print(f"gpu-check: /dev/shm has {shared >> 20} MiB free, too little for loader workers' "
              "batches: the steps run with --workers 0", flush=True)
        workers = 0
    sizes = full_sizes("cuda", workers) if cuda and not args.quick else tiny_sizes("cuda" if cuda else "cpu")
    if not cuda:
        print(f"gpu-check: no CUDA device on this machine (torch {torch.__version__}): running the CPU "
              "parts at tiny sizes; the CUDA tests skip", flush=True)
    if missing:
        print(f"gpu-check: missing Python packages: {', '.join(missing)} (the steps that need them fail; "
              "`make wheels`, then --wheels DIR, brings them to a machine without a network)", flush=True)

    data = work / "photos"
    steps: list[Callable[[], Step]] = [
        lambda: pytest_step(sizes, work),
        # the runs the targets are most likely met by (--amp), before what the budget may cut
        *(lambda m=m: eval_step(m, True, sizes, data, work) for m in sizes.eval_models),
        lambda: torchrun_step(sizes, data, work, gpus),  # short, and only this step checks it
        lambda: corruptions_step(sizes, graphs=False),
        lambda: corruptions_step(sizes, graphs=True),
        *(lambda k=k: bench_step(k, sizes) for k in ("perturbations", "heads", "jpeg", "attack",
                                                    "landscape")),
        *(lambda m=m: eval_step(m, False, sizes, data, work) for m in sizes.eval_models),
        lambda: bench_step("pipeline", sizes),  # the longest: last
        # where the evals' time goes, when asked (the profiler slows them)
        *(lambda m=m: profile_step(m, sizes, data, work) for m in sizes.eval_models if args.profile),
    ]
    only = [s for s in args.only.split(",") if s]
    skip = [s for s in args.skip.split(",") if s]
    made = [make() for make in steps]  # (a step is made cheaply; it runs below)
    names = [step.name for step in made]
    if unknown := [s for s in only + skip if not any(name.startswith(s) for name in names)]:
        # before the results of an earlier run are replaced (a mistyped name lost them)
        shutil.rmtree(work, ignore_errors=True)
        flag = "--only" if unknown[0] in only else "--skip"
        hint = " (profile steps run with --profile)" if any(s.startswith("profile") for s in unknown) else ""
        print(f"gpu-check: {flag} {unknown[0]} names no step{hint}; the steps: {', '.join(names)}",
              file=sys.stderr, flush=True)
        return 2
    out_dir = args.out or Path(os.environ.get("OUT") or ROOT / "gpu-check")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / FILE_NAME
    (out_dir / LOG_NAME).unlink(missing_ok=True)  # an earlier run's

    started = time.monotonic()
    results = {"started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "finished": None, "mode": "full" if sizes.photos > 8 else ("quick" if cuda else "cpu"),
               "device": sizes.device, "machine": {**machine(cuda), "wheels": installed, "missing": missing},
               "steps": [], "summary": {}, "targets": {}}
    if install_error:
        results["machine"]["wheels_error"] = install_error
    write(path, results)
    try:
        for step in made:
            if (only and not any(step.name.startswith(s) for s in only)) or any(step.name.startswith(s)
                                                                                for s in skip):
                continue
            left = args.budget - (time.monotonic() - started)
            if left < MIN_STEP_SECONDS and not step.unavailable:
                record = {"name": step.name, "status": "not run", "seconds": 0.0,
                          "reason": f"the time budget (--budget {args.budget:.0f} s) was spent"}
            else:
                step.timeout = min(step.timeout, left)
                try:
                    if step.name.startswith(("eval", "torchrun", "profile")) and not data.exists():
                        photo_folder(data, sizes.photos, sizes.photo_side)
                except Exception as error:  # noqa: BLE001 - recorded; the steps without it run
                    shutil.rmtree(data, ignore_errors=True)
                    record = {"name": step.name, "status": "failed", "seconds": 0.0,
                              "reason": f"making the photo folder: {type(error).__name__}: {error}"}
                else:
                    record = run_step(step, work)
                    if record["status"] in ("failed", "timeout"):
                        record["logs"] = keep_logs(step, work, out_dir / LOG_NAME)
            results["steps"].append(record)
            results["summary"] = summary(results["steps"])
            results["targets"] = measured_targets(results["steps"])
            results["seconds"] = round(time.monotonic() - started, 1)
            write(path, results)
            note = f" ({record['reason']})" if record["status"] != "passed" and "reason" in record else ""
            print(f"gpu-check: {step.name}: {record['status']}{note}, {record['seconds']:.1f} s", flush=True)
    finally:
        if args.keep:
            results["work"] = str(work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    results["seconds"] = round(time.monotonic() - started, 1)
    write(path, results)
    bad = [s["name"] for s in results["steps"] if s["status"] not in ("passed", "not available")]
    counts = ", ".join(f"{n} {status}" for status, n in results["summary"].items())
    if results["mode"] == "full":  # the targets are for a GPU at full sizes
        print(f"gpu-check: {targets_line(results.get('targets', {}))}", flush=True)
    print(f"gpu-check: {counts or 'no steps'} in {results['seconds']:.0f} s; results in {path}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
