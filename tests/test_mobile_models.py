"""MobileNetV2 and ShuffleNetV2 1.0x, GAP (torchvision) and iSQRT-COV (CVPR2020 GCP).

Each published file is written here with random weights in its own layout: the
torchvision state dict saved bare for the GAP twins; for the GCP models a training
file ``{epoch, arch, state_dict, best_acc1, optimizer}`` whose ``module.``-prefixed
keys are the original code's (``dimension_reduction.0/1``, ``classifier.1`` or
``fc``; ZhangLi-CS/GCP_Optimization ``src/models/*_MPNCOV.py``). The expected
logits come from torchvision's model (GAP) or from the GCP forward written out
below from the original code's formulas (1x1 conv, BN, ReLU6, covariance
``X Ihat X^T``, Newton-Schulz with 5 iterations, row-major upper triangle),
independently of the project's modules and renaming tables.
"""

from __future__ import annotations

import json
from functools import cache

import pytest
import torch
import torch.nn.functional as F
import torchvision
from click.testing import CliRunner

from robustbench_gcp.cli import main
from robustbench_gcp.errors import CheckpointError, ConfigError, UnknownNameError
from robustbench_gcp.models import create_model, inspect_checkpoint, load_model, model_info
from robustbench_gcp.models.checkpoint import checkpoint_dims, detect_layout
from robustbench_gcp.models.heads import create_pool

CLASSES = 10  # a small classifier keeps the files small; d = 256 as published

#: name -> (torchvision builder, GAP twin, parameters at 1000 classes, classifier key, channels)
ARCHS = {
    "mobilenetv2": (torchvision.models.mobilenet_v2, 3_504_872, 35_449_064, "classifier.1.", 1280),
    "shufflenetv2": (torchvision.models.shufflenet_v2_x1_0, 2_278_604, 34_413_260, "fc.", 1024),
}


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(0))  # 5x5 maps


