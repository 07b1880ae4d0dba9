"""Checkpoint files in every published layout, and the errors a user can act on.

Each test writes a random-weight checkpoint with the exact key names of a
published layout (PROTOCOL.md section 3), loads it through
``load_model(name, checkpoint=path)`` and compares the outputs with the same
weights loaded directly. The layout converters below are written from the
protocol, independently of the loader's renaming tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import pickle
import re
import sys
import types
import warnings

import numpy as np
import pytest
import torch
import torchvision

from robustbench_gcp.errors import CheckpointError, ConfigError
from robustbench_gcp.models import create_model, inspect_checkpoint, load_model
from robustbench_gcp.models.checkpoint import UnknownLayoutError

D, CLASSES = 32, 10  # small d and classes keep files small; the names are the real ones


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def reference(name, **kwargs):
    """A random-weight model with non-trivial BN statistics."""
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.num_batches_tracked.fill_(1234)
    return model.eval()


@pytest.fixture(scope="module")
def isqrt18():
    return reference("resnet18-isqrt", num_classes=CLASSES, reduction_dim=D)


@pytest.fixture(scope="module")
def dropcov18():
    return reference("resnet18-dropcov", num_classes=CLASSES, reduction_dim=D)


@pytest.fixture(scope="module")
def torchvision18():
    torch.manual_seed(1)
    return torchvision.models.resnet18(weights=None, num_classes=CLASSES).eval()


def outputs(model, x):
    with torch.no_grad():
        return model(x)


# ------------------------------------------------- layouts, written from PROTOCOL.md


def zoo_layout(state):
    """fast-MPN-COV model zoo / CVPR2020 GCP / DropCov names (before any module. prefix)."""
    out = {}
    for key, value in state.items():
        key = key.replace("global_pool.reduce.", "layer_reduce.")
        key = key.replace("global_pool.bn.", "layer_reduce_bn.")
        key = key.replace("global_pool.eca.", "eca_layer.")
        out[key] = value.clone()
    return out


def training_layout(state):
    """fast-MPN-COV training file names: features.module.N, representation, classifier."""
    stem = {"conv1.": "features.module.0.", "bn1.": "features.module.1.",
            "layer1.": "features.module.4.", "layer2.": "features.module.5.",
            "layer3.": "features.module.6.", "layer4.": "features.module.7.",
            "global_pool.reduce.": "representation.conv_dr_block.0.",
            "global_pool.bn.": "representation.conv_dr_block.1.", "fc.": "classifier."}
    out = {}
    for key, value in state.items():
        prefix = next(p for p in stem if key.startswith(p))
        out[stem[prefix] + key[len(prefix):]] = value.clone()
    return out


def training_file(state, arch):
    return {"epoch": 65, "arch": arch, "state_dict": state, "best_prec1": torch.tensor(77.3),
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "momentum": 0.9,
                                                         "params": [0, 1, 2]}]}}


def prefixed(state, prefix):
    return {prefix + k: v for k, v in state.items()}


def save(obj, path, legacy=False):
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


# -------------------------------------------------------------- layouts that load


def test_layout_names_are_the_published_ones(isqrt18, dropcov18):
    zoo = zoo_layout(dropcov18.state_dict())
    assert zoo["layer_reduce.weight"].shape == (D, 512, 1, 1)
    assert zoo["layer_reduce_bn.running_var"].shape == (D,)
    assert zoo["eca_layer.conv.weight"].shape == (1, 1, 3)
    assert zoo["fc.weight"].shape == (CLASSES, D * (D + 1) // 2)
    train = training_layout(isqrt18.state_dict())
    assert train["features.module.0.weight"].shape == (64, 3, 7, 7)
    assert train["features.module.7.1.bn2.bias"].shape == (512,)
    assert train["representation.conv_dr_block.0.weight"].shape == (D, 512, 1, 1)
    assert train["classifier.weight"].shape == (CLASSES, D * (D + 1) // 2)


def test_torchvision_file(tmp_path, torchvision18, x):
    path = save(torchvision18.state_dict(), tmp_path / "resnet18-f37072fd.pth")
    model = load_model("resnet18-gap", checkpoint=path)
    assert not model.training and model.num_classes == CLASSES
    assert torch.equal(outputs(model, x), outputs(torchvision18, x))
    assert model.checkpoint_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_old_torchvision_file_without_num_batches_tracked(tmp_path, torchvision18, x):
    state = {k: v for k, v in torchvision18.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    path = save(state, tmp_path / "resnet18-5c106cde.pth", legacy=True)
    assert torch.equal(outputs(load_model("resnet18-gap", path), x), outputs(torchvision18, x))


@pytest.mark.parametrize("legacy", [False, True])
def test_fast_mpn_cov_model_zoo_file(tmp_path, isqrt18, x, legacy):
    path = save(zoo_layout(isqrt18.state_dict()), tmp_path / "mpncovresnet18.pth", legacy)
    model = load_model("resnet18-isqrt", checkpoint=path)
    assert model.reduction_dim == D and model.num_classes == CLASSES
    assert torch.equal(outputs(model, x), outputs(isqrt18, x))


@pytest.mark.parametrize("legacy", [False, True])
def test_fast_mpn_cov_training_file_gcp(tmp_path, isqrt18, x, legacy):
    obj = training_file(training_layout(isqrt18.state_dict()), "mpncovresnet18")
    path = save(obj, tmp_path / "model_best.pth.tar", legacy)
    assert torch.equal(outputs(load_model("resnet18-isqrt", path), x), outputs(isqrt18, x))


def test_fast_mpn_cov_training_file_finetuned_from_the_model_zoo(tmp_path, isqrt18, x):
    # base.py, arch mpncovresnet*, pretrained: features = children[:-1] of MPNCOVResNet, so
    # layer_reduce and layer_reduce_bn are features.8 and features.9; no representation params
    state = {}
    for key, value in training_layout(isqrt18.state_dict()).items():
        key = key.replace("representation.conv_dr_block.0.", "features.module.8.")
        state[key.replace("representation.conv_dr_block.1.", "features.module.9.")] = value
    path = save(training_file(state, "mpncovresnet18"), tmp_path / "finetuned.pth.tar")
    assert torch.equal(outputs(load_model("resnet18-isqrt", path), x), outputs(isqrt18, x))


def test_fast_mpn_cov_training_file_gap(tmp_path, torchvision18, x):
    obj = training_file(training_layout(torchvision18.state_dict()), "resnet18")
    assert obj["state_dict"]["classifier.weight"].shape == (CLASSES, 512)
    path = save(obj, tmp_path / "checkpoint.pth.tar")
    assert torch.equal(outputs(load_model("resnet18-gap", path), x), outputs(torchvision18, x))


def test_a_published_layout_given_to_a_torchvision_model_names_the_registered_model_it_fits(tmp_path,
                                                                                           torchvision18):
    """helper-251: read under the module's own names, a fast-MPN-COV training file fitted nothing: 102
    missing and 122 unexpected keys, and no word of resnet18-gap, which it fits."""
    path = save(training_file(training_layout(torchvision18.state_dict()), "resnet18"), tmp_path / "t.pth")
    from robustbench_gcp.models.external import external_source, load_external

    with pytest.raises(CheckpointError) as failed:
        load_external(external_source("torchvision:resnet18"), "torchvision:resnet18", path)
    assert failed.value.fit is not None and failed.value.fit.model == "resnet18-gap", str(failed.value)
    assert "use --model resnet18-gap" in str(failed.value), str(failed.value)


@pytest.mark.parametrize("arch, stride", [("resnet18", 2), ("mpncovresnet18", 1), ("other", 2)])
def test_a_training_files_arch_sets_the_last_stride(tmp_path, isqrt18, x, arch, stride):
    """fast-MPN-COV's Basemodel on torchvision's resnet* keeps layer4 at stride 2 (7x7 features), with
    the same keys as mpncovresnet*, which drops it: the file's arch says which network it is."""
    path = save(training_file(training_layout(isqrt18.state_dict()), arch), tmp_path / "t.pth.tar")
    model = load_model("resnet18-isqrt", path)
    assert model.strides[-1] == stride and model.layer4[0].conv1.stride == (stride, stride)
    torch.manual_seed(0)
    built = create_model("resnet18-isqrt", num_classes=CLASSES, reduction_dim=D, last_stride=stride)
    built.load_state_dict(isqrt18.state_dict())
    assert torch.equal(outputs(model, x), outputs(built.eval(), x))
    assert torch.equal(outputs(model, x), outputs(isqrt18, x)) == (stride == 1)
    info = inspect_checkpoint(path)
    assert (info.last_stride, info.last_stride_told) == (stride, "depth" if arch == "other" else "arch")
    # an arch that does not say (and none, below): at 18 only resnet18 has these keys, which is said;
    # an arch that tells another stride than the registered model's is said too (helper-251)
    note = model.stride_note
    assert (note == "") == (arch == "mpncovresnet18") and info.stride_note.startswith(note)
    if arch == "resnet18":
        assert note == (f"{path} names `arch` 'resnet18': layer4 is built at stride 2 (7x7 features at 224 "
                        "px), as fast-MPN-COV's training code builds it; resnet18-isqrt's published network "
                        "has stride 1")
    elif note:
        assert note == (f"{path} names `arch` 'other', which does not say: layer4 is built at stride 2 "
                        "(7x7 features at 224 px), as fast-MPN-COV's training code builds resnet18, its "
                        "only ResNet-18 with these keys (it has no mpncovresnet18); resnet18-isqrt's "
                        "published network has stride 1")


