"""What a user walkthrough of the CLI found: progress lines on stderr, the demo's help and JSON,
attack-name hints, the models table's top-1 footnote, and a clean stdout on store errors.

Real runs at tiny sizes: the demo models on 10 of the demo images.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import textwrap

import click
import pytest
from click.testing import CliRunner

from robustbench_gcp.cli import main
from robustbench_gcp.engine.runner import task_label
from robustbench_gcp.errors import ConfigError, UnknownNameError
from robustbench_gcp.suites.attacks import AttackSpec, AttackTask


@pytest.fixture
def wide(monkeypatch):
    """Progress bars 200 columns wide, so that labels are never cut short."""
    monkeypatch.setenv("COLUMNS", "200")


def run_args(demo_val, store, *extra) -> list[str]:
    return ["--data", str(demo_val), "--class-order", "sorted", "--store", str(store), "--limit", "10",
            "--workers", "0", *extra]


def invoke(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result


def words(text: str) -> str:
    """``text`` with runs of white space (rich wraps long lines) as one space."""
    return " ".join(text.split())


# 1a ---------------------------------------------------------------------------------------------

def test_a_fully_reused_run_says_so_without_an_empty_bar(demo_val, tmp_path, wide):
    store = tmp_path / "s.db"
    invoke("eval", "--model", "demo-gap", *run_args(demo_val, store))
    again = invoke("eval", "--model", "demo-gap", *run_args(demo_val, store))
    assert "0/0" not in again.stderr and "img/s" not in again.stderr
    assert again.stderr.splitlines()[0] == "demo-gap clean: reused from the store, nothing to compute"


# 1b, 1c -----------------------------------------------------------------------------------------

def test_compare_names_the_model_and_suite_of_reused_units_and_shows_short_epsilons(
        demo_val, tmp_path, wide):
    store = tmp_path / "s.db"
    models = ("--model", "demo-gap", "--model", "demo-isqrt")
    invoke("compare", *models, *run_args(demo_val, store, "--suite", "clean"))
    result = invoke("compare", *models, *run_args(demo_val, store, "--suite", "adversarial", "--attacks",
                                                   "fgsm", "--epsilons", "1/255,2/255"))
    said = words(result.stderr)
    for model in ("demo-gap", "demo-isqrt"):
        assert (f"{model} adversarial: 1 of 3 (cell, shard) units already in the store; 2 to compute"
                in said)
    assert "0.0039" not in said  # the cells' labels: the next test (the bars of a terminal show them)


def test_the_stored_cells_of_a_task_computed_again_are_counted_as_stored(demo_val, tmp_path, wide):
    """A task of several cells (a non-noise perturbation's difficulties, computed from one set of
    frames) with some of them stored: they are stored units, though computed again with the others
    (the line said 1 of 3 units stored, 2 to compute, after rotate's difficulty 1 was stored)."""
    store = tmp_path / "s.db"
    p = ("--suite", "imagenet-p", "--perturbations", "rotate")
    invoke("eval", "--model", "demo-gap", *run_args(demo_val, store, *p, "--difficulties", "1"))
    again = invoke("eval", "--model", "demo-gap", *run_args(demo_val, store, *p, "--difficulties", "1,2",
                                                             "--format", "json"))
    assert ("demo-gap imagenet-p: 2 of 3 (cell, shard) units already in the store; 1 to compute"
            in words(again.stderr)), again.stderr
    assert json.loads(again.stdout)["computed"]["reused"] == 2


def test_an_attack_task_is_labelled_with_short_epsilons_but_keeps_exact_keys():
    linf = AttackTask(AttackSpec("deepfool-linf", (1 / 255, 2 / 255)), None, 10)
    assert task_label(linf) == "adversarial/deepfool-linf eps 1/255,2/255"
    many = AttackTask(AttackSpec("fgsm", tuple(k / 255 for k in (1, 2, 4, 8))), None, 10)
    assert task_label(many) == "adversarial/fgsm eps 1/255..8/255 (4)"
    assert linf.keys[0].level == "0.00392156862745098"  # the stored key is unchanged
    half = AttackTask(AttackSpec("pgd-linf", (0.5 / 255,)), None, 10)
    assert task_label(half) == "adversarial/pgd-linf eps 0.5/255"  # it was 0.00196
    assert task_label(AttackTask(AttackSpec("pgd-l2", (0.25,)), None, 10)) == "adversarial/pgd-l2 eps 0.25"


# 2 ----------------------------------------------------------------------------------------------

def test_demo_help_names_every_suite_it_runs():
    text = words(invoke("demo", "--help").output)
    for suite in ("clean images", "ImageNet-C", "ImageNet-P", "FGSM / PGD-Linf", "loss landscape"):
        assert suite in text


# 3 ----------------------------------------------------------------------------------------------

def test_merged_demo_objects_carry_the_generation_fields_of_the_suite_that_has_them(demo_val, tmp_path):
    from robustbench_gcp.pipeline import run_all
    from robustbench_gcp.pipeline.demo_run import merged_reports
    from robustbench_gcp.pipeline.planning import plan_all

    common = {"store": str(tmp_path / "s.db"), "seed": 0, "data": str(demo_val), "class_order": "sorted",
              "limit": 10, "workers": 0}
    jobs = [("demo-gap", {"suite": "clean"}),
            ("demo-gap", {"suite": "imagenet-c", "corruptions": "fog", "severities": "1"})]
    merged = merged_reports(run_all(plan_all(jobs, common)))
    assert len(merged) == 1 and merged[0]["suites"] == ["clean", "imagenet-c"]
    assert merged[0]["backend"] == "torch" and merged[0]["storage_roundtrip"] is True
    assert merged[0]["source"] == "torch, JPEG round trip, 10 classes"  # the demo models' own
    assert json.loads(json.dumps(merged))  # still plain JSON


# 4 ----------------------------------------------------------------------------------------------

def test_a_bare_attack_family_suggests_its_linf_variant_first(demo_val, tmp_path):
    result = CliRunner().invoke(main, ["eval", "--model", "demo-gap", *run_args(demo_val, tmp_path / "s.db"),
                                       "--suite", "adversarial", "--attacks", "pgd"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == "Error: unknown attack 'pgd'. Did you mean 'pgd-linf' or 'pgd-l2'?"


def test_a_bare_attack_family_in_benchmarks_yaml_gets_the_same_hint(tmp_path):
    from robustbench_gcp.config import load_config
    from robustbench_gcp.suites.attacks import select_attacks

    path = tmp_path / "bench.yaml"
    path.write_text(textwrap.dedent("""
        suites:
          a: {kind: adversarial, attacks: [{attack: deepfool, epsilons: [0.1]}]}
    """))
    with pytest.raises(ConfigError, match=r"suites\.a\.attacks\[0\]\.attack \(line 3\): unknown attack "
                                          r"'deepfool'\. Did you mean 'deepfool-linf' or 'deepfool-l2'\?"):
        load_config(path)
    with pytest.raises(UnknownNameError, match=r"unknown attack 'cw'\. Did you mean 'cw-l2'\?$"):
        select_attacks((), ["cw"])


# 5 ----------------------------------------------------------------------------------------------

def test_models_table_says_why_some_published_top1_are_missing(monkeypatch, tmp_path):
    import yaml

    from robustbench_gcp.config import default_config_path

    monkeypatch.setenv("COLUMNS", "200")
    # the top-1 quoted is the checkpoint's own (torchvision's for its weights), beside the robustness
    rows = {line.split()[1]: line for line in invoke("models").stdout.splitlines()
            if line.startswith("│ resnet18-gap ") or line.startswith("│ resnet50-gap ")}
    assert "76.13" in rows["resnet50-gap"] and "84.7" in rows["resnet18-gap"]
    assert "top-1 -:" not in words(invoke("models").stdout)
    config = yaml.safe_load(default_config_path().read_text())
    for name in ("resnet18-gap", "resnet34-isqrt"):
        del config["models"][name]["published"]["top1"]
    path = tmp_path / "benchmarks.yaml"
    path.write_text(yaml.safe_dump(config))
    text = words(invoke("models", "--config", str(path)).stdout)
    assert ("top-1 -: the published results quoted for resnet18-gap, resnet34-isqrt give mCE, relative "
            "mCE, mFR, mT5D but no ImageNet top-1") in text
    # top-5 and the clean error, read and checked, were shown nowhere (and the note said mCE and mFR
    # whatever was quoted)
    config["models"]["resnet18-gap"]["published"] = {"top5": 90.5, "clean_error": 0.5}
    path.write_text(yaml.safe_dump(config))
    shown = invoke("models", "--config", str(path), "--json").stdout
    (row,) = [r for r in json.loads(shown)["models"] if r["name"] == "resnet18-gap"]
    assert (row["top5"], row["clean_error"]) == (90.5, 0.5)
    text = words(invoke("models", "--config", str(path)).stdout)
    assert "top-5" in text and "clean err" in text
    assert "quoted for resnet18-gap, resnet34-isqrt give top-5, the clean error, mCE, relative mCE" in text


# 6 ----------------------------------------------------------------------------------------------

def test_a_foreign_sqlite_store_leaves_stdout_empty_and_no_blank_line(demo_val, tmp_path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (text)")
    result = CliRunner().invoke(main, ["eval", "--model", "demo-gap", *run_args(demo_val, other)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ") and "is not a gcp-robust results store" in result.stderr


def test_progress_shows_labels_with_brackets_as_they_are():
    """A model label such as ``demo-isqrt[sqrt=eig]`` is text, not rich markup to swallow."""
    import io

    from rich.console import Console

    from robustbench_gcp.cli.progress import RichProgress

    out = io.StringIO()
    with RichProgress(Console(file=out, width=200)) as progress:
        progress.item(0, 1, "demo-isqrt[sqrt=eig] clean")
        progress.plan(10, 2, 1)
        progress.cell_start("clean", 0, 1, 10)
        progress.advance(10)
    text = out.getvalue()
    assert "demo-isqrt[sqrt=eig] clean: 1 of 2 (cell, shard) units already in the store; 1 to compute" in text
    assert "[1/1] demo-isqrt[sqrt=eig] clean" in text


@pytest.mark.parametrize("width", [60, 80, 100, 140])
def test_progress_figures_stay_whole_and_a_long_label_gives_way(width):
    """However narrow the terminal, the counts and the rate are never cut: a long label ends in
    "…" instead (a torchvision name squeezed every figure to "0:00:…" at 80 columns)."""
    import io

    from rich.console import Console

    from robustbench_gcp.cli.progress import RichProgress

    buffer = io.StringIO()
    title = "torchvision:mobilenet_v3_small imagenet-c"
    with RichProgress(Console(file=buffer, width=width), title=title) as p:
        p.plan(1000, 10, 0)
        p.cell_start("imagenet-c/elastic_transform/3", 0, 4, 250)
        p.advance(100)
    lines = [line for line in buffer.getvalue().splitlines() if line.strip()]
    assert len(lines) == 2, lines  # one line per bar, none wrapped
    assert "100/1000" in lines[0] and "img/s" in lines[0] and "-:--:--" in lines[0], lines
    assert all(len(line) <= width for line in lines)
    assert ("…" in lines[0]) == (width <= 100), lines  # 41 characters fit from 103 columns on


def test_layout_without_csv_is_a_usage_error_and_report_says_its_store_is_read_only(tmp_path):
    result = CliRunner().invoke(main, ["report", "--store", str(tmp_path / "none.db"), "--layout", "wide"])
    assert result.exit_code == 2 and "--layout chooses the CSV layout; give it with --format csv " \
        "(got --format table)" in result.output
    assert "store to report (opened read" in words(invoke("report", "--help").stdout)


def test_computing_commands_keep_freed_memory(monkeypatch):
    """glibc returned every freed block above 32 MB to the system, so a CPU forward pass got fresh
    zero-filled pages per layer; the computing commands have it keep them (Linux, glibc), and leave
    glibc alone when its own variables are set."""
    import sys

    from robustbench_gcp.cli import keep_freed_memory

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert keep_freed_memory() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.delenv("MALLOC_MMAP_MAX_", raising=False)
    glibc = sys.platform.startswith("linux") and __import__("platform").libc_ver()[0] == "glibc"
    assert keep_freed_memory() is glibc


def test_options_the_rest_of_the_command_leaves_unused_are_usage_errors(demo_val, tmp_path):
    """Each was accepted and silently ignored; now each is a one-line usage error, before any work."""
    store = tmp_path / "s.db"
    data = ["--data", str(demo_val), "--class-order", "sorted", "--store", str(store)]
    cases = {
        ("eval", "--model", "demo-gap", "--random-weights", "--sha256", "abc", *data):
            "`--random-weights` and `--sha256` exclude each other: the hash checks a checkpoint file",
        ("report", "--no-intervals", "--reference", "demo-gap", "--store", str(store)):
            "--reference chooses the intervals and tests, which --no-intervals skips: drop one or the other",
        ("compare", "--model", "demo-gap", "--no-intervals", "--resamples", "500", *data):
            "--resamples chooses the intervals and tests, which --no-intervals skips: drop one or the other",
        ("baseline", "--list", "--model", "alexnet", "--limit", "5", "--store", str(store)):
            "--list lists the baselines stored in --store; --model, --limit would run one: drop them or "
            "--list",
        ("baseline", "--model", "demo-gap", "--name", " ", *data):
            "--name is empty: give the name to store the baseline under",
        ("eval", "--model", "demo-gap", "--suite", "clean,imagenet-c", *data):
            "Invalid value for '--suite' / '-s': eval runs one suite (`gcp-robust compare --suite "
            "clean,imagenet-c` runs several)",
    }
    for args, message in cases.items():
        result = CliRunner().invoke(main, list(args))
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.strip().splitlines()[-1] == f"Error: {message}", args
    assert not store.exists()


def test_table_numbers_are_never_cut_in_a_narrow_terminal():
    """At 80 columns rich cut numbers to "169…" and intervals to "[-20.…" (the names kept their
    width); headers and intervals wrap at their spaces now, and numbers stay whole."""
    from rich.console import Console

    from robustbench_gcp.reports.tables import Column, rich_table

    rows = [{"corruption": name, **{f"s{k}": 100 + k + 0.04 * i for k in range(1, 6)},
             "interval": "value 12.5\n[-20.75, 169.04]"}
            for i, name in enumerate(["fog", "elastic_transform"])]
    columns = [Column("corruption", justify="left"),
               *(Column(f"s{k}", f"err s{k} %", ".2f") for k in range(1, 6)),
               Column("interval", "Δ rel. mCE")]
    console = Console(width=60, record=True, soft_wrap=True, file=open(os.devnull, "w"))  # as stdout's
    console.print(rich_table(rows, columns))
    text = console.export_text()
    assert "…" not in text
    for value in ("101.00", "105.04", "[-20.75,", "169.04]", "elastic_transform"):  # an interval may wrap
        assert value in text, text


@pytest.mark.parametrize("suffix", ["", "-wal"])
def test_output_naming_the_new_store_is_refused_before_compute(demo_val, tmp_path, suffix):
    """A store the run creates is no database yet when -o is first checked: the run was computed
    and then refused."""
    store = tmp_path / "new.db"
    for command in (["eval", "--model", "demo-gap"],
                    ["compare", "--model", "demo-gap", "--model", "demo-isqrt"]):
        result = CliRunner().invoke(main, [*command, *run_args(demo_val, store), "-o", f"{store}{suffix}"])
        assert result.exit_code == 2, result.output
        assert f"new.db{suffix} is the results store (--store {store}) or part of it" in result.output
        assert not store.exists()


@pytest.mark.parametrize("args, message", [
    (("-o", ""), "Invalid value for '-o' / '--output': the path is empty: give one"),
    (("-o", "{tmp}/new/"), "Invalid value for '-o' / '--output': {tmp}/new/ ends in /: give the file"),
    (("-o", "{tmp}/afile/x.csv"), "Invalid value for '-o' / '--output': {tmp}/afile of {tmp}/afile/x.csv is "
                                  "a file, not a folder"),
    (("--seed", str(2**64)), f"'--seed': {2**64} is above {2**64 - 1}, the largest this takes"),
    (("--shard-size", str(10**20)), f"'--shard-size': {10**20} is above 2147483647"),
    (("--batch-size", str(10**20)), f"'--batch-size': {10**20} is above 2147483647"),
    (("--workers", "65"), "'--workers': 65 is above 64"),  # 2**40 forked until memory ran out
])
def test_outputs_and_numbers_out_of_reach_are_refused_before_any_compute(demo_val, tmp_path, args, message):
    """`-o ""` failed with a traceback after the run (Path('.') has an empty name), `-o new/` wrote a
    file named new, and a seed of 2**64 or a shard size beyond SQLite's integers failed with one."""
    (tmp_path / "afile").write_text("")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    store = tmp_path / "s.db"
    result = CliRunner().invoke(main, ["eval", "--model", "demo-gap", *run_args(demo_val, store), *args])
    assert result.exit_code == 2, result.output
    assert message.replace("{tmp}", str(tmp_path)) in result.stderr and "Traceback" not in result.output
    assert not store.exists()


@pytest.mark.parametrize("option, value", [("seed", 2**64), ("batch_size", 2**63), ("shard_size", 2**63),
                                           ("workers", 65)])
def test_the_library_takes_the_command_lines_largest_values(demo_val, tmp_path, option, value):
    """The library checked the lower bounds alone: torch's "Overflow when unpacking long long" after
    planning, SQLite's OverflowError, islice's ValueError, or forks until memory ran out."""
    from robustbench_gcp import plan
    from robustbench_gcp.errors import ConfigError

    name = "--" + option.replace("_", "-")
    with pytest.raises(ConfigError, match=rf"^`{name}` should be at most \d+\. Got {value}$"):
        plan("demo-gap", data=str(demo_val), class_order="sorted", store=str(tmp_path / "s.db"),
             **{option: value})
    assert not (tmp_path / "s.db").exists()


def test_workers_beyond_the_cpus_are_said_once_and_no_more_start_than_a_shard_has_batches(demo_val, tmp_path,
                                                                                          capsys):
    """torch warned of more workers than CPUs at every shard's loader, in two raw lines; and a shard
    forked every worker asked for, whatever its batches."""
    import os

    cpus = len(os.sched_getaffinity(0))
    result = CliRunner().invoke(main, ["eval", "--model", "demo-gap", *run_args(demo_val, tmp_path / "s.db"),
                                       "--workers", str(cpus + 1), "--limit", "2", "--batch-size", "1",
                                       "--shard-size", "1", "--format", "json"])
    assert result.exit_code == 0, result.output
    note = f"note: --workers {cpus + 1} is more than the {cpus} CPUs this process may use"
    assert result.stderr.count(note) == 1, result.stderr
    assert "This DataLoader will create" not in result.stderr, result.stderr
    from robustbench_gcp.cli.options import _workers_said

    ctx = click.Context(click.Command("eval"))
    with pytest.MonkeyPatch.context() as env:  # a torchrun rank other than 0 leaves it to rank 0
        env.setenv("RANK", "1")
        _workers_said(ctx, None, cpus + 1)
    assert capsys.readouterr().err == ""
    from robustbench_gcp.data.loader import ImageFiles, Preprocess, shard_loader

    files = ImageFiles(sorted(demo_val.glob("*/*"))[:3], Preprocess(64, 64))
    assert shard_loader(files, 2, 8, prefetch=2).num_workers == 2  # 3 images: 2 batches
    assert shard_loader(files, 2, 0, prefetch=2).num_workers == 0


def test_default_workers_count_the_cpus_this_process_may_use(monkeypatch):
    """A job confined to 2 of 64 CPUs (taskset, Slurm) forked min(8, 64) loader processes onto
    those 2: the default counted the machine's CPUs while --workers' note counted the usable ones."""
    import os

    from robustbench_gcp.engine.cpus import default_workers, usable_cpus

    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert (usable_cpus(), default_workers()) == (2, 2)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(12)), raising=False)
    assert default_workers() == 8


@pytest.mark.parametrize("files, cpus", [
    ({"cpu.max": "150000 100000\n"}, 2),                   # cgroup v2: docker --cpus 1.5
    ({"cpu.max": "max 100000\n"}, 12),                     # no quota
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),  # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, 12),
    ({"cpu.max": "garbage"}, 12),
    ({}, 12),
    # a process in a child cgroup without a namespace of its own (systemd-run -p CPUQuota, Slurm):
    # the least quota of its cgroup and those above it
    ({"own": "0::/job/step\n", "job/cpu.max": "100000 100000\n", "cpu.max": "400000 100000\n"}, 1),
    ({"own": "0::/job/step\n", "job/step/cpu.max": "max 100000\n", "cpu.max": "300000 100000\n"}, 3),
    ({"own": "4:cpu,cpuacct:/job\n", "cpu/job/cpu.cfs_quota_us": "200000\n",
      "cpu/job/cpu.cfs_period_us": "100000\n"}, 2),
    ({"own": b"0::/caf\xe9\n", "cpu.max": "200000 100000\n"}, 2),  # not UTF-8: the root's
])
def test_usable_cpus_keep_to_a_cgroups_quota(tmp_path, monkeypatch, files, cpus):
    """A container limited to 2 CPUs of a 64-core machine (docker --cpus, a Kubernetes limit) kept
    its whole CPU set: 8 loader processes, and 8 test workers of 8 threads, on 2 CPUs."""
    import os

    from robustbench_gcp.engine.cpus import usable_cpus

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(12)), raising=False)
    root = tmp_path / "cgroup"
    own = tmp_path / "own"
    named = files.pop("own", "0::/\n")
    own.write_bytes(named if isinstance(named, bytes) else named.encode())
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    assert usable_cpus(str(root), str(own)) == cpus


def test_compare_runs_each_suite_once_and_refuses_none(demo_val, tmp_path):
    """`--suite clean,clean` compared each model with a copy of itself too; `--suite ""` ran nothing
    and exited 0."""
    command = ["compare", "--model", "demo-gap", "--model", "demo-isqrt",
               *run_args(demo_val, tmp_path / "s.db"), "--format", "json"]
    twice = CliRunner().invoke(main, [*command, "--suite", "clean,clean", "--suite", "clean"])
    assert twice.exit_code == 0, twice.output
    out = json.loads(twice.stdout)
    assert [r["model"] for r in out["reports"]] == ["demo-gap", "demo-isqrt"]
    assert [m["model"] for m in out["comparisons"][0]["models"]] == ["demo-gap", "demo-isqrt"]
    for empty in ("", ","):
        none = CliRunner().invoke(main, [*command, "--suite", empty])
        expected = f"Error: `--suite {empty!r}` names no suite (leave it out for clean)\n"
        assert none.exit_code == 2 and none.stderr == expected, none.output


def test_a_clean_run_on_images_of_another_size_is_not_told_to_give_a_preset(demo_val, tmp_path):
    """--preset is refused by the suites that corrupt nothing: the size error offered it to them."""
    command = ["eval", "--model", "demo-gap", *run_args(demo_val, tmp_path / "s.db"), "--dataset", "cifar10"]
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 1, result.output
    assert "but CIFAR-10 images are 32x32; give --dataset imagenet\n" in result.stderr
    assert "--preset" not in result.stderr
    # a suite's dataset: chose it, and was not named (helper-227)
    config = tmp_path / "c.yaml"
    config.write_text("suites:\n  clean-cifar: {kind: clean, dataset: cifar10}\n")
    command = ["eval", "--model", "demo-gap", *run_args(demo_val, tmp_path / "s.db"), "--config", str(config),
               "--suite", "clean-cifar"]
    result = CliRunner().invoke(main, command)
    said = "but CIFAR-10 images (suite clean-cifar's dataset: cifar10) are 32x32; give --dataset imagenet\n"
    assert result.exit_code == 1 and said in result.stderr, result.output


@pytest.mark.parametrize("args, message", [
    (("eval", "--data", ""), "Invalid value for '--data': the path is empty: give one"),
    (("eval", "--store", ""), "Invalid value for '--store': the path is empty: give one"),
    (("eval", "--config", ""), "Invalid value for '--config': the path is empty: give one"),
    (("eval", "--checkpoint", ""), "Invalid value for '--checkpoint': the path is empty: give a path or URL"),
    (("eval", "--suite", "imagenet-c", "--corrupted-dir", ""),
     "'--corrupted-dir': the path is empty: give one"),
    (("inspect", ""), "Invalid value for 'CHECKPOINT': the path is empty: give one"),
    (("compare", "--ns-iters", ""), "Invalid value for '--ns-iters': names no iteration count"),
    (("compare", "--sqrt", " , "), "Invalid value for '--sqrt': names no square root"),
])
def test_empty_paths_and_lists_are_errors_not_defaults(args, message, tmp_path, monkeypatch):
    """`--data ""` read the working folder and `--store ""` the path "."; `--ns-iters ""` was
    taken as not given."""
    monkeypatch.chdir(tmp_path)
    command = [*args[:1], *(["--model", "demo-gap"] if args[0] != "inspect" else []), *args[1:]]
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and list(tmp_path.iterdir()) == []


def test_dash_output_is_stdout(demo_val, tmp_path, monkeypatch):
    """`-o -` wrote a file named "-" in the working folder."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["eval", "--model", "demo-gap", *run_args(demo_val, tmp_path / "s.db"),
                                       "--limit", "4", "--format", "json", "-o", "-"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == "demo-gap" and not (tmp_path / "-").exists()


def test_a_stdout_that_cannot_encode_the_tables_gets_stand_ins(demo_val, tmp_path):
    """A cp1252 or Latin-1 stdout (Windows pipes, older locales) ended report and compare in a
    UnicodeEncodeError traceback on the Δ of a header, the computed results lost."""
    import subprocess
    import sys

    store = tmp_path / "s.db"
    made = invoke("compare", "-m", "demo-gap", "-m", "demo-isqrt", "--suite", "clean",
                  *run_args(demo_val, store))
    assert made.exit_code == 0, made.output
    env = {**os.environ, "GIT_PYTHON_REFRESH": "quiet", "PYTHONIOENCODING": "cp1252"}
    for fmt in ("table", "markdown"):
        done = subprocess.run([sys.executable, "-m", "robustbench_gcp", "report", "--store", str(store),
                               "--format", fmt], env=env, capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode()
        text = done.stdout.decode("cp1252")
        assert "d clean err" in text and "demo-isqrt" in text and "Traceback" not in done.stderr.decode()
    # an ASCII stdout (LC_ALL=C without UTF-8 mode): the markdown came out in raw UTF-8, the table not
    ascii_env = {**env, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    del ascii_env["PYTHONIOENCODING"]
    for fmt in ("table", "markdown"):
        done = subprocess.run([sys.executable, "-m", "robustbench_gcp", "report", "--store", str(store),
                               "--format", fmt], env=ascii_env, capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode()
        assert done.stdout.isascii() and b"d clean err" in done.stdout, (fmt, done.stdout[:300])


def test_a_stdout_that_cannot_encode_a_name_says_so(demo_val, tmp_path):
    """A CSV of a model named "modèle" to an ASCII stdout said "mod?le" without a word; -o FILE
    writes UTF-8, and JSON escapes what it holds."""
    import subprocess
    import sys

    config, store = tmp_path / "b.yaml", tmp_path / "s.db"
    config.write_text("models:\n  modèle:\n    arch: demo-gap\nsuites:\n  clean:\n    kind: clean\n",
                      encoding="utf-8")
    invoke("eval", "--config", str(config), "--model", "modèle", "--random-weights", "--suite", "clean",
           *run_args(demo_val, store))
    env = {**os.environ, "GIT_PYTHON_REFRESH": "quiet", "PYTHONIOENCODING": "ascii"}
    said = {}
    for fmt in ("csv", "json"):
        done = subprocess.run([sys.executable, "-m", "robustbench_gcp", "report", "--store", str(store),
                               "--format", fmt], env=env, capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode()
        said[fmt] = (done.stdout.decode("ascii"), done.stderr.decode("ascii"))
    assert "mod?le,," in said["csv"][0]
    with open(os.devnull, "rb") as unwritable:  # a stderr open for reading: the note is lost, not the CSV
        done = subprocess.run([sys.executable, "-m", "robustbench_gcp", "report", "--store", str(store),
                               "--format", "csv"], env=env, stdout=subprocess.PIPE, stderr=unwritable,
                              timeout=300)
    assert "mod?le,," in done.stdout.decode("ascii")
    assert ("note: the encoding of standard output (ascii) cannot write U+00E8 of the output: written "
            "otherwise (a stand-in, '?' or an escape); -o FILE writes UTF-8 (or set "
            "PYTHONIOENCODING=utf-8)") in said["csv"][1]
    assert json.loads(said["json"][0])["reports"][0]["model"] == "modèle"
    assert "note: the encoding" not in said["json"][1]
    out = tmp_path / "r.csv"
    done = subprocess.run([sys.executable, "-m", "robustbench_gcp", "report", "--store", str(store),
                           "--format", "csv", "-o", str(out)], env=env, capture_output=True, timeout=300)
    assert done.returncode == 0 and "modèle,," in out.read_text(encoding="utf-8")
    assert "note: the encoding" not in done.stderr.decode("ascii")


def test_tables_are_whole_on_a_dumb_terminal(monkeypatch):
    """rich takes a TERM=dumb terminal (Emacs shells, some CI) as 80 columns and ignored the width
    print_whole sets: a table wider than that split its names and headers mid-word."""
    import io

    from rich.console import Console

    from robustbench_gcp.reports.tables import Column, print_whole, rich_table

    monkeypatch.setenv("TERM", "dumb")
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system=None)
    assert console.is_dumb_terminal and console.width == 80
    names = ["gaussian_noise,shot_noise,impulse_noise,defocus_blur,glass_blur,motion_blur", "zoom_blur"]
    print_whole(console, rich_table([{"suite": "c", "corruptions": names[0], "note": names[1]}],
                                    [Column("suite"), Column("corruptions", justify="left"),
                                     Column("note", justify="left")], "suites", None))
    assert names[0] in buffer.getvalue()


def test_progress_in_a_log_file_is_lines(demo_val, tmp_path):
    """Rich draws its bars once, at the end, where stderr is not a terminal: a run logged with
    2> log (nohup, SLURM, CI) said nothing of its progress until it ended."""
    import io

    from rich.console import Console

    from robustbench_gcp.cli.progress import LineProgress

    buffer = io.StringIO()
    with LineProgress(Console(file=buffer, width=80), "demo-gap imagenet-c", interval=0.0) as progress:
        progress.plan(100, 4, 1)
        progress.cell_start("imagenet-c/fog/1", 1, 2, 50)
        progress.advance(50)
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "demo-gap imagenet-c: 1 of 4 (cell, shard) units already in the store; 3 to compute"
    assert lines[1].startswith("demo-gap imagenet-c: 50/100 images")  # and the rate and time left, once known
    assert lines[1].endswith(" (now imagenet-c/fog/1 [2/2])"), lines
    assert lines[2].startswith("demo-gap imagenet-c: 50/100 images in ") and len(lines) == 3, lines
    assert "other processes" not in lines[2]
    # units another process stored meanwhile: counted, and said (660/660 where 55 were computed here)
    with LineProgress(Console(file=buffer, width=200), "demo-gap imagenet-c", interval=0.0) as progress:
        progress.plan(100, 4, 0)
        progress.advance(25)
        progress.advance_total(75)
    assert re.fullmatch(r"demo-gap imagenet-c: 100/100 images in [\d.]+ s \(75 of them by other processes\)",
                        buffer.getvalue().splitlines()[-1]), buffer.getvalue()

    logged = CliRunner().invoke(main, ["compare", "-m", "demo-gap", "-m", "demo-isqrt", "--suite", "clean",
                                       *run_args(demo_val, tmp_path / "s.db")])  # stderr: not a terminal
    assert logged.exit_code == 0, logged.output
    said = [line.split(" in ")[0] for line in logged.stderr.splitlines()]
    assert said == ["[1/2] demo-gap clean", "demo-gap clean: 10/10 images", "[2/2] demo-isqrt clean",
                    "demo-isqrt clean: 10/10 images"], logged.stderr
    assert "━" not in logged.stderr
    # an evaluation that reuses everything after one that computed: it said the one before's count
    invoke("eval", "--model", "demo-gap", "--suite", "clean", *run_args(demo_val, tmp_path / "t.db"))
    again = CliRunner().invoke(main, ["compare", "-m", "demo-isqrt", "-m", "demo-gap", "--suite", "clean",
                                      *run_args(demo_val, tmp_path / "t.db")])
    assert again.exit_code == 0, again.output
    assert [line.split(" in ")[0] for line in again.stderr.splitlines()] == [
        "[1/2] demo-isqrt clean", "demo-isqrt clean: 10/10 images", "[2/2] demo-gap clean",
        "demo-gap clean: reused from the store, nothing to compute"], again.stderr


def test_progress_in_a_log_file_goes_on_while_no_batch_ends():
    """A batch of C&W or DeepFool can take minutes: the log said nothing from one batch's end to
    the next, and once rich's 30 s window held no batch, its lines lost the rate and time left."""
    import io
    import time

    from rich.console import Console

    from robustbench_gcp.cli.progress import LineProgress

    buffer = io.StringIO()
    with LineProgress(Console(file=buffer, width=200), "m adversarial", interval=0.2) as progress:
        progress.plan(10, 2, 0)
        progress.cell_start("adversarial/cw-l2", 0, 1, 10)
        time.sleep(0.7)  # no batch ends: the thread says the count
        waiting = buffer.getvalue().splitlines()
        pattern = r"m adversarial: 0/10 images, 0:00:0\d so far \(now adversarial/cw-l2\)"
        assert len(waiting) >= 2 and all(re.fullmatch(pattern, line) for line in waiting), waiting
        progress.advance(4)
        time.sleep(0.5)
    lines = buffer.getvalue().splitlines()[len(waiting):]
    assert re.fullmatch(r"m adversarial: 4/10 images, [\d.]+ img/s, about 0:00:\d\d left \(now "
                        r"adversarial/cw-l2\)", lines[0]), lines
    assert re.fullmatch(r"m adversarial: 4/10 images in [\d.]+ s", lines[-1]), lines
    assert not any("so far" in line for line in lines)


def test_the_bench_items_in_a_log_file_are_lines(capfd):
    """`bench corruptions 2> log` said nothing until its end, then left a blank line."""
    from robustbench_gcp.cli.progress import item_bar

    with item_bar(3, "timing", interval=3600) as advance:
        advance("gaussian_noise")
        advance("shot_noise")
        advance("fog")
    assert capfd.readouterr().err == "timing: gaussian_noise (1/3)\n"  # then one every interval
    with item_bar(2, "fidelity", interval=0) as advance:
        advance("fog 1")
        advance("fog 2")
    assert capfd.readouterr().err == "fidelity: fog 1 (1/2)\nfidelity: fog 2 (2/2)\n"


def test_names_from_files_reach_the_terminal_and_csv_defused(demo_val, tmp_path):
    """A checkpoint named '=HYPERLINK(...)<ESC>[2J.pth': its label reached the terminal with the
    escape sequence (a cleared screen, a window title) and a spreadsheet as a formula (security
    audit)."""
    import shutil

    from robustbench_gcp.config import load_config

    folder = tmp_path / "cks"
    folder.mkdir()
    shutil.copy(load_config().model("demo-gap").checkpoint, folder / "=HYPERLINK(1)\x1b[2Jx.pth")
    store = tmp_path / "s.db"
    made = CliRunner().invoke(main, ["compare", "--checkpoints", str(folder), "--suite", "clean",
                                     *run_args(demo_val, store)])
    assert made.exit_code == 0, made.output
    assert "\x1b" not in made.output and "=HYPERLINK(1)\\x1b[2Jx" in made.stdout
    for fmt in ("table", "markdown", "json"):
        shown = invoke("report", "--store", str(store), "--format", fmt).stdout
        assert "\x1b[" not in shown, fmt
    csv_text = invoke("report", "--store", str(store), "--format", "csv").stdout
    assert csv_text.splitlines()[1].startswith("'=HYPERLINK(1)\\x1b[2Jx,")


def test_every_spreadsheet_formula_prefix_is_defused_in_csv_cells_and_numbers_are_not():
    """OWASP's CSV injection prefixes: = + - @ and tab (``-2+3`` or ``-cmd|...`` from a
    checkpoint's file name is a formula too); a signed number stays a number."""
    from robustbench_gcp.reports.tables import csv_cell

    for text in ("=1+2", "+1+2", "-2+3", "@SUM(A1)", "\tx", "-cmd|' /C calc'!A0"):
        assert csv_cell(text) == "'" + text, text
    for number in ("-0.5", "+3", "-1e-3", "12"):
        assert csv_cell(number) == number
    assert csv_cell(-0.25) == -0.25 and csv_cell("demo-gap") == "demo-gap"


def test_an_error_naming_a_folder_escapes_its_control_characters(tmp_path):
    from robustbench_gcp.errors import printable

    assert printable("a\x1b]0;T\x07b\nc\td") == "a\\x1b]0;T\\x07b\\nc\td"
    assert printable("line\n  indented", newlines=True) == "line\n  indented"
    # bidirectional controls reorder what a name shows; U+2028 breaks a line in some terminals
    assert printable("evil\u202egnp.pth") == "evil\\u202egnp.pth"
    assert printable("a\u2028b\u2067c") == "a\\u2028b\\u2067c"
    assert printable("café 森 \u200d") == "café 森 \u200d"  # letters (and a joiner) as they are
    evil = tmp_path / "data" / "x\x1b]0;PWNED\x07y"
    evil.mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(evil / "a.png")
    result = CliRunner().invoke(main, ["eval", "--model", "demo-gap", "--suite", "clean", "--data",
                                       str(tmp_path / "data"), "--store", str(tmp_path / "s.db")])
    assert result.exit_code == 1 and "x\\x1b]0;PWNED\\x07y" in result.stderr and "\x1b" not in result.stderr
    forged = tmp_path / "w\nFAKE LINE: all good.pth"  # a name's line break starts no line (review)
    forged.write_bytes(bytes(range(7, 250)) * 10)
    said = CliRunner().invoke(main, ["inspect", str(forged)])
    assert said.exit_code == 1 and "w\\nFAKE LINE" in said.stderr
    assert not any(line.startswith("FAKE") for line in said.stderr.splitlines())


@pytest.mark.parametrize(("encoding", "errors", "written"), [
    ("latin-1", "backslashreplace", b"d... \\u4e00"),  # stderr's own handling for the rest
    ("cp1252", "strict", b"d\x85 ?"),  # cp1252 has "…"
    ("ascii", "surrogateescape", b"d... ? \xff"),  # a C locale without UTF-8 mode: a name's bytes kept
])
def test_stand_ins_on_every_stream_python_makes(monkeypatch, encoding, errors, written):
    """Review: stderr (backslashreplace) was left alone, so a progress label's "…" took 6 columns
    and broke the bars; a C locale's stdout (surrogateescape) still ended in a traceback."""
    import io
    import sys

    from robustbench_gcp.cli import tolerant_output

    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding=encoding, errors=errors)
    monkeypatch.setattr(sys, "stdout", stream)
    tolerant_output()
    text = "Δ… \u4e00" + (" \udcff" if errors == "surrogateescape" else "")
    stream.write(text)
    stream.flush()
    assert raw.getvalue() == written


