"""torchvision's AlexNet as the registered ``alexnet`` (the mCE / mFR baseline).

Checkpoints are random-weight torchvision AlexNets written by the test with the
names of the released ``alexnet-owt-7be5be79.pth`` (a bare torchvision state
dict in the legacy torch.save format); nothing is downloaded. The files are
large (about 245 MB: the layer sizes are fixed by the architecture), so only two
are written, once per module; other variants are checked in memory.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import torch
import torchvision

from robustbench_gcp.errors import CheckpointError, ConfigError
from robustbench_gcp.models import (
    PreprocessConfig,
    build_resnet,
    create_model,
    inspect_checkpoint,
    list_models,
    load_model,
    model_info,
)
from robustbench_gcp.models.checkpoint import (
    StateDict,
    detect_layout,
    remap,
    select_state_dict,
    strip_wrappers,
)
from robustbench_gcp.models.loading import load_strict

CLASSES = 10  # fewer classifier rows than ImageNet's; every key name and other shape is the real one
ALEXNET_PARAMS = 61_100_840  # torchvision's AlexNet_Weights.IMAGENET1K_V1.meta["num_params"]


def module_prefixed(state):
    """``{'state_dict': {'module.features.0.weight': ...}}``: the whole model in DataParallel."""
    return {"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 90}


def features_wrapped(state):
    """``features.module.0.weight``: only ``features`` in DataParallel (the old ImageNet script)."""
    return {"model": {k.replace("features.", "features.module.", 1): v for k, v in state.items()}}


def outputs(model, x):
    with torch.no_grad():
        return model(x)


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def theirs():
    torch.manual_seed(2)
    return torchvision.models.alexnet(weights=None, num_classes=CLASSES).eval()


@pytest.fixture(scope="module")
def expected(theirs, x):
    return outputs(theirs, x)


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("alexnet")


@pytest.fixture(scope="module")
def bare_file(ckpt_dir, theirs):
    """Like alexnet-owt-7be5be79.pth: bare torchvision state dict, legacy serialization."""
    path = ckpt_dir / "alexnet-owt-random.pth"
    torch.save(theirs.state_dict(), path, _use_new_zipfile_serialization=False)
    return path


@pytest.fixture(scope="module")
def prefixed_file(ckpt_dir, theirs):
    path = ckpt_dir / "alexnet-dataparallel.pth.tar"
    torch.save(module_prefixed(theirs.state_dict()), path)
    return path


@pytest.fixture(scope="module")
def loaded(bare_file):
    return load_model("alexnet", bare_file)


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory):
    torch.manual_seed(3)
    state = torchvision.models.resnet18(weights=None, num_classes=CLASSES).state_dict()
    path = tmp_path_factory.mktemp("resnet") / "resnet18-random.pth"
    torch.save(state, path)
    return path


def meta_alexnet(**kwargs):
    with torch.device("meta"):
        return create_model("alexnet", **kwargs)


# ------------------------------------------------------------------ architecture


def test_registered_with_torchvision_names_shapes_and_parameter_count():
    assert "alexnet" in list_models()
    ours = meta_alexnet().state_dict()
    with torch.device("meta"):
        reference = torchvision.models.alexnet(weights=None).state_dict()
    assert list(ours) == list(reference)
    assert list(ours)[0] == "features.0.weight" and list(ours)[-1] == "classifier.6.bias"
    assert all(ours[k].shape == reference[k].shape for k in ours)
    assert sum(p.numel() for p in meta_alexnet().parameters()) == ALEXNET_PARAMS


def test_model_info_and_contract_attributes():
    info = model_info("alexnet")
    assert (info.name, info.depth, info.head, info.num_params, info.input_size,
            info.reduction_dim, info.num_classes) == \
           ("alexnet", None, "fc", ALEXNET_PARAMS, 224, None, 1000)
    assert info.pooling.startswith("no global pooling") and "9216" in info.pooling
    assert info.description.startswith("AlexNet (torchvision")
    model = load_model("alexnet", random_weights=True)
    assert not model.training
    assert (model.name, model.num_classes, model.checkpoint_sha256) == ("alexnet", 1000, None)
    assert (model.head_type, model.reduction_dim) == ("fc", None)
    assert model.pretrained_cfg == PreprocessConfig(
        input_size=224, resize_size=256, interpolation="bilinear",
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    model.set_matrix_function()  # None for both: nothing to swap, nothing to refuse
    with pytest.raises(ConfigError, match="`sqrt` cannot be used with alexnet"):
        model.set_matrix_function("eig")


def test_forward_features_and_head(loaded, x, expected):
    with torch.no_grad():
        feats = loaded.forward_features(x)
        assert feats.shape == (2, 256, 6, 6)
        pre = loaded.forward_head(feats, pre_logits=True)
        assert pre.shape == (2, 4096)
        torch.testing.assert_close(loaded.classifier[-1](pre), expected)
        torch.testing.assert_close(loaded.forward_head(feats), expected)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"sqrt": "eig"}, "`sqrt` cannot be used with alexnet: it has no matrix square root "
                      "(it has no covariance matrix)"),
    ({"sqrt": "newton-schulz", "ns_iters": 5}, "`sqrt` cannot be used with alexnet"),
    ({"ns_iters": 3}, "`ns_iters` cannot be used with alexnet: it has no matrix square root"),
])
def test_sqrt_options_are_refused_like_gap(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_model("alexnet", **kwargs)
    gap_message = message.replace("alexnet", "resnet18-gap")
    with pytest.raises(ConfigError, match=re.escape(gap_message)):
        load_model("resnet18-gap", **kwargs)


def test_create_model_refuses_gcp_options():
    with pytest.raises(ConfigError, match="`reduction_dim` applies to covariance"):
        meta_alexnet(reduction_dim=128)
    with pytest.raises(ConfigError, match="`sqrt` cannot be used with AlexNet"):
        meta_alexnet(sqrt="svd")
    with pytest.raises(ConfigError, match="`num_classes` should be a positive integer. Got 0"):
        meta_alexnet(num_classes=0)
    with torch.device("meta"), pytest.raises(ConfigError, match="head 'fc' has no pooling module"):
        build_resnet("basic", (1, 1, 1, 1), head="fc")  # AlexNet's head type is not a pool


# ------------------------------------------------------------------- checkpoints


def test_bare_torchvision_file_loads_strictly_with_equal_outputs(loaded, bare_file, x, expected):
    assert not loaded.training and loaded.name == "alexnet"
    assert loaded.num_classes == CLASSES  # read from classifier.6.weight
    assert loaded.checkpoint_sha256 == hashlib.sha256(bare_file.read_bytes()).hexdigest()
    out = outputs(loaded, x)
    assert torch.equal(out, expected)
    assert out.shape == (2, CLASSES) and torch.isfinite(out).all()


def test_module_prefixed_state_dict_file_loads(prefixed_file, x, expected):
    assert torch.equal(outputs(load_model("alexnet", prefixed_file), x), expected)


def test_features_only_dataparallel_keys_are_recognized(theirs):
    # torchvision's old ImageNet script wrapped only AlexNet's `features` in DataParallel;
    # checked on the state dict in memory (the file layer is the same as above)
    state = theirs.state_dict()
    inner, route = select_state_dict(features_wrapped(state))
    assert route == ["model"] and "features.module.0.weight" in inner
    tensors, stripped = strip_wrappers(inner)
    assert stripped == ["module."] and list(tensors) == list(state)
    layout = detect_layout(tensors)
    assert layout.name == "torchvision-alexnet" and remap(tensors, layout).keys() == state.keys()


def test_inspect_recognizes_alexnet(bare_file, prefixed_file, theirs):
    info = inspect_checkpoint(bare_file)
    assert (info.layout, info.arch, info.also_fits, info.head, info.depth) == \
           ("torchvision-alexnet", "alexnet", [], "fc", None)
    assert "torchvision AlexNet" in info.layout_description
    assert (info.num_classes, info.reduction_dim, info.container) == \
           (CLASSES, None, "bare state dict")
    assert info.num_params == sum(p.numel() for p in theirs.parameters())
    assert not (info.missing or info.unexpected or info.mismatched)
    info = inspect_checkpoint(prefixed_file)
    assert (info.layout, info.arch, info.container, info.stripped, info.metadata) == \
           ("torchvision-alexnet", "alexnet", "['state_dict']", ["module."], {"epoch": 90})


def check_error(path, name):
    with pytest.raises(CheckpointError) as error:
        load_model(name, path)
    return str(error.value)


def test_resnet_file_as_alexnet_names_the_right_model(resnet_file):
    message = check_error(resnet_file, "alexnet")
    assert message.startswith(f"'{resnet_file}' does not fit alexnet.")
    assert "detected: layout 'torchvision' (torchvision ResNet names" in message
    assert "16 missing keys (first: features.0.weight" in message
    assert f"It fits 'resnet18-gap' ({CLASSES} classes): use --model resnet18-gap." in message


@pytest.mark.parametrize("name", ["resnet18-gap", "resnet50-isqrt"])
def test_alexnet_file_as_resnet_names_alexnet(bare_file, name):
    message = check_error(bare_file, name)
    assert message.startswith(f"'{bare_file}' does not fit {name}.")
    assert "detected: layout 'torchvision-alexnet' (torchvision AlexNet names" in message
    assert "16 unexpected keys (first: features.0.weight" in message
    assert f"It fits 'alexnet' ({CLASSES} classes): use --model alexnet." in message
    assert "--sqrt" not in message


def test_edited_alexnet_weights_are_not_loaded_loosely(theirs):
    state = dict(theirs.state_dict())
    state["classifier.1.weight"] = torch.zeros(4096, 16)  # e.g. trained at another input size
    edited = StateDict(state, Path("edited.pth"), None, detect_layout(state), [], [], {})
    model = create_model("alexnet", num_classes=CLASSES)
    with pytest.raises(CheckpointError) as error:
        load_strict(model, edited)
    message = str(error.value)
    assert ("1 shape mismatch (first: classifier.1.weight: checkpoint [4096, 16] vs model "
            "[4096, 9216])") in message
    assert "No registered model fits it; the closest is 'alexnet'" in message