@pytest.mark.parametrize("name", ["resnet18-isqrt", "resnet18-gap", "resnet18-svdpade"])
def test_a_bare_training_file_of_a_resnet_18_is_torchvisions_resnet18(tmp_path, name):
    """A bare state dict of fast-MPN-COV's training code (DifferentiableSVD's README saves one) names no
    arch, and its keys are the same at stride 1 and 2; but that code has no mpncovresnet18: a
    ResNet-18 of its files is resnet18, at stride 2 (resnet18-isqrt's was built at 1, its logits other)."""
    torch.manual_seed(0)
    sizes = {} if name.endswith("gap") else {"reduction_dim": D}
    reference = create_model(name, num_classes=CLASSES, last_stride=2, **sizes).eval()
    state = training_layout(reference.state_dict())
    path = save(state, tmp_path / "bare.pth")
    model, info = load_model(name, path), inspect_checkpoint(path)
    assert model.strides[-1] == info.last_stride == 2
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(outputs(model, x), outputs(reference, x))
    if name.endswith("gap"):  # the registered model's stride: nothing to say
        assert model.stride_note == info.stride_note == "" and info.last_stride_told == "depth"
        return
    if name.endswith("svdpade"):  # inspect describes the file as its iSQRT twin first
        assert model.stride_note == "" and info.arch == "resnet18-isqrt" and info.stride_note.endswith(
            "(as resnet18-svdpade, which they fit too, it is built at stride 2, DifferentiableSVD's)")
        return
    assert model.stride_note == (
        f"{path} names no `arch`: layer4 is built at stride 2 (7x7 features at 224 px), as fast-MPN-COV's "
        "training code builds resnet18, its only ResNet-18 with these keys (it has no mpncovresnet18); "
        "resnet18-isqrt's published network has stride 1")
    assert info.stride_note == model.stride_note + (
        " (as resnet18-svdpade, which they fit too, it is built at stride 2, DifferentiableSVD's)")
    # a features.8 (layer_reduce kept there by a model-zoo fine-tuning): no file of that code at 18
    # (no mpncovresnet18): the registered model's stride, unsaid
    zoo = {k.replace("representation.conv_dr_block.0.", "features.module.8.")
           .replace("representation.conv_dr_block.1.", "features.module.9."): v for k, v in state.items()}
    fine_tuned = load_model(name, save(zoo, tmp_path / "zoo.pth"))
    assert fine_tuned.strides[-1] == 1 and fine_tuned.stride_note == ""


@pytest.mark.parametrize("name, arch, stride", [
    ("resnet50-isqrt", None, None), ("resnet101-isqrt", None, None), ("resnet50-gap", None, None),
    ("resnet34-isqrt", None, 2), ("resnet34-gap", None, 2), ("resnet50-isqrt", "resnet50", 2),
    ("resnet50-gap", "mpncovresnet50", 1), ("resnet50-svdpade", None, None), ("resnet50-isqrt", "x", None),
    # MPN-COV's reduction has a bias, which fast-MPN-COV's has not: no file of that code is one
    ("resnet34-mpncov", None, None), ("resnet101-mpncov", None, None), ("resnet50-mpncov", "resnet50", 2),
])
def test_what_tells_the_layer4_stride_of_a_training_file(name, arch, stride):
    """At the depths of fast-MPN-COV's mpncovresnet (50, 101) a bare file leaves the stride open, and
    the note names the other arch; at the others only resnet* has these keys (on the meta device:
    the keys alone decide)."""
    from pathlib import Path

    from robustbench_gcp.models.checkpoint import LAYOUTS, StateDict
    from robustbench_gcp.models.factory import model_info
    from robustbench_gcp.models.loading import layer4_stride_told, stored_last_stride, unstated_stride_note

    with torch.device("meta"):
        keys = tuple(training_layout(create_model(name).state_dict()))
    layout = next(layout for layout in LAYOUTS if layout.name == "fast-mpn-cov-training")
    loaded = StateDict({}, Path("f.pth"), None, layout, [], [], {} if arch is None else {"arch": arch},
                       layout_keys=keys)
    info = model_info(name)
    assert stored_last_stride(loaded, info) == stride
    if name == "resnet50-isqrt" and arch is None:  # fine-tuned from the zoo: mpncovresnet50's stride, unsaid
        zoo = tuple(k.replace("representation.conv_dr_block.", "features.8.") for k in keys)
        fine_tuned = dataclasses.replace(loaded, layout_keys=zoo)
        assert layer4_stride_told(fine_tuned, info) == (1, "zoo")
        assert unstated_stride_note("f.pth", fine_tuned, info) == ""
    note = unstated_stride_note("f.pth", loaded, info)
    if arch in ("resnet50", "mpncovresnet50"):  # told by the arch, another stride than the model's: said
        assert note == (f"f.pth names `arch` {arch!r}: layer4 is built at stride {stride} ({14 // stride}x"
                        f"{14 // stride} features at 224 px), as fast-MPN-COV's training code builds it; "
                        f"{name}'s published network has stride {3 - stride}"), note
        return
    if stride == 2 and arch is None and name.endswith("isqrt"):  # told by the depth, not the model's own
        assert note.startswith("f.pth names no `arch`: layer4 is built at stride 2")
        assert "its only ResNet-34 with these keys" in note
        return
    if stride is not None or name.endswith(("svdpade", "mpncov")):
        assert note == ""
        return
    other, other_stride = ("resnet", 2) if name.endswith(("isqrt", "mpncov")) else ("mpncovresnet", 1)
    assert f"`arch` {other}{info.depth} at stride {other_stride}: if it was trained so" in note
    assert note.startswith("f.pth names no `arch`" if arch is None else
                           "f.pth names `arch` 'x', which does not say")


def test_inspect_checkpoint_names_a_path_of_the_wrong_type():
    with pytest.raises(TypeError, match=r"^`path` should be a checkpoint file's path \(str or Path\)\. Got "
                                        "NoneType$"):
        inspect_checkpoint(None)


def test_training_file_with_numpy_scalars_and_argparse_namespace(tmp_path, isqrt18, x):
    obj = training_file(training_layout(isqrt18.state_dict()), "mpncovresnet18")
    obj["best_prec1"] = np.float64(77.3)
    obj["args"] = argparse.Namespace(lr=0.1, arch="mpncovresnet18")
    path = save(obj, tmp_path / "model_best.pth.tar")
    assert torch.equal(outputs(load_model("resnet18-isqrt", path), x), outputs(isqrt18, x))
    obj["args"] = types.SimpleNamespace(lr=0.1)  # another script's settings, data too
    path = save(obj, tmp_path / "simple.pth.tar")
    assert torch.equal(outputs(load_model("resnet18-isqrt", path), x), outputs(isqrt18, x))


def test_a_state_dict_of_numpy_arrays_loads(tmp_path, isqrt18, x):
    """Weights saved from tensor.numpy() (or converted from another framework) are a state dict;
    a stray NumPy scalar beside them is still named as not a tensor."""
    arrays = {k: v.numpy() for k, v in zoo_layout(isqrt18.state_dict()).items()}
    path = save(training_file(arrays, "mpncovresnet18"), tmp_path / "arrays.pth.tar")
    assert torch.equal(outputs(load_model("resnet18-isqrt", path), x), outputs(isqrt18, x))
    path = save({**arrays, "epoch": np.int64(65)}, tmp_path / "stray.pth")
    with pytest.raises(CheckpointError, match=r"also holds 'epoch' \(int64\), not tensors"):
        load_model("resnet18-isqrt", path)


