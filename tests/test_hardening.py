"""Faults a demanding user meets: each gives a one-line error (or a clear note) and loses nothing.

Numbers that would be silently wrong (non-finite logits), inputs that are not ours to
guess (configs in other encodings, empty configs), outputs that cannot be written, signals,
partial runs in reports, and CSV headers that tools can read.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from robustbench_gcp.cli import main
from robustbench_gcp.config import load_config


def run(*args, env_columns: int | None = None):
    env = {"COLUMNS": str(env_columns)} if env_columns else None
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, env=env)


def eval_args(image_folder, checkpoint, store, *extra):
    return ["eval", "--model", "resnet18-gap", "--checkpoint", checkpoint, "--data", image_folder,
            "--store", store, "--workers", 0, "--batch-size", 4, "--shard-size", 4, *extra]


def one_error_line(result) -> str:
    """The error line of a failed command (progress bars may stand before it); no traceback."""
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def shard_count(store, missing_ok: bool = False) -> int:
    try:
        with sqlite3.connect(store, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM shards").fetchone()[0]
    except sqlite3.OperationalError:  # the schema is not created yet
        if missing_ok:
            return 0
        raise


def test_non_finite_logits_stop_the_run_name_the_cell_and_store_nothing(
        image_folder, gap_checkpoint, tmp_path):
    state = torch.load(gap_checkpoint, weights_only=True)
    state["fc.weight"] = state["fc.weight"].sign() * 3e38  # finite weights, infinite logits
    overflow = tmp_path / "overflow.pth"
    torch.save(state, overflow)
    store = tmp_path / "s.db"
    result = run(*eval_args(image_folder, overflow, store))
    assert result.exit_code == 1
    error = one_error_line(result)
    assert error.startswith("Error: clean, shard 1 of 3: "), error
    assert "NaN or infinite logits for 4 of 4 images; nothing was stored" in error
    assert shard_count(store) == 0


CONFIG = "models:\n  my-model:\n    arch: resnet18-gap\n"


@pytest.mark.parametrize("encoding, content, message", [
    ("utf-16", CONFIG, "is UTF-16 encoded; save it as UTF-8"),
    ("utf-16-le", CONFIG, "is UTF-16 encoded; save it as UTF-8"),
    ("latin-1", CONFIG.replace("my-model", "mod\u00e8le"), r"is not UTF-8: byte 0xe8 on line 2"),
    (None, bytes(range(256)) * 4, r"is not a text file \(binary data\)"),
    ("utf-8", "", "is empty: it holds no models or suites"),
    ("utf-8", "# only a comment\n", "is empty: it holds no models or suites"),
    ("utf-8", "baselines: {}\nmodels: {}\n", "defines no suites"),  # a baselines file serves report
    ("utf-8", "models:\n  m: {arch: resnet18-gap}\n", "defines no suites"),
])
def test_configs_in_other_encodings_and_empty_configs(tmp_path, encoding, content, message):
    path = tmp_path / "benchmarks.yaml"
    path.write_bytes(content if encoding is None else content.encode(encoding))
    result = run("eval", "--config", path, "--model", "resnet18-gap", "--random-weights",
                 "--data", tmp_path)
    assert result.exit_code in (1, 2)
    error = one_error_line(result)
    assert re.search(message, error), error
    assert str(path) in error


def test_a_utf8_config_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "benchmarks.yaml"
    path.write_bytes(CONFIG.encode("utf-8-sig"))
    assert load_config(path).model("my-model").arch == "resnet18-gap"


def _eval_command(image_folder, checkpoint, store):
    return [sys.executable, "-m", "robustbench_gcp", "eval", "--model", "resnet18-gap",
            "--checkpoint", str(checkpoint), "--data", str(image_folder), "--store", str(store),
            "--suite", "imagenet-c", "--corruptions", "gaussian_noise,contrast", "--severities", "2,4",
            "--shard-size", "4", "--batch-size", "1", "--workers", "0", "--format", "json"]


@pytest.mark.parametrize("signum, code, word", [(signal.SIGINT, 130, "interrupted"),
                                                (signal.SIGTERM, 143, "terminated")])
def test_sigint_and_sigterm_say_how_far_the_run_got_and_it_resumes(
        image_folder, gap_checkpoint, tmp_path, signum, code, word):
    env = {**os.environ, "GIT_PYTHON_REFRESH": "quiet"}
    store = tmp_path / "stopped.db"
    proc = subprocess.Popen(_eval_command(image_folder, gap_checkpoint, store), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not store.exists() or shard_count(store, missing_ok=True) < 1:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline, "no shard committed within 120 s"
        time.sleep(0.02)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err and out == ""
    total = 5 * 3  # (clean + 2 corruptions x 2 severities) x 3 shards
    stopped = shard_count(store)
    assert re.search(rf"Error: {word} after {stopped} of {total} shards; re-run the same command "
                     "to resume", err), err
    assert 1 <= stopped < total
    resumed = subprocess.run(_eval_command(image_folder, gap_checkpoint, store), env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert shard_count(store) == total


DROPPED_STOP = """
import os, signal, sys
from robustbench_gcp.cli import main

forks = []


def after_fork():  # as logging's _releaseLock: Python drops an exception raised in this hook
    forks.append(1)
    if len(forks) == 3:  # the third shard's loader, started as the second is computed
        os.kill(os.getpid(), signal.{name})
        for _ in range(1000):  # the handler runs here, inside the hook
            pass


