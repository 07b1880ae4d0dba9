"""scripts/gpu_check.py (``make gpu-check``) on a machine without CUDA, and its bookkeeping.

The run itself: ``--quick`` without CUDA says so in one line, runs the CPU parts at tiny sizes
and writes the JSON (bench-pipeline, bench-heads and bench-landscape are left out here for time:
they go through the same step as the other benches, and every step's arguments, the GPU sizes
included, are checked against the commands' parsers below).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("gpu_check", None)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU run (make gpu-check runs the GPU one)")
def test_quick_run_without_cuda(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "GIT_PYTHON_REFRESH": "quiet"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--skip",
                           "bench-pipeline,bench-heads,bench-landscape"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    no_cuda = [line for line in lines if "no CUDA device" in line]
    assert len(no_cuda) == 1 and lines[0] == no_cuda[0], done.stdout
    assert lines[-1].startswith("gpu-check: 8 passed, 1 not available in ")
    assert lines[-1].endswith(f"results in {tmp_path}/gpu-check.json")

    results = json.loads((tmp_path / "gpu-check.json").read_text())
    assert results["mode"] == "cpu" and results["device"] == "cpu" and results["finished"]
    assert results["machine"]["cuda"] is False and results["summary"] == {"passed": 8, "not available": 1}
    steps = {step["name"]: step for step in results["steps"]}
    # the --amp evals (where the targets are likeliest met) before what the time budget may cut
    assert list(steps) == ["pytest-cuda", "eval-demo-isqrt-amp", "torchrun", "bench-corruptions",
                           "bench-corruptions-graphs", "bench-perturbations", "bench-jpeg", "bench-attack",
                           "eval-demo-isqrt"]
    # the CUDA graphs' side-by-side step, and the switch set either way in the one beside it
    assert steps["bench-corruptions-graphs"]["status"] == "not available"
    assert steps["bench-corruptions-graphs"]["reason"] == "CUDA graphs are for CUDA devices"
    assert steps["bench-corruptions"]["commands"][0].startswith("GCP_ROBUST_CUDA_GRAPHS=0 ")
    tests = steps["pytest-cuda"]["result"]
    assert tests["tests"] == tests["skipped"] > 30 and tests["passed"] == tests["failed"] == 0
    assert steps["bench-corruptions"]["result"]["rows"][0]["corruption"] == "fog"
    assert steps["bench-perturbations"]["result"]["rows"][0]["perturbation"] == "translate"
    assert {row["path"] for row in steps["bench-attack"]["result"]["rows"]} == {"suite", "plain"}
    assert [row["identical"] for row in steps["bench-jpeg"]["result"]["rows"]] == [True, True]
    targets = results["targets"]
    assert targets["corruptions_slowest"]["from"] == "fog" and targets["corruptions_slowest"]["value"] > 0
    heads = targets["eigh_over_newton_schulz"]  # the step was skipped
    assert (heads["value"], heads["met"], heads["from"]) == (None, None, "not measured")
    assert not any("targets:" in line for line in lines)  # printed for full runs on a GPU only
    plain, amp = steps["eval-demo-isqrt"]["result"], steps["eval-demo-isqrt-amp"]["result"]
    assert (plain["precision"], amp["precision"]) == ("float32", "bfloat16")
    assert plain["cells"] == 3 and plain["cell_images"] == 24 and plain["cell_images_per_s"] > 0
    dist = steps["torchrun"]["result"]
    assert dist["backend"] == "gloo" and dist["device"] == "cpu x 2 ranks" and dist["cells_differing"] == {}


def _parses(command: click.Command, args: list[str]) -> None:
    with command.make_context(command.name, list(args)):
        pass


def test_every_step_s_arguments_parse(gpu_check, tmp_path):
    """The GPU sizes cannot run here: their options are checked against the commands' parsers."""
    from robustbench_gcp.cli.bench import bench
    from robustbench_gcp.cli.eval import eval_cmd as eval_command

    data = tmp_path / "photos"
    data.mkdir()
    ctx = click.Context(bench)
    for sizes in (gpu_check.full_sizes("cuda", 8), gpu_check.tiny_sizes("cpu")):
        for kind, args in sizes.bench.items():
            command = bench.get_command(ctx, kind)
            if command is None:  # bench pipeline, in a tree without it
                assert kind == "pipeline"
                continue
            _parses(command, ["--device", sizes.device, *args, "--json"])
        for model in sizes.eval_models:
            argv = gpu_check.eval_args(model, sizes, data, tmp_path / "r.db", *sizes.eval_flags, "--amp")
            assert argv[:3] == [sys.executable, "-m", "robustbench_gcp"] and argv[3] == "eval"
            _parses(eval_command, argv[4:])
        _parses(eval_command, gpu_check.eval_args(sizes.dist_model, sizes, data, tmp_path / "r.db",
                                                  *sizes.dist_flags)[4:])
        for amp in (True, False):
            (_, argv, _), = gpu_check.eval_step(sizes.eval_models[0], amp, sizes, data, tmp_path).commands
            _parses(eval_command, argv[4:])
        (_, argv, _), = gpu_check.profile_step(sizes.eval_models[0], sizes, data, tmp_path).commands
        assert argv[1:4] == [str(ROOT / "scripts" / "profile_cmd.py"), str(tmp_path / argv[2].split("/")[-1]),
                             "eval"]
        _parses(eval_command, argv[4:])
    # the --amp evals measure the end-to-end target as a 50,000-image run computes it: one whole shard
    # of 500 at the target's batch of 256; the float32 evals check that path on a subset
    full = gpu_check.full_sizes("cuda", 8)
    (_, amp, _), = gpu_check.eval_step("resnet50-gap", True, full, data, tmp_path).commands
    (_, plain, _), = gpu_check.eval_step("resnet50-gap", False, full, data, tmp_path).commands
    assert full.photos == 500 and amp[amp.index("--batch-size") + 1] == "256" and "--limit" not in amp
    assert plain[plain.index("--batch-size") + 1] == "64" and plain[plain.index("--limit") + 1] == "128"
    assert "--amp" in amp and "--amp" not in plain


