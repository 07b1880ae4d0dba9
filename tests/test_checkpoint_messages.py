"""What inspect and loading say of damaged checkpoints, as eval says it (a probe of the CLI)."""

from __future__ import annotations

from importlib import resources

import pytest
import torch
from click.testing import CliRunner

from robustbench_gcp.cli import main
from robustbench_gcp.errors import CheckpointError
from robustbench_gcp.models import inspect_checkpoint, load_model

DEMO = resources.files("robustbench_gcp") / "resources" / "demo" / "demo-gap.pth"


def _weights() -> dict[str, torch.Tensor]:
    loaded = torch.load(str(DEMO), weights_only=True)
    return dict(loaded.get("state_dict", loaded))


def test_inspect_says_eval_refuses_a_weight_of_another_type(tmp_path):
    """An int64 fc.weight: eval refuses the file, inspect said it fits demo-gap and nothing else."""
    weights = _weights()
    weights["fc.weight"] = weights["fc.weight"].to(torch.int64)
    path = tmp_path / "intw.pth"
    torch.save(weights, path)
    info = inspect_checkpoint(path)
    assert info.arch == "demo-gap" and info.wrong_types == ["fc.weight (int64)"]
    shown = CliRunner().invoke(main, ["inspect", str(path)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "WRONG TYPES" in shown.stdout
    assert "(eval refuses this file): fc.weight (int64)" in " ".join(shown.stdout.split())
    with pytest.raises(CheckpointError, match=r"has in floating point as other types: fc.weight \(int64\)"):
        load_model("demo-gap", checkpoint=str(path))
    assert inspect_checkpoint(DEMO).wrong_types == []


@pytest.mark.parametrize("nested", [False, True])
def test_a_stray_dict_beside_the_weights_is_named(tmp_path, nested):
    """{..., 'config': {'lr': 0.1}}: the error listed the tensors and never named 'config' (a stray
    number was named), and said "the checkpoint holds" of the contents of ['state_dict']."""
    weights = {**_weights(), "config": {"lr": 0.1}}
    path = tmp_path / "stray.pth"
    torch.save({"state_dict": weights} if nested else weights, path)
    where = " (the checkpoint['state_dict'])" if nested else ""
    with pytest.raises(CheckpointError) as error:
        inspect_checkpoint(path)
    assert f"a dict of 74 tensors{where} also holds 'config' (dict), not tensors" in str(error.value)


def test_a_safetensors_file_cut_off_in_its_header_is_said_truncated(tmp_path):
    """It was "not a PyTorch checkpoint ... nor safetensors"."""
    from safetensors.torch import save_file

    full = tmp_path / "full.safetensors"
    save_file({k: v.contiguous() for k, v in _weights().items()}, full)
    data = full.read_bytes()
    header = int.from_bytes(data[:8], "little")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:header // 2])
    with pytest.raises(CheckpointError, match=rf"is truncated or corrupted .*a safetensors file whose header "
                                              rf"of {header:,} bytes is cut off"):
        inspect_checkpoint(cut)
    # cut off after its header, in its tensors: the safetensors reader's "incomplete metadata"
    cut.write_bytes(data[:len(data) - 100])
    with pytest.raises(CheckpointError, match=rf"is truncated or corrupted \({len(data) - 100:,} bytes; a "
                                              rf"safetensors file whose tensors end at byte {len(data):,}\)"):
        inspect_checkpoint(cut)
    assert inspect_checkpoint(full).arch == "demo-gap"


def test_a_classifier_of_no_classes_does_not_fit_and_names_the_file(tmp_path):
    """fc.weight of shape [0, 96]: "`num_classes` should be a positive integer. Got 0" (no such option,
    exit 2, the file unnamed)."""
    weights = _weights()
    weights["fc.weight"], weights["fc.bias"] = weights["fc.weight"][:0], weights["fc.bias"][:0]
    path = tmp_path / "zero.pth"
    torch.save(weights, path)
    assert inspect_checkpoint(path).arch is None
    with pytest.raises(CheckpointError, match=r"zero.pth' does not fit demo-gap"):
        load_model("demo-gap", checkpoint=str(path))