os.register_at_fork(after_in_parent=after_fork)
sys.argv = ["gcp-robust", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("signum, code, word", [(signal.SIGINT, 130, "interrupted"),
                                                (signal.SIGTERM, 143, "terminated")])
def test_a_stop_whose_exception_python_drops_still_stops_the_run(
        image_folder, gap_checkpoint, tmp_path, signum, code, word):
    """A signal handled inside an at-fork hook (each shard's loader forks its workers): Python
    reports the handler's exception as ignored, and the run went on to its end, exit 0."""
    script = tmp_path / "dropped.py"
    script.write_text(DROPPED_STOP.replace("{name}", signal.Signals(signum).name))
    store = tmp_path / "s.db"
    command = [sys.executable, str(script), *_eval_command(image_folder, gap_checkpoint, store)[3:]]
    command[command.index("--workers") + 1] = "1"
    env = {**os.environ, "GIT_PYTHON_REFRESH": "quiet"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == code, result.stderr
    # the drop happened as it does in the wild, and is not printed (recorded, it stops the run)
    assert "Exception ignored" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    stopped = shard_count(store)
    assert re.search(rf"Error: {word} after {stopped} of 15 shards; re-run the same command to resume",
                     result.stderr), result.stderr
    assert 1 <= stopped < 15


STOPPED_IN_PYRUN = """
import ctypes
import torch

run = ctypes.pythonapi.PyRun_String
run.argtypes = (ctypes.c_char_p, ctypes.c_int, ctypes.py_object, ctypes.py_object)
run.restype = ctypes.py_object
STOP = b"import os, signal\\nos.kill(os.getpid(), signal.{name})\\nfor _ in range(10**6): pass\\n"


class Stopped(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 1000)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 5:  # after the plan's 3 probes and a shard (as a lazy import would, in pybind11)
            scope = {{}}
            run(STOP, 257, scope, scope)  # Py_file_input
        return self.fc(x.mean((2, 3)))


def build():
    return Stopped()
"""


@pytest.mark.parametrize("signum, code, word", [(signal.SIGINT, 130, "interrupted"),
                                                (signal.SIGTERM, 143, "terminated")])
def test_a_stop_inside_code_run_through_pyrun_string_keeps_the_exit_status(
        image_folder, tmp_path, signum, code, word):
    """A Ctrl-C that lands in code run through ``PyRun_String`` (a lazy import's pybind11 exec):
    CPython ended the process by SIGINT after the message (status -2), not 130."""
    (tmp_path / "stopped_model.py").write_text(STOPPED_IN_PYRUN.format(name=signal.Signals(signum).name))
    store = tmp_path / "s.db"
    env = {**os.environ, "GIT_PYTHON_REFRESH": "quiet", "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "robustbench_gcp", "eval", "--model", "stopped_model:build",
         "--data", str(image_folder), "--store", str(store), "--suite", "imagenet-c",
         "--corruptions", "contrast", "--severities", "1", "--shard-size", "4", "--batch-size", "4",
         "--workers", "0"], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == code, result.stderr
    said = re.search(rf"Error: {word} after (\d) of 6 shards; re-run the same command to resume",
                     result.stderr)
    assert said and int(said[1]) == shard_count(store) >= 1, result.stderr


def test_the_program_is_the_entry_point_that_keeps_a_stops_status():
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="gcp-robust")
    assert script.value == "robustbench_gcp.cli:program"
    assert (Path(__file__).parents[1] / "robustbench_gcp" / "__main__.py").read_text().endswith("program()\n")


LATE_STOP = """
import os, signal, sys
import click
from robustbench_gcp.cli import LazyGroup, main


def stop_in(owner, name):
    original = getattr(owner, name)

    def stopped(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs here
            pass
        return original(*args, **kwargs)

    setattr(owner, name, stopped)


stop_in({where})
sys.argv = ["gcp-robust", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("where, message", [
    ("click.ClickException, 'show'", "Error: store {store} does not exist"),  # Ctrl-C as the error is written
    ("LazyGroup, 'parse_args'", None)])  # Ctrl-C while the command line is parsed
def test_a_stop_outside_the_run_exits_130_and_lets_the_message_be_written(tmp_path, where, message):
    """Outside a command's own handlers Python's stood: a second Ctrl-C while the first one's
    message was written ended the process by SIGINT (status -2) or with "Aborted!" (exit 1), the
    message cut."""
    script = tmp_path / "late.py"
    script.write_text(LATE_STOP.replace("{where}", where))
    store = tmp_path / "none.db"
    env = {**os.environ, "GIT_PYTHON_REFRESH": "quiet"}
    result = subprocess.run([sys.executable, str(script), "report", "--store", str(store)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr and "Aborted" not in result.stderr
    if message:
        assert message.format(store=store) in result.stderr
    else:
        assert result.stderr == ""


def test_a_second_stop_while_the_first_ones_message_is_made_keeps_it(tmp_path):
    """A second Ctrl-C while the message of the first was made reached click from the command's own
    handler: "Aborted!" with exit 1, the message (and its "re-run to resume") lost."""
    script = tmp_path / "twice.py"
    script.write_text(LATE_STOP.replace("{where}", "click.ClickException, '__init__'")
                      .replace("sys.argv = ", "import robustbench_gcp.config as config\n"
                               "stop_in(config, 'load_config')\nsys.argv = "))
    env = {**os.environ, "GIT_PYTHON_REFRESH": "quiet"}
    result = subprocess.run([sys.executable, str(script), "models"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert (result.returncode, result.stderr) == (130, "Error: interrupted\n")


def test_a_stop_while_a_stopped_program_runs_its_exit_handlers_leaves_quietly(tmp_path):
    """Python's handler was back while a stopped program ran its exit handlers: another Ctrl-C there
    printed "Exception ignored in atexit callback" and a traceback after the message."""
    script = tmp_path / "exiting.py"
    first = "__import__('robustbench_gcp.config').config, 'load_config'"  # stopped in the command
    script.write_text(LATE_STOP.replace("{where}", first)
                      .replace("main()", "import atexit\n"
                               "atexit.register(lambda: [os.kill(os.getpid(), signal.SIGINT)] + "
                               "[None for _ in range(100000)])\n"
                               "from robustbench_gcp.cli import program\nprogram()"))
    env = {**os.environ, "GIT_PYTHON_REFRESH": "quiet"}
    result = subprocess.run([sys.executable, str(script), "models"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert (result.returncode, result.stderr) == (130, "Error: interrupted\n")


AFTER_STOP = """
import os, signal, sys
from robustbench_gcp.cli import LazyGroup, program

WHERE = sys.argv.pop(1)  # main: the command's handlers are gone; invoke: its output is out
original = getattr(LazyGroup, WHERE)
STOP = getattr(signal, sys.argv.pop(1))


def stopped(*args, **kwargs):
    try:
        return original(*args, **kwargs)
    finally:
        os.kill(os.getpid(), STOP)
        for _ in range(100000):  # the handler runs here
            pass


setattr(LazyGroup, WHERE, stopped)
sys.argv = ["gcp-robust", *sys.argv[1:]]
program()
"""


@pytest.mark.parametrize("where", ["main", "invoke"])
@pytest.mark.parametrize("stop, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_stop_after_the_command_finished_exits_by_status_with_the_output_whole(tmp_path, where, stop,
                                                                                 code):
    """A Ctrl-C or SIGTERM once the command's handlers were gone (the interpreter tearing torch
    down) ended the process by the signal, status -2 (a KeyboardInterrupt traceback) or -15, after
    a complete output; one just after the command's output exited 130 or 143 without a word that
    the output was whole."""
    script = tmp_path / "after.py"
    script.write_text(AFTER_STOP)
    env = {**os.environ, "GIT_PYTHON_REFRESH": "quiet"}
    result = subprocess.run([sys.executable, str(script), where, stop, "models"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == code, result.stderr
    assert result.stderr == f"note: stopped by {stop} after the command finished: its output is complete\n"
    assert "resnet50-isqrt" in result.stdout  # the whole listing


LIBRARY_STOP = """
import os, signal, sys
import click
from robustbench_gcp.cli import LazyGroup, main