def test_a_failed_step_is_recorded_and_the_next_runs(gpu_check, tmp_path, monkeypatch, capsys):
    tiny = gpu_check.tiny_sizes

    def broken(device):
        sizes = tiny(device)
        sizes.bench["corruptions"] = ["--corruptions", "fgo"]  # exits 2 with a one-line error
        return sizes

    monkeypatch.setattr(gpu_check, "tiny_sizes", broken)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = gpu_check.main(["--out", str(tmp_path), "--only", "bench-corruptions,bench-perturbations"])
    assert code == 1
    results = json.loads((tmp_path / "gpu-check.json").read_text())
    failed, graphs, passed = results["steps"]  # (--only names prefixes: bench-corruptions-graphs too)
    assert (graphs["name"], graphs["status"]) == ("bench-corruptions-graphs", "not available")
    assert failed["name"] == "bench-corruptions" and failed["status"] == "failed"
    assert failed["returncode"] == 2 and failed["reason"] == "corruptions exited with status 2"
    assert any("unknown corruption 'fgo'. Did you mean 'fog'?" in line for line in failed["tail"])
    assert passed["name"] == "bench-perturbations" and passed["status"] == "passed"
    assert results["summary"] == {"failed": 1, "not available": 1, "passed": 1}
    # the failed step's whole output comes back in $OUT (the work folder is removed); none of the passed's
    assert failed["logs"] == ["bench-corruptions-corruptions.err"] and "logs" not in passed
    logs = (tmp_path / "gpu-check-logs.txt").read_text()
    assert logs.startswith("===== bench-corruptions-corruptions.err (") and "Did you mean 'fog'?" in logs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu-check-logs.txt", "gpu-check.json"]
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("gpu-check: bench-corruptions: failed (corruptions exited with status 2), ")
    assert out[-1].startswith("gpu-check: 1 failed, 1 not available, 1 passed in ")


