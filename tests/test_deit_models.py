"""DeiT-S (timm) and DeiT-S + DropCov: layouts, strict loading, the DropCov head, EMA weights,
safe unpickling of timm training files, and the bicubic preprocessing reaching the loader."""

from __future__ import annotations

import argparse
import copy
import os
import pathlib

import numpy as np
import pytest
import torch
from PIL import Image

from robustbench_gcp.errors import CheckpointError, ConfigError
from robustbench_gcp.models import create_model, inspect_checkpoint, list_models, load_model, model_info
from robustbench_gcp.models.checkpoint import read_checkpoint
from robustbench_gcp.models.loading import check_checkpoint

timm = pytest.importorskip("timm")

DEIT_PARAMS = 22_050_664
#: DeiT-S + DropCov: parameters (the original's training log: sum over model.parameters(),
#: pos_embed included) and the values of its state dict (+ 3 transition BatchNorms' running
#: statistics: 2 x (160 + 224 + 224) + 3 num_batches_tracked = 1,219)
DROPCOV_PARAMS = 25_662_224
DROPCOV_STATE_VALUES = 25_663_443


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    """One ImageNet-normalized 224 px image."""
    return torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def randomized(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """``model``'s state dict with every floating-point tensor redrawn (BatchNorm variances > 0)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in model.state_dict().items():
        if not value.is_floating_point():
            out[key] = value.clone()
        elif key.endswith("running_var"):
            out[key] = torch.rand(value.shape, generator=gen) + 0.5
        else:
            scale = 0.02 if value.ndim > 1 else 0.1
            out[key] = torch.randn(value.shape, generator=gen) * scale
    return out


# ------------------------------------------------------------------------ registry


def test_both_transformers_are_registered_with_their_facts():
    assert {"deit-small-gap", "deit-small-dropcov"} <= set(list_models())
    gap, dropcov = model_info("deit-small-gap"), model_info("deit-small-dropcov")
    assert (gap.head, gap.depth, gap.reduction_dim, gap.num_params, gap.input_size) == \
           ("gap", None, None, DEIT_PARAMS, 224)
    assert (dropcov.head, dropcov.depth, dropcov.reduction_dim, dropcov.num_params) == \
           ("dropcov", None, None, DROPCOV_PARAMS)
    assert "cross-covariance" in dropcov.pooling and "no square root" in dropcov.pooling


@pytest.mark.parametrize("name", ["deit-small-gap", "deit-small-dropcov"])
def test_options_they_do_not_have_are_refused(name):
    with pytest.raises(ConfigError, match="sqrt"):
        load_model(name, sqrt="eig")
    with pytest.raises(ConfigError, match="ns_iters"):
        create_model(name, ns_iters=3)
    with pytest.raises(ConfigError, match="reduction_dim"):
        create_model(name, reduction_dim=64)


@pytest.mark.parametrize("name", ["deit-small-gap", "deit-small-dropcov"])
def test_preprocessing_is_the_original_evaluation(name):
    cfg = create_model(name).pretrained_cfg
    assert (cfg.resize_size, cfg.input_size, cfg.interpolation) == (256, 224, "bicubic")
    assert (cfg.mean, cfg.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


# ----------------------------------------------------------------------- DeiT-S GAP


@pytest.fixture(scope="module")
def deit_file(tmp_path_factory):
    """facebookresearch/deit's release layout, {"model": state_dict}, random weights."""
    torch.manual_seed(1)
    reference = timm.create_model("deit_small_patch16_224", pretrained=False).eval()
    reference.load_state_dict(randomized(reference, 1))
    path = tmp_path_factory.mktemp("deit") / "deit_small_patch16_224-random.pth"
    torch.save({"model": reference.state_dict()}, path)
    return path, reference


def test_deit_release_layout_loads_strictly_and_equals_timm(deit_file, image):
    path, reference = deit_file
    model = load_model("deit-small-gap", path)
    assert (model.head_type, model.num_classes, model.reduction_dim) == ("gap", 1000, None)
    assert model.weights_container == ["model"] and model.has_ema is False
    with torch.no_grad():
        torch.testing.assert_close(model(image), reference(image), rtol=0, atol=1e-5)
        torch.testing.assert_close(model.forward_head(model.forward_features(image)),
                                   reference(image), rtol=0, atol=1e-5)


def test_inspect_names_the_deit_layout_and_architecture(deit_file):
    assert check_checkpoint("deit-small-gap", deit_file[0]) == 1000  # eval's check (meta device)
    info = inspect_checkpoint(deit_file[0])
    assert (info.layout, info.arch, info.head, info.num_classes, info.container) == \
           ("deit", "deit-small-gap", "gap", 1000, "['model']")
    assert info.num_params == DEIT_PARAMS


# ------------------------------------------------------------------ DeiT-S + DropCov


def expected_dropcov_shapes(classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """The state dict of DropCov's Deit_drop_Small, written out from its definition."""
    shapes: dict[str, tuple[int, ...]] = {"cls_token": (1, 1, 384), "pos_embed": (1, 197, 384)}
    tok = "visual_tokens.tokens."
    shapes[tok + "stem.0.weight"], shapes[tok + "stem.0.bias"] = (64, 3, 3, 3), (64,)
    channels = 64
    for stage in range(3):
        for layer in range(6):  # DenseNet layers: ReLUs for norms, so two convs only
            prefix = f"{tok}stage.{2 * stage}.denselayer{layer + 1}."
            shapes[prefix + "conv1.weight"] = (32, channels + 16 * layer, 1, 1)
            shapes[prefix + "conv2.weight"] = (16, 32, 3, 3)
        wide = channels + 6 * 16
        prefix = f"{tok}stage.{2 * stage + 1}."
        for stat in ("weight", "bias", "running_mean", "running_var"):
            shapes[prefix + "norm." + stat] = (wide,)
        shapes[prefix + "norm.num_batches_tracked"] = ()
        shapes[prefix + "conv.weight"] = (128, wide, 1, 1)
        channels = 128
    shapes[tok + "transition.weight"], shapes[tok + "transition.bias"] = (384, 128, 1, 1), (384,)
    for b in range(12):
        p = f"blocks.{b}."
        shapes.update({p + "norm1.weight": (384,), p + "norm1.bias": (384,),
                       p + "attn.qkv.weight": (1152, 384),  # no qkv bias
                       p + "attn.proj.weight": (384, 384), p + "attn.proj.bias": (384,),
                       p + "norm2.weight": (384,), p + "norm2.bias": (384,),
                       p + "mlp.fc1.weight": (1536, 384), p + "mlp.fc1.bias": (1536,),
                       p + "mlp.fc2.weight": (384, 1536), p + "mlp.fc2.bias": (384,)})
    shapes.update({"norm.weight": (384,), "norm.bias": (384,),
                   "classifier.representation.wr.weight": (3 * 6 * 24, 384),
                   "classifier.visual_fc.weight": (classes, 6 * 24 * 24),
                   "classifier.visual_fc.bias": (classes,),
                   "classifier.cls_fc.weight": (classes, 384), "classifier.cls_fc.bias": (classes,)})
    return shapes


def test_dropcov_keys_shapes_and_counts():
    model = create_model("deit-small-dropcov")
    state = model.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == expected_dropcov_shapes()
    assert sum(p.numel() for p in model.parameters()) == DROPCOV_PARAMS
    assert sum(v.numel() for v in state.values()) == DROPCOV_STATE_VALUES
    # blocks: LayerNorm eps 1e-5, exact GELU; the position embedding is stored, not trained
    block = model.blocks[0]
    assert block.norm1.eps == 1e-5 and model.norm.eps == 1e-5
    assert block.mlp.act.approximate == "none"
    assert not model.pos_embed.requires_grad


def reference_dropcov_head(head: torch.nn.Module, tokens: torch.Tensor, heads: int = 6,
                           r: int = 24) -> torch.Tensor:
    """logits = cls_fc(class token) + visual_fc(z), z from the definition, head by head.

    wr's output is read as (3, heads, r) (q, k, unused v); q_h and k_h (N x r) are each centred
    by the mean of all their values; C_h = q_h^T k_h / N; z = [C_0 row by row, C_1, ...].
    """
    cls_token, patches = tokens[:, 0], tokens[:, 1:]
    n = patches.shape[1]
    weight = head.representation.wr.weight
    features = []
    for sample in patches:
        per_head = []
        for h in range(heads):
            q = sample @ weight[h * r:(h + 1) * r].T
            k = sample @ weight[heads * r + h * r:heads * r + (h + 1) * r].T
            q, k = q - q.mean(), k - k.mean()
            cov = q.T @ k / n
            per_head += [cov[i, j] for i in range(r) for j in range(r)]
        features.append(torch.stack(per_head))
    z = torch.stack(features)
    return (z @ head.visual_fc.weight.T + head.visual_fc.bias
            + cls_token @ head.cls_fc.weight.T + head.cls_fc.bias)


def test_dropcov_head_is_class_token_plus_cross_covariance():
    model = create_model("deit-small-dropcov", num_classes=7).eval()
    head = copy.deepcopy(model.classifier).double()
    tokens = torch.randn(2, 197, 384, generator=torch.Generator().manual_seed(2),
                         dtype=torch.float64) + 0.5  # offset: centring matters
    with torch.no_grad():
        ours = head(tokens)
        torch.testing.assert_close(ours, reference_dropcov_head(head, tokens), rtol=1e-10, atol=1e-10)
        # the per-head scalar mean is not a per-column mean: the two give other logits
        z = head.representation(tokens[:, 1:])
        assert z.shape == (2, 6 * 24 * 24)
        pre = head(tokens, pre_logits=True)
        torch.testing.assert_close(pre, torch.cat([tokens[:, 0], z], 1))


def timm_training_file(path: pathlib.Path, raw: dict, ema: dict, **extra) -> pathlib.Path:
    """What timm's train.py (CheckpointSaver) writes, with an argparse.Namespace of the options."""
    args = argparse.Namespace(model="Deit_drop_Small", lr=1e-3, weight_decay=0.03, img_size=224,
                              model_ema=True, model_ema_decay=0.99996, amp=True, mean=None,
                              interpolation="", smoothing=0.1)
    for key, value in extra.pop("args_extra", {}).items():
        setattr(args, key, value)
    checkpoint = {
        "epoch": 299,
        "arch": "Deit_drop_Small",
        "state_dict": raw,
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5, "weight_decay": 0.03,
                                                      "params": [0, 1, 2]}]},
        "version": 2,
        "args": args,
        "state_dict_ema": ema,
        "metric": np.float64(82.4),
        **extra,
    }
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def dropcov_file(tmp_path_factory):
    """A timm training file of DeiT-S + DropCov with distinct raw and EMA weights."""
    model = create_model("deit-small-dropcov")
    raw, ema = randomized(model, 3), randomized(model, 4)
    path = tmp_path_factory.mktemp("dropcov") / "deit-small-dropcov.pth.tar"
    return timm_training_file(path, raw, ema), raw, ema