original = LazyGroup.parse_args


def stopped(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(1000):
        pass
    return original(*args, **kwargs)


LazyGroup.parse_args = stopped
before = signal.getsignal(signal.SIGINT)
try:
    main(["models"], standalone_mode=False)
except click.exceptions.Abort:
    print("abort", signal.getsignal(signal.SIGINT) is before)
"""


def test_a_caller_of_main_outside_standalone_mode_gets_clicks_abort(tmp_path):
    """A notebook's main(standalone_mode=False) got SystemExit(130) for a Ctrl-C while parsing."""
    script = tmp_path / "library.py"
    script.write_text(LIBRARY_STOP)
    env = {**os.environ, "GIT_PYTHON_REFRESH": "quiet"}
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and result.stdout == "abort True\n", result.stdout + result.stderr


def test_a_loader_failing_after_a_dropped_stop_is_the_stop(image_folder, gap_checkpoint, tmp_path,
                                                           monkeypatch):
    """Ctrl-C reaches the loader's workers too: one that dies of it fails the shard's loading
    (RuntimeError: DataLoader worker exited unexpectedly), a traceback and exit 1 where the stop's
    own exception was dropped; the recorded stop is what ends the run."""
    from robustbench_gcp.engine import runner, stops

    opened = []
    original = runner.ImageSource.open

    def open_then_fail(self, *args, **kwargs):
        opened.append(1)
        if len(opened) == 3:
            stops._pending.append(signal.SIGINT)  # as stops.stop records it, its exception dropped
            raise RuntimeError("DataLoader worker (pid(s) 1234) exited unexpectedly")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(runner.ImageSource, "open", open_then_fail)
    store = tmp_path / "s.db"
    result = run(*eval_args(image_folder, gap_checkpoint, store, "--suite", "imagenet-c", "--corruptions",
                            "contrast", "--severities", "1", "--shard-size", "4"))
    assert result.exit_code == 130, result.output
    assert re.search(r"Error: interrupted after 2 of 6 shards; re-run the same command to resume",
                     result.stderr)
    assert stops.pending() is None  # handled: the next command starts clean


def test_a_second_stop_while_the_first_unwinds_is_recorded_not_raised():
    """A second Ctrl-C 0-10 ms after the first landed while the first's Interrupted unwound through
    the store's and the progress display's closing: a bare KeyboardInterrupt replaced it, and the
    message said "interrupted" without how far the run got (4 tries of 7, helper-217)."""
    from robustbench_gcp.engine import stops

    previous = signal.signal(signal.SIGINT, stops.stop)
    first = None
    try:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt as stop:
            first = stop
            os.kill(os.getpid(), signal.SIGINT)  # the second, while the first is being handled
            time.sleep(0.2)  # its handler runs here: recorded, not raised
            raise
    except KeyboardInterrupt as got:
        assert got is first and first is not None
        assert stops.pending() is not None
    finally:
        stops.clear()
        signal.signal(signal.SIGINT, previous)
    # handled (cleared), or dropped (recorded, its exception lost in a finalizer): the next stop
    # raises (a first version recorded every later one while one was pending: after a dropped stop,
    # no Ctrl-C stopped a command without a batch loop, helper-221)
    for dropped in (False, True):
        previous = signal.signal(signal.SIGINT, stops.stop)
        try:
            if dropped:
                stops._pending.append(signal.SIGINT)
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
        finally:
            stops.clear()
            signal.signal(signal.SIGINT, previous)


SECOND_STOP_WHILE_A_GENERATOR_CLOSES = """
import os, signal, sys, threading, time
from robustbench_gcp.engine import stops

signal.signal(signal.SIGINT, stops.stop)
if sys.argv[1] == "quiet":
    sys.unraisablehook = stops.dropped_quietly(sys.unraisablehook)


def compute():  # as the engine's: a decode under way is waited for when the consumer stops
    try:
        yield 1
        yield 2
    finally:
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()  # the second Ctrl-C
        time.sleep(20)  # a stalled decode's join


def execute():
    for _ in compute():
        os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl-C, in the consumer (a commit)
        time.sleep(5)


started = time.monotonic()
try:
    execute()
except KeyboardInterrupt:
    print("stopped after", round(time.monotonic() - started), "s, pending:", stops.pending() is not None)
"""


@pytest.mark.parametrize("hook", ["quiet", "python's"])
def test_a_second_stop_while_a_generator_closes_cuts_its_wait_short_and_is_not_printed(tmp_path, hook):
    """The first Ctrl-C in the run's loop closes the engine's generator, which waits for the decode
    under way: a second one cuts that wait short, as asked, but Python printed it "ignored" with a
    traceback (a generator's close under unwinding cannot raise), helper-225. The command line
    installs :func:`stops.dropped_quietly` for its runs."""
    script = tmp_path / "second.py"
    script.write_text(SECOND_STOP_WHILE_A_GENERATOR_CLOSES)
    result = subprocess.run([sys.executable, str(script), hook], capture_output=True, text=True, timeout=60)
    assert "stopped after 0 s, pending: True" in result.stdout, (result.stdout, result.stderr)
    assert ("Exception ignored" in result.stderr) is (hook != "quiet"), result.stderr


def test_the_command_line_runs_commands_with_dropped_stops_quiet(image_folder, gap_checkpoint, tmp_path,
                                                                monkeypatch):
    import robustbench_gcp.pipeline as pipeline
    from robustbench_gcp.cli import main
    from robustbench_gcp.engine import stops

    seen = []
    real = pipeline.run

    def run(*args, **kwargs):
        seen.append(sys.unraisablehook)
        return real(*args, **kwargs)

    before = sys.unraisablehook
    monkeypatch.setattr(pipeline, "run", run)
    result = CliRunner().invoke(main, _eval_command(image_folder, gap_checkpoint, tmp_path / "s.db")[3:])
    assert result.exit_code == 0, result.output
    assert seen and seen[0].__qualname__ == stops.dropped_quietly.__qualname__ + ".<locals>.quiet"
    assert sys.unraisablehook is before


def test_a_stop_recorded_under_another_error_does_not_stop_the_next_command(
        image_folder, gap_checkpoint, tmp_path, monkeypatch):
    """A stop whose exception was dropped, then another error: the record outlived the command and
    stopped the next one (or a library call) in the same process at its first batch."""
    from robustbench_gcp.engine import stops
    from robustbench_gcp.errors import StoreError
    from robustbench_gcp.pipeline import execution

    original = execution.report_of

    def failing_report(*args, **kwargs):
        stops._pending.append(signal.SIGINT)  # recorded, its exception dropped
        raise StoreError("the disk went away")

    monkeypatch.setattr(execution, "report_of", failing_report)
    args = eval_args(image_folder, gap_checkpoint, tmp_path / "s.db", "--suite", "clean")
    failed = run(*args)
    assert failed.exit_code == 1 and "the disk went away" in failed.stderr
    assert stops.pending() is None
    monkeypatch.setattr(execution, "report_of", original)
    assert run(*args).exit_code == 0


def test_a_sigint_ignored_by_whoever_started_the_command_stays_ignored(image_folder, gap_checkpoint,
                                                                      tmp_path):
    """`cmd &` in a script starts it with SIGINT ignored, and Python leaves it so; the CLI's handler
    took it over, and a Ctrl-C meant for the shell stopped the run."""
    env = {**os.environ, "GIT_PYTHON_REFRESH": "quiet"}
    store = tmp_path / "s.db"
    proc = subprocess.Popen(_eval_command(image_folder, gap_checkpoint, store), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.time() + 120
    while not store.exists() or shard_count(store, missing_ok=True) < 1:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline, "no shard committed within 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert shard_count(store) == 15


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("args", [["models"], ["models", "--json"], ["suites"], ["baseline", "--list"]])
def test_a_stdout_that_cannot_be_written_is_one_line(args, tmp_path):
    env = {**os.environ, "GIT_PYTHON_REFRESH": "quiet"}
    if args[0] == "baseline":  # a command with -o: the error points to it (the others have none)
        from robustbench_gcp.store import Store

        Store(tmp_path / "s.db").close()  # no baseline: JSON still writes its empty list (a table says so)
        args = [*args, "--store", str(tmp_path / "s.db"), "--format", "json"]
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "robustbench_gcp", *args], env=env,
                                stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert result.returncode == 1
    hint = "; write to a file with -o/--output instead" if args[0] == "baseline" else ""
    assert result.stderr.strip() == f"Error: cannot write to standard output: No space left on device{hint}"
    # started with stdout closed (>&-): Python's sys.stdout is None, and that was a traceback
    closed = subprocess.run([sys.executable, "-m", "robustbench_gcp", *args], env=env, stderr=subprocess.PIPE,
                            text=True, timeout=120, preexec_fn=lambda: os.close(1))
    assert closed.returncode == 1
    assert closed.stderr.strip() == f"Error: cannot write to standard output: it is closed{hint}"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("args", [["--help"], ["eval", "--help"], ["bench", "attack", "-h"], ["--version"]])
def test_help_and_version_to_a_stdout_that_cannot_be_written_is_one_line(args):
    # click writes these itself while parsing, before any command of the tool runs
    env = {**os.environ, "GIT_PYTHON_REFRESH": "quiet"}
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "robustbench_gcp", *args], env=env,
                                stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: cannot write to standard output: No space left on device"