def test_timeouts_unavailable_steps_and_the_budget(gpu_check, tmp_path):
    sleep = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"]
    step = gpu_check.Step("slow", [("sleep", sleep, {})], 1.5, lambda outputs: {})
    record = gpu_check.run_step(step, tmp_path)
    assert record["status"] == "timeout" and record["tail"] == ["started"]
    assert 1.5 <= record["seconds"] < 30
    missing = gpu_check.Step("bench-x", [("x", ["false"], {})], 10, lambda outputs: {},
                             unavailable="this tree has no `gcp-robust bench x`")
    assert gpu_check.run_step(missing, tmp_path) == {
        "name": "bench-x", "status": "not available", "seconds": 0.0, "commands": [],
        "reason": "this tree has no `gcp-robust bench x`"}


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds processes in /proc (Linux)")
def test_processes_a_step_left_in_sessions_of_their_own_are_ended(gpu_check, tmp_path):
    """torchrun starts its ranks in new sessions: after a timeout they went on computing."""
    import time

    marker = tmp_path / "torchrun.db"
    orphan = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
              "'import time; time.sleep(120)', sys.argv[1]], start_new_session=True); "
              "print('started', flush=True); time.sleep(120)")
    step = gpu_check.Step("torchrun", [("torchrun", [sys.executable, "-c", orphan, str(marker)], {})], 3,
                          lambda outputs: {})
    record = gpu_check.run_step(step, tmp_path)
    assert record["status"] == "timeout" and record["leftovers_ended"] == 1
    time.sleep(0.5)
    assert gpu_check.end_leftovers(str(marker)) == 0  # none left (a zombie's command line is empty)