def reference_logits(states: list[dict], image: torch.Tensor) -> list[torch.Tensor]:
    """The logits of each state dict, loaded directly into the module (no file, no layout)."""
    model = create_model("deit-small-dropcov").eval()
    out = []
    for state in states:
        model.load_state_dict(state, strict=True)
        with torch.no_grad():
            out.append(model(image))
    return out


def test_timm_training_file_reads_with_its_namespace(dropcov_file):
    checkpoint = read_checkpoint(dropcov_file[0])
    assert isinstance(checkpoint["args"], argparse.Namespace)
    assert checkpoint["args"].model == "Deit_drop_Small"
    assert float(checkpoint["metric"]) == pytest.approx(82.4)


def test_dropcov_loads_the_ema_weights_by_default_and_the_raw_ones_on_request(dropcov_file, image):
    path, raw, ema = dropcov_file
    expected_ema, expected_raw = reference_logits([ema, raw], image)
    model = load_model("deit-small-dropcov", path)
    assert model.weights_container == ["state_dict_ema"] and model.has_ema is True
    torch.testing.assert_close(model.pos_embed.data, ema["pos_embed"], rtol=0, atol=0)  # stored
    with torch.no_grad():
        logits = model(image)
    torch.testing.assert_close(logits, expected_ema, rtol=0, atol=0)
    plain = load_model("deit-small-dropcov", path, ema=False)
    assert plain.weights_container == ["state_dict"] and plain.has_ema is True
    with torch.no_grad():
        raw_logits = plain(image)
    torch.testing.assert_close(raw_logits, expected_raw, rtol=0, atol=0)
    assert not torch.allclose(logits, raw_logits)