def test_reports_of_partial_runs_are_marked_in_every_format(image_folder, gap_checkpoint, tmp_path):
    store = tmp_path / "s.db"
    args = ["--suite", "imagenet-c", "--corruptions", "contrast,brightness", "--severities", "1,2"]
    assert run(*eval_args(image_folder, gap_checkpoint, store, *args)).exit_code == 0
    # a run killed before its last shards: contrast/2 lost 2 of its 3 shards
    with sqlite3.connect(store) as db:
        db.execute("DELETE FROM shards WHERE shard > 0 AND cell_id = (SELECT id FROM cells WHERE "
                   "name = 'contrast' AND level = '2')")
    base = ["report", "--store", store, "--suite", "imagenet-c", "--resamples", "100"]
    result = run(*base, "--format", "json")
    assert result.exit_code == 0, result.output
    as_json = json.loads(result.stdout)
    (report,) = as_json["reports"]
    assert report["partial"] == {"cells_complete": 4, "cells": 5, "shards": 13, "of_shards": 15}
    assert report["notes"][0].startswith("partial run of resnet18-gap: 4 of 5 cells complete (13 of 15 "
                                         "shards")
    assert as_json["comparisons"][0]["models"][0]["partial"] is True
    long = list(csv.DictReader(io.StringIO(run(*base, "--format", "csv").stdout)))
    assert {row["partial"] for row in long} == {"True"}
    mean = [row for row in long if row["item"] == "mean (benchmark)"]
    assert mean and mean[0]["ce"]  # the headline mean is there, on a row marked partial
    wide = list(csv.DictReader(io.StringIO(run(*base, "--format", "csv", "--layout", "wide").stdout)))
    assert wide[0]["partial"] == "True"
    assert "| resnet18-gap (partial) |" in run(*base, "--format", "markdown").stdout
    table = run(*base, env_columns=200).stdout
    assert "(partial)" in table and "partial run of resnet18-gap: 4 of 5 cells complete" in table
    # a terminal too narrow for the table: rich drew its figure columns at no width, figures lost
    figures = re.compile(r"[-+]?\d+\.\d+")
    for narrow in (40, 20):
        shown = run(*base, env_columns=narrow).stdout
        assert sorted(figures.findall(shown)) == sorted(figures.findall(table)), narrow


