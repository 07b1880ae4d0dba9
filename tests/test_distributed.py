"""torchrun: two CPU processes (gloo) give the single-process counts; a dead rank stops the job cleanly."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robustbench_gcp.store import Store
from robustbench_gcp.store.leases import Claim

ENV = {**os.environ, "GIT_PYTHON_REFRESH": "quiet", "OMP_NUM_THREADS": "1"}


def eval_args(val: Path, store: Path, *extra: str) -> list[str]:
    return ["eval", "--data", str(val), "--class-order", "sorted", "--store", str(store), "--workers", "0",
            "--format", "json", *extra]


def torchrun(args: list[str], nproc: int = 2, **kwargs) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
               "--monitor-interval", "0.2", "-m", "robustbench_gcp", *args]
    return subprocess.Popen(command, **{"env": ENV, **kwargs}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def failed_torchrun(args: list[str], timeout: float = 180, **kwargs) -> str:
    """The stderr of a torchrun job that must fail (within ``timeout`` seconds)."""
    proc = torchrun(args, **kwargs)
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
    assert proc.returncode != 0, err
    return err


def single(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robustbench_gcp", *args], env=ENV, capture_output=True,
                          text=True, timeout=600)


def by_hand(commands: list[list[str]], timeout: float = 300,
            machines: list[int] | None = None) -> tuple[list[subprocess.Popen], list]:
    """Ranks started by hand (as torchrun on several machines does, no launcher to stop them), one
    per command (after the Python executable), on a free local port; their (stdout, stderr).
    ``machines``: each rank's machine (0, 1 ...; default: all on one), which sets its local rank."""
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    procs = []
    machines = machines or [0] * len(commands)
    for rank, command in enumerate(commands):
        world = str(len(commands))
        local, on_it = machines[:rank].count(machines[rank]), machines.count(machines[rank])
        env = {**ENV, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": world,
               "RANK": str(rank), "LOCAL_RANK": str(local), "LOCAL_WORLD_SIZE": str(on_it),
               "GCP_ROBUST_DIST_TIMEOUT": "120"}
        procs.append(subprocess.Popen([sys.executable, *command], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    try:
        return procs, [proc.communicate(timeout=timeout) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()


def stored(store: Path) -> dict:
    with Store(store) as s:
        out = {}
        for run in s.runs():
            for cell_id, key in s.cells(run.id):
                result = s.cell_result(cell_id, key, run.n_shards)
                extra = None if result.extra is None else result.extra.tobytes()
                correct = None if result.correct is None else result.correct.tobytes()
                out[(run.key, key)] = (result.complete, result.counts, correct, extra)
        return out


PLANS = {
    "imagenet-c": ["--model", "demo-gap", "--suite", "imagenet-c", "--corruptions",
                   "gaussian_noise,glass_blur,fog", "--severities", "1,4", "--shard-size", "15"],
    "adversarial": ["--model", "demo-isqrt", "--suite", "adversarial", "--attacks", "fgsm,pgd-linf",
                    "--steps", "2", "--shard-size", "15", "--limit", "60"],
}


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_two_ranks_store_the_single_process_counts(demo_val, tmp_path, plan):
    dist_store, single_store = tmp_path / "dist.db", tmp_path / "single.db"
    proc = torchrun(eval_args(demo_val, dist_store, *PLANS[plan]))
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert '"device": "cpu x 2 ranks"' in out  # one report, from rank 0 only
    assert out.count('"model":') == 1
    # a fresh store: every unit computed once (rank 0's own were counted twice: 12 of 8 units)
    computed = json.loads(out)["computed"]
    assert computed["computed"] == computed["units"] and computed["reused"] == 0, computed
    # the other rank's share is the job's, not "by other processes" beside "reused: 0" (helper-262)
    assert "of them by the job's other ranks)" in err and "other processes" not in err, err
    done = single(eval_args(demo_val, single_store, *PLANS[plan]))
    assert done.returncode == 0, done.stderr
    a, b = stored(dist_store), stored(single_store)
    assert a.keys() == b.keys() and len(a) > 1
    for key in a:
        assert a[key][0], f"{key} incomplete"
        assert a[key] == b[key], key


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _rank_of(pid: int) -> int | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in environ:
        if item.startswith(b"RANK="):
            return int(item[5:])
    return None


def _committed(store: Path) -> int:
    try:
        with sqlite3.connect(store, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM shards").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_a_dead_rank_stops_the_job_and_the_rerun_finishes_it(demo_val, tmp_path):
    store = tmp_path / "killed.db"
    cells = ("--suite", "imagenet-c", "--corruptions", "gaussian_noise,contrast,fog", "--shard-size", "10")
    args = eval_args(demo_val, store, "--model", "demo-isqrt", *cells)
    proc = torchrun(args)
    deadline = time.time() + 180
    while _committed(store) == 0:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline, "no shard committed within 180 s"
        time.sleep(0.05)
    ranks = {_rank_of(pid): pid for pid in _children(proc.pid)}
    os.kill(ranks[1], signal.SIGKILL)
    killed_at = time.time()
    out, err = proc.communicate(timeout=120)
    assert time.time() - killed_at < 60, "the surviving rank did not stop within 60 s"
    assert proc.returncode != 0
    at_kill = _committed(store)
    total = 16 * 10  # (clean + 15 cells) x 10 shards
    assert 0 < at_kill < total
    assert "rank 0 of 2:" in err
    assert "lost contact with the other ranks" in err or "stopped by the launcher" in err
    assert "re-run the same command" in err

    resumed = single(args)  # resume in one process: same run (same device type, shard size, seed)
    assert resumed.returncode == 0, resumed.stderr
    reference = tmp_path / "reference.db"
    assert single(eval_args(demo_val, reference, "--model", "demo-isqrt", *cells)).returncode == 0
    a, b = stored(store), stored(reference)
    assert a.keys() == b.keys() and len(a) == 16
    assert a == b


def test_a_rank_stopped_by_sigterm_is_not_said_as_its_error(demo_val, tmp_path):
    """SIGTERM to one rank of a job started by hand: its handler's RankFailure, raised in the
    rank's compute, went to rank 0 as the rank's error ("rank 1 of 2: rank 1 of 2: stopped by the
    launcher ... another rank failed"), helper-224. The rank stops; rank 0 says it lost it."""
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    store = tmp_path / "s.db"
    args = eval_args(demo_val, store, "--model", "demo-isqrt", "--suite", "imagenet-c", "--corruptions",
                     "gaussian_noise,contrast,fog", "--shard-size", "10")
    procs = []
    for rank in (0, 1):
        env = {**ENV, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
               "RANK": str(rank), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2",
               "GCP_ROBUST_DIST_TIMEOUT": "120"}
        procs.append(subprocess.Popen([sys.executable, "-m", "robustbench_gcp", *args], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        deadline = time.time() + 180
        while _committed(store) == 0:
            assert procs[0].poll() is None, procs[0].communicate()[1]
            assert time.time() < deadline, "no shard committed within 180 s"
            time.sleep(0.05)
        procs[1].send_signal(signal.SIGTERM)
        outputs = [proc.communicate(timeout=180) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    assert procs[0].returncode != 0 and procs[1].returncode != 0
    err = outputs[0][1]
    assert "rank 1 of 2: rank 1 of 2" not in err, err
    assert "rank 0 of 2: lost contact with the other ranks" in err, err


DEMO_SCRIPT = """
import json, os, sys
from robustbench_gcp.pipeline import demo_run
demo_run.DEMO_SUITES = (("imagenet-p", {"perturbations": "translate,gaussian_noise"}), ("clean", {}))
reports, comparisons = demo_run.run_demo(sys.argv[1], device="cpu", workers=0, batch_size=16, limit=10,
                                         shard_size=5)
if os.environ.get("RANK", "0") == "0":
    print(json.dumps([[r.model, r.suite, r.sections] for r in reports]))
else:
    assert reports == [] and comparisons == []
"""


def test_the_demo_under_torchrun_equals_one_process(tmp_path):
    """Every rank runs the demo's jobs in the same order; the ImageNet-P reports are renormalized by the
    stored demo baseline on rank 0 alone, without another exchange (which would pair with the other
    ranks' next job)."""
    script = tmp_path / "demo_script.py"
    script.write_text(DEMO_SCRIPT)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(script), str(tmp_path / "dist")]
    dist = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)
    assert dist.returncode == 0, dist.stderr
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "single")], env=ENV,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr
    reports = json.loads(one.stdout)
    assert json.loads(dist.stdout) == reports
    assert [(model, suite) for model, suite, _ in reports] == [
        ("demo-gap", "imagenet-p"), ("demo-isqrt", "imagenet-p"), ("demo-gap", "clean"),
        ("demo-isqrt", "clean")]
    assert [s["metrics"]["baseline"] for _, suite, s in reports if suite == "imagenet-p"] == ["demo-gap"] * 2
    assert stored(tmp_path / "dist" / "demo.db") == stored(tmp_path / "single" / "demo.db")


def _folder(root: Path, per_class: int, *bad: str) -> Path:
    """Two classes of ``per_class`` small JPEGs (sorted: n01440764's first), ``bad`` ones unreadable."""
    from PIL import Image

    for c, wnid in enumerate(("n01440764", "n01443537")):
        (root / wnid).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (40, 40), (20 * i, 100 * c, 30)).save(root / wnid / f"{i}.JPEG")
    for name in bad:
        (root / name).write_bytes(b"not an image")
    return root


@pytest.mark.parametrize("bad, kept, who", [
    ("n01443537/3.JPEG", [(0, 2), (1, 2), (2, 2)], "rank 1 of 2: "),
    ("n01440764/3.JPEG", [(0, 2)], "rank 1 of 2: "),
    ("n01443537/1.JPEG", [(0, 2), (1, 2), (3, 2)], "")], ids=["round-2", "round-1", "rank-0"])
def test_a_rank_that_fails_stops_the_job_at_once(tmp_path, bad, kept, who):
    """A rank that raises (an unreadable image) stops the job, rather than waiting at exit in a
    barrier the others never reach, for the whole timeout. Its error goes to rank 0, which stores
    the round's other shards and says it: the failed rank left at once, and torchrun stopped rank
    0 midway through its shard, lost where the failure came in the first round (helper-220). Rank
    0 failing itself stores the others' shards of the round too (rank 1's was lost, and rank 1
    said it "lost contact", helper-224)."""
    data = _folder(tmp_path / "val", 4, bad)
    args = ["eval", "--data", str(data), "--store", str(tmp_path / "s.db"), "--workers", "0", "--model",
            "demo-gap", "--random-weights", "--suite", "imagenet-c", "--corruptions", "fog",
            "--severities", "1", "--shard-size", "2", "--class-order", "sorted"]
    err = failed_torchrun(args, env={**ENV, "GCP_ROBUST_DIST_TIMEOUT": "600"})  # a wait outlasts the test
    said = f"Error: {who}cannot read image {data / bad}"
    assert err.count("cannot read image") == 1 and said in err, err
    assert "lost contact" not in err, err
    # rank 0's own shard of the round rank 1 failed in is stored (clean and fog), as a single process
    # would have kept it
    with sqlite3.connect(tmp_path / "s.db") as db:
        shards = sorted(db.execute("SELECT shard, COUNT(*) FROM shards GROUP BY shard").fetchall())
    assert shards == kept


@pytest.mark.parametrize("rank1", [["--seed", "7"], ["--corruptions", "fog,gaussian_noise"]],
                         ids=["seed", "cells"])
def test_ranks_started_with_other_settings_are_refused(demo_val, tmp_path, rank1):
    """Ranks started by hand (torchrun on two machines whose commands or files differ) with another
    seed, or their corruptions in another order: rank 0 stored rank 1's results under its own run
    (another seed's counts, fog's as gaussian_noise's), every rank exiting 0 (helper-220). Rank 2,
    sound, stops quietly (it said it "lost contact with rank 0 before it sent the work list",
    helper-225)."""
    store = tmp_path / "s.db"
    base = ["-m", "robustbench_gcp", *eval_args(demo_val, store), "--model", "demo-gap", "--suite",
            "imagenet-c", "--severities", "1", "--shard-size", "10"]
    common = [*base, "--corruptions", "gaussian_noise,fog"]
    other = [*base, *rank1] if "--corruptions" in rank1 else [*common, *rank1]  # (a list flag adds up)
    # rank 1 on a machine of its own (and rank 2's)
    procs, outputs = by_hand([common, other, common], machines=[0, 1, 1])
    differ = "seed" if rank1[0] == "--seed" else "cells (--suite and its options"
    assert procs[1].returncode != 0 and f"rank 1 was started with other settings than rank 0: {differ}" \
        in outputs[1][1], outputs[1][1]
    # rank 0 says it too (it said it lost contact, and to re-run the same command, helper-221)
    said = f"Error: rank 1 was started with other settings than rank 0: {differ}"
    assert procs[0].returncode != 0 and said in outputs[0][1], outputs[0][1]
    assert procs[2].returncode != 0 and "Error" not in outputs[2][1], outputs[2][1]
    assert not _shards(store)  # before any work
    # on rank 0's machine, rank 0 alone says it (both did: helper-262)
    procs, outputs = by_hand([common, other])
    assert procs[1].returncode != 0 and "Error" not in outputs[1][1], outputs[1][1]
    assert procs[0].returncode != 0 and said in outputs[0][1], outputs[0][1]
    if rank1[0] == "--seed":  # two ranks' own: rank 0 says each (it said the first alone: helper-265)
        _, outputs = by_hand([common, other, [*common, "--seed", "8"]])
        assert said in outputs[0][1] and "\n  rank 2 was started with other settings than rank 0: seed" \
            in outputs[0][1], outputs


def _shards(store: Path) -> dict:
    with sqlite3.connect(store) as db:
        return {row[:5]: row[5:] for row in db.execute(
            "SELECT kind, name, level, variant, shard, counts, bitmap, extra FROM shards JOIN cells "
            "ON cells.id = shards.cell_id")}


def test_ranks_failing_in_the_same_round_each_say_why_and_stop(tmp_path):
    """Rank 0 fails itself in the round rank 1 sends it its error: rank 0 says its own, and rank 1's
    after it (it said its own only, helper-225), rank 1 stops quietly (it said it "lost contact"
    with rank 0), and the job stops (no wait for the timeout)."""
    # shard 0 (rank 0's) and shard 1 (rank 1's) of round 1
    data = _folder(tmp_path / "val", 4, "n01440764/1.JPEG", "n01440764/3.JPEG")
    args = ["eval", "--data", str(data), "--store", str(tmp_path / "s.db"), "--workers", "0", "--model",
            "demo-gap", "--random-weights", "--suite", "clean", "--shard-size", "2", "--class-order",
            "sorted"]
    err = failed_torchrun(args, env={**ENV, "GCP_ROBUST_DIST_TIMEOUT": "600"})
    assert f"Error: cannot read image {data / 'n01440764' / '1.JPEG'}" in err, err
    assert f"\n  rank 1 of 2: cannot read image {data / 'n01440764' / '3.JPEG'}" in err, err
    assert err.count("cannot read image") == 2 and "lost contact" not in err, err


def test_the_other_ranks_stop_quietly_when_one_fails_before_the_last_round(tmp_path):
    """Three ranks, rank 1 failing in the first of two rounds: rank 0 stores the others' shards and
    says why; rank 2, sound, ran into the next round's broadcast and said it "lost contact" with the
    other ranks (helper-224). Rank 0 tells it to stop instead."""
    data = _folder(tmp_path / "val", 6, "n01440764/3.JPEG")  # shard 1: rank 1's of round 1
    args = ["eval", "--data", str(data), "--store", str(tmp_path / "s.db"), "--workers", "0", "--model",
            "demo-gap", "--random-weights", "--suite", "clean", "--shard-size", "2", "--class-order",
            "sorted"]
    err = failed_torchrun(args, nproc=3, env={**ENV, "GCP_ROBUST_DIST_TIMEOUT": "600"}, timeout=240)
    assert err.count("cannot read image") == 1 and f"Error: rank 1 of 3: cannot read image {data}" in err, err
    assert "lost contact" not in err and "Error: rank 2" not in err, err
    with sqlite3.connect(tmp_path / "s.db") as db:
        assert sorted(r[0] for r in db.execute("SELECT shard FROM shards")) == [0, 2]


def test_a_refusal_of_rank_0_alone_stops_the_ranks_waiting_to_join(demo_val, tmp_path):
    """Rank 0 refuses a baseline name only it can look up in the store; rank 1, which went on,
    waited to join the process group, inside which the launcher's SIGTERM could not stop it: the
    launcher killed it 30 s later ("Unable to shutdown process ... via 15, forcefully exiting via
    9"), helper-224."""
    args = eval_args(demo_val, tmp_path / "s.db", "--model", "demo-gap", "--random-weights", "--suite",
                     "imagenet-c", "--corruptions", "fog", "--severities", "1", "--limit", "8",
                     "--baseline", "nosuch")
    err = failed_torchrun(args)
    assert err.count("Error: unknown baseline 'nosuch'") == 1, err
    assert "forcefully exiting" not in err, err


def test_a_rank_that_loses_rank_0_before_the_work_list_says_so():
    """Rank 0 failed before it sent the work list (a store it could not open): the other ranks said
    they "lost contact" with gloo's text cut at 200 characters, and that finished shards were stored
    and a re-run would compute the rest, neither of which held."""
    from robustbench_gcp.engine.distributed import Distributed, RankFailure

    def closed():
        raise RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer")

    job = Distributed(1, 2, 1, "gloo", None)
    with pytest.raises(RankFailure, match=r"^rank 1 of 2: lost contact with rank 0 before it sent the work "
                                          r"list \(if rank 0 stopped, its own error says why\); this rank "
                                          r"computed nothing of this run, and what earlier runs stored is "
                                          r"kept$"):
        job._exchange("receiving the work list", closed, broadcasting=True)
    with pytest.raises(RankFailure, match=r"while exchanging results \(\[\.\./third_party.*finished shards "
                                          r"are in the store"):
        job._exchange("exchanging results", closed)


def test_only_rank_0_checks_the_output_file(tmp_path, monkeypatch):
    """-o is written by rank 0 alone: its folder may be on rank 0's machine only, where the other
    nodes refused the job before any work (audit)."""
    from click.testing import CliRunner

    from robustbench_gcp.cli import main

    args = ["report", "--store", str(tmp_path / "none.db"), "-o", str(tmp_path / "only-on-rank-0" / "r.json")]
    monkeypatch.setenv("RANK", "0")
    assert "does not exist" in CliRunner().invoke(main, args).output
    assert CliRunner().invoke(main, args).exit_code == 2  # the folder, a usage error
    monkeypatch.setenv("RANK", "1")
    other = CliRunner().invoke(main, args)
    assert other.exit_code == 1 and "only-on-rank-0" not in other.output  # on to the store's own error


def test_a_usage_error_is_said_once_per_node_not_by_every_rank(monkeypatch):
    """A mistyped option under torchrun was said by every rank in turn (8 times on an 8-GPU node):
    the first rank of each node (LOCAL_RANK 0) says it; the others exit with its status, silent."""
    from click.testing import CliRunner

    from robustbench_gcp import cli
    from robustbench_gcp.cli import main

    def stopped_by_the_launcher(seconds):  # in the wait of the ranks that are not their node's first
        raise KeyboardInterrupt

    args = ["eval", "--model", "demo-gap", "--severitys", "1"]
    monkeypatch.setenv("WORLD_SIZE", "16")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job")  # torchrun's launcher's
    monkeypatch.setattr(cli, "USAGE_ERROR_WAIT", 5.0)
    monkeypatch.setattr(time, "sleep", stopped_by_the_launcher)
    for local_rank, rank, said in (("0", "0", True), ("1", "1", False), ("0", "8", True), ("3", "11", False)):
        monkeypatch.setenv("LOCAL_RANK", local_rank)
        monkeypatch.setenv("RANK", rank)
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, result.output
        assert ("No such option '--severitys'" in result.output) is said, result.output


def test_an_unknown_name_under_torchrun_is_said_once(tmp_path):
    """A usage error that is no parse error (an unknown model): every rank said it, and rank 0,
    stopped by the launcher first in one try of six, said "terminated ... re-run the same command
    to resume" (helper-220). The node's first rank says it; the others wait for the launcher."""
    err = failed_torchrun(["eval", "--model", "demo-isqrtt", "--suite", "imagenet-c", "--store",
                           str(tmp_path / "s.db")])
    assert err.count("Error: unknown model 'demo-isqrtt'. Did you mean 'demo-isqrt'?") == 1, err
    assert "terminated" not in err and "resume" not in err, err


@pytest.mark.parametrize("extra, said", [
    (["--format", "xml"], "Error: Invalid value for '--format': 'xml' is not one of"),
    (["--checkpoint", "missing.pth"], "Error: checkpoint file missing.pth does not exist")],
    ids=["option", "file"])
def test_an_option_or_a_file_error_under_torchrun_is_said_once(demo_val, tmp_path, extra, said):
    """A parse error: the other rank left at once, and the launcher stopped rank 0 before it said
    it, which said only "stopped by the launcher" (4 runs in 11); a missing checkpoint (exit 1):
    every rank said it, or one beside rank 0's "stopped by the launcher" (helper-264)."""
    err = failed_torchrun(["eval", "--model", "demo-gap", "--store", str(tmp_path / "s.db"), "--data",
                           str(demo_val), "--class-order", "sorted", *extra], cwd=tmp_path)
    assert err.count(said) == 1 and "stopped by the launcher" not in err, err


def test_a_process_with_rank_variables_but_no_launcher_runs_as_any_other(monkeypatch):
    """A shell or notebook that merely has RANK and WORLD_SIZE (a Kubeflow pod's): `models` printed
    nothing, and an error waited 5 s for a launcher that is not there (helper-265)."""
    from click.testing import CliRunner

    from robustbench_gcp import cli

    for name, value in (("LOCAL_RANK", "1"), ("RANK", "1"), ("WORLD_SIZE", "2")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.setattr(time, "sleep", lambda seconds: pytest.fail("waited for a launcher"))
    listed = CliRunner().invoke(cli.main, ["models"])
    assert listed.exit_code == 0 and "resnet50-isqrt" in listed.output, listed.output
    typo = CliRunner().invoke(cli.main, ["eval", "--model", "demo-gap", "--format", "xml"])
    assert typo.exit_code == 2 and "Invalid value for '--format'" in typo.output, typo.output


def test_report_under_torchrun_is_rank_0s(demo_val, tmp_path):
    """`report` (models, suites ...) computes nothing to share: rank 0 alone runs it (every rank
    printed it, and wrote -o at once: helper-264)."""
    store = tmp_path / "s.db"
    assert single(eval_args(demo_val, store, "--model", "demo-gap", "--limit", "10")).returncode == 0
    proc = torchrun(["report", "--store", str(store), "--format", "json", "--no-intervals"])
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert out.count('"model": "demo-gap"') == 1, out


@pytest.mark.parametrize("error", ["name", "option", "file"])
@pytest.mark.parametrize("stopped", [True, False, "group"])
def test_a_rank_with_a_usage_error_waits_for_the_launcher_or_says_it(demo_val, monkeypatch, stopped, error):
    """Stopped by the launcher while it waits: nothing said; not stopped (an error of its own): said.
    ``group``: stopped once its process group is up, whose handler raises a RankFailure (it escaped
    the wait as a traceback, helper-221). A parse error and a missing file wait too (helper-264)."""
    import threading

    from click.testing import CliRunner

    from robustbench_gcp import cli

    args, said, code = {
        "name": (["eval", "--model", "demo-isqrtt", "--suite", "imagenet-c"], "unknown model 'demo-isqrtt'",
                 2),
        "option": (["eval", "--model", "demo-gap", "--format", "xml"], "Invalid value for '--format'", 2),
        "file": (["eval", "--model", "demo-gap", "--data", str(demo_val), "--class-order", "sorted",
                  "--checkpoint", "/nonexistent/x.pth"], "does not exist", 1),
    }[error]
    for name, value in (("LOCAL_RANK", "0"), ("RANK", "1"), ("WORLD_SIZE", "2"),
                        ("TORCHELASTIC_RUN_ID", "job")):  # as torchrun's launcher sets them
        monkeypatch.setenv(name, value)
    first = CliRunner().invoke(cli.main, args)  # the node's first rank says it at once (and imports)
    assert first.exit_code == code and said in first.output, first.output
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(cli, "USAGE_ERROR_WAIT", 5.0 if stopped else 0.1)
    if stopped == "group":  # as distributed.Distributed._stopped raises it, in the wait
        from robustbench_gcp.engine.distributed import RankFailure

        def stopped_by_the_launcher(seconds):
            raise RankFailure("rank 1 of 2: stopped by the launcher (signal 15)")

        monkeypatch.setattr(time, "sleep", stopped_by_the_launcher)
    elif stopped:  # SIGINT: Python's own handler raises too, should it come outside the command
        threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
    started = time.monotonic()
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == code, result.output
    assert (said in result.output) is not bool(stopped), result.output
    waited = time.monotonic() - started
    assert waited < 4.5 if stopped else waited >= 0.1  # stopped in its wait; or it waited it out


@pytest.mark.parametrize("stop", ["terminated", "refused"])
def test_rank_0_alone_says_why_a_job_stopped(tmp_path, monkeypatch, stop):
    """A baseline that does not exist: rank 0 said so, and rank 1, stopped by the launcher, added
    "terminated: what was committed stays in the store; re-run the same command to resume", which
    nothing had been and which would fail the same way; a run rank 0 refused was said again by
    every other rank (audit). In-process, as rank 1: the launcher's timing decides whether the
    rank's handler runs at all under torchrun."""
    from click.testing import CliRunner

    import robustbench_gcp.reports.stored as stored_reports
    from robustbench_gcp.cli import main
    from robustbench_gcp.engine.distributed import RankRefused
    from robustbench_gcp.errors import Terminated

    def stopped(*args, **kwargs):
        raise Terminated() if stop == "terminated" else RankRefused("rank 1 of 2: rank 0 stopped before any "
                                                                   "work: store s.db is read-only")

    monkeypatch.setattr(stored_reports, "reports_from_store", stopped)
    (tmp_path / "s.db").touch()
    for rank, said in (("0", True), ("1", False)):
        monkeypatch.setenv("RANK", rank)
        result = CliRunner().invoke(main, ["report", "--store", str(tmp_path / "s.db")])
        assert result.exit_code == (143 if stop == "terminated" else 1)
        assert ("Error:" in result.output) is said, (rank, result.output)


@pytest.mark.parametrize("joined", [False, True], ids=["before-joining", "after-joining"])
def test_rank_0_stopped_before_it_joined_the_job_says_nothing_was_computed(monkeypatch, joined):
    """Rank 1 said a usage error after waiting USAGE_ERROR_WAIT seconds for rank 0 (a loaded
    machine), the launcher then stopped rank 0 still starting up: it said "terminated: what was
    committed stays in the store; re-run the same command to resume" for a command that never
    started (helper-231). Once the rank joined the job, the launcher's stop may cut a run short."""
    from click.testing import CliRunner

    import robustbench_gcp.pipeline as pipeline
    from robustbench_gcp.cli import main
    from robustbench_gcp.engine.distributed import Distributed
    from robustbench_gcp.errors import Terminated

    def stopped(*args, **kwargs):
        raise Terminated()

    monkeypatch.setattr(pipeline, "plan", stopped)
    monkeypatch.setattr(Distributed, "_current", Distributed(0, 2, 0, "gloo") if joined else None)
    for name, value in (("LOCAL_RANK", "0"), ("RANK", "0"), ("WORLD_SIZE", "2")):
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["eval", "--model", "demo-gap", "--random-weights"])
    assert result.exit_code == 143, result.output
    said = ("Error: terminated: what was committed stays in the store; re-run the same command to resume"
            if joined else "Error: stopped by the launcher before this rank joined the job: another rank "
            "stopped first (its own error says why) or the job was cancelled; nothing was computed")
    assert result.output.strip() == said, result.output


def _running_with(text: str) -> list[int]:
    """The processes whose command line holds ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_bench_scaling_stopped_mid_run_stops_torchruns_ranks_and_leaves_no_folders(demo_val, tmp_path):
    """The 2-process run was SIGKILLed at once on Ctrl-C: torchrun's ranks, in sessions of their own,
    went on computing as orphans; and every run left a torchelastic_* folder in $TMPDIR."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    bench = subprocess.Popen(
        [sys.executable, "-m", "robustbench_gcp", "bench", "scaling", "--model", "demo-gap", "--data",
         str(demo_val), "--class-order", "sorted", "--corruptions", "gaussian_noise,fog", "--severities",
         "1,2,3", "--batch-size", "1", "--shard-size", "5", "--device", "cpu"],
        env={**ENV, "TMPDIR": str(tmp)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while len(_running_with("store-2-0.db")) < 3:  # torchrun and its two ranks
        assert bench.poll() is None, bench.communicate()[1]
        assert time.time() < deadline, "the 2-process run did not start within 240 s"
        time.sleep(0.1)
    time.sleep(2)  # the ranks at work
    bench.send_signal(signal.SIGINT)  # to the bench alone, as `kill -INT` (a terminal signals the group)
    _, err = bench.communicate(timeout=60)
    assert bench.returncode == 130, err
    deadline = time.time() + 30
    while _running_with("store-2-0.db") and time.time() < deadline:
        time.sleep(0.2)
    assert _running_with("store-2-0.db") == [], "torchrun's ranks outlived the bench"
    assert list(tmp.iterdir()) == [], list(tmp.iterdir())


def test_a_torchrun_variable_that_is_no_number_is_one_line(demo_val, tmp_path, monkeypatch):
    """WORLD_SIZE=abc: a ValueError traceback."""
    from click.testing import CliRunner

    from robustbench_gcp.cli import main

    monkeypatch.setenv("WORLD_SIZE", "abc")
    monkeypatch.setenv("RANK", "0")
    store = str(tmp_path / "s.db")
    result = CliRunner().invoke(main, ["eval", "--model", "demo-gap", "--data", str(demo_val),
                                       "--class-order", "sorted", "--limit", "4", "--store", store])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.stderr == ("Error: environment variable WORLD_SIZE is 'abc', not a whole number: torchrun "
                             "sets it; unset it to run one process\n")


def test_a_job_beside_another_process_leases_its_units_and_waits_for_the_others(demo_val, tmp_path):
    """Rank 0 leases the job's units as one process does: units another live process holds are
    neither computed again nor their leases dropped; the job waits for them, and takes them over
    once that process lets them go. (It computed them at once, beside their holder.)"""
    store = tmp_path / "shared.db"
    args = eval_args(demo_val, store, "--model", "demo-gap", "--suite", "imagenet-c", "--corruptions",
                     "gaussian_noise", "--severities", "1", "--shard-size", "15")
    assert single(args).returncode == 0
    with sqlite3.connect(store) as db:  # a run stopped before gaussian_noise's first two shards
        (cell,) = db.execute("SELECT id FROM cells WHERE kind = 'imagenet-c'").fetchone()
        db.execute("DELETE FROM shards WHERE cell_id = ? AND shard < 2", (cell,))
    holder = Store(store)  # a live process that leased both
    assert [holder.claim(shard, [[cell]]) for shard in (0, 1)] == [[Claim.MINE]] * 2
    err_file = tmp_path / "job.err"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "robustbench_gcp", *args]
    with err_file.open("w") as err:
        proc = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        deadline = time.time() + 180
        while "waiting for 2 (cell, shard) units that other processes hold" not in err_file.read_text():
            assert proc.poll() is None, f"the job ended without waiting: {err_file.read_text()}"
            assert time.time() < deadline, err_file.read_text()
            time.sleep(0.1)
        with sqlite3.connect(store) as db:  # still the holder's
            leases = db.execute("SELECT shard, owner FROM leases ORDER BY shard").fetchall()
        assert leases == [(0, holder.owner), (1, holder.owner)]
    finally:
        holder.close()  # lets them go: the job takes them over
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, err_file.read_text()
    computed = json.loads(out)["computed"]
    assert (computed["units"], computed["reused"], computed["computed"]) == (14, 12, 2), computed
    assert all(complete for complete, *_ in stored(store).values())


def test_a_job_holds_about_two_rounds_of_leases(demo_val, tmp_path):
    """Rank 0 leases a round's loads (one per rank) a round ahead, as one process leases the load it
    computes and the one it decodes: other processes on the store can take the rest meanwhile, and
    a hung rank holds no more. (It leased the whole job's at the start: 20 shards here.)"""
    from contextlib import closing

    store = tmp_path / "s.db"
    proc = torchrun(eval_args(demo_val, store, "--model", "demo-gap", "--suite", "imagenet-c",
                              "--corruptions", "gaussian_noise,glass_blur", "--severities", "1",
                              "--shard-size", "5"))
    most = 0
    while proc.poll() is None:
        try:
            with closing(sqlite3.connect(store, timeout=1)) as db:
                most = max(most, db.execute("SELECT COUNT(DISTINCT shard) FROM leases").fetchone()[0])
        except sqlite3.OperationalError:  # no store yet
            pass
        time.sleep(0.01)
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    assert 0 < most <= 4  # 2 rounds of 2 ranks
    assert all(complete for complete, *_ in stored(store).values())


def test_rank_0_losing_the_others_while_it_sends_a_round_says_sending(monkeypatch):
    """The rounds' loads are broadcast all through the job: rank 0 said it lost contact while
    'receiving the work list', which it sends."""
    import torch.distributed as dist

    from robustbench_gcp.engine.distributed import Distributed, RankFailure

    def closed(*args, **kwargs):
        raise RuntimeError("Connection closed by peer")

    monkeypatch.setattr(dist, "broadcast_object_list", closed)
    with pytest.raises(RankFailure, match=r"^rank 0 of 2: lost contact with the other ranks while sending "
                                          r"the work list \(Connection closed by peer\); finished shards"):
        Distributed(0, 2, 0, "gloo", None).broadcast(([], True), before_work=False)
    with pytest.raises(RankFailure, match=r"^rank 1 of 2: lost contact with the other ranks while receiving"):
        Distributed(1, 2, 1, "gloo", None).broadcast(None, before_work=False)


def test_a_rank_that_cannot_join_says_why_not_that_the_others_did_not_come(demo_val, tmp_path):
    """Rank 0 on a port another program listens on: it said the ranks "did not all join the job
    within 20 s" at once (helper-225)."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {**ENV, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(taken.getsockname()[1]),
               "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "GCP_ROBUST_DIST_TIMEOUT": "20"}
        done = subprocess.run([sys.executable, "-m", "robustbench_gcp", *eval_args(
            demo_val, tmp_path / "s.db", "--model", "demo-gap", "--suite", "clean", "--limit", "4")],
            env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "Error: rank 0 of 2: could not join the job (The server socket has failed to listen" \
        in done.stderr and "EADDRINUSE" in done.stderr and "MASTER_PORT" in done.stderr, done.stderr
    assert "did not all join" not in done.stderr, done.stderr


def test_a_rank_started_by_hand_without_master_addr_is_one_line(demo_val, tmp_path):
    """torch's ValueError (MASTER_ADDR unset) was a traceback (helper-226)."""
    env = {key: value for key, value in ENV.items() if key not in ("MASTER_ADDR", "MASTER_PORT")}
    env.update(WORLD_SIZE="2", RANK="0", LOCAL_RANK="0")
    done = subprocess.run([sys.executable, "-m", "robustbench_gcp", *eval_args(
        demo_val, tmp_path / "s.db", "--model", "demo-gap", "--suite", "clean", "--limit", "4")],
        env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "Error: rank 0 of 2: could not join the job (" in done.stderr and "MASTER_ADDR expected" \
        in done.stderr, done.stderr


@pytest.mark.parametrize("stop", ["sigint-and-sigterm", "sigterm"])
def test_a_job_stopped_from_outside_is_said_once(demo_val, tmp_path, stop):
    """SIGINT and SIGTERM together at each rank (a Ctrl-C of torchrun, whose shutdown can send
    both, helper-226; here both to the process group): rank 1 said "stopped by the launcher ...
    another rank failed" beside rank 0's "interrupted after N of M shards" (its SIGTERM handler
    replaced the stop under way). A scheduler's SIGTERM to torchrun: every rank said it, one line
    each; now each machine's first rank does."""
    store = tmp_path / "s.db"
    args = eval_args(demo_val, store, "--model", "demo-isqrt", "--suite", "imagenet-c", "--corruptions",
                     "gaussian_noise,contrast,fog", "--shard-size", "10")
    proc = torchrun(args, start_new_session=True)
    try:
        deadline = time.time() + 180
        while _committed(store) == 0:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.time() < deadline, "no shard committed within 180 s"
            time.sleep(0.05)
        if stop == "sigint-and-sigterm":
            os.killpg(proc.pid, signal.SIGINT)
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode != 0
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    # rank 0's: its Ctrl-C's, or its SIGTERM's where that came first
    said = ("Error: interrupted after ", "Error: rank 0 of 2: stopped by the launcher")
    assert len(lines) == 1 and lines[0].startswith(said[stop == "sigterm":]), err


def test_a_join_timeout_is_said_as_one():
    from robustbench_gcp.engine.distributed import _join_failure

    said = str(_join_failure(RuntimeError("Timed out after 21 seconds waiting for clients. 1/2 clients "
                                          "joined.\nmore"), 20.0))
    assert "the ranks did not all join the job within 20 s (Timed out after 21 seconds waiting for " \
           "clients. 1/2 clients joined.)" in said, said


@pytest.fixture
def fake_join(monkeypatch):
    """Distributed.get as rank 1 of 2, with a process group that is not made."""
    import torch.distributed as dist

    from robustbench_gcp.engine.distributed import Distributed

    for name, value in (("WORLD_SIZE", "2"), ("RANK", "1"), ("LOCAL_RANK", "1")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(dist, "init_process_group", lambda *args, **kwargs: None)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(Distributed, "_current", None)
    before = signal.getsignal(signal.SIGTERM)
    yield Distributed
    signal.signal(signal.SIGTERM, before)


def test_a_job_set_up_in_a_thread_leaves_the_signals_alone(fake_join):
    """signal.signal raised ValueError in a caller's thread, after the job was set up (helper-225)."""
    import threading

    import torch

    got, before = [], signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=lambda: got.append(fake_join.get(torch.device("cpu"))))
    thread.start()
    thread.join()
    assert got and got[0].rank == 1 and signal.getsignal(signal.SIGTERM) is before


def test_a_callers_sigterm_handler_stays_and_the_default_is_put_back(fake_join):
    """The job's handler (a RankFailure that says the launcher stopped the rank) replaced a library
    caller's own for good (helper-225): it takes the default's place only, until the job is torn down."""
    import torch

    from robustbench_gcp.engine.distributed import _destroy_process_group

    def own(signum, frame):
        pass

    signal.signal(signal.SIGTERM, own)
    fake_join.get(torch.device("cpu"))
    assert signal.getsignal(signal.SIGTERM) is own
    fake_join._current = None
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    job = fake_join.get(torch.device("cpu"))
    assert signal.getsignal(signal.SIGTERM) == job._stopped
    _destroy_process_group()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.parametrize("where", ["rank 1's first broadcast", "rank 0's weights"])
def test_a_job_that_stopped_at_an_error_runs_nothing_more(demo_val, tmp_path, monkeypatch, where):
    """A library caller that caught a rank's error and started another run paired its collectives
    with a rank still waiting for rank 0 to leave (helper-225): the job refuses it instead, whether
    the error came in the job's exchanges or before them, on one rank alone (helper-226)."""
    import robustbench_gcp.pipeline.execution as execution
    from robustbench_gcp.engine.distributed import Distributed, RankFailure
    from robustbench_gcp.errors import CheckpointError
    from robustbench_gcp.pipeline import plan, run

    rank = 1 if where.startswith("rank 1") else 0
    for name, value in (("WORLD_SIZE", "2"), ("RANK", str(rank)), ("LOCAL_RANK", str(rank))):
        monkeypatch.setenv(name, value)
    job = Distributed(rank, 2, rank, "gloo", None)
    monkeypatch.setattr(Distributed, "_current", job)

    def lost(*args, **kwargs):
        raise RankFailure("rank 1 of 2: lost contact with rank 0")

    def unreadable(*args, **kwargs):
        raise CheckpointError("cannot read weights.pth")

    if rank:
        monkeypatch.setattr(job, "broadcast", lost)
    else:
        monkeypatch.setattr(execution, "load_chosen", unreadable)
    planned = plan("demo-gap", suite="clean", data=str(demo_val), class_order="sorted",
                   store=str(tmp_path / "s.db"), workers=0)
    first = "lost contact with rank 0" if rank else "cannot read weights.pth"
    with pytest.raises((RankFailure, CheckpointError), match=first):
        run(planned)
    with pytest.raises(RankFailure, match=rf"^rank {rank} of 2: this torchrun job stopped at an error before "
                                          rf"\((rank 1 of 2: )?{first}\): .* start a new job"):
        run(planned)


LAUNCHER_STOP_DROPPED = """
import os, signal, sys
from robustbench_gcp.engine import stops
from robustbench_gcp.engine.distributed import Distributed, RankStopped

job = Distributed(1, 2, 1, "gloo", None)
signal.signal(signal.SIGTERM, job._stopped)
sys.unraisablehook = stops.dropped_quietly(sys.unraisablehook)


def after_fork():  # as logging's: Python drops an exception raised in this hook (each loader's fork)
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(1000):  # the handler runs here
        pass


os.register_at_fork(after_in_parent=after_fork)
child = os.fork()
if child == 0:
    os._exit(0)
os.waitpid(child, 0)
try:
    stops.raise_pending()  # between batches
    print("lost")
except RankStopped as stop:
    print("raised:", stop)
"""


def test_a_launchers_stop_that_python_drops_still_stops_the_rank_quietly(tmp_path):
    """The launcher's SIGTERM landing in an at-fork hook (a loader starting its workers): the rank's
    RankStopped was printed as "Exception ignored" with a traceback, and lost: the rank computed on
    (helper-229). It is recorded as the command line's own stops are, and raised between batches."""
    script = tmp_path / "dropped.py"
    script.write_text(LAUNCHER_STOP_DROPPED)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert "raised: rank 1 of 2: stopped by the launcher (signal 15)" in done.stdout, done
    assert "Exception ignored" not in done.stderr, done.stderr


STORE_FAILS_ON_RANK_0 = """
import os, sys
from robustbench_gcp.engine import distributed
from robustbench_gcp.errors import StoreError

calls = []
if os.environ["RANK"] == "0":
    if sys.argv[1].startswith("commit"):  # from the 2nd commit (rank 1's shard of the first round) on,
        real_commit = distributed._commit  # or from the 1st (rank 0's own) on: a full disk

        def commit(*args, **kwargs):
            calls.append(1)
            if len(calls) >= (1 if sys.argv[1] == "commit-all" else 2):
                raise StoreError("database or disk is full")
            return real_commit(*args, **kwargs)

        distributed._commit = commit
    else:  # the 2nd lease: the second round's, sent while the first is computed
        real_round = distributed._RoundLeases.next_round

        def next_round(self, idle):
            calls.append(1)
            if len(calls) == 2:
                raise StoreError("database is locked")
            return real_round(self, idle)

        distributed._RoundLeases.next_round = next_round
from robustbench_gcp.cli import main

sys.argv = ["gcp-robust", *sys.argv[2:]]
main()
"""


@pytest.mark.parametrize("where, said, per_class", [("commit", "database or disk is full", 6),
                                                    ("lease", "database is locked", 6),
                                                    ("commit-all", "database or disk is full", 3)],
                         ids=["commit", "lease", "commit-in-the-last-round"])
def test_a_store_that_fails_rank_0_stops_the_others_quietly(tmp_path, where, said, per_class):
    """The store refusing rank 0's commit of another rank's shard, or its leases of the next round:
    rank 0 said it and left, and the others, waiting in the next round's broadcast, said they "lost
    contact with the other ranks" (the last note's list of what was left alone). In a job's last
    round the others returned as if it had succeeded: `compare` went on to its next evaluation,
    which "failed" with a note that the one before was stored (helper-231)."""
    data = _folder(tmp_path / "val", per_class)  # 6 shards: 2 rounds of 3 ranks; 3 shards: one round
    script = tmp_path / "fails.py"
    script.write_text(STORE_FAILS_ON_RANK_0)
    args = ["compare", "--data", str(data), "--store", str(tmp_path / "s.db"), "--workers", "0", "--model",
            "demo-gap", "--random-weights", "--suite", "clean,imagenet-c", "--corruptions", "fog",
            "--severities", "1", "--shard-size", "2", "--class-order", "sorted"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "3",
               "--monitor-interval", "0.2", str(script), where, *args]
    proc = subprocess.Popen(command, env={**ENV, "GCP_ROBUST_DIST_TIMEOUT": "600"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert [line for line in err.splitlines() if line.startswith("Error:")] == [f"Error: {said}"], err
    assert "lost contact" not in err and "evaluation 2 of 2" not in err, err
    assert err.count(said) == 1, err  # a full store refuses every commit: said once


READ_ONLY_ON_RANK_0 = """
import os, sys, time
from robustbench_gcp.engine import distributed
from robustbench_gcp.store import sqlite_file

if os.environ["RANK"] == "0":  # the store read-only to rank 0 alone (a test runs as root: os.access)
    real_reason, real_broadcast = sqlite_file.read_only_reason, distributed.Distributed.broadcast
    sqlite_file.read_only_reason = lambda path, read_only: real_reason(path, read_only) or (
        "the file is read-only" if path.exists() else None)

    def broadcast(self, obj=None, **kwargs):  # rank 0 slow to say why after its word to the others
        out = real_broadcast(self, obj, **kwargs)
        if obj is not None and not isinstance(obj, tuple):
            time.sleep(3)
        return out

    distributed.Distributed.broadcast = broadcast
from robustbench_gcp.cli import main

sys.argv = ["gcp-robust", *sys.argv[1:]]
main()
"""


def test_a_read_only_store_is_said_by_rank_0_not_as_the_launchers_stop(demo_val, tmp_path):
    """A read-only store missing the run's results: rank 0 refuses it before any work; the other
    ranks left at once on its word, and torchrun stopped rank 0 before it said why: "stopped by the
    launcher (signal 15)" (helper-232). They wait for rank 0 to leave, as at every other refusal."""
    store = tmp_path / "s.db"
    common = ["--model", "demo-gap", "--random-weights", "--limit", "8"]
    assert single(eval_args(demo_val, store, *common)).returncode == 0  # a store that exists
    script = tmp_path / "read_only.py"
    script.write_text(READ_ONLY_ON_RANK_0)
    args = eval_args(demo_val, store, *common, "--suite", "imagenet-c", "--corruptions", "fog",
                     "--severities", "1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "--monitor-interval", "0.2", str(script), *args]
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=180)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: store {store} is read-only (the file is read-only): 1 shard still to "
                      "compute; copy it somewhere writable or use --store"], done.stderr


LOST_AFTER_THE_LAST_RESULTS = """
import os, sys
from robustbench_gcp.engine import distributed

after = int(sys.argv[1])  # gathers: the settings', then each round's results
if os.environ["RANK"] == "1":  # killed (out of memory ...) right after it sent its last results
    real_gather, calls = distributed.Distributed.gather, []

    def gather(self, obj):
        out = real_gather(self, obj)
        calls.append(1)
        if len(calls) == after:
            os._exit(3)
        return out

    distributed.Distributed.gather = gather
from robustbench_gcp.cli import main

sys.argv = ["gcp-robust", *sys.argv[2:]]
main()
"""


@pytest.mark.parametrize("stored_before", [False, True], ids=["after-the-last-round", "all-stored-before"])
def test_a_rank_lost_after_its_last_results_leaves_nothing_to_compute(tmp_path, stored_before):
    """Rank 1 killed after the job's last round sent its results: rank 0 stored them all, then lost
    it at the job's end, and said it "lost contact ... while sending the work list ... re-run the
    same command to compute the rest" (helper-232), though nothing was left. So too where every
    result was stored before (rank 1 lost after the settings' gather, rank 0 sending an empty work
    list, helper-237). Ranks started by hand, so that no launcher stops rank 0 first."""
    data = _folder(tmp_path / "val", 2)  # 2 shards of 2: one round of 2 ranks
    script = tmp_path / "lost.py"
    script.write_text(LOST_AFTER_THE_LAST_RESULTS)
    args = ["eval", "--data", str(data), "--store", str(tmp_path / "s.db"), "--workers", "0", "--model",
            "demo-gap", "--random-weights", "--suite", "clean", "--shard-size", "2", "--class-order",
            "sorted"]
    if stored_before:
        assert single(args).returncode == 0
    command = [str(script), "1" if stored_before else "2", *args]
    procs, outputs = by_hand([command, command], timeout=240)
    assert procs[1].returncode == 3
    err = outputs[0][1]
    sending = "the work list" if stored_before else "the job's end"
    assert procs[0].returncode != 0 and f"while sending {sending}" in err, err
    assert "every result of this run is in the store" in err and "compute the rest" not in err, err
    assert sorted(shard for _, _, _, _, shard in _shards(tmp_path / "s.db")) == [0, 1]