def test_cvpr2020_gcp_file(tmp_path, isqrt18, x):
    obj = {"state_dict": prefixed(zoo_layout(isqrt18.state_dict()), "module.")}
    assert "module.layer_reduce_bn.weight" in obj["state_dict"]
    path = save(obj, tmp_path / "ResNet18_GCP.pth.tar")
    assert torch.equal(outputs(load_model("resnet18-isqrt", path), x), outputs(isqrt18, x))


def test_two_keys_of_one_tensor_are_refused(tmp_path, isqrt18):
    """fc.weight beside module.fc.weight (zeros): the later replaced the earlier, silently (a 0 %
    error model read as 90 %); the same for a layout's old name beside the project's."""
    state = zoo_layout(isqrt18.state_dict())
    both = {**state, **{f"module.{k}": torch.zeros_like(v) for k, v in state.items() if k.startswith("fc.")}}
    path = save(both, tmp_path / "both.pth")
    message = (f"'{path}': keys 'fc.weight' and 'module.fc.weight' both become 'fc.weight' once the "
               "`module.` prefix is dropped (and 1 more such name): the file holds two weights for one "
               "tensor; keep one set of keys")
    for read in (lambda: load_model("resnet18-isqrt", path), lambda: inspect_checkpoint(path)):
        with pytest.raises(CheckpointError) as caught:
            read()
        assert str(caught.value) == message
    renamed = {**state, "global_pool.reduce.weight": state["layer_reduce.weight"].clone()}
    with pytest.raises(CheckpointError, match=r"keys 'layer_reduce.weight' and 'global_pool.reduce.weight' "
                       r"both become 'global_pool.reduce.weight' once renamed from the \S+ layout: "):
        load_model("resnet18-isqrt", save(renamed, tmp_path / "renamed.pth"))
    # one set of keys, under the wrapper or not, loads as before
    assert load_model("resnet18-isqrt", save(prefixed(state, "module."), tmp_path / "wrapped.pth"))


def test_another_network_with_the_names_of_a_layout_is_told_apart(tmp_path):
    """fast-MPN-COV's MPN-COV VGG-16 (mpncovvgg.py): features.N of its backbone run past 9, so that
    features.8 is a layer of VGG (a BatchNorm), not the model zoo's layer_reduce; it was refused as a
    file holding "two weights for one tensor", and inspect could not describe it."""
    layers = [torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.MaxPool2d(2)] * 3
    features = torch.nn.Sequential(*layers[:11])  # conv, bn, relu, pool, ... up to features.10 (a conv)
    state = {f"features.module.{k}": v for k, v in features.state_dict().items()}
    state.update({"representation.conv_dr_block.0.weight": torch.zeros(8, 4, 1, 1),
                  "representation.conv_dr_block.1.weight": torch.ones(8),
                  "classifier.0.weight": torch.zeros(16, 36), "classifier.6.weight": torch.zeros(10, 16)})
    path = save(state, tmp_path / "mpncovvgg16_bn.pth")
    with pytest.raises(UnknownLayoutError) as caught:
        load_model("resnet50-isqrt", path)
    assert str(caught.value).startswith(
        f"'{path}': keys 'features.8.weight' and 'representation.conv_dr_block.0.weight' would both be "
        "'global_pool.reduce.weight' in the fast-mpn-cov-training layout (fast-MPN-COV training file: ")
    assert str(caught.value).endswith("no registered model is (a model you bring: --model "
                                      "package.module:callable --checkpoint FILE loads it by its own names)")
    info = inspect_checkpoint(path)  # described by its own names, as a model you bring
    assert (info.layout, info.arch, info.stripped) == ("as-saved", None, ["module."])
    assert info.num_tensors == len(state)


def test_dropcov_file(tmp_path, dropcov18, x):
    state = prefixed(zoo_layout(dropcov18.state_dict()), "module.")
    assert state["module.eca_layer.conv.weight"].shape == (1, 1, 3)
    path = save({"state_dict": state, "epoch": 100, "best_acc1": torch.tensor(73.4)},
                tmp_path / "resnet18_ACD.pth.tar")
    model = load_model("resnet18-dropcov", path)
    assert torch.equal(outputs(model, x), outputs(dropcov18, x))
    assert torch.equal(model.global_pool.eca.conv.weight, dropcov18.global_pool.eca.conv.weight)


@pytest.mark.parametrize("name", ["resnet18-isqrt", "resnet18-dropcov", "resnet18-mpncov",
                                  "resnet18-svdpade", "resnet18-gap"])
def test_project_files(tmp_path, x, name):
    kwargs = {"num_classes": CLASSES} | ({} if name.endswith("gap") else {"reduction_dim": D})
    ref = reference(name, **kwargs)
    path = save(ref.state_dict(), tmp_path / "own.pth")
    assert torch.equal(outputs(load_model(name, path), x), outputs(ref, x))


@pytest.mark.parametrize("wrap", [
    lambda s: prefixed(s, "_orig_mod."),
    lambda s: prefixed(prefixed(s, "_orig_mod."), "module."),
    lambda s: {"model": s, "epoch": 3},
    lambda s: {"state_dict_ema": s, "epoch": 3},
    lambda s: {"model": prefixed(s, "module._orig_mod."), "optimizer": {}},
    lambda s: {"model_state_dict": s, "optimizer_state_dict": {}, "epoch": 3},  # PyTorch's tutorial
    lambda s: {"net": prefixed(s, "module."), "acc": 76.1, "epoch": 90},  # kuangliu's pytorch-cifar
], ids=["orig_mod", "module_orig_mod", "model", "state_dict_ema", "model_nested_prefixes",
        "model_state_dict", "net"])
def test_wrappers_and_inner_dicts(tmp_path, isqrt18, x, wrap):
    path = save(wrap(isqrt18.state_dict()), tmp_path / "wrapped.pth")
    assert torch.equal(outputs(load_model("resnet18-isqrt", path), x), outputs(isqrt18, x))


def test_full_size_cvpr2020_file_reads_d_and_classes(tmp_path, x):
    ref = reference("resnet18-isqrt")  # d = 256, 1000 classes: the published shapes
    state = prefixed(zoo_layout(ref.state_dict()), "module.")
    assert state["module.layer_reduce.weight"].shape == (256, 512, 1, 1)
    assert state["module.fc.weight"].shape == (1000, 32896)
    path = save({"state_dict": state}, tmp_path / "r18_gcp.pth.tar")
    model = load_model("resnet18-isqrt", path)
    assert (model.reduction_dim, model.num_classes) == (256, 1000)
    assert torch.equal(outputs(model, x), outputs(ref, x))


def test_sqrt_override_on_a_loaded_checkpoint(tmp_path, isqrt18, x):
    path = save(zoo_layout(isqrt18.state_dict()), tmp_path / "zoo.pth")
    default = outputs(load_model("resnet18-isqrt", path), x)
    five = outputs(load_model("resnet18-isqrt", path, sqrt="newton-schulz", ns_iters=5), x)
    exact = outputs(load_model("resnet18-isqrt", path, sqrt="eig"), x)
    assert torch.equal(default, five)
    assert not torch.allclose(default, exact)
    # in the tool's own names the same weights fit svdpade: the exact root, at torchvision's layer4
    # stride (the published SVD-Pade network's); float32 eigh vs float64 SVD: small eigenvalues differ
    strided = create_model("resnet18-isqrt", num_classes=CLASSES, reduction_dim=D, sqrt="eig",
                           last_stride=2)
    strided.load_state_dict(isqrt18.state_dict())
    own = save(isqrt18.state_dict(), tmp_path / "own.pth")
    torch.testing.assert_close(outputs(load_model("resnet18-svdpade", own), x),
                               outputs(strided.eval(), x), atol=2e-3, rtol=1e-3)
    # a model-zoo file is never SVD-Pade's (DifferentiableSVD saved features.N files): it ran as one
    with pytest.raises(CheckpointError) as error:
        load_model("resnet18-svdpade", path)
    assert str(error.value).startswith(f"'{path}' has resnet18-svdpade's keys, but no svdpade model was "
                                       "published in its layout ('layer-reduce': "), error.value
    assert str(error.value).endswith(f"It fits 'resnet18-isqrt' (d={D}, {CLASSES} classes): use --model "
                                     "resnet18-isqrt --sqrt svd to evaluate it with the svd square root.")