def test_inspect_names_the_dropcov_layout_and_architecture(dropcov_file):
    assert check_checkpoint("deit-small-dropcov", dropcov_file[0]) == 1000
    assert check_checkpoint("deit-small-dropcov", dropcov_file[0], ema=False) == 1000
    info = inspect_checkpoint(dropcov_file[0])
    assert (info.layout, info.arch, info.head, info.num_classes, info.container) == \
           ("dropcov-vit", "deit-small-dropcov", "dropcov", 1000, "['state_dict_ema']")
    assert info.num_params == DROPCOV_PARAMS
    assert info.metadata["arch"] == "Deit_drop_Small" and info.metadata["epoch"] == 299


def test_inspect_says_how_a_deit_pools(deit_file, dropcov_file):
    """`inspect` said "gap: global average pooling" of DeiT-S, which classifies from its class
    token, and "plain covariance" of DeiT-S + DropCov."""
    from click.testing import CliRunner

    from robustbench_gcp.cli import main

    said = {}
    for file in (deit_file[0], dropcov_file[0]):
        result = CliRunner().invoke(main, ["inspect", str(file)], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        said[file] = " ".join(result.output.split())
    assert "│ head │ gap: class token (no global pooling), linear head │" in said[deit_file[0]]
    assert ("│ head │ dropcov: class token + 6-head 24x24 cross-covariance of the patch tokens, no square "
            "root │") in said[dropcov_file[0]]


def test_raw_weights_asked_of_an_ema_only_file_are_refused(tmp_path):
    state = randomized(create_model("deit-small-dropcov"), 5)
    path = tmp_path / "ema-only.pth"
    torch.save({"state_dict_ema": state, "epoch": 1}, path)
    with pytest.raises(CheckpointError, match="EMA weights only"):
        load_model("deit-small-dropcov", path, ema=False)
    assert load_model("deit-small-dropcov", path).weights_container == ["state_dict_ema"]


class RunsCode:
    """Unpickling calls ``action(*args)``: what a malicious checkpoint does."""

    def __init__(self, action, *args):
        self.action, self.args = action, args

    def __reduce__(self):
        return self.action, self.args


@pytest.mark.parametrize("where", ["in-args", "beside-args"])
@pytest.mark.parametrize("how", ["system", "write-file"])
def test_code_in_a_timm_training_file_is_refused_and_never_runs(tmp_path, where, how):
    marker = tmp_path / "ran"
    payload = (RunsCode(os.system, f"touch {marker}") if how == "system"
               else RunsCode(pathlib.Path.write_text, marker, "ran"))
    tiny = {"visual_tokens.tokens.stem.0.bias": torch.zeros(64)}
    extra = {"args_extra": {"resume": payload}} if where == "in-args" else {"hook": payload}
    path = timm_training_file(tmp_path / "evil.pth.tar", tiny, tiny, **extra)
    with pytest.raises(CheckpointError, match="refused|not loaded with weights_only"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError):
        load_model("deit-small-dropcov", path)
    assert not marker.exists()


# ------------------------------------------------------------------ preprocessing


def test_bicubic_preprocessing_reaches_the_loader(tmp_path):
    from robustbench_gcp.engine.runner import ImageSource

    picture = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    (tmp_path / "a").mkdir()
    Image.fromarray(picture).save(tmp_path / "a" / "x.png")
    cfg = create_model("deit-small-dropcov").pretrained_cfg
    source = ImageSource(tmp_path, resize_size=cfg.resize_size, crop_size=cfg.input_size,
                         interpolation=cfg.interpolation)
    assert source.preprocess.interpolation == "bicubic"
    loaded = source.load([tmp_path / "a" / "x.png"], batch_size=1, workers=0)[0]
    resized = Image.fromarray(picture).resize((341, 256), Image.Resampling.BICUBIC)
    expected = np.asarray(resized.crop((58, 16, 282, 240)))
    assert np.array_equal(loaded.permute(1, 2, 0).numpy(), expected)
    protocol = source.as_protocol()
    assert protocol != source and protocol.interpolation == "bilinear"
    assert not torch.equal(protocol.load([tmp_path / "a" / "x.png"], batch_size=1, workers=0)[0],
                           loaded)
    bilinear = ImageSource(tmp_path)
    assert bilinear.as_protocol() is bilinear


def test_generated_corruptions_start_from_the_protocols_base_whatever_the_models_resize(tmp_path):
    """A 232 / 224 model (torchvision's V2 weights) generated its ImageNet-C from its own 232 px
    resize: its cells were not the released files' (made at 256 / 224). Its runs are marked."""
    import json

    from click.testing import CliRunner

    from robustbench_gcp.cli import main
    from robustbench_gcp.data.synthetic import make_image_folder
    from robustbench_gcp.engine.runner import ImageSource
    from robustbench_gcp.store import Store

    source = ImageSource(tmp_path, resize_size=232, crop_size=224, interpolation="bicubic")
    assert source.as_protocol() == ImageSource(tmp_path, resize_size=256, crop_size=224)
    assert ImageSource(tmp_path, resize_size=342, crop_size=299).as_protocol().resize_size == 342
    data = make_image_folder(tmp_path / "val", ["a", "b"], per_class=3, sizes=(240, 330))
    torch.manual_seed(0)
    torch.save(torchvision_resnet18_state(), tmp_path / "r18.pth")
    cells = {}
    for resize in (232, 256):
        store = tmp_path / f"{resize}.db"
        result = CliRunner().invoke(main, [
            "eval", "--model", "torchvision:resnet18", "--checkpoint", str(tmp_path / "r18.pth"),
            "--preprocess", f"resize_size={resize}", "--suite", "imagenet-c", "--corruptions",
            "pixelate,contrast", "--severities", "1,3", "--data", str(data), "--class-order", "sorted",
            "--store", str(store), "--workers", "0", "--format", "json"])
        assert result.exit_code == 0, result.output
        cells[resize] = [c for c in json.loads(result.stdout)["cells"]]
        with Store(store, read_only=True) as opened:
            (run,) = opened.runs()
            marked = run.identity.get("corruption_base")
        assert marked == ([256, 224] if resize == 232 else None)
    assert cells[232] == cells[256]


def torchvision_resnet18_state() -> dict:
    """A 1000-class torchvision ResNet-18's random weights whose answers differ between images."""
    import torchvision

    return torchvision.models.resnet18().state_dict()


def test_unknown_interpolation_is_refused():
    from robustbench_gcp.data.loader import Preprocess

    with pytest.raises(ValueError, match="interpolation"):
        Preprocess(256, 224, "cubic")


def planned_tasks(monkeypatch, model: str, suite: str, data, store, **flags):
    """The tasks ``run`` makes for a plan (the engine is stopped before it computes)."""
    from robustbench_gcp.pipeline import execution, plan

    made = {}

    class Stop(Exception):
        pass

    def stop(tasks, *args, **kwargs):
        made["tasks"] = tasks
        raise Stop

    monkeypatch.setattr(execution, "execute", stop)
    job = plan(model, suite=suite, data=data, random_weights=True, limit=2, store=store,
               device="cpu", **flags)
    with pytest.raises(Stop):
        execution.run(job)
    return made["tasks"]


def test_run_feeds_the_model_bicubic_and_corruptions_the_protocol(monkeypatch, image_folder,
                                                                   store_path):
    tasks = planned_tasks(monkeypatch, "deit-small-gap", "imagenet-c", image_folder, store_path,
                          corruptions=["gaussian_noise"], severities=[1])
    clean, corrupted = tasks[0].source, tasks[1].source
    assert (clean.interpolation, clean.resize_size, clean.crop_size) == ("bicubic", 256, 224)
    assert (corrupted.interpolation, corrupted.resize_size, corrupted.crop_size) == \
           ("bilinear", 256, 224)
    perturbed = planned_tasks(monkeypatch, "deit-small-gap", "imagenet-p", image_folder,
                              store_path, perturbations=["gaussian_noise"], difficulties=[1])
    assert perturbed[0].source.interpolation == "bicubic"
    assert {t.source.interpolation for t in perturbed[1:]} == {"bilinear"}


def test_run_keeps_one_source_for_a_cnn(monkeypatch, image_folder, store_path):
    tasks = planned_tasks(monkeypatch, "resnet18-gap", "imagenet-c", image_folder, store_path,
                          corruptions=["gaussian_noise"], severities=[1])
    assert tasks[0].source is tasks[1].source
    assert tasks[0].source.interpolation == "bilinear"


def test_no_ema_on_the_command_line_is_a_run_of_its_own(dropcov_file, image_folder, tmp_path):
    """`eval --no-ema` evaluates the raw weights of a training file, stored apart from the EMA
    weights' run of the same file."""
    import json

    from click.testing import CliRunner

    from robustbench_gcp.cli import main

    path = dropcov_file[0]
    store = tmp_path / "s.db"
    reports = []
    for flag in ("--ema", "--no-ema"):
        result = CliRunner().invoke(main, [
            "eval", "--model", "deit-small-dropcov", "--checkpoint", str(path), "--data", str(image_folder),
            "--store", str(store), "--workers", "0", "--limit", "4", flag, "--format", "json"])
        assert result.exit_code == 0, result.output
        reports.append(json.loads(result.stdout))
    ema, raw = reports
    assert ema["run"] != raw["run"]
    assert raw["checkpoint_sha256"] == ema["checkpoint_sha256"] + ":raw"
    assert not any(note.startswith("--no-ema") for note in raw["notes"])  # it has EMA weights


def test_dropcov_tokens_are_the_class_token_then_the_patches_in_row_major_order():
    """The order DropCov's code gives the tokens (class token first, then the stem's grid row by row,
    each with its position embedding): only the head had an independent check, so a token grid read
    column by column, or the class token put last, passed every test."""
    from robustbench_gcp.models.deit import DeiTDropCov

    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 48)
    probe = DeiTDropCov(num_classes=10, depth=0, embed_dim=48, num_heads=2, wr_dim=8)
    h, w = probe.visual_tokens.tokens(x).shape[-2:]
    assert h != w  # rows and columns can be told apart
    model = DeiTDropCov(num_classes=10, depth=0, embed_dim=48, num_heads=2, wr_dim=8, grid=(h, w)).eval()
    with torch.no_grad():
        model.pos_embed.normal_()
        stem = model.visual_tokens.tokens(x)[0]  # (C, h, w)
        tokens = model.forward_features(x)[0]
        expected = [model.norm(model.cls_token[0, 0] + model.pos_embed[0, 0])]
        expected += [model.norm(stem[:, i, j] + model.pos_embed[0, 1 + i * w + j])
                     for i in range(h) for j in range(w)]
    torch.testing.assert_close(tokens, torch.stack(expected))


