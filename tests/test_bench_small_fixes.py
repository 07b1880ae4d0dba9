"""Small user-reported fixes: make_sample_data's options, the fidelity table's max column,
the isqrt-relu6 row of ``bench heads`` and the device that ``bench scaling`` prints."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from robustbench_gcp.cli import main
from robustbench_gcp.errors import ConfigError

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_sample_data.py"


def run(*args):
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "200"})  # rich: no wrapping


def run_script(*args, cwd):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


# --- scripts/make_sample_data.py --------------------------------------------------------------

def test_make_sample_data_help_prints_usage_and_writes_nothing(tmp_path):
    done = run_script("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:") and "OUT_DIR" in done.stdout
    assert "wrote" not in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_make_sample_data_rejects_unknown_options(tmp_path):
    done = run_script("--bogus", cwd=tmp_path)
    assert done.returncode == 2
    assert "unrecognized arguments: --bogus" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_make_sample_data_positional_out_dir_and_default():
    spec = importlib.util.spec_from_file_location("make_sample_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.parse_args(["some/dir"]).out == Path("some/dir")
    assert module.parse_args([]).out == Path("sample-data")


# --- bench fidelity: max /255 next to MAD /255 -------------------------------------------------

def test_fidelity_table_prints_small_max_with_the_mads_format(monkeypatch):
    import robustbench_gcp.bench.corruption_fidelity as corruption_fidelity

    row = {"corruption": "fog", "severity": 1, "reference": "imagecorruptions",
           "mad": 1.86e-06, "max_abs": 3.05e-05, "agrees": True, "table": True}
    monkeypatch.setattr(corruption_fidelity, "fidelity", lambda names, **kwargs: [row])
    result = run("bench", "fidelity", "--corruptions", "fog", "--severities", "1",
                 "--images", "1", "--seeds", "1")
    assert result.exit_code == 0, result.output
    assert "1.86e-06" in result.stdout and "3.05e-05" in result.stdout
    assert "0.00" not in result.stdout.split("fog")[1]


# --- bench heads: the isqrt-relu6 row ----------------------------------------------------------

def test_bench_heads_mobile_row_is_on_mobilenetv2_width():
    from robustbench_gcp.bench.head_speed import bench_heads

    rows = bench_heads("cpu", batch_size=1, repeats=1, scope="head", in_channels=32,
                       reduction_dim=8, num_classes=5)
    inputs = {row["head"]: row["input"] for row in rows}
    assert inputs == {"gap": "32x7x7", "isqrt": "32x14x14", "mpncov": "32x14x14",
                      "svdpade": "32x7x7", "dropcov": "32x14x14", "isqrt-relu6": "1280x7x7"}  # SVD-Pade's
    # ResNets keep layer4 at stride 2 (7x7 features, as GAP's): it was timed on 4x the positions
    pooled = bench_heads("cpu", batch_size=1, repeats=1, scope="pool", in_channels=32,
                         reduction_dim=8, num_classes=5)
    assert pooled[-1]["input"] == "8x7x7" and pooled[1]["input"] == "8x14x14"


def test_bench_heads_reports_the_fastest_run(monkeypatch):
    """The median of the runs: one call of the GAP head slowed by another process moved every ratio
    up to 40x (helper-216); the fastest, as the other benches report."""
    from robustbench_gcp.bench import head_speed
    from robustbench_gcp.bench.timing import Timing

    def timed(calls, **kwargs):  # each call's runs: one slowed 10x, the others apart
        return [Timing((10.0 * (k + 1), 1.0 * (k + 1), 2.0 * (k + 1))) for k in range(len(calls))]

    monkeypatch.setattr(head_speed, "time_calls", timed)
    rows = head_speed.bench_heads("cpu", batch_size=1, repeats=3, heads=["isqrt"])
    assert [(r["forward_ms"], r["forward_backward_ms"]) for r in rows] == [(1e3, 2e3), (3e3, 4e3)]
    assert rows[1]["forward_vs_gap"] == 3.0


def test_bench_heads_help_names_each_input_shape():
    result = run("bench", "heads", "--help")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for shape in ("2048x7x7", "2048x14x14", "1280x7x7"):
        assert shape in text, shape


# --- bench scaling: the device actually used ---------------------------------------------------

def sorted_data(folder) -> tuple[str, ...]:
    """``--data`` of the 4 wnid folders, in their sorted order (classes 0-3 of the 10-class demo model)."""
    return ("--data", str(folder), "--class-order", "sorted")


SORTED_DATA = {"class_order": "sorted"}


@pytest.fixture
def scaling_calls(monkeypatch) -> list[list[str]]:
    """The eval command lines bench scaling would time, recorded instead of run (8 images/s each)."""
    import robustbench_gcp.bench.process_scaling as process_scaling

    calls = []

    def fake_throughput(processes, args, env):
        calls.append(args)
        return {"processes": processes, "images": 8, "seconds": 1.0, "images_per_s": 8.0}

    monkeypatch.setattr(process_scaling, "eval_throughput", fake_throughput)
    return calls


def test_bench_scaling_prints_and_passes_the_resolved_device(scaling_calls, image_folder):
    from robustbench_gcp.engine.device import resolve_device

    calls = scaling_calls
    result = run("bench", "scaling", *sorted_data(image_folder), "--device", "auto")
    assert result.exit_code == 0, result.output
    used = str(resolve_device("auto"))
    assert f") on {used}, imagenet-c" in result.stdout and "auto" not in result.stdout
    assert [args[args.index("--device") + 1] for args in calls] == [used] * 4
    # two rounds in turns (the 1-process run went first, always), each run from an empty store
    stores = [Path(args[args.index("--store") + 1]).name for args in calls]
    assert stores == ["store-1-0.db", "store-2-0.db", "store-2-1.db", "store-1-1.db"]
    assert "fastest of 2 rounds" in " ".join(result.stdout.split())


def test_bench_scaling_runs_the_suites_own_corruptions(scaling_calls, image_folder):
    """--suite imagenet-c-extra ran the 15 benchmark corruptions (the bench's defaults), and
    --suite landscape 15 corrupted cells, while the title named the suite (helper-289)."""
    import json

    from corruptions import list_corruptions
    from robustbench_gcp.bench.process_scaling import corruption_flags

    extra = ",".join(list_corruptions("extra"))
    assert corruption_flags("imagenet-c-extra", None, None, None) == {"corruptions": extra, "severities": "3"}
    assert corruption_flags("imagenet-c", None, None, "1,2")["corruptions"] == ",".join(
        list_corruptions("benchmark"))
    assert corruption_flags("landscape", None, None, None) == {}  # its clean cells
    assert corruption_flags("landscape", None, "fog", None) == {"corruptions": "fog", "severities": "3"}
    assert corruption_flags("clean", None, None, None) == {}
    # an empty list goes to eval, which refuses it (it ran the whole suite)
    assert corruption_flags("imagenet-c", None, "", None) == {"corruptions": "", "severities": "3"}
    result = run("bench", "scaling", *sorted_data(image_folder), "--suite", "imagenet-c-extra", "--json",
                 "--repeats", "1")
    assert result.exit_code == 0, result.output
    for args in scaling_calls:
        assert args[args.index("--corruptions") + 1] == extra and args[args.index("--severities") + 1] == "3"
    said = json.loads(result.stdout)
    assert (said["suite"], said["corruptions"], said["severities"]) == ("imagenet-c-extra", extra, "3")


def test_bench_scaling_rejects_an_absent_device_before_running(monkeypatch):
    import torch

    import robustbench_gcp.bench.process_scaling as process_scaling

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    monkeypatch.setattr(process_scaling, "eval_throughput",
                        lambda *args: pytest.fail("a run started"))
    result = run("bench", "scaling", "--device", "cuda")
    assert result.exit_code != 0
    assert "CUDA is not available" in result.output


@pytest.mark.parametrize("args, message", [
    (["--suite", "adversarial", "--corruptions", "fog"],
     "--corruptions does not apply to suite 'adversarial': it has no corruptions"),
    (["--suite", "clean", "--corruptions", "fog", "--severities", "1"],
     "--corruptions and --severities do not apply to suite 'clean': it has no corruptions"),
    (["--limit", "0"], "Invalid value for '--limit': 0 is not in the range x>=1"),
    (["--class-order", "imagenet"],  # replaced by sorted for the demo data, silently (helper-289)
     "`--class-order imagenet` applies to --data; the demo data's class folders are named, in sorted order"),
])
def test_bench_scaling_refuses_options_it_would_ignore(monkeypatch, args, message):
    # --corruptions went nowhere on a suite without them, and --limit 0 meant all images (eval refuses 0)
    import robustbench_gcp.bench.process_scaling as process_scaling

    monkeypatch.setattr(process_scaling, "eval_throughput", lambda *args: pytest.fail("a run started"))
    result = run("bench", "scaling", *args)
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())


def test_bench_scaling_keeps_the_fastest_round_of_each(monkeypatch, image_folder):
    import robustbench_gcp.bench.process_scaling as process_scaling

    seconds = iter([4.0, 3.0, 1.0, 2.0])  # 1 process, 2, then 2, 1

    def fake_throughput(processes, args, env):
        took = next(seconds)
        return {"processes": processes, "images": 8, "seconds": took, "images_per_s": 8 / took}

    monkeypatch.setattr(process_scaling, "eval_throughput", fake_throughput)
    rows = process_scaling.scaling("demo-gap", **SORTED_DATA, data=str(image_folder), suite="clean",
                                   device="cpu", repeats=2)
    assert [(r["processes"], r["seconds"], r["ratio"]) for r in rows] == [(1, 2.0, 1.0), (2, 1.0, 2.0)]


@pytest.mark.parametrize("args, message", [
    (["--corruptions", "fog", "--severities", "6"], "Error: `--severities` should be 1..5. Got 6"),
    (["--corruptions", "nope"], "Error: unknown corruption 'nope'."),
])
def test_bench_scaling_plans_the_runs_before_either(monkeypatch, args, message):
    """A wrong --severities was the 1-process run's failure, after it started, with its command line."""
    import robustbench_gcp.bench.process_scaling as process_scaling

    monkeypatch.setattr(process_scaling, "eval_throughput", lambda *args: pytest.fail("a run started"))
    result = run("bench", "scaling", "--device", "cpu", *args)
    assert result.exit_code == 2 and result.stderr.startswith(message), result.output
    assert len(result.stderr.splitlines()) == 1


def test_bench_scaling_passes_a_limit_and_the_corruptions_a_suite_takes(scaling_calls, image_folder):
    import robustbench_gcp.bench.process_scaling as process_scaling

    rows = process_scaling.scaling("demo-gap", **SORTED_DATA, data=str(image_folder), suite="clean", limit=4,
                                   device="cpu")
    assert [row["ratio"] for row in rows] == [1.0, 1.0]
    for args in scaling_calls:
        assert args[args.index("--limit") + 1] == "4" and "--corruptions" not in args
    with pytest.raises(ConfigError, match="`limit` should be a positive integer. Got 0"):
        process_scaling.scaling("demo-gap", **SORTED_DATA, data=str(image_folder), limit=0, device="cpu")


def test_bench_attacks_one_epsilon_is_said_in_the_singular():
    result = run("bench", "attack", "--epsilon", "abc")
    assert result.exit_code == 2
    assert "`--epsilon` should be a number such as 0.5 or 2/255. Got 'abc'" in result.stderr


def test_fidelity_measures_on_the_uint8_levels_the_references_take():
    """The bench fed float32 k / 255 widened to float64, a hair off the grid the references round to:
    impulse_noise, equal to the reference given its draws, read 2.7e-6 /255 apart."""
    from robustbench_gcp.bench.corruption_fidelity import fidelity

    rows = fidelity(["impulse_noise", "contrast"], images=2, seeds=1, severities=[1, 5], size=64)
    assert [(r["corruption"], r["severity"], r["mad"], r["max_abs"]) for r in rows] == [
        (name, severity, 0.0, 0.0) for name in ("impulse_noise", "contrast") for severity in (1, 5)]


def test_bench_commands_take_a_config_of_your_own(scaling_calls, image_folder, tmp_path):
    """benchmarks.yaml's header says every command that reads it takes --config: bench attack,
    landscape and scaling read it without one, so a model or suite of your own file could not be
    benchmarked (audit)."""
    config = tmp_path / "mine.yaml"
    config.write_text("models:\n  mine: {arch: demo-gap, checkpoint: 'package:demo/demo-gap.pth'}\n"
                      "suites:\n  myc: {kind: imagenet-c, corruptions: [fog], severities: [1]}\n")
    attack = run("bench", "attack", "--config", str(config), "--model", "mine", "--images", "2",
                 "--batch-size", "2", "--steps", "1", "--repeats", "1", "--device", "cpu", "--json")
    assert attack.exit_code == 0, attack.output
    assert "unknown model" in run("bench", "landscape", "--model", "mine").output  # not the shipped file's
    scaled = run("bench", "scaling", "--config", str(config), "--model", "mine", "--suite", "myc",
                 *sorted_data(image_folder), "--corruptions", "fog", "--severities", "1")
    assert scaled.exit_code == 0, scaled.output
    for args in scaling_calls:
        assert args[args.index("--config") + 1] == str(config) and args[args.index("--suite") + 1] == "myc"


# --- the bench audit (0.7.15) ------------------------------------------------------------------

def test_fidelity_at_another_size_leaves_out_what_the_originals_transcription_cannot_do():
    """frost crashed (its crops fell off the rescaled textures) and elastic_transform reported a
    MAD of 61/255 at 64 px: the transcription of the original is of 224 px images only."""
    from robustbench_gcp.bench.corruption_fidelity import fidelity

    rows = fidelity(["frost", "elastic_transform", "contrast"], images=1, seeds=1, severities=[2], size=64)
    assert [(r["corruption"], r["reference"], r["mad"]) for r in rows[:2]] == [
        ("frost", "original (224 px only)", None), ("elastic_transform", "original (224 px only)", None)]
    assert rows[2]["reference"] == "imagecorruptions" and rows[2]["mad"] < 1e-3


def test_perturbation_bench_gives_each_rows_model_rate_and_checks_the_default_size():
    result = run("bench", "perturbations", "--device", "cpu", "--model", "demo-gap", "--perturbations",
                 "translate", "--batch-size", "2", "--repeats", "1", "--json")
    assert result.exit_code == 0, result.output
    import json

    (row,) = json.loads(result.stdout)["rows"]
    assert row["vs_model"] == pytest.approx(row["frames_per_second"] / row["model_frames_per_second"])
    too_big = run("bench", "perturbations", "--device", "cpu", "--model", "demo-gap", "--perturbations",
                  "translate", "--crop-size", "100")  # demo-gap's size: 73 (a traceback)
    assert too_big.exit_code == 2 and "Traceback" not in too_big.output
    assert "`--crop-size` should be at most --size (73, the model's resize size). Got 100" in too_big.stderr
    # an unknown model: the command's listing, not the library's "See list_models()" under an empty line
    unknown = run("bench", "perturbations", "--device", "cpu", "--model", "foo")
    assert unknown.exit_code == 2
    assert unknown.stderr == "Error: unknown model 'foo'. `gcp-robust models` lists them.\n"


def test_pipeline_bench_says_what_is_wrong_with_its_checkpoint(tmp_path):
    import torch
    import torchvision

    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint\n")
    state = torchvision.models.resnet18().state_dict()
    del state["fc.bias"]
    torch.save(state, tmp_path / "lacking.pth")
    full = torchvision.models.resnet18().state_dict()
    full["fc.weight"][0, 0] = float("nan")
    torch.save({"state_dict": {f"module.{k}": v for k, v in full.items()}}, tmp_path / "nan.pth")
    for path, said in ((junk, "is not a PyTorch checkpoint"),
                       (tmp_path / "lacking.pth", "lacking.pth' does not fit torchvision's resnet18 (bench "
                        "pipeline takes its state dicts)."),
                       (tmp_path / "lacking.pth", "keys after renaming: 1 missing key (first: fc.bias); 0 "
                        "unexpected keys; 0 shape mismatches"),
                       # read as eval reads it (under "state_dict", "module." stripped), its NaN said
                       # before any run (the eval child said it of a temporary copy; a wrapped file was
                       # "not a state dict")
                       (tmp_path / "nan.pth", "nan.pth' holds non-finite weights in 1 tensor: fc.weight "
                        "(1 NaN)")):
        result = run("bench", "pipeline", "--checkpoint", str(path), "--images", "2")
        assert result.exit_code != 0 and "Traceback" not in result.output, result.output
        assert said in result.stderr and "writing" not in result.stderr, result.stderr


def test_pipeline_bench_reads_a_wrapped_checkpoint_as_eval_does(tmp_path):
    """{"model": {"module.conv1.weight": ...}} holds torchvision's weights, which inspect and eval
    read: bench pipeline refused it as "not a state dict"."""
    import torch
    import torchvision

    from robustbench_gcp.bench.pipeline_speed import _load_torchvision_weights

    state = torchvision.models.resnet18().state_dict()
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "w.pth")
    net = torchvision.models.resnet18()
    _load_torchvision_weights(net, tmp_path / "w.pth", "resnet18")
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())


