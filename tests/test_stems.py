"""Every model family splits at its stem (where the GCP papers measure the landscape) exactly."""

from __future__ import annotations

import pytest
import torch
import torchvision

from robustbench_gcp.errors import ConfigError
from robustbench_gcp.models import create_model
from robustbench_gcp.models.stems import has_stem, split_at_stem

# (model, the stem's output channels or token shape at its input size)
CASES = [("demo-isqrt", (16, 16, 16)), ("resnet18-isqrt", (64, 56, 56)),
         ("mobilenetv2-isqrt", (32, 112, 112)), ("shufflenetv2-gap", (24, 56, 56)),
         ("deit-small-gap", (197, 384)), ("deit-small-dropcov", (197, 384))]


@pytest.mark.parametrize("name, shape", CASES)
def test_rest_of_stem_is_the_model(name, shape):
    torch.manual_seed(0)
    model = create_model(name).eval()
    size = model.pretrained_cfg.input_size
    x = torch.randn(2, 3, size, size)
    split = split_at_stem(model)
    with torch.no_grad():
        if hasattr(model, "pos_embed"):  # DropCov's starts at zeros: adding it or not would not show
            model.pos_embed.normal_()
        stem = split.stem(x)
        assert tuple(stem.shape[1:]) == shape
        torch.testing.assert_close(split.rest(stem), model(x), rtol=0, atol=0)


def test_the_resnet_stem_is_conv_bn_relu_maxpool():
    model = create_model("demo-gap").eval()
    seen = {}
    model.maxpool.register_forward_hook(lambda module, args, out: seen.setdefault("out", out))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        model(x)
        torch.testing.assert_close(split_at_stem(model).stem(x), seen["out"], rtol=0, atol=0)


@pytest.mark.parametrize(("build", "family", "same_as"), [
    (torchvision.models.resnet18, "torchvision_resnet", "resnet18-gap"),
    (torchvision.models.mobilenet_v2, "torchvision_mobilenetv2", "mobilenetv2-gap"),
    (torchvision.models.shufflenet_v2_x1_0, "torchvision_shufflenetv2", "shufflenetv2-gap")])
def test_torchvisions_own_models_have_the_same_stems(build, family, same_as):
    """torchvision's ResNets, MobileNetV2 and ShuffleNetV2 split where the registry's do: the same
    stem output for the same weights (torchvision:mobilenet_v2 was refused, though its weights load
    into mobilenetv2-gap)."""
    from robustbench_gcp.models.stems import stem_family

    model = build().eval()
    x = torch.randn(2, 3, 64, 64)
    split = split_at_stem(model)
    assert stem_family(model) == family
    ours = create_model(same_as).eval()
    ours.load_state_dict(model.state_dict(), strict=False)  # the stem's weights at least: same names
    with torch.no_grad():
        torch.testing.assert_close(split.rest(split.stem(x)), model(x), rtol=0, atol=0)
        torch.testing.assert_close(split.stem(x), split_at_stem(ours).stem(x), rtol=0, atol=0)


def test_a_model_without_a_known_stem_is_named():
    model = torchvision.models.vgg11()
    assert not has_stem(model)
    with pytest.raises(ConfigError, match="model 'VGG' has no known stem; models with one: resnet"):
        split_at_stem(model)


def test_a_subclass_that_changes_the_forward_pass_is_not_split():
    """A subclass of a known family with its own forward (a temperature, say) was split as its
    family: the landscape at the stem skipped its forward and measured the plain model."""
    from robustbench_gcp.models.resnet import ResNet

    class Tempered(ResNet):
        def forward(self, x):
            return super().forward(x) / 4

    class Renamed(ResNet):  # changes nothing of the forward pass: split as a ResNet
        pass

    class TorchvisionTempered(torchvision.models.ResNet):
        def _forward_impl(self, x):
            return super()._forward_impl(x) / 4

    x = torch.randn(1, 3, 64, 64)
    for cls, changed in ((Tempered, "Tempered.forward"), (Renamed, None)):
        model = create_model("demo-gap").eval()
        model.__class__ = cls
        with torch.no_grad():
            if changed is None:
                split = split_at_stem(model)
                torch.testing.assert_close(split.rest(split.stem(x)), model(x), rtol=0, atol=0)
                continue
            assert not has_stem(model)
            with pytest.raises(ConfigError, match=rf"model '.*' changes the forward pass of its family "
                                                  rf"\({changed}\), which the split at the stem would skip"):
                split_at_stem(model)
    tempered = torchvision.models.resnet18()
    tempered.__class__ = TorchvisionTempered
    assert not has_stem(tempered)


