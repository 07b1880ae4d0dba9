"""The DeiT-S transformers: ``deit-small-gap`` (timm) and ``deit-small-dropcov`` (DropCov).

``deit-small-gap`` is timm's ``deit_small_patch16_224`` (facebookresearch/deit): 16 px
patches, 12 blocks of dim 384 with 6 heads, qkv with bias, LayerNorm eps 1e-6, logits from
the class token (``head``); 22,050,664 parameters. Its state dict has timm's names, so the
released ``deit_small_patch16_224-cd65a155.pth`` (``{"model": state_dict}``) loads strictly.
timm is imported when such a model is built, not when the registry is.

``deit-small-dropcov`` is DeiT-S + DropCov (mingzeG/DropCov ``Transformers/src``,
``Deit_drop_Small``), written here with the original's module names (``visual_tokens``,
``blocks``, ``classifier``), so that its training files load without renaming:

- not a patch-embedding DeiT: a DenseNet-style convolutional token stem (3x3 conv, 3x3/2 max
  pool, three DenseNet blocks of 6 layers, growth 16, bottleneck 32, each followed by a
  BatchNorm + 1x1 conv + 2x2/2 average pool transition, then a 1x1 conv to 384): 196 tokens
  (14x14) at 224 px. Its DenseNet layers have no BatchNorm: the timm release of the time made
  ``DenseBlock``'s ``norm1`` / ``norm2`` a ReLU (``norm_layer=nn.ReLU``); the transitions keep
  theirs;
- a class token and a stored sinusoidal ``pos_embed`` ``[1, 197, 384]``, a parameter that
  training leaves untouched: it is read from the checkpoint, never recomputed (random-weight
  models start from zeros);
- 12 blocks: dim 384, 6 heads, qkv without bias, MLP ratio 4 with exact GELU, pre-norm
  LayerNorm eps 1e-5, then a final LayerNorm;
- head (:class:`DropCovHead`): ``logits = cls_fc(class token) + visual_fc(z)`` where ``z`` is
  per head the 24x24 cross-covariance of two projections of the 196 patch tokens (6 x 576 =
  3,456 values). See :class:`CrossCovariance` for the original's centring (one scalar mean per
  sample and head) and flattening order. No matrix square root; DropCov's dropouts act only in
  training, so evaluation has none.

25,662,224 parameters (the figure the original's training log prints; its state dict adds
the 1,219 running statistics of the three transition BatchNorms: 25,663,443 values). The
original evaluates the EMA weights of its timm training files (``state_dict_ema``), as
:func:`~robustbench_gcp.models.load_model` does by default.

Preprocessing of both, as their original evaluations: shorter side to 256 with bicubic
interpolation, center crop 224, ImageNet mean and std.

Both models take other input sizes too (random-weight tests use 64 px): timm resamples its
position embedding, and ``deit-small-dropcov`` resamples the patch part of its stored one
bicubically to the token grid. At 224 px nothing is resampled.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_gcp.errors import ConfigError, check_integer
from robustbench_gcp.models.heads import classify, resolve_sqrt
from robustbench_gcp.models.matrix import full_precision
from robustbench_gcp.models.registry import register_model
from robustbench_gcp.models.resnet import PreprocessConfig

__all__ = ["DEIT_PREPROCESS", "CrossCovariance", "DeiTDropCov", "DropCovHead", "build_deit_gap"]

#: facebookresearch/deit's evaluation transform (also DropCov's, through timm's defaults)
DEIT_PREPROCESS = PreprocessConfig(input_size=224, resize_size=256, interpolation="bicubic")


def _check_options(head: str, owner: str, num_classes: int, reduction_dim: int | None,
                   sqrt: str | None, ns_iters: int | None) -> None:
    """Refuse the options a transformer does not have (every registered model takes them)."""
    resolve_sqrt(head, sqrt, ns_iters, owner=owner)
    if reduction_dim is not None:
        raise ConfigError(
            f"`reduction_dim` applies to the covariance (GCP) ResNets only; {owner} has no 1x1 "
            f"reduction. Got reduction_dim={reduction_dim!r}"
        )
    check_integer("num_classes", num_classes)


# ---------------------------------------------------------------------- DeiT-S (timm)


def build_deit_gap(timm_name: str = "deit_small_patch16_224", *, num_classes: int = 1000,
                   reduction_dim: int | None = None, sqrt: str | None = None,
                   ns_iters: int | None = None) -> nn.Module:
    """timm's DeiT ``timm_name`` (random weights, nothing downloaded) with the project's interface.

    The model is timm's ``VisionTransformer`` itself (its state dict keeps timm's names), built
    with ``dynamic_img_size`` so that inputs other than 224 px run (at 224 px the output is the
    same). Attributes set: ``name``, ``num_classes``, ``head_type`` (``gap``), ``reduction_dim``
    and ``depth`` (None), ``pretrained_cfg`` (:data:`DEIT_PREPROCESS`, replacing timm's dict),
    ``describe_pooling``.

    Raises:
        ConfigError: ``reduction_dim``, ``sqrt`` or ``ns_iters`` given, or a bad ``num_classes``.
    """
    _check_options("gap", "DeiT", num_classes, reduction_dim, sqrt, ns_iters)
    import timm

    model = timm.create_model(timm_name, pretrained=False, num_classes=num_classes,
                              dynamic_img_size=True, dynamic_img_pad=True)
    model.name = ""
    model.head_type = "gap"
    model.reduction_dim = None
    model.depth = None
    model.pretrained_cfg = DEIT_PREPROCESS
    model.describe_pooling = _class_token_pooling
    return model


def _class_token_pooling() -> str:
    return "class token (no global pooling), linear head"


# ----------------------------------------------------------------- DeiT-S + DropCov


class DenseLayer(nn.Module):
    """``ReLU -> 1x1 conv -> ReLU -> 3x3 conv``: the new ``growth_rate`` channels of a layer.

    ``norm1`` / ``norm2`` are ReLUs, as in the DenseBlock of the timm release DropCov used.
    """

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int):
        super().__init__()
        self.norm1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_channels, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.ReLU()
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.norm2(self.conv1(self.norm1(x))))


class DenseBlock(nn.ModuleDict):
    """``num_layers`` :class:`DenseLayer` s (``denselayer1`` ...), each fed every earlier output."""

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int = 16, bn_size: int = 2):
        super().__init__({f"denselayer{i + 1}": DenseLayer(in_channels + i * growth_rate,
                                                           growth_rate, bn_size)
                          for i in range(num_layers)})
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


def _transition(in_channels: int, out_channels: int) -> nn.Sequential:
    """BatchNorm, 1x1 conv (no bias), 2x2/2 average pool (no activation)."""
    layers = nn.Sequential()
    layers.add_module("norm", nn.BatchNorm2d(in_channels))
    layers.add_module("conv", nn.Conv2d(in_channels, out_channels, 1, bias=False))
    layers.add_module("pool", nn.AvgPool2d(2, stride=2))
    return layers


class DenseTokens(nn.Module):
    """The convolutional token stem: ``(B, 3, H, W) -> (B, C, H / 16, W / 16)``.

    ``stem`` (3x3 conv 3 -> 64 with bias, 3x3/2 max pool), ``stage`` (dense block, transition,
    three times: 64 -> 160 -> 128, 128 -> 224 -> 128, twice), ``transition`` (1x1 conv with bias
    to ``embed_dim``).
    """

    def __init__(self, embed_dim: int, in_chans: int = 3, stem_width: int = 64,
                 width: int = 128, num_layers: int = 6):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, stem_width, 3, padding=1),
                                  nn.MaxPool2d(3, stride=2, padding=1))
        stage, channels = [], stem_width
        for _ in range(3):
            block = DenseBlock(num_layers, channels)
            stage += [block, _transition(block.out_channels, width)]
            channels = width
        self.stage = nn.Sequential(*stage)
        self.transition = nn.Conv2d(width, embed_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transition(self.stage(self.stem(x)))


class VisualTokens(nn.Module):
    """``(B, 3, H, W) -> (tokens (B, N, C), grid (h, w))``, tokens in row-major grid order."""

    def __init__(self, embed_dim: int):
        super().__init__()
        self.tokens = DenseTokens(embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.tokens(x)
        return x.flatten(2).transpose(1, 2), (x.shape[-2], x.shape[-1])


class Attention(nn.Module):
    """Multi-head self-attention, scale ``head_dim ** -0.5``."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads) \
            .permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block (LayerNorm eps 1e-5, exact GELU)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class CrossCovariance(nn.Module):
    """DropCov's multi-head cross-covariance of the patch tokens (``representation``).

    ``wr`` projects each token to ``3 x num_heads x wr_dim`` values (no bias), read as
    ``(3, num_heads, wr_dim)``; the original uses the first two of the three (``q``, ``k``) and
    never the third. Per sample and head, ``q`` and ``k`` (``N x wr_dim`` each) are centred by
    **one scalar each**, the mean of all their ``N * wr_dim`` values (the original's
    ``adaptive_avg_pool2d(x, (1, 1))`` on a 3-D tensor), not per column; then
    ``C = q_c^T k_c / N`` (``wr_dim x wr_dim``, rows from ``q``, columns from ``k``). The output
    is ``C`` flattened head by head, each row-major: index ``h * wr_dim**2 + i * wr_dim + j``.
    The training-only dropouts (a spatial mask on ``q`` and ``k``, dropout on ``C``) are omitted.

    Runs with autocast off in float32 (float64 for float64 input) and returns that dtype: the
    head's ``visual_fc`` runs on it with autocast off (:func:`~robustbench_gcp.models.heads.classify`).

    Shape:
        ``(B, N, dim) -> (B, num_heads * wr_dim ** 2)``.
    """

    def __init__(self, dim: int, num_heads: int, wr_dim: int):
        super().__init__()
        self.num_heads = num_heads
        self.wr_dim = wr_dim
        self.wr = nn.Linear(dim, 3 * num_heads * wr_dim, bias=False)
        self.out_features = num_heads * wr_dim ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        with full_precision(x.device):
            work = torch.promote_types(x.dtype, torch.float32)
            weight = self.wr.weight[: 2 * self.num_heads * self.wr_dim]  # q and k rows; v unused
            qk = F.linear(x.to(work), weight.to(work))
            qk = qk.reshape(B, N, 2, self.num_heads, self.wr_dim).permute(2, 0, 3, 1, 4)
            qk = qk - qk.mean(dim=(-2, -1), keepdim=True)  # one mean per (q/k, sample, head)
            cov = qk[0].transpose(-2, -1) @ qk[1] / N  # (B, heads, wr_dim, wr_dim)
            return cov.flatten(1)


class DropCovHead(nn.Module):
    """``classifier``: ``cls_fc(class token) + visual_fc(cross-covariance of the patch tokens)``."""

    def __init__(self, dim: int, num_heads: int, wr_dim: int, num_classes: int):
        super().__init__()
        self.representation = CrossCovariance(dim, num_heads, wr_dim)
        self.visual_fc = nn.Linear(self.representation.out_features, num_classes)
        self.cls_fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``x``: normed tokens ``(B, 1 + N, dim)``, class token first.

        Returns logits, or with ``pre_logits`` the class token and the cross-covariance
        features concatenated ``(B, dim + num_heads * wr_dim ** 2)``.
        """
        cls_token, cov = x[:, 0], self.representation(x[:, 1:])
        if pre_logits:
            return torch.cat([cls_token, cov], 1)
        return classify(self.visual_fc, cov, True) + self.cls_fc(cls_token)


class DeiTDropCov(nn.Module):
    """DeiT + DropCov (module names of mingzeG/DropCov's ``Vit``).

    Args:
        num_classes: outputs of ``cls_fc`` and ``visual_fc``.
        embed_dim, depth, num_heads, mlp_ratio: the transformer (DeiT-S: 384, 12, 6, 4).
        wr_dim: per-head projection width of the head (24).
        grid: token grid at the model's input size (14x14 at 224 px).
        reduction_dim, sqrt, ns_iters: refused (ConfigError) unless None.
        pretrained_cfg: preprocessing the model expects.

    Attributes:
        name, num_classes, head_type (``dropcov``), reduction_dim and depth (None),
        pretrained_cfg.

    Shape:
        ``(B, 3, H, W)`` ImageNet-normalized -> logits ``(B, num_classes)``.

    Example:
        >>> model = DeiTDropCov(num_classes=10, depth=1).eval()
        >>> model(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 10])
    """

    def __init__(self, num_classes: int = 1000, *, embed_dim: int = 384, depth: int = 12,
                 num_heads: int = 6, mlp_ratio: float = 4.0, wr_dim: int = 24,
                 grid: tuple[int, int] = (14, 14), reduction_dim: int | None = None,
                 sqrt: str | None = None, ns_iters: int | None = None,
                 pretrained_cfg: PreprocessConfig | None = None):
        super().__init__()
        _check_options("dropcov", "DeiT + DropCov", num_classes, reduction_dim, sqrt, ns_iters)
        self.name = ""
        self.num_classes = num_classes
        self.head_type = "dropcov"
        self.reduction_dim = None
        self.depth = None
        self.pretrained_cfg = pretrained_cfg or DEIT_PREPROCESS
        self.grid = tuple(grid)
        self.visual_tokens = VisualTokens(embed_dim)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.classifier = DropCovHead(embed_dim, num_heads, wr_dim, num_classes)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid[0] * grid[1], embed_dim),
                                      requires_grad=False)  # stored; loaded, never recomputed
        self.norm = nn.LayerNorm(embed_dim)
        self.apply(self._init_weights)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def position_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """``pos_embed`` for a token grid: the stored one, its patch part resampled
        (bicubic) when the grid is not the model's."""
        if tuple(grid) == self.grid:
            return self.pos_embed
        cls_pos, patches = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        patches = patches.reshape(1, *self.grid, -1).permute(0, 3, 1, 2)
        patches = F.interpolate(patches, size=grid, mode="bicubic", align_corners=False)
        return torch.cat([cls_pos, patches.flatten(2).transpose(1, 2)], 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Token stem, class token, position embedding, blocks, final LayerNorm:
        ``(B, 3, H, W) -> (B, 1 + N, embed_dim)``."""
        tokens, grid = self.visual_tokens(x)
        x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype), tokens], 1)
        x = x + self.position_embedding(grid).to(x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Logits from the tokens of :meth:`forward_features` (see :class:`DropCovHead`)."""
        return self.classifier(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def describe_pooling(self) -> str:
        """The pooling in words (for :func:`~robustbench_gcp.models.model_info`)."""
        rep = self.classifier.representation
        return (f"class token + {rep.num_heads}-head {rep.wr_dim}x{rep.wr_dim} cross-covariance "
                "of the patch tokens, no square root")

    def set_matrix_function(self, sqrt: str | None = None, ns_iters: int | None = None) -> None:
        """DropCov has no matrix square root: anything but None raises ConfigError."""
        resolve_sqrt(self.head_type, sqrt, ns_iters, owner=self.name or "DeiT + DropCov")


@register_model("deit-small-gap")
def deit_small_gap(**kwargs) -> nn.Module:
    """DeiT-S (timm deit_small_patch16_224; class-token head, top-1 79.8)."""
    return build_deit_gap("deit_small_patch16_224", **kwargs)


@register_model("deit-small-dropcov")
def deit_small_dropcov(**kwargs) -> DeiTDropCov:
    """DeiT-S + DropCov (DenseNet token stem, class token + cross-covariance head; top-1 82.4)."""
    return DeiTDropCov(**kwargs)