# --- bench attack / landscape / scaling: the settings and the weights they ran with ---------------

def test_bench_scaling_checks_the_weights_fit_before_any_run(scaling_calls, image_folder, tmp_path):
    """A ResNet-18 file for demo-gap failed in the 1-process run, and only the last line of eval's
    message came back ("It fits 'resnet18-gap' ..."), without the misfit it explained."""
    import torch
    import torchvision

    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    result = run("bench", "scaling", "--checkpoint", str(tmp_path / "r18.pth"), *sorted_data(image_folder))
    assert result.exit_code == 1 and not scaling_calls
    assert "r18.pth' does not fit demo-gap" in result.stderr and "It fits 'resnet18-gap'" in result.stderr


def test_a_failed_child_run_keeps_its_whole_error():
    from robustbench_gcp.bench.process_scaling import _child_error

    stderr = ("progress 1/2\nError: 'x.pth' does not fit demo-gap.\n  detected: layout 'torchvision'\n"
              "  It fits 'resnet18-gap' (1000 classes): use --model resnet18-gap.\n")
    assert _child_error(stderr) == ("Error: 'x.pth' does not fit demo-gap.\n  detected: layout 'torchvision'"
                                    "\n  It fits 'resnet18-gap' (1000 classes): use --model resnet18-gap.")
    assert _child_error("Traceback ...\nRuntimeError: boom\n") == "RuntimeError: boom"
    assert _child_error("") == "(no output)"