def test_sha256_check(tmp_path, isqrt18):
    path = save(zoo_layout(isqrt18.state_dict()), tmp_path / "zoo.pth")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_model("resnet18-isqrt", path, sha256=digest.upper()).checkpoint_sha256 == digest
    load_model("resnet18-isqrt", path, sha256=digest[:8])  # torchvision-style prefix
    wrong = "0" * 64
    with pytest.raises(CheckpointError) as error:
        load_model("resnet18-isqrt", path, sha256=wrong)
    assert f"expected {wrong}, got {digest}" in str(error.value)
    assert str(error.value).startswith("sha256 mismatch for")
    with pytest.raises(ConfigError, match="`sha256` \\(--sha256\\) should be 8 to 64 hexadecimal digits"):
        load_model("resnet18-isqrt", path, sha256="not-a-hash")


# -------------------------------------------------------------------- inspection


def test_inspect_zoo_file(tmp_path, isqrt18):
    path = save(zoo_layout(isqrt18.state_dict()), tmp_path / "zoo.pth")
    info = inspect_checkpoint(path)
    assert info.layout == "layer-reduce" and info.container == "bare state dict"
    assert (info.arch, info.also_fits, info.head, info.depth) == \
           ("resnet18-isqrt", [], "isqrt", 18)  # its svdpade twin: no such file has this layout
    assert (info.reduction_dim, info.num_classes) == (D, CLASSES)
    assert info.num_params == sum(p.numel() for p in isqrt18.parameters())
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not (info.missing or info.unexpected or info.mismatched)


def test_stored_scalars_are_the_shortest_decimals_of_their_own_type():
    from robustbench_gcp.models.checkpoint import _scalars

    found = _scalars({"t32": torch.tensor(71.2), "t16": torch.tensor(71.2, dtype=torch.float16),
                      "t64": torch.tensor(71.19999694824219, dtype=torch.float64),
                      "bf16": torch.tensor(0.1, dtype=torch.bfloat16), "int": torch.tensor(3),
                      "nan": torch.tensor(float("nan")), "np32": np.float32(0.3), "np16": np.float16(71.2),
                      "np64": np.float64(0.30000001192092896), "arr": np.array([np.float32(0.3)])})
    assert found.pop("nan") != found.get("nan", 0)  # NaN, kept
    assert found == {"t32": 71.2, "t16": 71.2, "t64": 71.19999694824219, "bf16": 0.100097656,
                     "int": 3, "np32": 0.3, "np16": 71.2, "np64": 0.30000001192092896, "arr": 0.3}
    # each is the same number in its own type
    assert torch.tensor(found["t32"]).item() == torch.tensor(71.2).item()
    assert float(np.float32(found["bf16"])) == torch.tensor(0.1, dtype=torch.bfloat16).item()


def test_inspect_training_and_dropcov_and_torchvision_files(tmp_path, isqrt18, dropcov18,
                                                              torchvision18):
    obj = training_file(training_layout(isqrt18.state_dict()), "mpncovresnet18")
    info = inspect_checkpoint(save(obj, tmp_path / "t.pth.tar"))
    assert (info.layout, info.container, info.stripped, info.arch) == \
           ("fast-mpn-cov-training", "['state_dict']", ["module."], "resnet18-isqrt")
    # exactly 77.3: the float32 tensor's own shortest decimal (inspect showed 77.30000305175781)
    assert info.metadata == {"epoch": 65, "arch": "mpncovresnet18", "best_prec1": 77.3}
    obj = {"state_dict": prefixed(zoo_layout(dropcov18.state_dict()), "module.")}
    assert inspect_checkpoint(save(obj, tmp_path / "d.pth")).arch == "resnet18-dropcov"
    info = inspect_checkpoint(save(torchvision18.state_dict(), tmp_path / "tv.pth"))
    assert (info.layout, info.arch, info.reduction_dim) == ("torchvision", "resnet18-gap", None)


def test_compare_says_which_model_a_folders_file_that_several_fit_was_compared_as(tmp_path, isqrt18,
                                                                                 torchvision18, image_folder):
    """A fast-MPN-COV training file fits iSQRT-COV and SVD-Pade alike (the same keys): `compare
    --checkpoints` took the first without a word, so an SVD-Pade file ran Newton-Schulz's root."""
    from robustbench_gcp.config import load_config
    from robustbench_gcp.pipeline.compare_models import plan_comparison

    folder = tmp_path / "runs"
    folder.mkdir()
    path = save(training_file(training_layout(isqrt18.state_dict()), "resnet18"), folder / "svd.pth.tar")
    save(torchvision18.state_dict(), folder / "plain.pth")  # one model fits
    plans = plan_comparison(load_config(), checkpoints_dir=str(folder), suites=["clean"],
                            data=str(image_folder), class_order="sorted", store=str(tmp_path / "s.db"))
    notes = {p.options.label: p.notes for p in plans}
    assert notes["plain"] == ()
    # (its arch, resnet18, states the stride: both are built at it, so they differ in the rest only)
    assert notes["svd"] == (f"{path} fits resnet18-isqrt and resnet18-svdpade alike (the same keys; their "
                            "matrix square roots differ, and SVD-Pade's centring): compared as "
                            f"resnet18-isqrt; for another, give --model resnet18-svdpade={path}",)
    assert not (tmp_path / "s.db").exists()  # planned, nothing run
    # another root for it: its label says what it runs, and the note stays with the file's own root
    plans = plan_comparison(load_config(), checkpoints_dir=str(folder), suites=["clean"],
                            sqrts=("newton-schulz", "eig"),
                            data=str(image_folder), class_order="sorted", store=str(tmp_path / "s.db"))
    assert {p.options.label: bool(p.notes) for p in plans} == {"plain": False, "svd": True,
                                                               "svd[sqrt=eig]": False}


def test_inspect_describes_a_file_of_a_model_you_bring(tmp_path):
    """Keys of no published layout: described as saved (hash, sizes), no registry model to match."""
    state = {"body.0.weight": torch.zeros(4, 3, 3, 3), "head.weight": torch.zeros(10, 4),
             "head.bias": torch.zeros(10)}
    path = save(state, tmp_path / "mine.pt")
    info = inspect_checkpoint(path)
    assert (info.layout, info.arch, info.closest, info.num_tensors, info.num_params) == \
           ("as-saved", None, None, 3, 158)
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(CheckpointError, match="unrecognized state-dict layout"):
        load_model("resnet18-gap", path)  # a registry model still refuses it


def test_inspect_reports_the_closest_model_when_none_fits(tmp_path, torchvision18):
    state = torchvision18.state_dict()
    state["layer4.1.extra.weight"] = torch.zeros(3)
    info = inspect_checkpoint(save(state, tmp_path / "odd.pth"))
    assert info.arch is None and info.closest == "resnet18-gap"
    assert info.unexpected == ["layer4.1.extra.weight"]


# ------------------------------------------------------------------------- errors


def check_error(path, match, name="resnet18-isqrt"):
    with pytest.raises(CheckpointError) as error:
        load_model(name, checkpoint=path)
    message = str(error.value)
    assert re.search(match, message), message
    return message


def test_error_html_page(tmp_path):
    path = tmp_path / "r50_gcp.pth"
    path.write_text("<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning"
                    "</title></head><body>Google Drive can't scan this file</body></html>")
    message = check_error(path, "is an HTML page titled 'Google Drive - Virus scan warning', "
                                "not a checkpoint: the download failed")
    assert "Google Drive" in message and "Download the file again" in message


@pytest.mark.parametrize("legacy", [False, True])
def test_error_truncated_file(tmp_path, isqrt18, legacy):
    full = save(zoo_layout(isqrt18.state_dict()), tmp_path / "full.pth", legacy).read_bytes()
    for fraction in (0.001, 0.5, 0.999):
        path = tmp_path / f"cut{fraction}.pth"
        path.write_bytes(full[:int(len(full) * fraction)])
        check_error(path, r"is truncated or corrupted \([\d,]+ bytes; .*\)\. Download it again")


