"""The model registry, the ResNet builder and the pooling heads."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
import torchvision

from robustbench_gcp.errors import ConfigError, UnknownNameError
from robustbench_gcp.models import (
    PreprocessConfig,
    build_resnet,
    create_model,
    list_models,
    load_model,
    model_info,
    register_model,
)
from robustbench_gcp.models import registry as registry_module

DEPTHS = (18, 34, 50, 101)
HEADS = ("gap", "isqrt", "dropcov", "mpncov", "svdpade")


def meta_model(name, **kwargs):
    with torch.device("meta"):
        return create_model(name, **kwargs)


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_registry_lists_every_variant_sorted():
    expected = sorted(f"resnet{d}-{h}" for d in DEPTHS for h in HEADS)
    assert [n for n in list_models() if n in expected] == expected
    assert list_models() == sorted(list_models())


@pytest.mark.parametrize(("name", "kwargs", "params"), [
    ("resnet50-gap", {}, 25_557_032),
    ("resnet18-isqrt", {}, 44_205_096),
    ("resnet50-isqrt", {}, 56_929_832),
    ("resnet50-isqrt", {"reduction_dim": 128}, 32_027_432),
    ("resnet18-dropcov", {}, 44_205_099),
    ("resnet50-dropcov", {}, 56_929_835),
])
def test_parameter_counts_match_protocol(name, kwargs, params):
    assert count(meta_model(name, **kwargs)) == params
    if not kwargs:
        assert model_info(name).num_params == params


def test_model_info_is_cheap_and_describes():
    info = model_info("resnet50-isqrt")
    assert (info.name, info.depth, info.head, info.reduction_dim, info.num_classes,
            info.input_size) == ("resnet50-isqrt", 50, "isqrt", 256, 1000, 224)
    assert "newton-schulz" in info.pooling and "5 iterations" in info.pooling
    assert model_info("resnet101-gap").reduction_dim is None


@pytest.mark.parametrize("depth", DEPTHS)
def test_gap_models_have_torchvision_keys_and_shapes(depth):
    ours = meta_model(f"resnet{depth}-gap").state_dict()
    with torch.device("meta"):
        theirs = getattr(torchvision.models, f"resnet{depth}")(weights=None).state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in ours)


@pytest.mark.parametrize("depth", [18, 50])  # 50: the bottleneck's stride on its 3x3 conv (V1.5)
def test_gap_forward_equals_torchvision(depth):
    theirs = getattr(torchvision.models, f"resnet{depth}")(weights=None, num_classes=10).eval()
    ours = create_model(f"resnet{depth}-gap", num_classes=10).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


@pytest.mark.parametrize("depth", DEPTHS)
def test_gcp_layer4_has_stride_1_and_keeps_its_downsample(depth):
    gcp, gap = meta_model(f"resnet{depth}-isqrt"), meta_model(f"resnet{depth}-gap")
    x = torch.empty(1, 3, 224, 224, device="meta")
    assert gcp.forward_features(x).shape[-2:] == (14, 14)
    assert gap.forward_features(x).shape[-2:] == (7, 7)
    downsample = gcp.layer4[0].downsample[0]
    assert downsample.kernel_size == (1, 1) and downsample.stride == (1, 1)
    assert gap.layer4[0].downsample[0].stride == (2, 2)
    for head in ("dropcov", "mpncov"):
        assert meta_model(f"resnet{depth}-{head}").forward_features(x).shape[-2:] == (14, 14)
    # DifferentiableSVD's SVD-Pade ResNet-50 is torchvision's resnet50 (train_resnet.sh: arch=resnet50)
    svd = meta_model(f"resnet{depth}-svdpade")
    assert svd.forward_features(x).shape[-2:] == (7, 7) and svd.strides == (1, 2, 2, 2)


def test_gcp_state_dict_names():
    keys = meta_model("resnet50-dropcov").state_dict()
    assert keys["global_pool.reduce.weight"].shape == (256, 2048, 1, 1)
    assert keys["global_pool.eca.conv.weight"].shape == (1, 1, 3)
    assert keys["fc.weight"].shape == (1000, 32896)
    assert "global_pool.reduce.bias" not in keys
    assert meta_model("resnet50-mpncov").state_dict()["global_pool.reduce.bias"].shape == (256,)


# ------------------------------------------------------------ every registered model


@pytest.fixture(scope="module")
def tiny_input():
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", list_models())
def test_every_model_builds_and_gives_finite_outputs(name, tiny_input):
    assert count(meta_model(name)) == model_info(name).num_params
    model = create_model(name, num_classes=10).eval()
    with torch.no_grad():
        out = model(tiny_input)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out_bf16 = model(tiny_input)
    assert out.shape == (1, 10) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and torch.isfinite(out_bf16.float()).all()
    # the logits under bf16 stay close to float32 (the matrix functions run in float32)
    scale = out.abs().max()
    assert (out_bf16.float() - out).abs().max() < 0.1 * scale + 1e-3


# ---------------------------------------------------------------------- head math


@pytest.fixture(scope="module")
def reduced():
    """Reduced features (B, d, h, w) as after the 1x1 conv + BN + ReLU."""
    return torch.randn(2, 16, 5, 5, generator=torch.Generator().manual_seed(3)).relu()


def reference_cov(x):
    X = x.double().flatten(2)
    M = X.shape[2]
    ihat = torch.eye(M, dtype=X.dtype) / M - torch.ones(M, M, dtype=X.dtype) / M**2
    return X @ ihat @ X.transpose(1, 2)


def reference_triu(S):
    d = S.shape[-1]
    index = torch.ones(d, d).triu().flatten().nonzero().squeeze(1)
    return S.flatten(1)[:, index]


def reference_ns(Sigma, N=5):
    out = []
    for S in Sigma:
        eye = torch.eye(S.shape[0], dtype=S.dtype)
        trace = torch.trace(S)
        Y, Z = S / trace, eye
        for _ in range(N - 1):
            T = (3 * eye - Z @ Y) / 2
            Y, Z = Y @ T, T @ Z
        out.append(trace.sqrt() * Y @ (3 * eye - Z @ Y) / 2)
    return torch.stack(out)


def reference_eig(Sigma):
    values, vectors = torch.linalg.eigh(Sigma)
    return vectors @ torch.diag_embed(values.clamp_min(0).sqrt()) @ vectors.transpose(1, 2)


def pool_of(name, d=16, **kwargs):
    return create_model(name, num_classes=3, reduction_dim=d, **kwargs).global_pool.eval()


def test_isqrt_pool_matches_reference(reduced):
    out = pool_of("resnet18-isqrt").pool(reduced)
    torch.testing.assert_close(out.double(), reference_triu(reference_ns(reference_cov(reduced))),
                               atol=1e-5, rtol=1e-4)


def test_dropcov_pool_is_the_mean_centred_covariance(reduced):
    x = reduced.flatten(2)
    xc = x - x.mean(2, keepdim=True)
    expected = reference_triu(xc @ xc.transpose(1, 2) / x.shape[2])
    torch.testing.assert_close(pool_of("resnet18-dropcov").pool(reduced), expected)


def test_svd_pade_covariance_is_differentiable_svds(reduced):
    """DifferentiableSVD's Covpool (SVD_Pade.py): x.double(), Ihat built in float32 (torch's
    default dtype) and cast, then x.bmm(Ihat).bmm(x^T). Its float32 Ihat leaves a trace of the
    mean, which the exact root amplifies; the exactly centred covariance is another matrix."""
    from robustbench_gcp.models.matrix import covariance, covariance_svd_pade

    batch, d, h, w = reduced.shape
    m = h * w
    x = reduced.double().reshape(batch, d, m)
    i_hat = (-1.0 / m / m) * torch.ones(m, m) + (1.0 / m) * torch.eye(m, m)
    i_hat = i_hat.view(1, m, m).repeat(batch, 1, 1).type(x.dtype)
    expected = x.bmm(i_hat).bmm(x.transpose(1, 2))
    assert torch.equal(covariance_svd_pade(reduced), expected)
    assert not torch.equal(covariance(reduced.double()), expected)
    pool = pool_of("resnet18-svdpade")
    torch.testing.assert_close(pool.pool(reduced), reference_triu(pool_sqrt(expected)).float())
    # the head's covariance, whatever the root; the SVD root on another head keeps exact centring
    assert pool_of("resnet18-svdpade", sqrt="eig").centring == "svd-pade"
    other = pool_of("resnet18-isqrt", sqrt="svd")
    assert other.centring == "exact"
    exact = reference_triu(pool_sqrt(covariance(reduced.double()))).float()
    torch.testing.assert_close(other.pool(reduced), exact)


@pytest.mark.parametrize("name", ["resnet18-isqrt", "resnet18-dropcov", "mobilenetv2-isqrt",
                                  "deit-small-dropcov"])
def test_covariance_models_cast_to_bfloat16_run_in_it(name):
    """Under autocast the covariance heads' classifiers run in float32; a model cast as a whole
    (``.to(torch.bfloat16)``) keeps its own dtype throughout, as before."""
    model = create_model(name, num_classes=5).eval().to(torch.bfloat16)
    size = model.pretrained_cfg.input_size
    with torch.no_grad():
        logits = model(torch.randn(1, 3, size, size, dtype=torch.bfloat16))
    assert logits.dtype == torch.bfloat16 and logits.shape == (1, 5)


def pool_sqrt(sigma):
    from robustbench_gcp.models.matrix import matrix_sqrt

    return matrix_sqrt(sigma, "svd")


@pytest.mark.parametrize("name", ["resnet18-mpncov", "resnet18-svdpade"])
def test_exact_root_pools_match_reference(name, reduced):
    out = pool_of(name).pool(reduced)
    expected = reference_triu(reference_eig(reference_cov(reduced)))
    torch.testing.assert_close(out.double(), expected, atol=1e-4, rtol=1e-4)


def test_forward_head_is_pool_then_classifier(reduced):
    model = create_model("resnet18-isqrt", num_classes=3, reduction_dim=16).eval()
    feats = torch.randn(2, 512, 4, 4).relu()
    with torch.no_grad():
        pooled = model.forward_head(feats, pre_logits=True)
        assert pooled.shape == (2, 136)
        torch.testing.assert_close(model.forward_head(feats), F.linear(pooled, model.fc.weight,
                                                                       model.fc.bias))
        x = torch.randn(1, 3, 64, 64)
        torch.testing.assert_close(model(x), model.forward_head(model.forward_features(x)))


def test_pool_under_autocast_computes_in_float32(reduced):
    pool = pool_of("resnet18-isqrt")
    half = reduced.to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = pool.pool(half)
    assert out.dtype == torch.float32
    # identical to the float32 computation on the same (bf16) values
    assert torch.equal(out, pool.pool(half.float()))


def _cpu_float16_autocast() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            return torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float16
    except (RuntimeError, ValueError):
        return False


@pytest.mark.skipif(not _cpu_float16_autocast(), reason="this torch has no float16 autocast on the CPU")
@pytest.mark.parametrize("name", ["resnet18-dropcov", "resnet18-isqrt", "deit-small-dropcov"])
def test_covariance_classifiers_run_in_float32_under_float16_autocast(name):
    """A plain covariance holds squares of the features: at features of about 300 it passes
    float16's 65504, which made the pooled vector inf under --amp on CUDA. The pooled vector
    stays float32 and the classifier runs on it with autocast off; a GAP model's stays half."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=5).eval()
    head = model.forward_head
    with torch.no_grad():
        if name.startswith("deit"):
            feats = torch.randn(2, 50, model.classifier.cls_fc.in_features)
        else:
            feats = torch.randn(2, 512, 7, 7).relu()
        # the pooled values scaled to 4 x 65504 at most: the covariance is quadratic in the
        # tokens (DeiT) and in the reduction's BN scale and shift (ResNets: ReLU is homogeneous)
        pooled = model.classifier.representation(feats[:, 1:]) if name.startswith("deit") \
            else head(feats, pre_logits=True)
        scale = (4 * 65504 / pooled.abs().max()).sqrt()
        if name.startswith("deit"):
            feats = feats * scale
        elif name.endswith("dropcov"):
            model.global_pool.bn.weight.mul_(scale)
            model.global_pool.bn.bias.mul_(scale)
        reference = head(feats)
        with torch.autocast("cpu", dtype=torch.float16):
            pooled = head(feats, pre_logits=True)
            logits = head(feats)
    assert pooled.float().abs().max() > 65504 or not name.endswith("dropcov")
    assert torch.isfinite(logits).all() and logits.dtype == torch.float32
    error = float((logits - reference).norm() / reference.norm())
    assert error < 1e-2, error  # the half reduction conv (ResNets) or none (DeiT's tokens)
    gap = create_model("resnet18-gap", num_classes=5).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        assert gap.forward_head(torch.randn(2, 512, 7, 7)).dtype == torch.float16


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["resnet18-isqrt", "resnet18-dropcov", "resnet18-mpncov",
                                  "resnet18-svdpade"])