def test_bench_scaling_checks_the_model_before_any_run_and_takes_its_weights_options(
        scaling_calls, image_folder, monkeypatch):
    """A model whose checkpoint is not here failed in each child ('the 1-process run failed: ...'),
    and bench scaling had no --checkpoint or --random-weights to give it weights."""
    missing = run("bench", "scaling", "--model", "resnet18-isqrt", *sorted_data(image_folder))
    assert missing.exit_code == 1 and not scaling_calls
    assert "Error: checkpoint file" in missing.stderr and "run failed" not in missing.stderr
    unknown = run("bench", "scaling", "--model", "nosuch", *sorted_data(image_folder))
    assert unknown.exit_code == 2 and not scaling_calls
    assert "unknown model 'nosuch'. `gcp-robust models` lists them" in " ".join(unknown.stderr.split())

    result = run("bench", "scaling", "--model", "demo-isqrt", "--random-weights", *sorted_data(image_folder),
                 "--corruptions", "fog", "--severities", "1", "--limit", "4", "--json")
    assert result.exit_code == 0, result.output
    assert all("--random-weights" in args and "--checkpoint" not in args for args in scaling_calls)
    document = json.loads(result.stdout)
    assert {key: document[key] for key in ("model", "weights", "suite", "corruptions", "severities",
                                           "limit", "processes")} == {
        "model": "demo-isqrt", "weights": "random (seed 0)", "suite": "imagenet-c", "corruptions": "fog",
        "severities": "1", "limit": 4, "processes": 2}
    assert [row["processes"] for row in document["rows"]] == [1, 2]
    titled = run("bench", "scaling", "--model", "demo-isqrt", "--random-weights", *sorted_data(image_folder),
                 "--suite", "clean")
    assert "demo-isqrt (random weights) on cpu, clean" in titled.stdout
    import robustbench_gcp.models.checkpoint as checkpoint

    hashed = []
    real = checkpoint.file_sha256
    monkeypatch.setattr(checkpoint, "file_sha256", lambda path: hashed.append(path) or real(path))
    configured = run("bench", "scaling", *sorted_data(image_folder), "--suite", "clean", "--json")
    assert json.loads(configured.stdout)["weights"].endswith("demo-gap.pth")  # benchmarks.yaml's, said
    # its file read (hashed) once at most (an earlier test's check may be cached), not by the command
    # and again by scaling()'s plan
    assert [Path(p).name for p in hashed] in ([], ["demo-gap.pth"])