def backbone_features(arch: str, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """torchvision's layers up to the 7x7 map: ``features`` / ``conv1`` .. ``conv5``."""
    if arch == "mobilenetv2":
        return model.features(x)
    x = model.maxpool(model.conv1(x))
    return model.conv5(model.stage4(model.stage3(model.stage2(x))))


@cache
def _calibrated_state(arch: str, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = ARCHS[arch][0](weights=None, num_classes=CLASSES)
    # BN statistics of real activations (one pass in training mode over random images), so
    # that the features differ between images instead of fading through 50 random layers
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
            module.weight.data.uniform_(0.5, 1.5)
    with torch.no_grad():
        model.train()(torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(seed)))
    return model.state_dict()


def torchvision_model(arch: str, seed: int = 0) -> torch.nn.Module:
    """torchvision's model with random weights and BN statistics of real activations."""
    model = ARCHS[arch][0](weights=None, num_classes=CLASSES)
    model.load_state_dict(_calibrated_state(arch, seed))
    return model.eval()


def original_gcp_state(arch: str) -> dict[str, torch.Tensor]:
    """The original GCP model's state dict (its key names), random weights.

    The backbone is torchvision's; ``dimension_reduction`` = Conv2d(C, 256, 1, bias=False),
    BatchNorm2d(256), ReLU6; the classifier ``classifier.1`` (MobileNetV2, after
    Dropout) or ``fc`` (ShuffleNetV2) on 32,896 features. The reduction's BN maps
    its inputs to about N(5, 2^2), so that ReLU6 clips a third of them.
    """
    _, _, _, classifier, channels = ARCHS[arch]
    generator = torch.Generator().manual_seed(1)
    backbone = torchvision_model(arch)
    conv = torch.randn(256, channels, 1, 1, generator=generator) / channels ** 0.5
    with torch.no_grad():
        images = torch.randn(2, 3, 160, 160, generator=generator)
        reduced = F.conv2d(backbone_features(arch, backbone, images), conv)
    state = {k: v.clone() for k, v in backbone.state_dict().items() if not k.startswith(classifier)}
    state |= {
        "dimension_reduction.0.weight": conv,
        "dimension_reduction.1.weight": torch.full((256,), 2.0),
        "dimension_reduction.1.bias": torch.full((256,), 5.0),
        "dimension_reduction.1.running_mean": reduced.mean((0, 2, 3)),
        "dimension_reduction.1.running_var": reduced.var((0, 2, 3)),
        "dimension_reduction.1.num_batches_tracked": torch.tensor(4321),
        classifier + "weight": torch.randn(CLASSES, 32896, generator=generator) / 32896 ** 0.5,
        classifier + "bias": torch.randn(CLASSES, generator=generator) * 0.01,
    }
    return state


def training_file(state: dict, arch: str) -> dict:
    """What the GCP code's training script saves (the model wrapped in DataParallel)."""
    return {"epoch": 100, "arch": arch, "state_dict": {"module." + k: v for k, v in state.items()},
            "best_acc1": torch.tensor(74.39), "optimizer": {}}


def original_gcp_forward(arch: str, state: dict, x: torch.Tensor, *, relu6: bool = True,
                         iters: int = 5) -> torch.Tensor:
    """The original GCP forward, from its formulas (float64 after the backbone)."""
    backbone = torchvision_model(arch)
    backbone.load_state_dict({k: v for k, v in state.items()
                              if not k.startswith("dimension_reduction.")}
                             | {k: v for k, v in backbone.state_dict().items()
                                if k.startswith(ARCHS[arch][3])})
    with torch.no_grad():
        feats = backbone_features(arch, backbone, x)
        y = F.conv2d(feats, state["dimension_reduction.0.weight"])
        y = F.batch_norm(y, state["dimension_reduction.1.running_mean"],
                         state["dimension_reduction.1.running_var"],
                         state["dimension_reduction.1.weight"], state["dimension_reduction.1.bias"],
                         training=False, eps=1e-5)
        y = y.clamp(0, 6) if relu6 else y.clamp_min(0)
        X = y.flatten(2).double()
        B, d, M = X.shape
        i_hat = (-1.0 / M / M) * torch.ones(M, M, dtype=X.dtype) + (1.0 / M) * torch.eye(M, dtype=X.dtype)
        cov = X @ i_hat @ X.transpose(1, 2)
        eye = torch.eye(d, dtype=X.dtype).expand(B, d, d)
        norm = cov.diagonal(dim1=1, dim2=2).sum(1).view(B, 1, 1)
        A = cov / norm
        Y, Z = A @ (0.5 * (3 * eye - A)), 0.5 * (3 * eye - A)
        for _ in range(1, iters - 1):
            T = 0.5 * (3 * eye - Z @ Y)
            Y, Z = Y @ T, T @ Z
        Y = 0.5 * Y @ (3 * eye - Z @ Y)
        root = Y * norm.sqrt()
        index = torch.ones(d, d).triu().flatten().nonzero().squeeze(1)
        vec = root.flatten(1)[:, index]
        w, b = state[ARCHS[arch][3] + "weight"], state[ARCHS[arch][3] + "bias"]
        return vec @ w.double().T + b.double()


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual.double(), expected, rtol=1e-4,
                               atol=1e-4 * float(expected.abs().max()))


# ---------------------------------------------------------------------- architecture


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_counts_and_interface(arch):
    _, gap_params, gcp_params, _, _ = ARCHS[arch]
    gap, gcp = model_info(f"{arch}-gap"), model_info(f"{arch}-isqrt")
    assert (gap.num_params, gcp.num_params) == (gap_params, gcp_params)
    assert (gap.head, gap.reduction_dim, gap.depth) == ("gap", None, None)
    assert (gcp.head, gcp.reduction_dim, gcp.depth) == ("isqrt", 256, None)
    assert gcp.pooling == "covariance d=256, ReLU6 reduction, newton-schulz sqrt (5 iterations)"
    with torch.device("meta"):
        model = create_model(f"{arch}-isqrt")
    assert model.name == f"{arch}-isqrt" and model.num_classes == 1000 and model.depth is None
    cfg = model.pretrained_cfg
    assert (cfg.resize_size, cfg.input_size, cfg.interpolation) == (256, 224, "bilinear")
    assert isinstance(model.global_pool.relu, torch.nn.ReLU6)