def test_a_store_with_only_partial_runs_says_how_far_they_got(image_folder, gap_checkpoint, tmp_path):
    store = tmp_path / "s.db"
    assert run(*eval_args(image_folder, gap_checkpoint, store, "--suite", "imagenet-c",
                          "--corruptions", "contrast", "--severities", "1")).exit_code == 0
    with sqlite3.connect(store) as db:  # no shard that both cells have
        db.execute("DELETE FROM shards WHERE cell_id = (SELECT id FROM cells WHERE kind = 'clean') "
                   "OR (shard != 1 AND cell_id = (SELECT id FROM cells WHERE name = 'contrast'))")
    result = run("report", "--store", store)
    assert result.exit_code == 1  # the store's state, not a usage error
    error = one_error_line(result)
    assert error.endswith("holds no results to report yet; 1 partial run: "  # no selection given
                          "resnet18-gap (imagenet-c: 1 of 6 shards stored). Re-run the command that made it "
                          "to finish"), error
    with sqlite3.connect(store) as db:  # a process computing it now (its lease): not to be run again
        (cell,) = db.execute("SELECT id FROM cells WHERE name = 'contrast'").fetchone()
        db.execute("INSERT INTO leases VALUES (?, 0, 'somehost/1234:4242:abcd', ?)", (cell, time.time() + 60))
    error = one_error_line(run("report", "--store", store, "--suite", "imagenet-c"))
    assert error.endswith("holds no results to report for that selection yet; 1 partial run: resnet18-gap "
                          "(imagenet-c: 1 of 6 shards stored, being computed now by process 4242). Report "
                          "again when it ends"), error
    with sqlite3.connect(store) as db:  # a lease that expired: its process stopped renewing it
        db.execute("UPDATE leases SET expires = ?", (time.time() - 1,))
    error = one_error_line(run("report", "--store", store, "--suite", "imagenet-c"))
    assert error.endswith("(imagenet-c: 1 of 6 shards stored). Re-run the command that made it to "
                          "finish"), error
    # a complete clean cell is not the suite's to finish: the count is of the suite's cells alone
    assert run(*eval_args(image_folder, gap_checkpoint, store, "--suite", "imagenet-c",
                          "--corruptions", "contrast", "--severities", "1")).exit_code == 0
    with sqlite3.connect(store) as db:
        db.execute("DELETE FROM shards WHERE cell_id = (SELECT id FROM cells WHERE name = 'contrast')")
    error = one_error_line(run("report", "--store", store, "--suite", "imagenet-c"))
    assert error.endswith("(imagenet-c: 0 of 3 shards stored). Re-run the command that made it to "
                          "finish"), error
    assert run(*eval_args(image_folder, gap_checkpoint, store, "--suite", "imagenet-c", "--corruptions",
                          "contrast", "--severities", "1", "--limit", 8)).exit_code == 0
    with sqlite3.connect(store) as db:
        db.execute("DELETE FROM shards WHERE cell_id IN (SELECT id FROM cells WHERE name = 'contrast')")
    error = one_error_line(run("report", "--store", store, "--suite", "imagenet-c"))
    assert error.endswith("Re-run the commands that made them to finish"), error


def test_a_begun_suite_with_no_image_in_every_cell_is_named_in_the_report(image_folder, gap_checkpoint,
                                                                             tmp_path):
    store = tmp_path / "s.db"
    assert run(*eval_args(image_folder, gap_checkpoint, store, "--suite", "imagenet-c",
                          "--corruptions", "contrast", "--severities", "1")).exit_code == 0
    with sqlite3.connect(store) as db:  # clean has shard 0 only, contrast shard 1 only: none in common
        db.execute("DELETE FROM shards WHERE (shard != 0 AND cell_id = (SELECT id FROM cells WHERE kind = "
                   "'clean')) OR (shard != 1 AND cell_id = (SELECT id FROM cells WHERE name = 'contrast'))")
    result = run("report", "--store", store, "--format", "json", "--no-intervals")
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.stdout)["reports"]
    assert report["kind"] == "clean" and report["n_images"] == 4
    assert ("resnet18-gap: imagenet-c not reported: 2 of 6 shards stored, and no image is in all its cells "
            "yet; re-run the command that made it to finish") in report["notes"]


def test_a_run_with_nothing_stored_yet_is_named_in_the_report(image_folder, gap_checkpoint, tmp_path):
    """A run stopped before its first shard was left out of `report` without a word."""
    store = tmp_path / "s.db"
    for seed in (0, 1):
        assert run(*eval_args(image_folder, gap_checkpoint, store, "--seed", seed)).exit_code == 0
    with sqlite3.connect(store) as db:
        db.execute("DELETE FROM shards WHERE cell_id IN (SELECT id FROM cells WHERE run_id = "
                   "(SELECT MAX(id) FROM runs))")
    result = run("report", "--store", store, "--format", "json", "--no-intervals")
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.stdout)["reports"]
    assert report["model"] == "resnet18-gap[seed=0]"
    assert ("resnet18-gap[seed=1]: a run with nothing stored yet (stopped before its first shard); re-run "
            "the command that made it") in report["notes"]


def test_finished_runs_of_other_suites_are_not_called_partial(image_folder, gap_checkpoint, tmp_path):
    store = tmp_path / "s.db"
    assert run(*eval_args(image_folder, gap_checkpoint, store, "--suite", "imagenet-c",
                          "--corruptions", "contrast", "--severities", "1")).exit_code == 0
    result = run("report", "--store", store, "--suite", "adversarial")
    assert result.exit_code == 1
    # what it holds instead, as for a suite of another dataset (the hint was that one's only)
    assert one_error_line(result) == (f"Error: store {store} holds no results to report for that selection "
                                      "yet (it has imagenet-c, clean: --suite imagenet-c)")
    # a store of clean results alone names them (a report of its own only when asked: helper-250)
    clean = tmp_path / "clean.db"
    assert run(*eval_args(image_folder, gap_checkpoint, clean, "--suite", "clean")).exit_code == 0
    result = run("report", "--store", clean, "--suite", "adversarial")
    assert one_error_line(result) == (f"Error: store {clean} holds no results to report for that selection "
                                      "yet (it has clean: --suite clean)")