def test_bench_attack_and_landscape_say_the_model_weights_and_settings():
    """Their --json printed the rows alone, and their titles did not say --random-weights."""
    attack = run("bench", "attack", "--random-weights", "--images", "2", "--batch-size", "2", "--steps", "1",
                 "--repeats", "1", "--device", "cpu", "--json")
    assert attack.exit_code == 0, attack.output
    document = json.loads(attack.stdout)
    assert {key: document[key] for key in ("model", "weights", "device", "epsilon", "steps", "images")} == {
        "model": "demo-gap", "weights": "random (seed 0)", "device": "cpu", "epsilon": "2/255", "steps": 1,
        "images": 2}
    assert [row["path"] for row in document["rows"]] == ["suite", "plain"]

    landscape = run("bench", "landscape", "--images", "1", "--batch-size", "1", "--etas", "0.01:0.02:2",
                    "--repeats", "1", "--device", "cpu")
    assert landscape.exit_code == 0, landscape.output
    assert "demo-gap (" in landscape.stdout and "demo-gap.pth) on cpu" in landscape.stdout
    titled = run("bench", "landscape", "--random-weights", "--images", "1", "--batch-size", "1", "--etas",
                 "0.01:0.02:2", "--repeats", "1", "--device", "cpu", "--json")
    document = json.loads(titled.stdout)
    assert document["weights"] == "random (seed 0)" and document["etas"] == "0.01:0.02:2"
    default = json.loads(run("bench", "landscape", "--images", "1", "--batch-size", "1", "--repeats", "1",
                             "--device", "cpu", "--json").stdout)
    assert default["etas"] == "0.000390625:0.29296875:50"  # 75/256 whole (:g said 0.292969)