@pytest.mark.parametrize("arch", ARCHS)
def test_backbones_are_torchvision_key_for_key(arch):
    builder, _, _, classifier, channels = ARCHS[arch]
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in builder(weights=None).state_dict().items()}
        gap = {k: tuple(v.shape) for k, v in create_model(f"{arch}-gap").state_dict().items()}
        gcp = {k: tuple(v.shape) for k, v in create_model(f"{arch}-isqrt").state_dict().items()}
    assert gap == expected
    backbone = {k: v for k, v in expected.items() if not k.startswith(classifier)}
    assert {k: v for k, v in gcp.items() if not k.startswith(("global_pool.", classifier))} \
        == backbone
    assert {k: v for k, v in gcp.items() if k.startswith(("global_pool.", classifier))} == {
        "global_pool.reduce.weight": (256, channels, 1, 1),
        "global_pool.bn.weight": (256,), "global_pool.bn.bias": (256,),
        "global_pool.bn.running_mean": (256,), "global_pool.bn.running_var": (256,),
        "global_pool.bn.num_batches_tracked": (),
        classifier + "weight": (1000, 32896), classifier + "bias": (1000,),
    }


@pytest.mark.parametrize("arch", ARCHS)
def test_head_attaches_to_the_7x7_map_and_gives_32896_values(arch):
    model = create_model(f"{arch}-isqrt", num_classes=CLASSES).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 3, 224, 224))
        pooled = model.forward_head(feats, pre_logits=True)
    assert feats.shape == (1, ARCHS[arch][4], 7, 7)
    assert pooled.shape == (1, 32896)
    assert model.global_pool.out_features == 32896


# ------------------------------------------------------------------ published files


@pytest.mark.parametrize("arch", ARCHS)
def test_torchvision_file_loads_strictly(tmp_path, arch, x):
    reference = torchvision_model(arch, seed=2)
    path = tmp_path / f"{arch}-torchvision.pth"
    torch.save(reference.state_dict(), path)
    model = load_model(f"{arch}-gap", path)
    assert model.num_classes == CLASSES
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)
    info = inspect_checkpoint(path)
    assert (info.layout, info.arch, info.head, info.num_classes, info.reduction_dim) == \
           (f"torchvision-{arch}", f"{arch}-gap", "gap", CLASSES, None)


@pytest.mark.parametrize("arch", ARCHS)
def test_gcp_training_file_loads_strictly(tmp_path, arch, x):
    state = original_gcp_state(arch)
    path = tmp_path / f"{arch}-gcp.pth.tar"
    torch.save(training_file(state, f"{arch}_mpncov"), path)
    model = load_model(f"{arch}-isqrt", path)
    assert (model.num_classes, model.reduction_dim) == (CLASSES, 256)
    with torch.no_grad():
        logits = model(x)
    expected = original_gcp_forward(arch, state, x)
    close(logits, expected)
    # ReLU6, not ReLU: the reduction's outputs often exceed 6 here
    assert not torch.allclose(logits.double(), original_gcp_forward(arch, state, x, relu6=False),
                              rtol=1e-2, atol=1e-2 * float(expected.abs().max()))
    info = inspect_checkpoint(path)
    assert (info.layout, info.arch, info.also_fits, info.container, info.stripped) == \
           ("gcp-optimization", f"{arch}-isqrt", [], "['state_dict']", ["module."])
    assert (info.head, info.depth, info.reduction_dim, info.num_classes) == \
           ("isqrt", None, 256, CLASSES)
    assert info.metadata == {"epoch": 100, "arch": f"{arch}_mpncov",
                             "best_acc1": pytest.approx(74.39)}


@pytest.mark.parametrize("arch", ARCHS)
def test_sqrt_and_ns_iters_swap_the_matrix_function(tmp_path, arch, x):
    state = original_gcp_state(arch)
    path = tmp_path / "gcp.pth.tar"
    torch.save(training_file(state, arch), path)
    with torch.no_grad():
        default = load_model(f"{arch}-isqrt", path)(x)
        eig_model = load_model(f"{arch}-isqrt", path, sqrt="eig")
        exact = eig_model(x)
        three = load_model(f"{arch}-isqrt", path, sqrt="newton-schulz", ns_iters=3)(x)
    assert eig_model.global_pool.sqrt == "eig"
    assert eig_model.global_pool.describe() == "covariance d=256, ReLU6 reduction, eig sqrt"
    assert not torch.allclose(default, exact)
    close(three, original_gcp_forward(arch, state, x, iters=3))
    with pytest.raises(ConfigError, match="`sqrt` cannot be used"):
        load_model(f"{arch}-gap", sqrt="eig")