def test_a_run_stopped_mid_way_is_reported_on_the_images_every_cell_has(image_folder, gap_checkpoint,
                                                                          tmp_path):
    """A run computes its shards round by round across its cells: stopped in round 3 of 3, no cell
    is complete, but every cell has shards 0 and 1. The report covers those 8 images, marked, and
    equals a run on exactly those images."""
    store = tmp_path / "s.db"
    args = ["--suite", "imagenet-c", "--corruptions", "contrast,brightness", "--severities", "1,2"]
    full = run(*eval_args(image_folder, gap_checkpoint, store, *args, "--format", "json"))
    assert full.exit_code == 0, full.output
    with sqlite3.connect(store) as db:
        db.execute("DELETE FROM shards WHERE shard = 2")
    result = run("report", "--store", store, "--suite", "imagenet-c", "--format", "json", "--no-intervals")
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.stdout)["reports"]
    assert report["partial"] == {"cells_complete": 0, "cells": 5, "shards": 10, "of_shards": 15,
                                 "images": 8, "of_images": 12, "image_range": "0-7"}
    assert report["n_images"] == 8 and all(cell["n"] == 8 for cell in report["cells"])
    assert report["notes"][0].startswith("partial run of resnet18-gap: 0 of 5 cells complete (10 of 15 "
                                         "shards stored); the figures cover the 8 of 12 images that every "
                                         "cell has so far (images 0-7)")
    # the figures of exactly those images: the per-image outcomes of the complete run's first 8
    with_all = {(c["corruption"], c["severity"]): c for c in json.loads(full.stdout)["cells"]}
    from robustbench_gcp.store import Store

    with Store(store, read_only=True) as s:
        (info,) = s.runs()
        firsts = {(r.key.name, int(r.key.level)): r.correct[:8] for r in s.results(info, ["imagenet-c"])}
    for cell in report["cells"]:
        key = (cell["corruption"], cell["severity"])
        assert key in with_all and cell["top1_error"] == pytest.approx(1 - firsts[key].mean())


def test_a_suite_not_reported_yet_says_who_computes_it(image_folder, gap_checkpoint, tmp_path):
    """No image in all of a suite's cells yet, taken mid-run: the note said to re-run the command
    that was running, as the partial reports' notes said before."""
    store = tmp_path / "s.db"
    args = ["--suite", "imagenet-c", "--corruptions", "contrast", "--severities", "1,2"]
    assert run(*eval_args(image_folder, gap_checkpoint, store, *args)).exit_code == 0
    with sqlite3.connect(store) as db:  # one cell with nothing stored, the other a shard short
        (cell,) = db.execute("SELECT id FROM cells WHERE name = 'contrast' AND level = '2'").fetchone()
        db.execute("DELETE FROM shards WHERE cell_id = ?", (cell,))
        db.execute("DELETE FROM shards WHERE shard = 0 AND cell_id = (SELECT id FROM cells WHERE "
                   "name = 'contrast' AND level = '1')")

    def note() -> str:
        result = run("report", "--store", store, "--format", "json", "--no-intervals")
        assert result.exit_code == 0, result.output
        notes = [n for r in json.loads(result.stdout)["reports"] for n in r["notes"]]
        return next(n for n in notes if "not reported" in n)

    assert note().endswith("no image is in all its cells yet; re-run the command that made it to finish")
    with sqlite3.connect(store) as db:
        db.execute("INSERT INTO leases VALUES (?, 0, 'somehost/1234:4242:abcd', ?)", (cell, time.time() + 60))
    assert note().endswith("no image is in all its cells yet; being computed now (process 4242)")


def test_a_run_stopped_in_its_last_round_is_reported_on_every_cell_not_on_the_complete_ones(
        image_folder, gap_checkpoint, tmp_path):
    """In a run's last round some cells are complete and the others a shard short: the report's
    means covered the complete cells alone (one corruption at one severity: 52.5 for a run whose
    mean was 36.25). Every cell on the images they share now, as in the rounds before; cells added
    to a run that had finished the others (a shard or two of them) still leave those out."""
    store = tmp_path / "s.db"
    args = ["--suite", "imagenet-c", "--corruptions", "contrast,brightness", "--severities", "1,2"]
    assert run(*eval_args(image_folder, gap_checkpoint, store, *args)).exit_code == 0
    with sqlite3.connect(store) as db:  # the last shard of three of the four corruption cells
        db.execute("DELETE FROM shards WHERE shard = 2 AND cell_id IN (SELECT id FROM cells WHERE "
                   "kind = 'imagenet-c' AND NOT (name = 'contrast' AND level = '1'))")
    result = run("report", "--store", store, "--suite", "imagenet-c", "--format", "json", "--no-intervals")
    (report,) = json.loads(result.stdout)["reports"]
    assert report["partial"]["images"] == 8 and report["partial"]["cells_complete"] == 2  # clean, contrast/1
    assert sorted((c["corruption"], c["severity"]) for c in report["cells"]) == [
        ("brightness", 1), ("brightness", 2), ("contrast", 1), ("contrast", 2)]
    with sqlite3.connect(store) as db:  # cells added to a finished run: 1 shard of 3 shared
        db.execute("DELETE FROM shards WHERE shard >= 1 AND cell_id IN (SELECT id FROM cells WHERE "
                   "kind = 'imagenet-c' AND name = 'brightness')")
    result = run("report", "--store", store, "--suite", "imagenet-c", "--format", "json", "--no-intervals")
    (report,) = json.loads(result.stdout)["reports"]
    assert "images" not in report["partial"] and report["n_images"] == 12
    assert sorted((c["corruption"], c["severity"]) for c in report["cells"]) == [("contrast", 1)]
    assert report["notes"][0].endswith("re-run the command that made it to finish")
    # a process computing the run now (its lease on a shard): said so, not "re-run" (a second one)
    with sqlite3.connect(store) as db:
        (cell,) = db.execute("SELECT id FROM cells WHERE name = 'brightness' AND level = '1'").fetchone()
        db.execute("INSERT INTO leases VALUES (?, 1, 'somehost/1234:4242:abcd', ?)", (cell, time.time() + 60))
    result = run("report", "--store", store, "--suite", "imagenet-c", "--format", "json", "--no-intervals")
    (report,) = json.loads(result.stdout)["reports"]
    assert report["notes"][0].endswith("the means cover the complete cells only: being computed now "
                                       "(process 4242)"), report["notes"][0]
    # a process of this host that is gone (killed: its leases outlive it until they expire) is not
    from robustbench_gcp.store.leases import this_host

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    with sqlite3.connect(store) as db:
        db.execute("UPDATE leases SET owner = ?", (f"{this_host()}:{gone}:abcd",))
    result = run("report", "--store", store, "--suite", "imagenet-c", "--format", "json", "--no-intervals")
    (report,) = json.loads(result.stdout)["reports"]
    assert report["notes"][0].endswith("re-run the command that made it to finish"), report["notes"][0]


class _Overflows(torch.nn.Module):
    """Infinite logits for every image that is not black."""

    num_classes = 4

    def forward(self, x):
        brightness = x.mean(dim=(1, 2, 3))
        logits = torch.stack([brightness * k for k in range(1, 5)], dim=1)
        return torch.where((brightness > 0)[:, None], torch.full_like(logits, float("inf")), logits)