def test_a_damaged_legacy_or_zip_pickle_is_a_truncated_file_at_every_cut(tmp_path):
    """The weights-only unpickler raises IndexError, struct.error or UnicodeDecodeError on a legacy
    (PyTorch < 1.6) stream cut or overwritten in its pickle part, as the model-zoo files are:
    tracebacks, before. A zip whose data.pkl is damaged was "a Python pickle but not a PyTorch
    checkpoint"."""
    from robustbench_gcp.models.checkpoint import read_checkpoint

    weights = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).state_dict()
    legacy = save(weights, tmp_path / "legacy.pth", True).read_bytes()
    path = tmp_path / "damaged.pth"
    damaged = [legacy[:cut] for cut in range(1, len(legacy) - 1, 3)]
    damaged += [legacy[:at] + bytes(range(200, 240)) + legacy[at + 40:] for at in range(0, 900, 37)]
    for data in damaged:
        path.write_bytes(data)
        try:
            read_checkpoint(path)
        except CheckpointError as error:
            assert any(said in str(error) for said in ("truncated or corrupted", "not a PyTorch checkpoint",
                                                        "pickle protocol 4 or 5 (opcode"))
    # a digit of a storage key in the list after the pickle: the storage not found (AssertionError);
    # a byte of the pickle read as another object where a tensor stands (AttributeError)
    # (a key is a storage's address: a pickled string of as many digits as it has)
    keys = [m for m in re.finditer(rb"X([\x01-\x20])\x00\x00\x00(\d+)", legacy) if len(m[2]) == m[1][0]]
    key = keys[-1].start(2) + 1
    digit = b"1" if legacy[key:key + 1] != b"1" else b"2"
    flips = (legacy[:at] + bytes([value]) + legacy[at + 1:] for at in range(40, 400) for value in (0, 255))
    for data in [legacy[:key] + digit + legacy[key + 1:], *flips]:
        path.write_bytes(data)
        try:
            read_checkpoint(path)
        except CheckpointError:
            pass
    path.write_bytes(legacy[:key] + digit + legacy[key + 1:])
    check_error(path, r"is truncated or corrupted \([\d,]+ bytes; AssertionError: storage key ")
    archive = save(weights, tmp_path / "zip.pth", False).read_bytes()
    start = archive.index(b"data.pkl") + 40  # inside the stored pickle
    path.write_bytes(archive[:start] + bytes(24) + archive[start + 24:])
    check_error(path, r"is truncated or corrupted \([\d,]+ bytes; ")


def test_damaged_tensor_bytes_in_a_zip_checkpoint_are_refused(tmp_path, isqrt18):
    """torch.load reads a zip's tensors without checking their CRC-32: 64 bytes zeroed inside a
    weight loaded silently, other weights than the published ones."""
    path = save(zoo_layout(isqrt18.state_dict()), tmp_path / "good.pth", False)
    archive = bytearray(path.read_bytes())
    middle = len(archive) // 2
    archive[middle:middle + 64] = bytes(64)
    path.write_bytes(bytes(archive))
    check_error(path, r"is truncated or corrupted \([\d,]+ bytes; the bytes of \S+/data/\d+ do not match "
                      r"their CRC-32\)")


@pytest.mark.parametrize("legacy", [False, True])
def test_a_file_saved_with_pickle_protocol_4_is_named_so_not_damaged(tmp_path, legacy):
    """torch.save(..., pickle_protocol=4) is whole, but the weights-only unpickler stops at its FRAME
    opcode: it was "truncated or corrupted ... Download it again" (zip) or "not a PyTorch checkpoint"."""
    path = tmp_path / "p4.pth"
    torch.save({"w": torch.ones(2)}, path, pickle_protocol=4, _use_new_zipfile_serialization=not legacy)
    check_error(path, r"was saved with pickle protocol 4 or 5 \(opcode 149\), which torch.load\(weights_only="
                      r"True\) cannot read .*torch.save's default protocol")


def test_error_not_a_checkpoint(tmp_path):
    for protocol in (2, 4):
        pickled = tmp_path / f"string{protocol}.pth"
        pickled.write_bytes(pickle.dumps({"fc.weight": 1}, protocol=protocol))
        check_error(pickled, "is a Python pickle but not a PyTorch checkpoint")
    url = "https://drive.google.com/file/d/1kXi3PGixfn7QZaxtLK2DkiZ6h-zoGpfq"
    check_error(url, "is a URL: download the checkpoint and pass the file")
    noise = tmp_path / "noise.pth"
    noise.write_bytes(bytes(range(7, 250)) * 10)
    check_error(noise, "is not a PyTorch checkpoint: it holds unrecognized data "
                       r"\(first bytes 07 08 09")
    text = tmp_path / "string2.pth"
    torch.save("hello", text)
    check_error(text, r"the file contains a str, not a state dict \(a dict of tensors\)")
    meta = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "arch": "resnet50"}, meta)
    check_error(meta, rf"^'{re.escape(str(meta))}': no state dict found: .* the checkpoint holds "
                      r"epoch \(int\), arch \(str\)")
    versioned = tmp_path / "versioned.pth"  # the entry that is no tensor was not named
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2), "fc.bias": torch.zeros(2), "version": 1}},
               versioned)
    check_error(versioned, r"no state dict found: a dict of 2 tensors \(the checkpoint\['state_dict'\]\) "
                           r"also holds 'version' \(int\), not tensors; a state dict holds tensors only")
    training = tmp_path / "training.pth"  # weights under a key of its own beside a tensor: listed, as before
    torch.save({"best_acc1": torch.tensor(76.1), "epoch": 90, "weights": {"fc.weight": torch.zeros(2, 2)}},
               training)
    check_error(training, r"no state dict found: expected a dict of tensors or one under .*; the checkpoint "
                          r"holds best_acc1 \(Tensor\), epoch \(int\), weights \(dict\)")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    check_error(empty, r"is empty \(0 bytes\)")


@pytest.mark.parametrize("legacy", [False, True])
def test_error_python_objects_are_never_unpickled(tmp_path, isqrt18, monkeypatch, legacy):
    # a training-script class, from a module that does not exist where the file is loaded
    module = types.ModuleType("train_utils_of_someone")
    meter = type("AverageMeter", (), {"__module__": module.__name__})
    module.AverageMeter = meter
    monkeypatch.setitem(sys.modules, module.__name__, module)
    path = save({"state_dict": zoo_layout(isqrt18.state_dict()), "meter": meter()},
                tmp_path / "objects.pth", legacy)
    monkeypatch.delitem(sys.modules, module.__name__)
    message = check_error(path, r"contains Python objects that are not loaded with weights_only=True "
                                r"\(first: train_utils_of_someone.AverageMeter\); gcp-robust never unpickles "
                                r"arbitrary code, and cannot tell what unpickling them would run\. Only if "
                                r"you trust the file")
    assert "python -c" not in message  # no command to paste: a crafted file's classes can run code


def test_safetensors_files_load_and_a_broken_one_is_named(tmp_path, isqrt18, x):
    """timm and the hub publish safetensors (DeiT's model.safetensors): tensors only, no code."""
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in zoo_layout(isqrt18.state_dict()).items()}, path)
    assert torch.equal(outputs(load_model("resnet18-isqrt", path), x), outputs(isqrt18, x))
    assert inspect_checkpoint(path).arch == "resnet18-isqrt"
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    check_error(cut, rf"^'{re.escape(str(cut))}' is truncated or corrupted .*a safetensors file whose "
                     rf"tensors end at byte {path.stat().st_size:,}")
    broken = bytearray(path.read_bytes())
    broken[9:10] = b"x"  # the header's first key unquoted: no JSON
    cut.write_bytes(broken)
    check_error(cut, rf"^'{re.escape(str(cut))}' is a safetensors file that cannot be read: ")


def protobuf_field(number, payload):
    """A length-delimited protobuf field (payload shorter than 2**14 bytes)."""
    length = len(payload)
    varint = bytes([length]) if length < 128 else bytes([length & 0x7F | 0x80, length >> 7])
    return bytes([number << 3 | 2]) + varint + payload


def test_error_mindspore_checkpoint(tmp_path):
    tensor = torch.zeros(4, 3, 1, 1).numpy().tobytes()
    dims = protobuf_field(1, bytes([4, 3, 1, 1]))  # packed repeated int64
    tensor_proto = dims + protobuf_field(2, b"Float32") + protobuf_field(3, tensor)
    value = protobuf_field(1, b"conv1.weight") + protobuf_field(2, tensor_proto)
    path = tmp_path / "resnet50_gcp_ascend.ckpt"
    path.write_bytes(protobuf_field(1, value) * 3)
    message = check_error(path, r"is a MindSpore checkpoint \(protobuf, first tensor "
                                r"'conv1.weight'\), not a PyTorch file")
    assert "download the PyTorch release" in message
    for name in ("other.ckpt", "OTHER.CKPT"):  # the suffix in any case (Windows names keep theirs)
        other = tmp_path / name
        other.write_bytes(b"\x00\x01garbage" * 50)
        check_error(other, "is a MindSpore checkpoint, not a PyTorch file")