@pytest.mark.parametrize("arch", ARCHS)
def test_inspect_command_names_the_architecture(tmp_path, arch):
    gcp = tmp_path / "gcp.pth.tar"
    torch.save(training_file(original_gcp_state(arch), arch), gcp)
    gap = tmp_path / "tv.pth"
    torch.save(torchvision_model(arch).state_dict(), gap)
    for path, name, layout in ((gcp, f"{arch}-isqrt", "gcp-optimization"),
                               (gap, f"{arch}-gap", f"torchvision-{arch}")):
        result = CliRunner().invoke(main, ["inspect", str(path), "--json"])
        assert result.exit_code == 0, result.output
        info = json.loads(result.output)
        assert (info["arch"], info["layout"], info["num_classes"]) == (name, layout, CLASSES)
        table = CliRunner().invoke(main, ["inspect", str(path)], env={"COLUMNS": "200"})
        assert table.exit_code == 0 and name in table.output and layout in table.output


def test_a_file_for_the_other_architecture_is_refused_with_the_fitting_name(tmp_path):
    path = tmp_path / "mobilenet.pth.tar"
    torch.save(training_file(original_gcp_state("mobilenetv2"), "mobilenet_v2_mpncov"), path)
    with pytest.raises(CheckpointError, match="use --model mobilenetv2-isqrt"):
        load_model("shufflenetv2-isqrt", path)


def test_layout_detection_keeps_every_family_apart():
    def keys(model_or_state):
        state = model_or_state if isinstance(model_or_state, dict) else model_or_state.state_dict()
        return list(state)

    with torch.device("meta"):
        tv = {name: keys(build(weights=None)) for name, build in (
            ("mobilenetv2", torchvision.models.mobilenet_v2),
            ("shufflenetv2", torchvision.models.shufflenet_v2_x1_0),
            ("resnet", torchvision.models.resnet18), ("alexnet", torchvision.models.alexnet))}
        own = {name: keys(create_model(name)) for name in
               ("mobilenetv2-isqrt", "shufflenetv2-isqrt", "resnet18-isqrt")}
    assert detect_layout(tv["mobilenetv2"]).name == "torchvision-mobilenetv2"
    assert detect_layout(tv["shufflenetv2"]).name == "torchvision-shufflenetv2"
    assert detect_layout(tv["resnet"]).name == "torchvision"
    assert detect_layout(tv["alexnet"]).name == "torchvision-alexnet"
    assert detect_layout(own["shufflenetv2-isqrt"]).name == "gcp-robust"
    assert detect_layout(own["resnet18-isqrt"]).name == "gcp-robust"
    # fast-MPN-COV training and model-zoo ResNet files keep their layouts
    training = ["features.0.weight", "features.1.weight", "features.4.0.conv1.weight",
                "representation.conv_dr_block.0.weight", "classifier.weight"]
    assert detect_layout(training).name == "fast-mpn-cov-training"
    assert detect_layout(["conv1.weight", "layer_reduce.weight", "fc.weight"]).name == "layer-reduce"
    for arch in ARCHS:
        assert detect_layout(original_gcp_state(arch)).name == "gcp-optimization"


def test_checkpoint_dims_reads_classes_and_width():
    with torch.device("meta"):
        for name, classes in (("mobilenetv2-isqrt", 7), ("shufflenetv2-isqrt", 5),
                              ("mobilenetv2-gap", 3), ("alexnet", 9)):
            model = create_model(name, num_classes=classes)
            d = 256 if name.endswith("isqrt") else None
            assert checkpoint_dims(model.state_dict()) == (classes, d), name


def test_relu6_reduction_option():
    pool = create_pool("isqrt", 8, reduction_dim=4, activation="relu6")
    assert isinstance(pool.relu, torch.nn.ReLU6)
    assert isinstance(create_pool("isqrt", 8, reduction_dim=4).relu, torch.nn.ReLU)
    assert set(pool.state_dict()) == set(create_pool("isqrt", 8, reduction_dim=4).state_dict())
    with pytest.raises(ConfigError, match="`activation` applies to"):
        create_pool("gap", 8, activation="relu6")
    with pytest.raises(UnknownNameError):
        create_pool("isqrt", 8, reduction_dim=4, activation="gelu")
    with pytest.raises(ConfigError):
        create_model("mobilenetv2-gap", reduction_dim=128)
