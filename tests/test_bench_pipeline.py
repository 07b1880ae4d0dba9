"""``gcp-robust bench pipeline``: the tool and the plain loop as processes, on the same work."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from robustbench_gcp.cli import main


def test_the_bench_command_times_both_paths_and_their_errors_agree():
    result = CliRunner().invoke(main, ["bench", "pipeline", "--images", "6", "--corruptions",
                                       "contrast", "--severities", "1", "--workers", "0",
                                       "--device", "cpu", "--repeats", "2", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["model"] == "resnet18-gap" and document["images"] == 6 and document["repeats"] == 2
    rows = {(r["pass"], r["path"]): r for r in document["rows"]}
    assert set(rows) == {(p, path) for p in ("clean", "corrupted") for path in ("tool", "plain")}
    for (name, _), row in rows.items():
        assert row["cells"] == (1 if name == "clean" else 2)
        assert len(row["runs"]) == 2 and min(row["runs"]) > 0
        assert row["seconds"] == pytest.approx(sum(row["runs"]) / 2)  # the median of two
        assert row["cell_images_per_s"] == pytest.approx(6 * row["cells"] / row["seconds"])
    # in turns: the tool first, then the plain loop first
    started = [line.split(" (")[0] for line in result.stderr.splitlines() if " pass: " in line]
    assert started[:4] == ["clean pass: gcp-robust eval", "clean pass: plain loop",
                           "clean pass: plain loop", "clean pass: gcp-robust eval"], started
    for name in ("clean", "corrupted"):
        assert rows[name, "plain"]["ratio"] == pytest.approx(rows[name, "plain"]["seconds"]
                                                              / rows[name, "tool"]["seconds"])
    # labels are the model's clean predictions: the clean error is about 0 on both paths
    assert rows["clean", "tool"]["top1_error"] <= 1 / 6 and rows["clean", "plain"]["top1_error"] <= 1 / 6
    # contrast draws no random numbers: the two paths differ only within the fidelity
    # bounds (and the JPEG codec), at most a couple of the 6 images
    assert abs(rows["corrupted", "tool"]["top1_error"] - rows["corrupted", "plain"]["top1_error"]) <= 0.34


def test_the_photographs_are_filed_under_the_models_own_clean_predictions(tmp_path):
    import torch
    import torchvision

    from robustbench_gcp.bench.pipeline_speed import photo_folder, plain_loop

    torch.manual_seed(0)
    net = torchvision.models.resnet18()
    folder = photo_folder(tmp_path / "data", net, 4, calibrate=True)
    files = sorted(folder.glob("n*/*.JPEG"))
    assert len(files) == 4 and not (folder / ".unsorted").exists()
    torch.save(net.state_dict(), tmp_path / "w.pth")
    (clean, contrast) = plain_loop(folder, arch="resnet18", weights=tmp_path / "w.pth",
                                   cells=[(None, 0), ("contrast", 5)], batch_size=4)
    assert clean == {"corruption": None, "severity": 0, "n": 4, "top1_error": 0.0}
    assert contrast["corruption"] == "contrast" and contrast["n"] == 4 and 0 <= contrast["top1_error"] <= 1


def test_a_clean_plain_pass_does_not_import_imagecorruptions(tmp_path, monkeypatch):
    """The plain clean pass imported imagecorruptions (0.4 s) it never used: its time, and the
    clean ratio, counted it."""
    import torch
    import torchvision

    import corruptions.reference
    from robustbench_gcp.bench.pipeline_speed import photo_folder, plain_loop

    def refuse():
        raise AssertionError("imagecorruptions imported for a clean pass")

    net = torchvision.models.resnet18()
    folder = photo_folder(tmp_path / "data", net, 2, calibrate=False)
    torch.save(net.state_dict(), tmp_path / "w.pth")
    monkeypatch.setattr(corruptions.reference, "load_imagecorruptions", refuse)
    (clean,) = plain_loop(folder, arch="resnet18", weights=tmp_path / "w.pth", cells=[(None, 0)],
                          batch_size=2)
    assert clean["n"] == 2


def test_the_plain_corruption_returns_a_jpeg_of_the_crop():
    from PIL import Image

    from robustbench_gcp.bench.pipeline_speed import PlainCorruption

    out = PlainCorruption("brightness", 3)(Image.new("RGB", (224, 224), (90, 120, 150)))
    assert out.size == (224, 224) and out.mode == "RGB"


@pytest.mark.parametrize("args, message", [
    (["--model", "resnet18-isqrt"], "unknown model with a torchvision twin 'resnet18-isqrt'"),
    (["--corruptions", "fgo"], "unknown corruption 'fgo'. Did you mean 'fog'?"),
    (["--severities", "7"], "`--severities` should be 1..5. Got 7"),
    (["--severities", "x"], "`--severities` should be 1..5. Got 'x'"),  # as bench corruptions and eval say it
])
def test_bad_options_are_one_line_before_any_process(args, message):
    result = CliRunner().invoke(main, ["bench", "pipeline", "--device", "cpu", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_a_checkpoint_of_a_model_without_a_torchvision_twin_is_not_advised_to_bench_pipeline():
    """It said "It fits 'demo-gap' (10 classes): use --model demo-gap.", which bench pipeline then
    refused as a model without a torchvision twin (helper-244)."""
    import pytest
    import torchvision

    from robustbench_gcp.bench.pipeline_speed import _load_torchvision_weights
    from robustbench_gcp.config import load_config
    from robustbench_gcp.errors import CheckpointError

    with pytest.raises(CheckpointError) as caught:
        _load_torchvision_weights(torchvision.models.resnet18(), load_config().model("demo-gap").checkpoint,
                                  "resnet18")
    said = str(caught.value)
    assert "It fits 'demo-gap', which has no torchvision twin: bench pipeline times resnet18-gap" in said
    assert "use --model" not in said