def test_non_finite_logits_under_attack_stop_the_task_too():
    from pathlib import Path

    from robustbench_gcp.engine.classifier import Classifier
    from robustbench_gcp.engine.runner import Context, ImageSource
    from robustbench_gcp.errors import NonFiniteError
    from robustbench_gcp.suites.attacks import AttackSpec, AttackTask

    classifier = Classifier(_Overflows(), torch.device("cpu"), mean=[0.0] * 3, std=[1.0] * 3)
    task = AttackTask(AttackSpec("fgsm", (1 / 255,)), ImageSource(Path(".")), 4)
    images = torch.full((2, 3, 32, 32), 200, dtype=torch.uint8)
    with pytest.raises(NonFiniteError, match="NaN or infinite logits for 2 of 2 images"):
        task.process(images, torch.tensor([0, 1]), [0, 1], Context(classifier))


@pytest.mark.parametrize("command, says_resume", [("eval", True), ("report", False)])
def test_a_ctrl_c_outside_a_run_is_one_line_and_says_what_stays(tmp_path, monkeypatch, command,
                                                                says_resume):
    """Before a run starts, after it ends, or a second Ctrl-C during the first one's clean-up."""
    import click

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(main.get_command(click.Context(main), command), "callback", stopped)
    args = ["--model", "demo-gap", "--data", tmp_path] if command == "eval" else []
    result = run(command, *args, "--store", tmp_path / "s.db")
    assert result.exit_code == 130
    resume = ": what was committed stays in the store; re-run the same command to resume"
    assert one_error_line(result) == "Error: interrupted" + (resume if says_resume else "")


def test_unwritable_outputs_are_one_line_and_keep_what_was_there(tmp_path):
    """A figure folder, the demo folder or an -o file that cannot be written: one line, no
    traceback, no half-written file, and an existing -o file keeps its text."""
    from robustbench_gcp.reports.figures import pyplot, save

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    plt = pyplot()
    fig, _ = plt.subplots()
    with pytest.raises(Exception) as info:
        save(fig, blocker / "plots" / "x.png")
    assert type(info.value).__name__ == "OutputError" and str(info.value).startswith(
        f"cannot write the figure {blocker / 'plots' / 'x.png'}: ")
    # a loop of links where a figure goes: named, the link left as it was (the figure replaced it)
    looped = tmp_path / "looped"
    looped.mkdir()
    (looped / "a.png").symlink_to(looped / "b.png")
    (looped / "b.png").symlink_to(looped / "a.png")
    with pytest.raises(Exception, match=r"a.png is a loop of symbolic links: not written$"):
        save(plt.subplots()[0], looped / "a.png")
    assert (looped / "a.png").is_symlink()
    for link in looped.iterdir():
        link.unlink()
    looped.rmdir()
    # a figure that fails half-way (a full disk): the older figure stays whole, nothing staged is left
    import errno

    from matplotlib.figure import Figure

    older = tmp_path / "plots" / "x.png"
    save(plt.subplots()[0], older)
    before = older.read_bytes()

    def half_written(self, target, **kwargs):
        Path(target).write_bytes(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Figure, "savefig", half_written)
        with pytest.raises(Exception, match="No space left on device"):
            save(plt.subplots()[0], older)
    assert older.read_bytes() == before and sorted(older.parent.iterdir()) == [older]
    demo = CliRunner().invoke(main, ["demo", "--out", str(blocker / "demo")])
    assert demo.exit_code == 1 and "Traceback" not in demo.output
    last = demo.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: cannot make the demo folder {blocker / 'demo'}")
    # -o: the new text goes to a staged file first; when that fails, the old file stays whole
    out = tmp_path / "report.json"
    out.write_text("old report\n")
    out.chmod(0o640)
    from robustbench_gcp.cli import output

    def full(*args):
        raise OSError(28, "No space left on device")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(output.os, "replace", full)
        with pytest.raises(Exception, match="cannot write .*: No space left on device"):
            output.write_output("new report\n", str(out))
    assert out.read_text() == "old report\n"
    output.write_output("new report\n", str(out))
    assert out.read_text() == "new report\n" and out.stat().st_mode & 0o777 == 0o640
    link = tmp_path / "link.json"  # through a symbolic link, its file is written
    link.symlink_to(out)
    output.write_output("linked\n", str(link))
    assert link.is_symlink() and out.read_text() == "linked\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "link.json", "plots", "report.json"]