def test_cuda_equals_cpu_and_fp16_autocast_stays_finite(name, reduced):
    pool = pool_of(name)
    on_cpu = pool.pool(reduced)
    pool = pool.cuda()
    torch.testing.assert_close(pool.pool(reduced.cuda()).cpu(), on_cpu, atol=1e-4, rtol=1e-4)
    with torch.autocast("cuda", dtype=torch.float16):
        feats = pool.reduce_features(torch.randn(2, 512, 7, 7, device="cuda").relu())
        out = pool.pool(feats)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out, pool.pool(feats.float()))


@pytest.mark.parametrize("head", HEADS)
def test_gradients_flow_through_every_head(head):
    d = None if head == "gap" else 16
    model = create_model(f"resnet18-{head}", num_classes=5, reduction_dim=d).eval()
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    F.cross_entropy(model(x), torch.tensor([0, 3])).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    if head != "gap":
        grad = model.global_pool.reduce.weight.grad
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


# ------------------------------------------------------------- matrix-function swaps


def test_sqrt_override_swaps_the_matrix_function(reduced):
    from robustbench_gcp.engine.limits import MAX_NS_ITERS

    base = create_model("resnet18-isqrt", num_classes=3, reduction_dim=16).eval()
    state = base.state_dict()
    outputs = {}
    for sqrt, iters in ((None, None), ("eig", None), ("svd", None), ("newton-schulz", MAX_NS_ITERS)):
        model = create_model("resnet18-isqrt", num_classes=3, reduction_dim=16, sqrt=sqrt,
                             ns_iters=iters).eval()
        model.load_state_dict(state)
        outputs[sqrt, iters] = model.global_pool.pool(reduced).double()
    assert not torch.allclose(outputs[None, None], outputs["eig", None], atol=1e-4)
    torch.testing.assert_close(outputs["eig", None], outputs["svd", None], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(outputs["newton-schulz", MAX_NS_ITERS], outputs["eig", None], atol=1e-4,
                               rtol=1e-4)
    assert "eig sqrt" in pool_of("resnet18-isqrt", sqrt="eig").describe()
    mpncov = pool_of("resnet18-mpncov", sqrt="newton-schulz", ns_iters=7)
    assert mpncov.describe().endswith("newton-schulz sqrt (7 iterations)")


def test_set_matrix_function_on_a_loaded_model(reduced):
    model = load_model("resnet18-svdpade", random_weights=True)
    assert model.global_pool.sqrt == "svd"
    model.set_matrix_function("newton-schulz", 5)
    assert (model.global_pool.sqrt, model.global_pool.ns_iters) == ("newton-schulz", 5)
    model.set_matrix_function()
    assert model.global_pool.sqrt == "svd"


@pytest.mark.parametrize(("name", "kwargs", "error", "message"), [
    ("resnet50-gap", {"sqrt": "eig"}, ConfigError,
     "`sqrt` cannot be used with resnet50-gap: it has no matrix square root"),
    ("resnet50-gap", {"ns_iters": 3}, ConfigError, "`ns_iters` cannot be used with resnet50-gap"),
    ("resnet50-dropcov", {"sqrt": "newton-schulz"}, ConfigError,
     "`sqrt` cannot be used with resnet50-dropcov: it has no matrix square root"),
    ("resnet50-mpncov", {"ns_iters": 3}, ConfigError,
     "`ns_iters` applies to the newton-schulz square root only; this model uses eig"),
    ("resnet50-isqrt", {"sqrt": "eig", "ns_iters": 3}, ConfigError,
     "`ns_iters` applies to the newton-schulz square root only"),
    ("resnet50-isqrt", {"ns_iters": 0}, ConfigError, "`ns_iters` should be a positive integer"),
    ("resnet50-isqrt", {"sqrt": "cholesky"}, UnknownNameError,
     "unknown matrix square root 'cholesky'"),
    ("resnet50-isqrt", {"sha256": "abcdef12"}, ConfigError, "`sha256` needs a checkpoint"),
    ("resnet50-isqrt", {"device": "tpu"}, ConfigError, "`device` should be"),
])
def test_load_model_rejects_bad_options(name, kwargs, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_model(name, **kwargs)


def test_create_model_rejects_reduction_dim_for_gap_and_bad_sizes():
    with pytest.raises(ConfigError, match="`reduction_dim` applies to covariance"):
        meta_model("resnet18-gap", reduction_dim=128)
    with pytest.raises(ConfigError, match="`num_classes` should be a positive integer. Got 0"):
        meta_model("resnet18-gap", num_classes=0)
    with pytest.raises(ConfigError, match="`reduction_dim` should be a positive integer"):
        meta_model("resnet18-isqrt", reduction_dim=-1)


def test_unknown_model_suggests_the_closest_name():
    with pytest.raises(UnknownNameError, match="unknown model 'resnet50-isqrtt'. Did you mean "
                                               "'resnet50-isqrt'"):
        load_model("resnet50-isqrtt")


# ----------------------------------------------------------- load_model and attributes


def test_load_model_without_checkpoint_sets_the_contract_attributes():
    model = load_model("resnet18-gap", device="cpu", random_weights=True)
    assert not model.training
    assert model.name == "resnet18-gap" and model.num_classes == 1000
    assert model.checkpoint_sha256 is None
    cfg = model.pretrained_cfg
    assert cfg == PreprocessConfig()
    assert (cfg.input_size, cfg.resize_size, cfg.interpolation) == (224, 256, "bilinear")
    assert cfg.mean == (0.485, 0.456, 0.406) and cfg.std == (0.229, 0.224, 0.225)
    assert cfg.crop_pct == 0.875
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.input_size = 256
    assert next(model.parameters()).device.type == "cpu"


# ----------------------------------------------------------------------- registry


def test_duplicate_registration_is_an_error():
    with pytest.raises(ValueError, match="model 'resnet50-isqrt' is already registered"):
        register_model("resnet50-isqrt")(lambda **kwargs: None)


def test_a_tiny_variant_is_one_registered_function():
    name = "tiny-test-resnet-isqrt"

    @register_model(name)
    def tiny(**kwargs):
        """A 3-stage CIFAR-style ResNet with d = 8 (test only)."""
        kwargs.setdefault("num_classes", 8)
        kwargs.setdefault("reduction_dim", 8)
        return build_resnet("basic", (1, 1, 1), widths=(8, 16, 32), stem="cifar",
                            stem_width=8, head="isqrt",
                            pretrained_cfg=PreprocessConfig(input_size=32, resize_size=32),
                            **kwargs)

    try:
        assert name in list_models()
        model = load_model(name, random_weights=True)
        assert model.layer3[0].downsample[0].stride == (1, 1)  # GCP: last stage at stride 1
        out = model(torch.randn(2, 3, 32, 32))
        assert out.shape == (2, 8) and torch.isfinite(out).all()
        info = model_info(name)
        assert (info.depth, info.reduction_dim, info.num_classes, info.input_size) == \
               (8, 8, 8, 32)
        assert info.description.startswith("A 3-stage CIFAR-style ResNet")
    finally:
        registry_module._MODELS.pop(name)
        model_info.cache_clear()


def test_a_resnet_is_built_without_torchvision_and_checked_without_torch_dynamo(tmp_path):
    """Importing torchvision.models (for its blocks) and initializing weights on the meta device
    (the checkpoint check before a run) each imported torch._dynamo: 1.3 s and 1 s of a 4 s resumed
    eval. Run in a fresh interpreter: the test session has both imported already."""
    import subprocess
    import sys

    path = tmp_path / "gap.pth"
    torch.save(create_model("resnet18-gap", num_classes=10).state_dict(), path)
    code = (f"import sys, torch; from robustbench_gcp.models.loading import check_checkpoint; "
            f"from robustbench_gcp.models import create_model; "
            f"assert check_checkpoint('resnet18-gap', {str(path)!r}) == 10; create_model('resnet50-isqrt'); "
            f"print(sorted(m for m in ('torchvision', 'torch._dynamo') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize("stride", [0, 3, -1, "2", 2.5, True])
def test_a_last_stride_other_than_1_or_2_is_refused(stride):
    """Any value but 1 built the last stage at stride 2, unsaid (0, 3, "2", 2.5 ...)."""
    from robustbench_gcp.errors import ConfigError
    from robustbench_gcp.models import create_model

    with pytest.raises(ConfigError, match=r"`last_stride` should be 1 or 2. Got "):
        create_model("resnet18-gap", last_stride=stride)
    assert create_model("resnet18-gap", last_stride=1).layer4[0].conv2.stride == (1, 1)