def test_a_model_with_hooks_of_its_own_is_not_split():
    """A hook registered on the model itself (a temperature on its logits) runs only when the model
    is called, which the split never does: the landscape at the stem measured the model without
    it (L(X) 2.12 at the stem, 2.22 at the pixels, on the same images). Hooks on its parts run."""
    from robustbench_gcp.models.external import BroughtModel
    from robustbench_gcp.models.resnet import PreprocessConfig

    x = torch.randn(2, 3, 64, 64)
    hooks = {"forward hook": lambda m: m.register_forward_hook(lambda _, i, out: out / 4),
             "forward pre-hook": lambda m: m.register_forward_pre_hook(lambda _, i: (i[0] * 2,)),
             "backward hook": lambda m: m.register_full_backward_hook(lambda _, gi, go: None)}
    for kind, register in hooks.items():
        for brought in (False, True):
            net = torchvision.models.resnet18(num_classes=4).eval()
            register(net)
            model = BroughtModel(net, "mine", 4, PreprocessConfig()) if brought else net
            assert not has_stem(model), kind
            with pytest.raises(ConfigError, match=rf"has a {kind} registered on the model itself, which the "
                                                  "split at the stem would skip"):
                split_at_stem(model)
    # MobileNetV2's features are sliced at the stem: a hook on features itself would be skipped,
    # one on a block of it runs (helper-292: the hook's x2 was lost)
    for net in (torchvision.models.mobilenet_v2(num_classes=4),
                create_model("mobilenetv2-gap", num_classes=4)):
        net.eval().features.register_forward_hook(lambda _, i, out: out * 2)
        assert not has_stem(net)
        with pytest.raises(ConfigError, match="has a forward hook registered on features, whose parts "
                                              "the split calls one by one, which the split at the stem "
                                              "would skip"):
            split_at_stem(net)
        net.features._forward_hooks.clear()
        net.features[3].register_forward_hook(lambda _, i, out: out * 2)
        with torch.no_grad():
            split = split_at_stem(net)
            torch.testing.assert_close(split.rest(split.stem(x)), net(x), rtol=0, atol=0)
    parts = torchvision.models.resnet18(num_classes=4).eval()  # a hook on a child: the split runs it
    parts.layer1.register_forward_hook(lambda _, i, out: out * 0.5)
    with torch.no_grad():
        split = split_at_stem(parts)
        torch.testing.assert_close(split.rest(split.stem(x)), parts(x), rtol=0, atol=0)


def test_a_brought_models_own_code_raising_in_the_split_is_one_line():
    """A brought ResNet whose block raises: the stem split runs the module's parts, not its forward
    pass, and raised the user's exception as it was (a traceback); now it is the forward pass's
    one-line ModelCodeError, with the user's error as its cause."""
    from robustbench_gcp.errors import ModelCodeError
    from robustbench_gcp.models.external import BroughtModel
    from robustbench_gcp.models.resnet import PreprocessConfig

    class Broken(torch.nn.Module):
        def forward(self, x):
            raise ValueError("my block fails")

    net = torchvision.models.resnet18(num_classes=4).eval()
    net.layer2 = Broken()
    brought = BroughtModel(net, "mine", 4, PreprocessConfig())
    split = split_at_stem(brought)
    x = torch.rand(1, 3, 64, 64)
    inner = split.stem(x)
    assert torch.equal(inner, net.maxpool(net.relu(net.bn1(net.conv1(x)))))
    with pytest.raises(ModelCodeError, match=r"^the forward pass of 'mine' raised ValueError: my block fails "
                                             r"\(at test_stems\.py:\d+, in forward\)$") as raised:
        split.rest(inner)
    assert isinstance(raised.value.__cause__, ValueError)
    # an error inside torch's layers, which the split (this package's code) calls: no line named
    with pytest.raises(ModelCodeError, match=r"but got 5 channels instead$"):
        split.stem(torch.rand(1, 5, 64, 64))