def test_error_missing_file(tmp_path):
    check_error(tmp_path / "nope.pth", r"checkpoint file .*nope.pth does not exist")


def test_error_other_architecture_names_layout_keys_and_fit(tmp_path, isqrt18):
    path = save({"state_dict": prefixed(zoo_layout(isqrt18.state_dict()), "module.")},
                tmp_path / "r18.pth.tar")
    message = check_error(path, r"'.*r18.pth.tar' does not fit resnet50-isqrt\.", "resnet50-isqrt")
    assert "detected: layout 'layer-reduce'" in message and "['state_dict']" in message
    assert "stripped module." in message
    model = create_model("resnet50-isqrt", num_classes=CLASSES, reduction_dim=D).state_dict()
    got = isqrt18.state_dict()
    missing = {k for k in model if k not in got and not k.endswith("num_batches_tracked")}
    unexpected = {k for k in got if k not in model}
    mismatched = {k for k in got if k in model and got[k].shape != model[k].shape}
    counts = re.search(r"(\d+) missing keys \(first: ([\w.]+).*; (\d+) unexpected keys; "
                       r"(\d+) shape mismatches \(first: ([\w.]+): checkpoint", message)
    assert counts, message
    assert int(counts.group(1)) == len(missing) > 0 and counts.group(2) in missing
    assert int(counts.group(3)) == len(unexpected) == 0
    assert int(counts.group(4)) == len(mismatched) > 0 and counts.group(5) in mismatched
    assert f"It fits 'resnet18-isqrt' (d={D}, {CLASSES} classes): use --model resnet18-isqrt" \
        in message


def test_error_gcp_file_for_gap_model_and_dropcov_for_isqrt(tmp_path, isqrt18, dropcov18):
    path = save(zoo_layout(isqrt18.state_dict()), tmp_path / "zoo.pth")
    message = check_error(path, "does not fit resnet18-gap", "resnet18-gap")
    assert "It fits 'resnet18-isqrt'" in message
    path = save(zoo_layout(dropcov18.state_dict()), tmp_path / "dropcov.pth")
    message = check_error(path, "does not fit resnet18-isqrt")
    assert "1 unexpected key (first: global_pool.eca.conv.weight)" in message
    assert "It fits 'resnet18-dropcov'" in message


def test_error_isqrt_file_for_mpncov_suggests_the_sqrt_swap(tmp_path, isqrt18):
    path = save(zoo_layout(isqrt18.state_dict()), tmp_path / "zoo.pth")
    message = check_error(path, "does not fit resnet18-mpncov", "resnet18-mpncov")
    assert "1 missing key (first: global_pool.reduce.bias)" in message
    assert "use --model resnet18-isqrt --sqrt eig" in message


def test_the_fitting_model_hint_keeps_the_square_root_asked_for(tmp_path, isqrt18, dropcov18):
    # the root asked for with --sqrt, not the requested model's default
    path = save(zoo_layout(isqrt18.state_dict()), tmp_path / "zoo.pth")
    with pytest.raises(CheckpointError) as error:
        load_model("resnet18-mpncov", checkpoint=path, sqrt="newton-schulz")
    assert str(error.value).endswith("use --model resnet18-isqrt."), error.value
    with pytest.raises(CheckpointError) as error:
        load_model("resnet18-mpncov", checkpoint=path, sqrt="svd")
    assert "use --model resnet18-isqrt --sqrt svd to evaluate it with the svd square root" in str(error.value)
    # DropCov takes no --sqrt: the hint says to leave it out
    path = save(zoo_layout(dropcov18.state_dict()), tmp_path / "dropcov.pth")
    with pytest.raises(CheckpointError) as error:
        load_model("resnet18-isqrt", checkpoint=path, sqrt="eig")
    assert ": use --model resnet18-dropcov, without --sqrt (resnet18-dropcov has no matrix square root)." \
        in str(error.value)
    assert str(check_error(path, "does not fit")).endswith(": use --model resnet18-dropcov.")
    # the hint is the error's own field: a benchmarks.yaml entry rephrases it, and it survives pickling
    # (a torchrun rank or a loader worker sends errors to the parent)
    import pickle

    fit = error.value.fit
    assert (fit.model, fit.dims, fit.sqrt, fit.no_sqrt) == ("resnet18-dropcov", f"d={D}, {CLASSES} classes",
                                                           None, True)
    entry = error.value.from_entry("models.mine", "from models.mine of b.yaml")
    assert str(entry).endswith(": set models.mine.arch to resnet18-dropcov, without --sqrt (resnet18-dropcov "
                               "has no matrix square root). [from models.mine of b.yaml]"), entry
    assert str(pickle.loads(pickle.dumps(entry))) == str(entry)
    assert str(error.value).endswith("use --model resnet18-dropcov, without --sqrt (resnet18-dropcov has no "
                                     "matrix square root).")  # the original is unchanged
    # the plan's check (eval's, before any compute) gives the same hints: it built the model with
    # its own root ("use --model resnet18-mpncov --sqrt newton-schulz" against --sqrt svd)
    from click.testing import CliRunner

    from robustbench_gcp.cli import main
    from robustbench_gcp.models.loading import check_checkpoint

    isqrt_file = save(zoo_layout(isqrt18.state_dict()), tmp_path / "zoo.pth")
    images = tmp_path / "images" / "n01440764"
    images.mkdir(parents=True)
    torchvision.transforms.functional.to_pil_image(torch.rand(3, 96, 96)).save(images / "a.png")
    said = CliRunner().invoke(main, ["eval", "--model", "resnet18-mpncov", "--sqrt", "svd", "--checkpoint",
                                     str(isqrt_file), "--data", str(tmp_path / "images"), "--store",
                                     str(tmp_path / "s.db")])
    assert said.exit_code != 0 and "use --model resnet18-isqrt --sqrt svd to evaluate it" in said.output, \
        said.output
    with pytest.raises(CheckpointError, match=r": use --model resnet18-dropcov, without --sqrt \("):
        check_checkpoint("resnet18-isqrt", path, sqrt="eig")
    with pytest.raises(CheckpointError, match="use --model resnet18-isqrt --sqrt svd to evaluate it"):
        check_checkpoint("resnet18-mpncov", isqrt_file, sqrt="svd")
    # a GAP file too ("use --model resnet18-gap." kept the --sqrt that GAP refuses)
    gap_file = save(zoo_layout(create_model("resnet18-gap", num_classes=CLASSES).state_dict()),
                    tmp_path / "gap.pth")
    with pytest.raises(CheckpointError, match=r"use --model resnet18-gap, without --sqrt \(resnet18-gap has "
                                              r"no matrix square root\)\.$"):
        check_checkpoint("resnet18-isqrt", gap_file, sqrt="svd")
    for asked in ({"sqrt": "newton-schulz"}, {"ns_iters": 3}):  # its own root, named: still to drop
        with pytest.raises(CheckpointError, match=r"use --model resnet18-gap, without --sqrt"):
            check_checkpoint("resnet18-isqrt", gap_file, **asked)
    with pytest.raises(CheckpointError, match=r"use --model resnet18-gap\.$"):
        check_checkpoint("resnet18-isqrt", gap_file)


@pytest.mark.parametrize("change", ["drop", "extra", "reshape"])
def test_no_silent_non_strict_loading(tmp_path, torchvision18, change):
    state = dict(torchvision18.state_dict())
    if change == "drop":
        del state["layer2.0.bn1.weight"]
    elif change == "extra":
        state["fc.extra"] = torch.zeros(1)
    else:
        state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    path = save(state, tmp_path / "edited.pth")
    message = check_error(path, "does not fit resnet18-gap", "resnet18-gap")
    expected = {"drop": "1 missing key (first: layer2.0.bn1.weight)",
                "extra": "1 unexpected key (first: fc.extra)",
                "reshape": "1 shape mismatch (first: layer1.0.conv1.weight: checkpoint "
                           "[64, 64, 1, 1] vs model [64, 64, 3, 3])"}[change]
    assert expected in message
    assert "No registered model fits it; the closest is 'resnet18-gap'" in message