def test_dropcov_backbone_equals_the_timm_modules_it_was_built_from():
    """DropCov builds its token stem from timm 0.4's DenseBlock (whose norm layers default to ReLU)
    and DenseTransition (BatchNorm, 1x1 conv, 2x2 average pool) and its blocks as timm's ViT blocks;
    only the head and the token order had independent checks, so attention without its scale, a
    block without its residual, a dense layer without its second norm or a max-pool transition passed.
    Each part is compared with timm's module given the same weights, then the whole backbone with a
    composition of them, and the position embedding's resampling (a 64 px image's 4 x 4 grid) with a
    bicubic interpolation of the stored one."""
    from functools import partial

    from timm.models.densenet import DenseBlock, DenseTransition
    from timm.models.vision_transformer import Block

    torch.manual_seed(0)
    model = create_model("deit-small-dropcov", num_classes=5).eval()
    model.load_state_dict(randomized(model, 5))
    with torch.no_grad():
        model.pos_embed.normal_()
        for module in model.modules():  # attention far from uniform: its scale then shows
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.add_(1.0)
        for block in model.blocks:
            block.attn.qkv.weight.mul_(4.0)
    tokens = model.visual_tokens.tokens
    dense, transition = tokens.stage[0], tokens.stage[1]
    timm_dense = DenseBlock(6, 64, 2, 16, norm_layer=lambda channels, **_: torch.nn.ReLU()).eval()
    timm_dense.load_state_dict(dense.state_dict())
    timm_transition = DenseTransition(160, 128, norm_layer=torch.nn.BatchNorm2d).eval()
    timm_transition.load_state_dict(transition.state_dict())
    blocks = []
    for ours in model.blocks:
        block = Block(384, 6, mlp_ratio=4.0, qkv_bias=False, norm_layer=partial(torch.nn.LayerNorm, eps=1e-5))
        block.load_state_dict(ours.state_dict())
        blocks.append(block.eval())
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        features = torch.randn(2, 64, 28, 28, generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(dense(features), timm_dense(features))
        grown = torch.randn(2, 160, 28, 28, generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(transition(grown), timm_transition(grown))
        grid = tokens(x)  # (B, 384, 14, 14)
        expected = torch.cat([model.cls_token.expand(2, -1, -1), grid.flatten(2).transpose(1, 2)], 1)
        expected = expected + model.pos_embed
        for block in blocks:
            expected = block(expected)
        torch.testing.assert_close(model.forward_features(x), model.norm(expected), rtol=1e-4, atol=1e-4)
        # at 64 px the 14 x 14 stored patch embedding is resampled to 4 x 4, bicubic
        patches = model.pos_embed[:, 1:].reshape(1, 14, 14, 384).permute(0, 3, 1, 2)
        small = torch.nn.functional.interpolate(patches, size=(4, 4), mode="bicubic", align_corners=False)
        torch.testing.assert_close(model.position_embedding((4, 4)),
                                   torch.cat([model.pos_embed[:, :1], small.flatten(2).transpose(1, 2)], 1))