def test_a_spent_budget_leaves_steps_not_run(gpu_check, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = gpu_check.main(["--out", str(tmp_path), "--only", "bench-corruptions", "--budget", "1"])
    assert code == 1
    step, graphs = json.loads((tmp_path / "gpu-check.json").read_text())["steps"]
    assert step == {"name": "bench-corruptions", "status": "not run", "seconds": 0.0,
                    "reason": "the time budget (--budget 1 s) was spent"}
    assert graphs["status"] == "not available"  # (said as it is, budget or not)


def test_targets_from_the_steps_results(gpu_check):
    def passed(name, result):
        return {"name": name, "status": "passed", "result": result}

    steps = [
        passed("bench-corruptions", {"rows": [{"corruption": "fog", "images_per_second": 30000.0},
                                              {"corruption": "glass_blur", "images_per_second": 1500.0}],
                                     "geometric_mean": {"images_per_second": 6708.2}}),
        passed("bench-heads", {"batch_size": 256, "scope": "head",
                               "rows": [{"head": "gap", "forward_ms": 1.0},
                                        {"head": "isqrt", "forward_ms": 2.0},
                                        {"head": "mpncov", "forward_ms": 12.0}]}),
        passed("bench-attack", {"rows": [{"path": "suite", "images_per_s": 90.0, "ratio": 0.9},
                                {"path": "plain", "images_per_s": 100.0}]}),
        passed("bench-corruptions-graphs", {"rows": [], "geometric_mean": {"images_per_second": 8049.84},
                                            "cuda_graphs": {"captured": 12, "failed": None}}),
        passed("eval-resnet50-isqrt", {"cell_images_per_s": 5000.0}),  # float32, on a subset: not counted
        passed("eval-resnet50-isqrt-amp", {"cell_images_per_s": 4000.0}),
        {"name": "eval-resnet50-gap", "status": "failed", "result": {"cell_images_per_s": 9e9}},
    ]
    targets = gpu_check.measured_targets(steps)
    assert set(targets) == set(gpu_check.TARGETS)
    assert (targets["corruptions_geomean"]["value"], targets["corruptions_geomean"]["met"]) == (6708.2, False)
    slowest = targets["corruptions_slowest"]
    assert (slowest["value"], slowest["met"], slowest["from"]) == (1500.0, False, "glass_blur")
    graphed = targets["corruptions_geomean_graphs"]
    assert (graphed["value"], graphed["met"]) == (8049.84, False)
    assert graphed["from"] == "1.20x bench-corruptions', 12 graphs captured"
    assert targets["eval_cell_images"]["value"] == 4000.0 and targets["eval_cell_images"]["met"]
    # the failed step is left out, and the float32 one on a subset at another batch
    assert targets["eval_cell_images"]["from"] == "eval-resnet50-isqrt-amp, whole run (the faster of 1)"
    # the warm rate, where the store gave it: what a 50,000-image run runs at after its first cells
    steps.append(passed("eval-resnet50-gap-amp",
                        {"cell_images_per_s": 3500.0, "warm_cell_images_per_s": 4500.0}))
    warm = gpu_check.measured_targets(steps)["eval_cell_images"]
    assert (warm["value"], warm["from"]) == (4500.0, "eval-resnet50-gap-amp, warm cells (the faster of 2)")
    assert targets["pgd_suite_over_plain"]["value"] == pytest.approx(1 / 0.9)
    assert targets["pgd_suite_over_plain"]["met"] and targets["pgd_suite_over_plain"]["target"] == "<= 1.2"
    assert targets["eigh_over_newton_schulz"]["value"] == 6.0 and targets["eigh_over_newton_schulz"]["met"]
    line = gpu_check.targets_line(targets)
    assert line.startswith("targets: 3 of 6 measured met: ") and "corruptions_slowest 1,500 (missed)" in line
    assert "eigh_over_newton_schulz 6.00 (met)" in line
    assert gpu_check.targets_line(gpu_check.measured_targets([])) == "targets: none measured"


def test_junit_summary(gpu_check, tmp_path):
    report = tmp_path / "junit.xml"
    report.write_text("""<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite>
<testcase classname="tests.test_gpu_parity" name="test_a"><system-out>--- Captured Out ---
a: 0.0100 levels</system-out></testcase>
<testcase classname="tests.test_gpu_parity" name="test_b"><skipped message="needs a CUDA device"/></testcase>
<testcase classname="tests.test_gpu_parity" name="test_c"><failure message="assert 2.5 &lt; 1.0">x</failure>
</testcase></testsuite></testsuites>""")
    with pytest.raises(gpu_check.StepFailed) as failed:
        gpu_check.junit_summary(report)
    message, result = failed.value.args
    assert message == "1 failed, 0 errors"
    assert {k: result[k] for k in ("tests", "passed", "failed", "errors", "skipped")} == {
        "tests": 3, "passed": 1, "failed": 1, "errors": 0, "skipped": 1}
    assert result["printed"] == {"tests.test_gpu_parity::test_a": ["a: 0.0100 levels"]}
    assert result["failures"] == {"tests.test_gpu_parity::test_c": ["assert 2.5 < 1.0"]}
    assert result["skip_reasons"] == {"needs a CUDA device": 1}


def _wheel(folder: Path, name: str, source: str) -> Path:
    """A minimal pure-Python wheel holding the module ``name``."""
    import zipfile

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-0.1-py3-none-any.whl"
    info = f"{name}-0.1.dist-info"
    files = {f"{name}.py": source,
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                              "Tag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{f},,\n" for f in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return path


def test_wheels_install_offline_for_the_steps(gpu_check, tmp_path, monkeypatch):
    """--wheels DIR (make gpu-check WHEELS=DIR): a GPU machine without a package index gets
    the packages it lacks from DIR, and the steps' processes import them."""
    monkeypatch.setenv("PYTHONPATH", "")
    monkeypatch.setattr(sys, "path", list(sys.path))
    _wheel(tmp_path / "wheels", "gcp_probe", "VALUE = 42\n")
    installed = gpu_check.install_wheels(tmp_path / "wheels", tmp_path / "site")
    assert installed == (["gcp_probe-0.1-py3-none-any.whl"], None)
    assert os.environ["PYTHONPATH"].split(os.pathsep) == [str(tmp_path / "site"), str(ROOT)]
    probe = [sys.executable, "-c", "import gcp_probe; print(gcp_probe.VALUE)"]
    step = gpu_check.Step("probe", [("probe", probe, {})], 60,
                          lambda outputs: {"value": outputs["probe"].strip()})
    assert gpu_check.run_step(step, tmp_path)["result"] == {"value": "42"}
    monkeypatch.setattr(gpu_check, "NEEDED_MODULES", ("torch", "gcp_probe", "gcp_no_such_module"))
    assert gpu_check.missing_modules() == ["gcp_no_such_module"]

    # no wheels there (an ignored folder not carried along), or pip failing: said, and the steps run
    (tmp_path / "empty").mkdir()
    assert gpu_check.install_wheels(tmp_path / "empty", tmp_path / "site2") == (
        [], f"--wheels {tmp_path / 'empty'}: no .whl files there (`make wheels` downloads them; an ignored "
            "folder travels to another machine only where it is named to)")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "bad-0.1-py3-none-any.whl").write_bytes(b"not a zip")
    installed, error = gpu_check.install_wheels(tmp_path / "broken", tmp_path / "site3")
    assert installed == [] and error.startswith(f"installing the wheels of {tmp_path / 'broken'} failed: ")


def test_missing_wheels_still_run_the_steps_and_write_the_json(gpu_check, tmp_path, monkeypatch, capsys):
    """An empty --wheels folder ended the run before its JSON was written: an empty $OUT."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "none").mkdir()
    code = gpu_check.main(["--out", str(tmp_path / "out"), "--only", "bench-jpeg", "--wheels",
                           str(tmp_path / "none")])
    results = json.loads((tmp_path / "out" / "gpu-check.json").read_text())
    assert code == 0 and results["summary"] == {"passed": 1}
    assert results["machine"]["wheels_error"].startswith(f"--wheels {tmp_path / 'none'}: no .whl files")
    assert "running the steps all the same" in capsys.readouterr().out


def test_a_failed_pytest_step_still_says_which_tests_failed(gpu_check, tmp_path):
    """The JUnit file is read when pytest exits non-zero: the failures and what they printed stay."""
    junit = tmp_path / "j.xml"
    test = tmp_path / "test_one.py"
    test.write_text("def test_fails():\n    print('parity 0.5')\n    assert False\n\n"
                    "def test_passes():\n    pass\n")
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
            "-o", "junit_logging=system-out", str(test)]
    step = gpu_check.Step("pytest-cuda", [("pytest", argv, {})], 120,
                          lambda outputs: gpu_check.junit_summary(junit), reports_failures=True)
    record = gpu_check.run_step(step, tmp_path)
    assert record["status"] == "failed" and record["returncode"] == 1
    assert record["result"]["failed"] == 1 and record["result"]["passed"] == 1
    assert any("parity 0.5" in line for lines in record["result"]["printed"].values() for line in lines)


def test_a_failed_step_keeps_its_own_commands_logs_only(gpu_check, tmp_path):
    """keep_logs globbed eval-resnet50-gap-*: the passed eval-resnet50-gap-amp step's log came along."""
    work = tmp_path / "work"
    work.mkdir()
    for name in ("eval-m-eval.out", "eval-m-eval.err", "eval-m-amp-eval.out", "eval-m-single.out"):
        (work / name).write_text(f"{name}\n" * 3)
    (work / "eval-m-single.err").write_text("")  # empty: not kept
    step = gpu_check.Step("eval-m", [("eval", ["x"], {}), ("single", ["y"], {})], 1, lambda outputs: {})
    logs = tmp_path / "gpu-check-logs.txt"
    logs.write_text("an earlier step's\n")
    kept = gpu_check.keep_logs(step, work, logs, limit=20)
    assert kept == ["eval-m-eval.out", "eval-m-single.out", "eval-m-eval.err"]
    sections = logs.read_text().split("===== ")
    assert sections[0] == "an earlier step's\n" and len(sections) == 4
    assert sections[1] == "eval-m-eval.out (48 bytes, its last 20 bytes) =====\n" + \
        ("eval-m-eval.out\n" * 3)[-20:] + "\n"
    assert sections[2].startswith("eval-m-single.out (54 bytes, its last 20 bytes) =====\n")


def test_profile_steps_only_when_asked(gpu_check, tmp_path, monkeypatch, capsys):
    """--profile: the --amp eval again under torch.profiler (scripts/profile_cmd.py), its operator
    tables in the JSON; without it no profile step runs."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # --only profile without --profile names no step: refused (it ran nothing and exited 0, as a
    # mistyped name did: a GPU check that passed, helper-216)
    assert gpu_check.main(["--out", str(tmp_path), "--only", "profile"]) == 2
    assert "--only profile names no step (profile steps run with --profile); the steps: pytest-cuda, " \
        in capsys.readouterr().err
    assert gpu_check.main(["--out", str(tmp_path), "--skip", "bench-corruptions,pytest_cuda"]) == 2
    assert "--skip pytest_cuda names no step;" in capsys.readouterr().err
    # refused before an earlier run's results are touched (a typo replaced them with an empty run)
    assert not (tmp_path / "gpu-check.json").exists()
    (tmp_path / "gpu-check.json").write_text('{"steps": [{"name": "eval-x"}]}')
    assert gpu_check.main(["--out", str(tmp_path), "--only", "evl"]) == 2
    assert json.loads((tmp_path / "gpu-check.json").read_text())["steps"] == [{"name": "eval-x"}]
    assert gpu_check.main(["--out", str(tmp_path), "--only", "profile", "--profile"]) == 0
    (step,) = json.loads((tmp_path / "gpu-check.json").read_text())["steps"]
    assert step["name"] == "profile-demo-isqrt-amp" and step["status"] == "passed"
    result = step["result"]
    assert result["precision"] == "bfloat16" and result["cell_images"] == 24  # the eval ran whole
    tables = result["tables"]
    assert tables[0].startswith("gcp-robust eval --model demo-isqrt ") and tables[1] == "exit status 0"
    host = tables.index("by own time on the host")
    assert any("aten::" in line and "ms" in line for line in tables[host:])
    assert capsys.readouterr().out.splitlines()[-1].startswith("gpu-check: 1 passed in ")


def test_profile_cmd_keeps_the_command_s_exit_status(tmp_path):
    env = {**os.environ, "GIT_PYTHON_REFRESH": "quiet"}
    tables = tmp_path / "t.txt"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "profile_cmd.py"), str(tables), "eval",
                           "--model", "demo-gap", "--suite", "imagenet-c", "--severitis", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Did you mean '--severities'?" in done.stderr, done.stderr
    assert tables.read_text().splitlines()[:2] == [
        "gcp-robust eval --model demo-gap --suite imagenet-c --severitis 1", "exit status 2"]


def test_warm_cells_from_the_store(gpu_check, tmp_path):
    """Each corruption's first cell and the clean cell (what a process builds once) apart from the
    rest, from a real eval's store, against the store's rows read here."""
    import sqlite3

    from click.testing import CliRunner

    from robustbench_gcp.cli import main

    data = gpu_check.photo_folder(tmp_path / "photos", 4, (72, 96))
    store = tmp_path / "s.db"
    result = CliRunner().invoke(main, [
        "eval", "--model", "demo-gap", "--random-weights", "--suite", "imagenet-c", "--data", str(data),
        "--class-order", "sorted", "--store", str(store), "--corruptions", "fog,glass_blur",
        "--severities", "1,2", "--format", "json"])
    assert result.exit_code == 0, result.output
    warm = gpu_check.warm_cells(store)
    rows = sqlite3.connect(store).execute("SELECT c.kind, c.name, c.level, s.n, s.seconds "
                                          "FROM shards s JOIN cells c ON c.id = s.cell_id").fetchall()
    seconds = {(kind, name, level): (n, t) for kind, name, level, n, t in rows}
    later = [seconds[("imagenet-c", name, "2")] for name in ("fog", "glass_blur")]
    assert warm["warm_cell_images"] == 8 == sum(n for n, _ in later)
    assert warm["warm_seconds"] == pytest.approx(sum(t for _, t in later), abs=1e-3)
    firsts = [seconds[key] for key in (("clean", "", ""), ("imagenet-c", "fog", "1"),
                                       ("imagenet-c", "glass_blur", "1"))]
    assert warm["first_cells_seconds"] == pytest.approx(sum(t for _, t in firsts), abs=1e-3)
    # from the stored seconds (warm_seconds is rounded to the millisecond, a cell here takes ~10 ms)
    assert warm["warm_cell_images_per_s"] == pytest.approx(8 / sum(t for _, t in later), rel=1e-9)