def test_corruptions_stored_at_different_severities_are_averaged_on_the_ones_they_share(
        image_folder, gap_checkpoint, tmp_path):
    """Two evals into one store: contrast and fog at 1,2, then fog at 3. The report's mCE (and its
    comparison's) averages CE over severities 1,2 for both, equal to the first eval's, with a note."""
    store = tmp_path / "s.db"
    first = run(*eval_args(image_folder, gap_checkpoint, store, "--suite", "imagenet-c", "--corruptions",
                           "contrast,fog", "--severities", "1,2", "--format", "json"))
    assert first.exit_code == 0, first.output
    assert run(*eval_args(image_folder, gap_checkpoint, store, "--suite", "imagenet-c",
                          "--corruptions", "fog", "--severities", "3")).exit_code == 0
    other = ["eval", "--model", "resnet18-gap", "--random-weights", "--seed", "1", "--data", image_folder,
             "--store", store, "--workers", 0, "--batch-size", 4, "--shard-size", 4, "--suite", "imagenet-c",
             "--corruptions", "contrast,fog", "--severities", "1,2"]
    assert run(*other).exit_code == 0
    result = run("report", "--store", store, "--suite", "imagenet-c", "--format", "json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    mine = "resnet18-gap[seed=0,"  # labelled apart from the random-weight run by the settings that differ
    (report,) = [r for r in out["reports"] if r["model"].startswith(mine)]
    expected = json.loads(first.stdout)["metrics"]
    assert report["metrics"]["mCE"] == expected["mCE"] is not None
    assert report["metrics"]["mean_error"] == expected["mean_error"]
    assert {c["corruption"]: c["severities"] for c in report["per_corruption"]} == {"contrast": [1, 2],
                                                                                     "fog": [1, 2]}
    assert len(report["cells"]) == 5  # every stored cell is still shown
    note = ("the corruptions were stored at different severities (fog 1,2,3): CE, mCE and the means cover "
            "the severities they all have, 1,2")
    assert note in report["notes"]
    (comparison,) = out["comparisons"]
    (entry,) = [m for m in comparison["models"] if m["model"].startswith(mine)]
    assert entry["metrics"]["mCE"]["estimate"] == pytest.approx(expected["mCE"], rel=1e-12)


@pytest.mark.skipif(not Path("/dev/stdout").exists(), reason="needs /dev/stdout")
def test_output_to_dev_stdout_goes_through_a_pipe_and_appends_to_a_file(tmp_path):
    """`-o /dev/stdout | cat` was "cannot write /dev/stdout: No such file or directory" (the path
    resolved to the pipe's name), and `-o /dev/stdout >> log` replaced the log. `baseline --list`
    took every format and -o."""
    from robustbench_gcp.store import Store

    Store(tmp_path / "s.db").close()
    env = {**os.environ, "GIT_PYTHON_REFRESH": "quiet"}
    command = [sys.executable, "-m", "robustbench_gcp", "baseline", "--list", "--store",
               str(tmp_path / "s.db"), "--format", "json", "-o", "/dev/stdout"]
    piped = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout) == [] and "wrote" not in piped.stderr
    # --list took only json and the table, and wrote to stdout whatever -o said
    csv = subprocess.run([*command[:-4], "--format", "csv", "-o", str(tmp_path / "b.csv")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert csv.returncode == 0 and csv.stdout == "", csv.stderr
    assert (tmp_path / "b.csv").read_text() == "name,model,checkpoint,weights,images,stored\n"
    log = tmp_path / "log.txt"
    log.write_text("an earlier line\n")
    with open(log, "a") as handle:
        appended = subprocess.run(command, env=env, stdout=handle, stderr=subprocess.PIPE, text=True,
                                  timeout=120)
    assert appended.returncode == 0, appended.stderr
    assert log.read_text() == "an earlier line\n" + piped.stdout


def test_output_through_links_and_to_streams_in_folders_it_cannot_write(tmp_path, monkeypatch):
    """A link to a file not made yet wrote over the link (the text belongs in its target); -o
    /dev/stdout was refused for a user who cannot write /dev ("the folder /dev ... is not
    writable"); -o linked to the store was refused only after the run."""
    import click

    from robustbench_gcp.cli.options import _output_file, check_output_not_store
    from robustbench_gcp.cli.output import write_output

    (tmp_path / "link.csv").symlink_to(tmp_path / "target.csv")
    write_output("hello", str(tmp_path / "link.csv"))
    assert (tmp_path / "link.csv").is_symlink() and (tmp_path / "target.csv").read_text() == "hello\n"
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: str(path) != "/dev" and real_access(path, mode))
    assert _output_file(None, None, "/dev/stdout") == "/dev/stdout"
    (tmp_path / "out.json").symlink_to(tmp_path / "new.db")
    with pytest.raises(click.BadParameter, match="is the results store"):
        check_output_not_store(str(tmp_path / "out.json"), tmp_path / "new.db")


def test_a_stopped_run_counts_its_units_as_the_plan_line_does(image_folder, gap_checkpoint, tmp_path,
                                                              monkeypatch):
    """An attack at two epsilons is one task of two cells: the line before a run, the message of a
    stopped run and `report` count each cell (the line counted the task once per shard, '1 of 3',
    the message each cell, 'interrupted after 4 of 7 shards'; then both tasks, and report cells)."""
    from robustbench_gcp.engine import runner

    opened = []
    original = runner.ImageSource.open

    def open_then_stop(self, *args, **kwargs):
        opened.append(1)
        if len(opened) == 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(runner.ImageSource, "open", open_then_stop)
    store = tmp_path / "s.db"
    args = eval_args(image_folder, gap_checkpoint, store, "--suite", "adversarial", "--attacks", "pgd-linf",
                     "--epsilons", "1/255,2/255", "--steps", "1")
    stopped = run(*args)
    assert stopped.exit_code == 130, stopped.output
    assert "interrupted after 3 of 9 shards" in stopped.stderr  # (clean + 2 epsilons) x 1 of 3 shards
    partial = run("report", "--store", store, "--suite", "adversarial", "--no-intervals")
    assert "3 of 9 shards stored" in " ".join(partial.output.split()), partial.output
    monkeypatch.setattr(runner.ImageSource, "open", original)
    again = run(*args)
    assert again.exit_code == 0, again.output
    assert "3 of 9 (cell, shard) units already in the store; 6 to compute" in " ".join(again.stderr.split())


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="lchown to another user needs root")
def test_another_users_link_in_a_shared_folder_is_not_written_through(image_folder, gap_checkpoint, tmp_path):
    """-o and figures resolved a symbolic link themselves, past the kernel's protected_symlinks:
    another user's /tmp/results.csv -> ~/.bashrc was written to (security audit)."""
    from robustbench_gcp.errors import foreign_link

    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    link = shared / "results.csv"
    link.symlink_to(victim)
    assert not foreign_link(link)  # one's own link: followed, as before
    os.lchown(link, 12345, 12345)
    assert foreign_link(link)
    folder = shared / "figures"  # a linked folder on the way (review)
    folder.symlink_to(tmp_path, target_is_directory=True)
    os.lchown(folder, 12345, 12345)
    assert foreign_link(folder / "plot.png") and not foreign_link(tmp_path / "plot.png")
    result = run(*eval_args(image_folder, gap_checkpoint, tmp_path / "s.db", "--suite", "clean", "-o", link))
    assert result.exit_code == 1 and "another user's symbolic link in a shared folder" in result.output
    assert victim.read_text() == "mine\n"


def test_a_process_forked_during_a_run_leaves_stops_to_the_run():
    """A DataLoader worker forked while the run's handler was in place took a Ctrl-C of the process
    group before torch's worker loop, and multiprocessing printed its KeyboardInterrupt traceback
    beneath the run's one-line message. Outside a run a child keeps what it inherits."""
    from robustbench_gcp.engine import stops

    def child_handlers(installed, expected) -> int:
        """0 when a child forked with ``installed`` handling both signals has ``expected``."""
        previous = [signal.signal(s, installed) for s in (signal.SIGINT, signal.SIGTERM)]
        try:
            pid = os.fork()
            if pid == 0:
                os._exit(int([signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)] != expected))
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        finally:
            for s, handler in zip((signal.SIGINT, signal.SIGTERM), previous):
                signal.signal(s, handler)

    assert child_handlers(stops.stop, [signal.SIG_IGN, signal.SIG_DFL]) == 0
    assert child_handlers(signal.default_int_handler, [signal.default_int_handler] * 2) == 0