@pytest.mark.skipif(not Path("/proc/meminfo").is_file(), reason="the memory available is read from there")
def test_a_size_beyond_the_machines_memory_is_one_line():
    """A 1,000,000 px frame asked 9 TB of the CPU allocator: a traceback ended the command."""
    result = run("bench", "perturbations", "--device", "cpu", "--model", "demo-gap", "--batch-size", "1",
                 "--repeats", "1", "--perturbations", "translate", "--model-batch-size", "1",
                 "--size", "1000000")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    said = result.stderr.strip()
    assert re.fullmatch(r"Error: bench perturbations: 1 image x 41 frames of 875000 px need about "
                        r"[\d,.]+ GiB of memory here, and [\d,.]+ GiB are available; lower --batch-size or "
                        r"--size", said), said
    # at the model's own sizes too (a --batch-size of 30000 without --size grew to 5 GB first)
    result = run("bench", "perturbations", "--device", "cpu", "--model", "demo-gap", "--repeats", "1",
                 "--batch-size", "3000000", "--perturbations", "translate")
    assert result.exit_code == 1 and result.stderr.startswith(
        "Error: bench perturbations: 3000000 images x 41 frames of 64 px need about "), result.output
    # sizes that overcommit: the kernel killed `bench corruptions --size 100000` ("Killed", exit 137)
    # before any allocation failed; each names its own options (--images where it has them)
    for command, options in ((["corruptions", "--corruptions", "fog"], "--batch-size or --size"),
                             (["fidelity", "--corruptions", "fog"], "--images or --size"),
                             (["jpeg"], "--batch-size or --size")):
        result = run("bench", *command, "--size", "100000")
        assert result.exit_code == 1 and result.stderr.strip().endswith(f"are available; lower {options}"), \
            result.output
    # an allocation that fails: the options the command has (it named --size and --images to heads)
    result = run("bench", "heads", "--device", "cpu", "--batch-size", "100000000", "--heads", "gap")
    assert result.exit_code == 1 and result.stderr.strip().startswith(
        "Error: bench heads: the sizes asked need more memory than this machine has ("), result.output
    assert result.stderr.strip().endswith("; lower --batch-size"), result.output
    # the model's batch of frames too (it said "lower --batch-size or --size", not the option at fault)
    result = run("bench", "perturbations", "--device", "cpu", "--model", "demo-gap", "--repeats", "1",
                 "--model-batch-size", "1000000", "--perturbations", "translate")
    assert result.exit_code == 1 and result.stderr.strip().endswith(
        "; lower --batch-size or --model-batch-size or --size"), result.output