def test_reading_a_checkpoint_knows_no_registered_model():
    """``models/checkpoint.py`` only turns a file into a state dict: it imports nothing of
    the model zoo (matching and strict loading live in ``models/loading.py``) but the table of
    layouts, which imports nothing of it either, not even inside a function, so the two layers
    cannot import each other."""
    import ast
    from pathlib import Path

    from robustbench_gcp.models import checkpoint, layouts

    for module, allowed in ((checkpoint, ["robustbench_gcp.models.layouts"]), (layouts, [])):
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module or "" for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom)}
        assert all(node.level == 0 for node in ast.walk(tree) if isinstance(node, ast.ImportFrom))
        assert sorted(m for m in imported if m.startswith("robustbench_gcp.models")) == allowed


class _RunsCode:
    """A pickle payload that would run a shell command when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("how", ["zip", "legacy", "pickle-0", "pickle-1", "pickle-2", "pickle-4"])
def test_error_a_file_that_would_run_code_is_named_as_such(tmp_path, isqrt18, how):
    """(protocols 0 and 1, without the PROTO header, were said to be "neither ... a pickle")"""
    marker = tmp_path / "ran"
    payload = {"state_dict": zoo_layout(isqrt18.state_dict()), "hook": _RunsCode(marker)}
    path = tmp_path / f"evil-{how}.pth"
    if how.startswith("pickle"):
        path.write_bytes(pickle.dumps(payload, protocol=int(how[-1])))
    else:
        save(payload, path, legacy=how == "legacy")
    system = f"{os.name == 'nt' and 'nt' or 'posix'}.system"
    check_error(path, rf"was refused: unpickling it would import and call {system}, i\.e\. run "
                      "code from the file")
    with pytest.raises(CheckpointError, match="would import and call"):
        inspect_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 1])
@pytest.mark.parametrize("zipped", [True, False])
def test_a_checkpoint_of_pickle_protocol_0_or_1_is_named_as_such(tmp_path, isqrt18, protocol, zipped):
    """torch.save(..., pickle_protocol=0): weights_only=True cannot read it; it was "truncated or
    corrupted ... Download it again" (zip) or "a Python pickle but not a PyTorch checkpoint"."""
    path = tmp_path / "p0.pth"
    torch.save(zoo_layout(isqrt18.state_dict()), path, _use_new_zipfile_serialization=zipped,
               pickle_protocol=protocol)
    check_error(path, r"is a pickle of protocol 0 or 1 \(opcode \d+\), which torch.load\(weights_only=True\) "
                      "cannot read")


def test_text_and_archives_are_not_taken_for_old_pickles(tmp_path, isqrt18):
    """Reading protocol 0 pickles (no header) took text that reads as opcodes ("N.B.": NONE, STOP) and
    a tar archive of a checkpoint ("Net.pth") for pickles: "truncated", or torch's advice to load it
    with weights_only=False."""
    import tarfile

    notes = tmp_path / "notes.pth"
    notes.write_text("N.B. weights moved to s3\n")
    keras = tmp_path / "k.pth"
    keras.write_text("Keras weights 1.0\n")
    for path in (notes, keras):
        check_error(path, r"is not a PyTorch checkpoint: it holds unrecognized data")
    inner = save(zoo_layout(isqrt18.state_dict()), tmp_path / "Net.pth")
    archive = tmp_path / "net.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(inner, arcname="Net.pth")
    check_error(archive, r"is not a PyTorch checkpoint: it holds a tar archive")
    # a protocol 0 pickle larger than the first bytes read is one; a legacy one named .ckpt is not
    # MindSpore's; garbage in a zip's data.pkl is damage, not protocol 0
    large = tmp_path / "large.pth"
    large.write_bytes(pickle.dumps({"a": list(range(3000))}, protocol=0))
    check_error(large, r"is a pickle of protocol 0 or 1 \(opcode 100\)")
    legacy = tmp_path / "legacy.ckpt"
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False, pickle_protocol=0)
    check_error(legacy, r"is a pickle of protocol 0 or 1")
    import zipfile

    whole = save({"w": torch.ones(3)}, tmp_path / "whole.pth")
    zeroed = tmp_path / "zeroed.pth"
    with zipfile.ZipFile(whole) as source, zipfile.ZipFile(zeroed, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            target.writestr(info.filename, bytes(len(data)) if info.filename.endswith("data.pkl") else data)
    check_error(zeroed, r"is truncated or corrupted")


@pytest.mark.parametrize("bad", ["nan-conv", "inf-bias"])
def test_error_non_finite_weights_are_named_at_load_and_by_inspect(tmp_path, isqrt18, bad):
    state = zoo_layout(isqrt18.state_dict())
    if bad == "nan-conv":
        key = "layer1.0.conv1.weight"
        state[key] = state[key].clone()
        state[key].view(-1)[7] = float("nan")
        shown = f"{key} (1 NaN)"
    else:
        key = "fc.bias"
        state[key] = state[key].clone()
        state[key][:2] = float("inf")
        shown = f"{key} (2 inf)"
    path = save(state, tmp_path / "diverged.pth")
    check_error(path, rf"holds non-finite weights in 1 tensor: {re.escape(shown)}")
    with pytest.raises(CheckpointError, match="non-finite"):  # the plan's check, on the meta device
        from robustbench_gcp.models.loading import check_checkpoint

        check_checkpoint("resnet18-isqrt", path)
    assert inspect_checkpoint(path).nonfinite == [shown]


class _CallsAFunction:
    """A pickle that calls pydoc.locate, which imports any module by name."""

    def __reduce__(self):
        import pydoc

        return pydoc.locate, ("os",)


class _HugeArray:
    def __reduce__(self):
        import numpy as np

        return np.ndarray, ((2**44,), np.dtype("u1"))


def test_untrusted_checkpoints_get_no_command_to_paste_and_a_module_is_not_code(tmp_path, isqrt18):
    """Security audit and its review: a weights_only=False command was printed for files whose
    pickles run code (pydoc.locate; types.FunctionType of a code object, a class; a name hidden from
    the opcode reading), with the file name inside its code (w$(cmd).pth ran cmd); a declared 16 TB
    array was a MemoryError traceback; a whole saved nn.Module was not code (__builtin__.set)."""
    from robustbench_gcp.models.checkpoint import check_torch_version

    state = zoo_layout(isqrt18.state_dict())
    calls = save({"state_dict": state, "x": _CallsAFunction()}, tmp_path / "w$(touch PASTED).pth")
    check_error(calls, r"was refused: unpickling it would import and call pydoc\.locate, i\.e\. run code")
    function = tmp_path / "function.pth"  # a pickle naming types.FunctionType (pickle cannot write it)
    function.write_bytes(b"\x80\x02ctypes\nFunctionType\nq\x00.")
    check_error(function, r"would import and call types\.FunctionType, i\.e\. run code")
    module = save(torch.nn.Sequential(torch.nn.Linear(2, 2)), tmp_path / "module.pth", legacy=True)
    message = check_error(module, r"contains Python objects that are not loaded with weights_only=True")
    assert "run code" not in message and "python -c" not in message and "state_dict()" in message

    huge = save({"state_dict": state, "x": _HugeArray()}, tmp_path / "huge.pth")
    check_error(huge, r"declares more data than this machine's memory holds")

    with pytest.raises(CheckpointError, match=r"torch 2\.5\.1\+cu124 runs code from crafted checkpoint"):
        check_torch_version("2.5.1+cu124")
    check_torch_version("2.6.0")
    check_torch_version("2.14.1+cu130")


def test_a_zip_bomb_is_not_inflated_and_a_zipped_checkpoint_loads(tmp_path, isqrt18, x):
    """A crafted 2 MB file declaring a 2 GiB deflated member was inflated whole for its CRC
    (security audit); a checkpoint unzipped and zipped again (deflated) is one torch loads."""
    import zipfile

    good = save(zoo_layout(isqrt18.state_dict()), tmp_path / "good.pth")
    packed = tmp_path / "packed.pth"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
    assert torch.equal(outputs(load_model("resnet18-isqrt", packed), x), outputs(isqrt18, x))
    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
        target.writestr("good/data/zeros", bytes(80 << 20))
    check_error(bomb, r"is not a checkpoint of weights: its zip member good/data/zeros inflates [\d,]+ bytes "
                      r"to 83,886,080 \(a zip bomb\)")


def test_tensors_keys_and_archives_weights_do_not_come_in_are_named(tmp_path, torchvision18):
    """Each was a traceback (float8's isinf, a meta tensor's item(), an int key's split(), sparse or
    quantized tensors in load_state_dict) or loaded without a word (int64 / bool / complex weights
    into float ones); a TorchScript archive got torch's advice to load it with weights_only=False."""
    import zipfile

    state = torchvision18.state_dict()

    def changed(name, **entries):
        return save({**state, **entries}, tmp_path / name)

    def said(path, pattern):
        message = check_error(path, pattern, name="resnet18-gap")
        with pytest.raises(CheckpointError) as described:  # inspect reads the file the same way
            inspect_checkpoint(path)
        assert str(described.value) == message

    said(changed("fp8.pth", **{"fc.weight": state["fc.weight"].to(torch.float8_e4m3fn)}),
         r"^'.*fp8.pth': fc.weight is float8_e4m3fn, which weights are not loaded from: save them in float32")
    said(changed("sparse.pth", **{"fc.weight": state["fc.weight"].to_sparse()}),
         r"^'.*sparse.pth': fc.weight is a sparse_coo tensor: save it dense \(.to_dense\(\)\)$")
    with warnings.catch_warnings():  # torch warns, once a process, that quantized tensors are deprecated
        warnings.simplefilter("ignore", UserWarning)
        quantized = torch.quantize_per_tensor(state["fc.weight"], 0.1, 0, torch.qint8)
    said(changed("quantized.pth", **{"fc.weight": quantized}), r"fc.weight is a quantized tensor \(qint8\)")
    said(changed("meta.pth", **{"fc.weight": torch.empty(10, 512, device="meta")}),
         r"fc.weight is a meta tensor, which holds no values")
    said(save({0: torch.zeros(3)}, tmp_path / "ints.pth"), r"has a key 0 \(int\), not a name")
    for dtype in (torch.int64, torch.bool, torch.complex64):
        check_error(changed("typed.pth", **{"fc.weight": state["fc.weight"].to(dtype)}),
                    rf"holds 1 tensor that resnet18-gap has in floating point as other types: fc.weight "
                    rf"\({str(dtype).removeprefix('torch.')}\); the file is damaged", name="resnet18-gap")
    # torch.save's archive is one folder with data.pkl; TorchScript's holds code
    scripted = tmp_path / "scripted.pt"
    with warnings.catch_warnings():  # torch.jit is deprecated; its archives are still about
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), scripted)
    said(scripted, r"^'.*scripted.pt' is a TorchScript archive \(torch.jit.save\), whose model is code; "
                   r"gcp-robust reads weights saved with torch.save\. Only if you trust")
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("hello.txt", "hi")
    said(other, r"^'.*other.zip' is a zip archive, not a PyTorch checkpoint \(torch.save's holds one folder "
                r"with data.pkl; this one holds hello.txt\)$")


