"""``gcp-robust inspect`` and ``gcp-robust bench heads`` through click's CliRunner."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from robustbench_gcp.bench.head_speed import BENCH_HEADS, bench_heads
from robustbench_gcp.cli import main
from robustbench_gcp.models import create_model


@pytest.fixture(scope="module")
def zoo_file(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("resnet18-isqrt", num_classes=10, reduction_dim=32)
    state = {k.replace("global_pool.reduce.", "layer_reduce.")
              .replace("global_pool.bn.", "layer_reduce_bn."): v
             for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("ckpt") / "mpncovresnet18.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 7}, path)
    return path


def run(*args):
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "200"})  # rich: no wrapping


def test_help_texts():
    for args in (["inspect", "--help"], ["bench", "heads", "--help"]):
        result = run(*args)
        assert result.exit_code == 0, result.output
        assert "Example:" in result.output


def test_inspect_table(zoo_file):
    result = run("inspect", str(zoo_file))
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    for text in ("layer-reduce", "resnet18-isqrt", "isqrt", "32", "10",
                 "stripped module.", "stored epoch", hashlib.sha256(zoo_file.read_bytes()).hexdigest(),
                 "isqrt: iSQRT-COV: covariance, Newton-Schulz square root (5 iterations)"):
        assert text in out, text
    # no SVD-Pade file has the model zoo's layout: its keys alone do not make it one
    assert "svdpade" not in out
    own = zoo_file.parent / "own.pth"  # the tool's own names: either head's weights
    torch.save(create_model("resnet18-isqrt", num_classes=10, reduction_dim=32).state_dict(), own)
    out = " ".join(run("inspect", str(own)).output.split())
    assert ("(the same weights fit resnet18-svdpade: their matrix square roots differ, and SVD-Pade's "
            "layer4 stride (7x7 maps) and centring; give the one it was trained with as") in out, out


def test_inspect_of_a_partial_match_counts_none_without_a_colon(tmp_path):
    """A ResNet-18 without its fc: "unexpected keys │ 0:" had a colon after a count of none."""
    import torchvision

    state = {k: v for k, v in torchvision.models.resnet18().state_dict().items() if not k.startswith("fc.")}
    torch.save(state, tmp_path / "nofc.pth")
    result = run("inspect", str(tmp_path / "nofc.pth"))
    assert result.exit_code == 0, result.output
    lines = {" ".join(line.replace("│", " ").split()) for line in result.output.splitlines()}
    assert "missing keys 2: fc.weight, fc.bias" in lines and "unexpected keys 0" in lines, result.output
    assert "shape mismatches 0" in lines


def test_inspect_json(zoo_file):
    result = run("inspect", str(zoo_file), "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert (info["layout"], info["arch"], info["head"], info["reduction_dim"],
            info["num_classes"], info["depth"]) == ("layer-reduce", "resnet18-isqrt", "isqrt",
                                                    32, 10, 18)
    model = create_model("resnet18-isqrt", num_classes=10, reduction_dim=32)
    assert info["num_params"] == sum(p.numel() for p in model.parameters())
    assert info["sha256"] == hashlib.sha256(zoo_file.read_bytes()).hexdigest()
    assert info["metadata"] == {"epoch": 7}


def test_inspect_takes_a_url_from_the_cache_or_downloads_it(zoo_file, tmp_path, monkeypatch):
    """`inspect URL` said "is a URL: download the checkpoint and pass the file", also where eval had
    downloaded it into the cache already (file:// here: no network)."""
    monkeypatch.setenv("GCP_ROBUST_CACHE", str(tmp_path / "cache"))
    url = zoo_file.as_uri()
    first = run("inspect", url, "--json")
    assert first.exit_code == 0, first.output
    info = json.loads(first.output)
    cached = tmp_path / "cache" / "checkpoints"
    assert info["url"] == url and Path(info["path"]).is_relative_to(cached)
    assert info["arch"] == "resnet18-isqrt"
    assert info["sha256"] == hashlib.sha256(zoo_file.read_bytes()).hexdigest()
    Path(info["path"]).write_bytes(zoo_file.read_bytes()[:-1])  # the cached file is read, not the URL
    again = run("inspect", url)
    assert again.exit_code == 1 and "truncated" in again.output, again.output
    gone = run("inspect", (tmp_path / "gone.pth").as_uri())
    assert gone.exit_code == 1 and gone.output.startswith(f"Error: cannot download checkpoint file://{tmp_path}")
    assert "give the file to inspect" in run("inspect", "s3://bucket/x.pth").output
    digest = hashlib.sha256(zoo_file.read_bytes()).hexdigest()
    checked = run("inspect", str(zoo_file), "--sha256", digest[:12], "--json")
    assert checked.exit_code == 0 and json.loads(checked.output)["sha256"] == digest
    other = run("inspect", str(zoo_file), "--sha256", "0" * 8)
    assert other.exit_code == 1 and other.output.startswith(f"Error: sha256 mismatch for '{zoo_file}'")
    assert run("inspect", str(tmp_path / "gone.pth"), "--sha256", "0" * 8).output == (
        f"Error: checkpoint file {tmp_path / 'gone.pth'} does not exist\n")


def test_inspect_errors_are_one_clear_message(tmp_path):
    page = tmp_path / "download.pth"
    page.write_text("<html><head><title>Sign in - Google Accounts</title></head></html>")
    result = run("inspect", str(page))
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: '{page}' is an HTML page titled 'Sign in")
    result = run("inspect", str(tmp_path / "missing.pth"))
    assert result.exit_code == 1
    assert f"checkpoint file {tmp_path / 'missing.pth'} does not exist" in result.output
    folder = run("inspect", str(tmp_path))  # click's usage error (exit 2), eval's wording (exit 1)
    assert folder.exit_code == 1
    assert folder.output == f"Error: checkpoint file {tmp_path} is a folder, not a file\n"


def test_inspect_json_of_a_file_whose_stored_figures_are_not_finite(tmp_path):
    """A diverged run's best_prec1 NaN: the table showed "-", --json ended in a traceback."""
    path = tmp_path / "diverged.pth"
    torch.save({"state_dict": create_model("demo-gap").state_dict(), "best_prec1": float("nan"),
                "loss": torch.tensor(float("inf")), "epoch": 3}, path)
    result = run("inspect", str(path), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["metadata"] == {"best_prec1": None, "loss": None, "epoch": 3}


def test_bench_heads_library_rows():
    rows = bench_heads("cpu", batch_size=1, repeats=1, scope="pool", reduction_dim=16,
                       in_channels=32, num_classes=5)
    assert [r["head"] for r in rows] == [h for h, _ in BENCH_HEADS]
    assert rows[0]["forward_vs_gap"] == 1.0 == rows[0]["forward_backward_vs_gap"]
    assert rows[0]["input"] == "32x7x7" and rows[1]["input"] == "16x14x14"
    assert all(r["forward_ms"] > 0 and r["forward_backward_ms"] > 0 for r in rows)


def test_bench_heads_cli_json():
    result = run("bench", "heads", "--device", "cpu", "--batch-size", "1", "--repeats", "1",
                 "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["scope"] == "head" and doc["batch_size"] == 1
    assert [r["head"] for r in doc["rows"]] == ["gap", "isqrt", "mpncov", "svdpade", "dropcov",
                                               "isqrt-relu6"]
    assert doc["rows"][0]["input"] == "2048x7x7" and doc["rows"][1]["input"] == "2048x14x14"
    assert doc["rows"][-1]["input"] == "1280x7x7"


def test_bench_heads_cli_rejects_bad_options():
    result = run("bench", "heads", "--batch-size", "0")
    assert result.exit_code == 2
    result = run("bench", "heads", "--device", "cuda:7")
    assert result.exit_code == 2 and "Error:" in result.output
    for heads, message in (("isqrt,svdpad", "Error: `--heads`: no head 'svdpad'. Did you mean 'svdpade'?"),
                           (",", "Error: `--heads` names no head: give some of gap, isqrt, mpncov")):
        result = run("bench", "heads", "--heads", heads, "--device", "cuda:7")  # before the device
        assert result.exit_code == 2 and result.stderr.startswith(message), result.output


def test_bench_heads_times_the_heads_named_and_gap():
    """gpu-check leaves out the float64 SVD head (256 SVDs of 256 x 256 run one by one on a GPU)."""
    result = run("bench", "heads", "--heads", "mpncov,isqrt", "--batch-size", "1", "--repeats", "1",
                 "--pool-only", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    assert [r["head"] for r in rows] == ["gap", "isqrt", "mpncov"]  # table order, GAP the ratios' base
    assert rows[0]["forward_vs_gap"] == 1.0 and rows[2]["forward_ms"] > 0


def test_a_bare_training_file_of_a_resnet_is_said_to_leave_its_stride_open(tmp_path, image_folder):
    """inspect shows the layer4 stride eval builds for a fast-MPN-COV training file without an arch
    (a ResNet-18: resnet18's, that code has no mpncovresnet18); eval says it before the run, and every
    report of the run keeps it."""
    from test_checkpoint import training_layout

    torch.manual_seed(0)
    state = training_layout(create_model("resnet18-isqrt", reduction_dim=32).state_dict())
    path = tmp_path / "model_best.pth"
    torch.save(state, path)  # as DifferentiableSVD's README saves and loads: a bare state dict
    said = (f"{path} names no `arch`: layer4 is built at stride 2 (7x7 features at 224 px), as "
            "fast-MPN-COV's training code builds resnet18")
    end = ("its only ResNet-18 with these keys (it has no mpncovresnet18); resnet18-isqrt's published "
           "network has")
    for columns, whole in (("200", f"layer4 stride {said}, {end} stride 1"), ("80", f"{end} stride 1")):
        # whole in a narrow terminal too: the value wraps (it was cut at the table's edge; the path,
        # one long word, may be folded anywhere)
        shown = CliRunner().invoke(main, ["inspect", str(path)], env={"COLUMNS": columns}).output
        assert whole in " ".join(shown.replace("│", " ").split()), shown
    store = str(tmp_path / "s.db")
    evaluated = run("eval", "--model", "resnet18-isqrt", "--checkpoint", str(path), "--suite", "clean",
                    "--data", str(image_folder), "--limit", "2", "--store", store, "--workers", "0")
    assert evaluated.exit_code == 0, evaluated.output
    assert " ".join(evaluated.output.split()).count(said) == 2, evaluated.output  # before, and in the report
    reported = run("report", "--store", store, "--format", "markdown")
    assert reported.exit_code == 0 and said in " ".join(reported.output.replace("\\`", "`").split())


def test_models_json_says_each_architectures_pooling_in_words():
    """A DeiT's head is named gap (the GAP counterpart of DeiT + DropCov) but it pools nothing."""
    import json

    result = run("models", "--json")
    assert result.exit_code == 0, result.output
    pooling = {row["name"]: row["pooling"] for row in json.loads(result.stdout)["architectures"]}
    assert pooling["deit-small-gap"] == "class token (no global pooling), linear head"
    assert pooling["resnet50-gap"] == "global average pooling"
    assert pooling["resnet50-isqrt"] == "covariance d=256, newton-schulz sqrt (5 iterations)"


def test_models_of_a_file_with_none_says_so(tmp_path):
    """`models --config` of a file with `models: {}` printed an empty table and nothing more, where
    `suites` says why its table is empty (helper-282)."""
    config = tmp_path / "min.yaml"
    config.write_text("models: {}\n")
    result = CliRunner().invoke(main, ["models", "--config", str(config)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert ("no models: the file has no `models:` entries (eval --model takes the registry's names above, "
            "torchvision:<name> or package.module:callable)") in " ".join(result.stdout.split())