def test_perturbation_bench_names_a_frame_the_model_shrinks_to_nothing():
    """AlexNet's layers shrink a 28 px frame to 0 x 0: a torch traceback came midway through the
    timings, under a blank line the progress bar left."""
    result = run("bench", "perturbations", "--device", "cpu", "--model", "alexnet", "--size", "32",
                 "--perturbations", "translate", "--batch-size", "1", "--repeats", "1")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.stderr.startswith("Error: model alexnet cannot classify 28 px frames (Given input size: ")
    assert result.stderr.rstrip().endswith("): give a larger `--crop-size` (or `--size`)")
    assert result.stderr.count("\n") == 1


def test_the_bench_bars_leave_no_blank_line_when_nothing_started(capfd):
    from robustbench_gcp.cli.progress import item_bar

    with pytest.raises(KeyError), item_bar(3, "timing"):
        raise KeyError("before the first item")
    assert capfd.readouterr().err == ""
    with item_bar(2, "timing") as advance:
        advance("first")
        advance("second")
    assert "\n\n" not in capfd.readouterr().err


def test_the_benchs_photographs_are_copies_made_by_indexing():
    """Beyond the 32 distinct images (8 photographs x 4 mirrorings), copies; a count of 10^8 built
    a list of views for minutes before its allocation could fail."""
    import torch

    from robustbench_gcp.bench.photos import photo_levels

    base = photo_levels(8, 40)
    variants = [lambda t: t, lambda t: t.flip(-1), lambda t: t.transpose(-1, -2), lambda t: t.flip(-2)]
    expected = torch.stack([variants[(i // 8) % 4](base[i % 8]) for i in range(70)])
    assert torch.equal(photo_levels(70, 40), expected)
    assert torch.equal(photo_levels(5, 40), expected[:5])
    assert len({bytes(image.numpy()) for image in expected[:32]}) == 32
    with pytest.raises((MemoryError, RuntimeError), match="allocate"):
        photo_levels(10**8, 224)  # 14 TiB: fails at once


def test_the_attack_bench_decodes_each_demo_photograph_once(monkeypatch):
    import torch

    from robustbench_gcp.bench import attack_speed
    from robustbench_gcp.data import loader

    decoded = []
    real = loader.iterate_batches

    def counting(paths, *args, **kwargs):
        decoded.extend(paths)
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(loader, "iterate_batches", counting)
    x, labels = attack_speed.demo_batch(130, resize_size=40, input_size=32, num_classes=10)
    assert len(decoded) == len(set(decoded)) < 130
    n = len(decoded)
    assert x.shape == (130, 3, 32, 32) and x.dtype == torch.float32
    assert torch.equal(x[n:], x[:130 - n]) and torch.equal(labels[n:], labels[:130 - n])
    assert labels.tolist()[:n] == sorted(labels.tolist()[:n])  # the folder's order, class by class


def test_the_cpu_allocators_failure_is_its_size():
    from robustbench_gcp.engine.device import first_words

    cpu = RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                       "allocate memory: you tried to allocate 49152000000 bytes. Error code 12 (Cannot "
                       "allocate memory)")
    assert first_words(cpu) == "can't allocate 45.8 GiB"
    long = RuntimeError("word " * 60 + "\nsecond line")
    assert first_words(long) == ("word " * 31).strip() + "..."
    assert first_words(RuntimeError("")) == "RuntimeError"
    assert first_words(ValueError("short\nmore")) == "short"


def test_scaling_refuses_the_demo_data_for_another_datasets_suite(monkeypatch):
    """cifar10-c without --data evaluated the demo's 86 px photographs: the child run failed, with
    advice (--dataset imagenet) for a command the user did not type."""
    from robustbench_gcp.bench import process_scaling

    def no_run(*args, **kwargs):
        raise AssertionError("a run started")

    monkeypatch.setattr(process_scaling, "eval_throughput", no_run)
    result = run("bench", "scaling", "--suite", "cifar10-c", "--random-weights", "--device", "cpu")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.stderr == ("Error: suite 'cifar10-c' runs on CIFAR-10 images (32 px) and the demo data are "
                             "ImageNet-style photographs: give --data, a folder of CIFAR-10 images\n")
    with pytest.raises(ConfigError, match="tinyimagenet-p' runs on Tiny-ImageNet images \\(64 px\\)"):
        process_scaling.scaling("demo-gap", random_weights=True, suite="tinyimagenet-p", device="cpu")


def test_the_attack_bench_gives_no_advice_it_cannot_take():
    """bench attack runs PGD-Linf alone: "use pgd-l2" named an attack it has no option for."""
    result = run("bench", "attack", "--images", "4", "--repeats", "1", "--steps", "1", "--epsilon", "0.3")
    assert result.exit_code == 2
    assert result.stderr == ("Error: `--epsilon`: epsilon 0.3 for the Linf attack pgd-linf would let every "
                             "pixel move by 30% of its range (Linf budgets are usually 1/255 to 16/255)\n")


def test_bench_captions_count_in_the_singular_and_name_glass_blur_only_where_timed():
    """'fastest of 1 runs', 'best of 1 calls', and '(glass_blur: 1)' under a table of fog alone."""
    fog = run("bench", "corruptions", "--device", "cpu", "--corruptions", "fog", "--batch-size", "2",
              "--reference-images", "2", "--repeats", "1", "--size", "32")
    assert fog.exit_code == 0, fog.output
    assert "reference: imagecorruptions on the CPU, 2 images per severity\n" in fog.stdout
    glass = run("bench", "corruptions", "--device", "cpu", "--corruptions", "fog,glass_blur",
                "--batch-size", "2", "--reference-images", "2", "--repeats", "1", "--size", "32")
    assert "2 images per severity (glass_blur: 1)\n" in glass.stdout, glass.output
    heads = run("bench", "heads", "--repeats", "1", "--batch-size", "1", "--heads", "gap")
    assert heads.exit_code == 0 and "fastest of 1 run;" in heads.stdout, heads.output


def test_bench_scaling_builds_a_model_you_bring_once_before_the_runs(scaling_calls, image_folder, tmp_path,
                                                                     monkeypatch):
    """Planned before the runs, a brought module was built (and probed) twice in the parent; what
    it printed went into the --json output."""
    (tmp_path / "scaling_nets.py").write_text(
        "import torch\nBUILT = []\n\n"
        "def net():\n"
        "    BUILT.append(1)\n"
        "    print('building net')\n"
        "    pool = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())\n"
        "    return torch.nn.Sequential(pool, torch.nn.Linear(3, 10))\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])  # (syspath_prepend imports pkg_resources)
    monkeypatch.delitem(sys.modules, "scaling_nets", raising=False)
    import scaling_nets

    result = run("bench", "scaling", "--model", "scaling_nets:net", *sorted_data(image_folder), "--suite",
                 "clean", "--device", "cpu", "--repeats", "1", "--json")
    assert result.exit_code == 0, result.output
    assert len(scaling_nets.BUILT) == 1 and len(scaling_calls) == 2
    assert json.loads(result.stdout)["model"] == "scaling_nets:net"  # its print went to stderr
    assert "building net" in result.stderr


def test_the_corruption_bench_says_its_cuda_graphs_on_cuda_only(monkeypatch):
    """GCP_ROBUST_CUDA_GRAPHS is read on CUDA only, where --json says what the graphs came to (a
    failed capture leaves the loop, whose figures were taken for the graphs'); on the CPU neither a
    word nor an error."""
    monkeypatch.setenv("GCP_ROBUST_CUDA_GRAPHS", "sometimes")
    cpu = run("bench", "corruptions", "--device", "cpu", "--corruptions", "fog", "--batch-size", "2",
              "--reference-images", "1", "--repeats", "1", "--size", "32", "--json")
    assert cpu.exit_code == 0, cpu.output
    assert "cuda_graphs" not in json.loads(cpu.stdout) and "CUDA graphs" not in cpu.output
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # (refused before anything runs there)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    cuda = run("bench", "corruptions", "--device", "cuda", "--corruptions", "fog")
    assert cuda.exit_code == 2
    assert cuda.stderr == ("Error: `GCP_ROBUST_CUDA_GRAPHS` should be 1 (CUDA graphs of the per-image draws) "
                           "or 0. Got 'sometimes'\n")


def test_bench_fidelity_refuses_glass_blur_images_without_glass_blur():
    """--glass-blur-images 3 with --corruptions fog was taken, and changed nothing (helper-289)."""
    result = run("bench", "fidelity", "--corruptions", "fog", "--glass-blur-images", "3", "--images", "1")
    assert result.exit_code == 2
    assert ("--glass-blur-images sets glass_blur's photographs, and --corruptions does not name glass_blur"
            in " ".join(result.stderr.split()))