@pytest.mark.parametrize("group", [[], ["bench"]])
def test_command_summaries_fit_an_80_column_help_uncut(group):
    """`gcp-robust --help` cut six of its nine summaries with "...", `bench --help` seven (click
    shortens a first sentence to the width left): each command's summary is whole, on one line."""
    result = CliRunner().invoke(main, [*group, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    listed = result.output.split("Commands:\n", 1)[1].splitlines()
    names = [line.split()[0] for line in listed if line.startswith("  ") and not line.startswith("   ")]
    assert len(names) == len(listed) >= 9, result.output  # no summary wrapped onto a second line
    assert not any(line.rstrip().endswith("...") for line in listed), result.output


def test_help_names_the_workers_limit_and_only_the_lower_bound_of_overflow_guards():
    """--workers stops at 64, a limit a user with a large machine meets: its help says so; the bounds
    that only stop overflows (--seed's 2**64 - 1, --batch-size's 2**31 - 1) stay out of the help."""
    import re

    text = re.sub(r"\s+", " ", CliRunner().invoke(main, ["eval", "--help"], terminal_width=200).output)
    assert re.search(r"--workers INTEGER RANGE .*?\[0<=x<=64\]", text)
    assert re.search(r"--seed INTEGER RANGE .*?\[default: 0; x>=0\]", text)
    assert re.search(r"--batch-size INTEGER RANGE .*?\[default: 32; x>=1\]", text)


def test_suites_of_a_file_without_any_says_so(tmp_path):
    """An empty table, and nothing to say why."""
    config = tmp_path / "bare.yaml"
    config.write_text("models: {}\n")
    shown = CliRunner().invoke(main, ["suites", "--config", str(config)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "no suites: the file has no `suites:` section, from which eval --suite takes" in shown.stdout
    assert json.loads(CliRunner().invoke(main, ["suites", "--config", str(config), "--json"]).stdout) == []
    shipped = CliRunner().invoke(main, ["suites"], env={"COLUMNS": "200"})
    assert "imagenet-c" in shipped.stdout and "no suites" not in shipped.stdout


def test_a_checkpoint_given_relative_is_recorded_absolute(demo_val, tmp_path, monkeypatch):
    """The run recorded --checkpoint as typed (ck/demo-gap.pth) beside an absolute data folder: a
    report made in another working folder named a file that is not there."""
    import shutil

    from robustbench_gcp.config import load_config

    (tmp_path / "ck").mkdir()
    shutil.copyfile(load_config().model("demo-gap").checkpoint, tmp_path / "ck" / "demo-gap.pth")
    monkeypatch.chdir(tmp_path)
    made = CliRunner().invoke(main, ["eval", "-m", "demo-gap", "--checkpoint", "ck/demo-gap.pth", "--data",
                                     str(demo_val), "--class-order", "sorted", "--limit", "10", "--store",
                                     "s.db", "--format", "json"])
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["checkpoint"] == str(tmp_path / "ck" / "demo-gap.pth")
    monkeypatch.chdir(demo_val)
    shown = CliRunner().invoke(main, ["report", "--store", str(tmp_path / "s.db"), "--format", "json"])
    assert json.loads(shown.stdout)["reports"][0]["checkpoint"] == str(tmp_path / "ck" / "demo-gap.pth")


def test_every_path_option_expands_the_home_folder(demo_val, tmp_path, monkeypatch):
    """--data '~/...' and -o expanded ~, --store, --config and --checkpoints did not: 'folder ~ of
    the store ~/x.db does not exist'."""
    import shutil

    from robustbench_gcp.config import load_config

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "ck").mkdir()
    shutil.copyfile(load_config().model("demo-gap").checkpoint, tmp_path / "ck" / "gap.pth")
    (tmp_path / "b.yaml").write_text("models: {}\n")
    shown = CliRunner().invoke(main, ["suites", "--config", "~/b.yaml"])
    assert shown.exit_code == 0 and "no suites" in shown.stdout, shown.output
    done = CliRunner().invoke(main, ["compare", "--checkpoints", "~/ck", "--data", str(demo_val),
                                     "--class-order", "sorted", "--limit", "4", "--store", "~/x.db",
                                     "--format", "json"])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "x.db").is_file()


def test_baseline_help_shows_the_suites_a_baseline_serves_alone():
    """`baseline --help` listed --attacks, --etas and the other flags of suites it refuses, and every
    suite kind in its epilogue."""
    shown = CliRunner().invoke(main, ["baseline", "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "--corruptions" in shown.stdout and "--perturbations" in shown.stdout
    for flag in ("--attacks", "--epsilons", "--etas", "--landscape-at", "--direction"):
        assert flag not in shown.stdout, flag
    kinds = shown.stdout[shown.stdout.index("Suite kinds: "):]
    assert "imagenet-c (" in kinds and "imagenet-p (" in kinds and "adversarial" not in kinds
    assert "--attacks" in CliRunner().invoke(main, ["eval", "--help"]).stdout  # eval's are every suite's


def test_a_bad_severity_is_worded_alike_by_every_command(tmp_path):
    """eval, bench corruptions and bench pipeline said a non-integer severity three ways (click's
    "Invalid value", "comma-separated integers 1..5", "such as 1,3"); each says it as a level out
    of range is said, and an empty list as "at least one level"."""
    commands = (["eval", "--model", "demo-gap", "--random-weights", "--suite", "imagenet-c", "--data",
                 str(tmp_path), "--store", str(tmp_path / "s.db")],
                ["bench", "corruptions", "--device", "cpu"], ["bench", "pipeline", "--device", "cpu"])
    for value, said in (("1,x", "`--severities` should be 1..5. Got 'x'"), ("7", "`--severities` should be "
                        "1..5. Got 7"), (" , ", "`--severities` should name at least one level")):
        for command in commands:
            result = CliRunner().invoke(main, [*command, "--severities", value])
            assert result.exit_code == 2, (command, result.output)
            assert result.stderr.strip().splitlines()[-1] == f"Error: {said}", (command, result.stderr)
    assert not (tmp_path / "s.db").exists()


def test_a_label_is_not_read_as_an_emoji_code(capsys):
    """A module brought as mynets:lock printed "mynets🔒 results stored ..." (its note's
    "mynets:lock:"): rich's consoles replace :name: codes unless told not to (helper-236)."""
    from robustbench_gcp.cli.progress import stderr_console
    from robustbench_gcp.reports.tables import render_text, rich_table, stdout_console

    stderr_console().print("mynets:lock: results stored")
    stdout_console().print("mynets:smile: on stdout")
    out = capsys.readouterr()
    assert "mynets:lock: results stored" in out.err and "mynets:smile: on stdout" in out.out, out
    assert "m:lock:" in render_text(rich_table([{"model": "m:lock:"}]))


def test_the_item_bar_shows_a_label_as_it_is(monkeypatch):
    """The bench commands' bar read its label as markup and :emoji: codes (a '[/x]' raised
    MarkupError): labels are built-in names today, a user's text tomorrow (helper-238)."""
    import io

    from rich.console import Console

    from robustbench_gcp.cli import progress

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, force_interactive=True, width=100, emoji=False)
    monkeypatch.setattr(progress, "stderr_console", lambda: console)
    with progress.item_bar(1, "bench") as advance:
        advance("m:lock: [/x]")  # (drawn as it starts, and again as it stops)
    assert "m:lock: [/x]" in out.getvalue(), out.getvalue()


# Repeated list flags ----------------------------------------------------------------------------

def test_a_list_flag_given_twice_names_both(demo_val, tmp_path):
    """`--corruptions fog --corruptions gaussian_noise` runs both (click alone kept the last and
    dropped fog silently); so for --severities."""
    store = tmp_path / "s.db"
    result = invoke("eval", "--model", "demo-gap", "--suite", "imagenet-c", "--corruptions", "fog",
                    "--corruptions", "gaussian_noise", "--severities", "1", "--severities", "2", "--format",
                    "json", *run_args(demo_val, store, "--limit", "4"))
    cells = {(c["corruption"], c["severity"]) for c in json.loads(result.stdout)["cells"]}
    assert cells == {(name, s) for name in ("fog", "gaussian_noise") for s in (1, 2)}


def test_a_list_option_joins_its_repeats_and_keeps_its_default():
    from robustbench_gcp.cli.options import list_option

    seen = []

    @click.command()
    @list_option("--names", default="a,b", callback=lambda ctx, param, value: value.upper())
    @list_option("--levels")
    def command(names, levels):
        seen.append((names, levels))

    for args, expected in [([], ("A,B", None)), (["--names", "x", "--names", "y,z"], ("X,Y,Z", None)),
                           (["--levels", "1", "--levels", "3"], ("A,B", "1,3"))]:
        assert CliRunner().invoke(command, args).exit_code == 0
        assert seen.pop() == expected
    assert "[default: a,b]" in CliRunner().invoke(command, ["--help"]).output


def test_resamples_have_a_ceiling(tmp_path):
    """`--resamples 100000000000000000000` filled the memory (the means are held, cells x resamples)
    before anything was said (helper-282): one line, before the store is read."""
    for command in ("report", "compare"):
        result = CliRunner().invoke(main, [command, "--store", str(tmp_path / "none.db"), "--resamples",
                                           "100001"])
        assert result.exit_code == 2
        assert "Invalid value for '--resamples': 100001 is not in the range 100<=x<=100000." in result.output
    assert not (tmp_path / "none.db").exists()