def test_the_container_with_the_weights_is_taken_and_one_more_prefix_is_stripped(tmp_path, torchvision18, x):
    """{'model': {config}, 'model_state_dict': weights} said 'the checkpoint holds arch (str)', an
    empty state_dict_ema beside the weights 'an empty dict'; a PyTorch Lightning file's `model.`
    keys were an unrecognized layout, and that error named no file."""
    state = torchvision18.state_dict()
    configured = save({"model": {"arch": "resnet18"}, "model_state_dict": state}, tmp_path / "cfg.pth")
    empty_ema = save({"state_dict": state, "state_dict_ema": {}}, tmp_path / "ema.pth")
    lightning = save({"state_dict": prefixed(state, "model.")}, tmp_path / "lightning.ckpt")
    for path, container, stripped in ((configured, "['model_state_dict']", []),
                                      (empty_ema, "['state_dict']", []),
                                      (lightning, "['state_dict']", ["model."])):
        info = inspect_checkpoint(path)
        assert (info.container, info.stripped, info.arch) == (container, stripped, "resnet18-gap")
        model = load_model("resnet18-gap", path)
        assert torch.equal(outputs(model, x), outputs(torchvision18, x)) and not model.has_ema
    check_error(save({"state_dict": {}}, tmp_path / "none.pth"),
                r"the checkpoint holds state_dict \(empty dict\)")
    check_error(save({"x.y": torch.zeros(2)}, tmp_path / "odd.pth"),
                r"^'.*odd.pth': unrecognized state-dict layout \(1 tensors; first keys: x.y\)")


class _Spawns:
    """A pickle that calls a function of a submodule of a code module."""

    def __reduce__(self):
        import asyncio.subprocess

        return asyncio.subprocess.create_subprocess_shell, ("true",)


class _Connects:
    def __reduce__(self):
        import http.client

        return http.client.HTTPConnection, ("example.com",)


@pytest.mark.parametrize("legacy", [False, True])
def test_code_in_a_submodule_or_under_a_python_2_name_is_named_as_code(tmp_path, legacy):
    """asyncio.subprocess is asyncio's: a file calling it is named as code, in a zip file and in every
    pickle of a legacy one (were only its module's first part, or only a legacy file's first pickle,
    looked at, the message said "Python objects"); a protocol 2 pickle names http.client httplib, the
    name it is unpickled from. torch.load refuses all of them either way: this is what the user is
    told."""
    from robustbench_gcp.models.checkpoint import read_checkpoint

    path = save({"w": torch.ones(2), "hook": _Spawns()}, tmp_path / "spawns.pth", legacy=legacy)
    with pytest.raises(CheckpointError, match=r"would import and call asyncio\.subprocess\."
                                              r"create_subprocess_shell"):
        read_checkpoint(path)
    old_names = tmp_path / "connects.pth"
    old_names.write_bytes(pickle.dumps({"w": 1, "hook": _Connects()}, protocol=2))
    with pytest.raises(CheckpointError, match=r"would import and call httplib\.HTTPConnection"):
        read_checkpoint(old_names)
    old_names.write_bytes(pickle.dumps({"w": 1, "hook": _Evaluates()}, protocol=2))  # builtins' old name
    with pytest.raises(CheckpointError, match=r"would import and call __builtin__\.eval"):
        read_checkpoint(old_names)


def test_a_legacy_file_of_pickle_protocol_5_is_said_to_be_one(tmp_path):
    from robustbench_gcp.models.checkpoint import read_checkpoint

    path = tmp_path / "p5.pth"
    torch.save({"w": torch.ones(2)}, path, pickle_protocol=5, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"pickle protocol 4 or 5"):
        read_checkpoint(path)


class _Prints:
    def __reduce__(self):
        import builtins

        return builtins.print, ("x",)


class _Evaluates:
    def __reduce__(self):
        import builtins

        return builtins.eval, ("1",)


@pytest.mark.parametrize("how", ["pickle-4", "pickle-5", "zip-4"])
def test_a_code_global_whose_module_name_is_memoized_is_still_named(tmp_path, how):
    """Protocol 4 stores "builtins" once and fetches it again (BINGET) for a second global: the memo
    was numbered by the strings alone (MEMOIZE numbers every object) and read builtins.eval after
    builtins.print as print.eval, so the file was said to hold Python objects, not to run code."""
    from robustbench_gcp.models.checkpoint import read_checkpoint
    from robustbench_gcp.pickle_scan import file_globals

    payload = {"w": torch.ones(2), "a": _Prints(), "b": _Evaluates()}
    path = tmp_path / f"{how}.pth"
    if how.startswith("pickle"):
        path.write_bytes(pickle.dumps(payload, protocol=int(how[-1])))
    else:
        torch.save(payload, path, pickle_protocol=4)
    assert file_globals(path, "zip" if how.startswith("zip") else "legacy")[-2:] == ["builtins.print",
                                                                                     "builtins.eval"]
    with pytest.raises(CheckpointError, match=r"would import and call builtins\.eval"):
        read_checkpoint(path)


@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_a_torchvision_file_without_auxiliary_classifiers_loads(tmp_path, name):
    """helper-251: fine-tuned files often drop the training-only auxiliary heads: 12 (18) missing keys
    refused them; eval never runs those heads."""
    import torchvision

    from robustbench_gcp.models.external import external_source, load_external

    torch.manual_seed(0)
    net = torchvision.models.get_model(name, weights=None, aux_logits=False, init_weights=False,
                                       transform_input=True, num_classes=10).eval()
    path = save(net.state_dict(), tmp_path / "no-aux.pth")
    model = load_external(external_source(f"torchvision:{name}"), name, path)
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(model.net(x), net(x))
    with_aux = torchvision.models.get_model(name, weights=None, init_weights=False, transform_input=True,
                                            num_classes=10)
    full = load_external(external_source(f"torchvision:{name}"), name,
                         save(with_aux.state_dict(), tmp_path / "aux.pth"))
    assert any(key.startswith(("AuxLogits.", "aux1.")) for key in full.net.state_dict())
