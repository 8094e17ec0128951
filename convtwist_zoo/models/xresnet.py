"""The fast.ai leaderboard's ResNet family ("xresnet"), built from timm's ResNet, plain or with ConvTwist blocks.

timm has the parts: the deep stem (3->32->32->64, stride 2 in the first conv: ``stem_type="deep"``), the pooled
shortcut of ResNet-D (``avg_down``), Mish (``act_layer``), the last BatchNorm of every block zero-initialised
(``zero_init_last``) and a blur pool (``BlurPool2d``). Written here is only what timm lacks:

- ``maxblur``: the imagenette notebooks' "ResNet trick": a downsampling block pools its input once (max pool 3x3
  stride 1, then a blur pool of stride 2: MaxBlurPool) and runs both of its paths at stride 1 on the pooled map;
  the stem's max pool becomes the same MaxBlurPool;
- ``sa``: fast.ai's simple self-attention after the last block of the first stage;
- ``wide_stem``: the notebooks' stem widths 3->32->64->64 instead of timm's 3->32->32->64.

As in the notebooks, ConvTwist replaces the 3x3 convs of the residual blocks; the stem stays plain.

Read top to bottom: the model class, the builder, the checkpoints trained here (``default_cfgs``; the default tag is
the one ``pretrained=True`` gives), then one registered entry point per architecture.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.models.resnet import BasicBlock, Bottleneck, ResNet

from ..layers import MaxBlurPool, PoolFirst, SimpleSelfAttention, twistify
from ..layers._kernels import fx_tracing
from ._pretrained import checkpoint, register_checkpoints
from ._registry import register_model
from .resnet import check_images
from ..errors import InputError

__all__ = ["XResNet", "xresnet", "XRESNET_LAYERS", "default_cfgs"] + [
    f"{p}xresnet{d}" for p in ("", "convtwist_") for d in (18, 34, 50)]

# depth -> (timm block, blocks per stage)
XRESNET_LAYERS = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)), 50: (Bottleneck, (3, 4, 6, 3))}


class XResNet(ResNet):
    """timm's ResNet with the zoo's input checks. ``forward_features``, ``forward_head``, ``get_classifier``,
    ``reset_classifier`` and ``feature_info`` are timm's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            if not fx_tracing():  # input checks branch on shapes: eager only
                check_images(x, self.conv1[0].in_channels)
        return self.forward_head(self.forward_features(x))


def _pool_first(stage: nn.Sequential) -> None:
    """Turn the stage's first (stride-2) block into a MaxBlurPool followed by the block at stride 1."""
    block = stage[0]
    strided = block.conv2 if isinstance(block, Bottleneck) else block.conv1
    strided.stride = (1, 1)
    if isinstance(block.downsample, nn.Sequential) and isinstance(block.downsample[0], nn.AvgPool2d):
        block.downsample[0] = nn.Identity()  # the shared pool has already halved the map
    stage[0] = PoolFirst(MaxBlurPool(strided.in_channels if isinstance(block, BasicBlock) else
                                     block.conv1.in_channels), block)


def _widen_stem(model: XResNet, width: int = 64) -> None:
    """Make the deep stem's second and third convs ``width`` channels wide (3->32->width->64)."""
    stem = model.conv1
    first, out = stem[0].out_channels, stem[6].out_channels
    stem[3] = nn.Conv2d(first, width, 3, padding=1, bias=False)
    stem[4] = type(stem[4])(width)
    stem[6] = nn.Conv2d(width, out, 3, padding=1, bias=False)
    for conv in (stem[3], stem[6]):  # timm's ResNet initialisation
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")


def xresnet(depth: int, *, twist: bool, num_classes: int = 10, in_chans: int = 3, act_layer: str = "mish",
            maxblur: bool = False, sa: bool = False, wide_stem: bool = False, init_max: float = 1.5,
            **kwargs) -> XResNet:
    """An xresnet of ``depth`` (18, 34 or 50); with ``twist`` the blocks' 3x3 convs become ConvTwist.

    Args:
        depth: 18, 34 (basic blocks) or 50 (bottlenecks).
        twist: replace every 3x3 conv of the residual blocks with a ConvTwist (the stem stays plain).
        num_classes: classifier outputs.
        in_chans: input channels.
        act_layer: timm activation name (fast.ai's leaderboard models use ``"mish"``).
        maxblur: MaxBlurPool in the stem and before each downsampling block (pool first, both paths).
        sa: simple self-attention after the first stage.
        wide_stem: stem widths 3->32->64->64 (the imagenette notebooks') instead of 3->32->32->64.
        init_max: ConvTwist's centre initialisation bound (see `ConvTwist`).
        **kwargs: passed on to timm's ``ResNet`` (``drop_rate``, ``drop_path_rate``, ...).

    Returns:
        An `XResNet` (a timm ``ResNet``).

    Example:
        >>> net = xresnet(50, twist=True)
        >>> net(torch.zeros(1, 3, 128, 128)).shape
        torch.Size([1, 10])
    """
    if depth not in XRESNET_LAYERS:
        raise InputError(f"unsupported xresnet depth {depth}; choose one of {sorted(XRESNET_LAYERS)}")
    for name, value in (("maxblur", maxblur), ("sa", sa), ("wide_stem", wide_stem)):
        if not isinstance(value, bool):  # "no" or "0" would otherwise read as switched on
            raise InputError(f"option {name} takes true or false, got {value!r}")
    if not isinstance(act_layer, str):
        raise InputError(f"option act_layer takes an activation's name (e.g. mish, relu), got {act_layer!r}")
    if isinstance(init_max, bool) or not isinstance(init_max, (int, float)) or not init_max > 0:
        raise InputError(f"option init_max takes a number above 0, got {init_max!r}")
    block, layers = XRESNET_LAYERS[depth]
    model = XResNet(block, layers, num_classes=num_classes, in_chans=in_chans, stem_width=32, stem_type="deep",
                    avg_down=True, act_layer=act_layer, zero_init_last=True, **kwargs)
    if wide_stem:
        _widen_stem(model)
    if maxblur:
        model.maxpool = MaxBlurPool(model.conv1[-1].out_channels)
        for stage in (model.layer2, model.layer3, model.layer4):
            _pool_first(stage)
    if sa:
        model.layer1[-1].se = SimpleSelfAttention(model.layer1[-1].bn3.num_features if block is Bottleneck
                                                  else model.layer1[-1].bn2.num_features)
    if twist:
        twistify(model, exclude=("conv1",), init_max=init_max)
    return model


default_cfgs = register_checkpoints({
    "xresnet18.imagenette": checkpoint(
        "imagenette", "33c0425afa77a29dc403e121effd09e5c2b9a817401b72b1ff6f5f7c528ba44f", 22433420, default=True, model_args="maxblur=true"),
    "xresnet18.imagewoof": checkpoint(
        "imagewoof", "76b62b0738d03dbf757fde941eccdc53aa8cdb1f6ef331e39181dcacc76f73ed", 22433420, model_args="maxblur=true"),
    "xresnet50.imagenette": checkpoint(
        "imagenette", "f7c8e84d25dd819bf09979924259dc617098238fbae22b8a80808db55c0b4090", 47232348, default=True, model_args="maxblur=true"),
    "xresnet50.imagewoof": checkpoint(
        "imagewoof", "79b8a900ae2450fd71577dc062a4cc81644a4ef527abf1db66522f584fd852a5", 47232348, model_args="maxblur=true"),
    "convtwist_xresnet18.imagenette": checkpoint(
        "imagenette", "572bd32ca4e4ccbef9d26ced651f72debc4b52101074f3912c3d646cfb69ce47", 41984556, default=True, model_args="maxblur=true"),
    "convtwist_xresnet18.imagewoof": checkpoint(
        "imagewoof", "e1b7f64baef6b758bf1f950a77424ee0e2f67752773a90cafff9c4b1dae39d7b", 41984556, model_args="maxblur=true"),
    "convtwist_xresnet50.imagenette": checkpoint(
        "imagenette", "d167474bc34425ce2d930ee7d301d2c18bd821d69ad6953a6039d7fa2f059afd", 67373020, default=True, model_args="maxblur=true"),
    "convtwist_xresnet50.imagewoof": checkpoint(
        "imagewoof", "225167dca0ed9c7f855c0f2b7892bdf90637b3c981dc4f6c8245aa73008f9ccd", 67373020, model_args="maxblur=true"),
})


@register_model
def xresnet18(num_classes: int = 10, *, in_chans: int = 3, act_layer: str = "mish", maxblur: bool = False,
              sa: bool = False, wide_stem: bool = False, drop_rate: float = 0.0,
              drop_path_rate: float = 0.0) -> XResNet:
    """fast.ai leaderboard xresnet18 (deep stem, pooled shortcuts, Mish, zero-init last BN; timm's ResNet). Options: see `xresnet`."""
    return xresnet(18, twist=False, num_classes=num_classes, in_chans=in_chans, act_layer=act_layer,
                   maxblur=maxblur, sa=sa, wide_stem=wide_stem, drop_rate=drop_rate,
                   drop_path_rate=drop_path_rate)


@register_model
def convtwist_xresnet18(num_classes: int = 10, *, in_chans: int = 3, act_layer: str = "mish", maxblur: bool = False,
                        sa: bool = False, wide_stem: bool = False, drop_rate: float = 0.0,
                        drop_path_rate: float = 0.0,
                        init_max: float = 1.5) -> XResNet:
    """xresnet18 with every 3x3 conv of its blocks a ConvTwist (the stem stays plain). Options: see `xresnet`."""
    return xresnet(18, twist=True, num_classes=num_classes, in_chans=in_chans, act_layer=act_layer,
                   maxblur=maxblur, sa=sa, wide_stem=wide_stem, drop_rate=drop_rate,
                   drop_path_rate=drop_path_rate, init_max=init_max)


@register_model
def xresnet34(num_classes: int = 10, *, in_chans: int = 3, act_layer: str = "mish", maxblur: bool = False,
              sa: bool = False, wide_stem: bool = False, drop_rate: float = 0.0,
              drop_path_rate: float = 0.0) -> XResNet:
    """fast.ai leaderboard xresnet34 (deep stem, pooled shortcuts, Mish, zero-init last BN; timm's ResNet). Options: see `xresnet`."""
    return xresnet(34, twist=False, num_classes=num_classes, in_chans=in_chans, act_layer=act_layer,
                   maxblur=maxblur, sa=sa, wide_stem=wide_stem, drop_rate=drop_rate,
                   drop_path_rate=drop_path_rate)


@register_model
def convtwist_xresnet34(num_classes: int = 10, *, in_chans: int = 3, act_layer: str = "mish", maxblur: bool = False,
                        sa: bool = False, wide_stem: bool = False, drop_rate: float = 0.0,
                        drop_path_rate: float = 0.0,
                        init_max: float = 1.5) -> XResNet:
    """xresnet34 with every 3x3 conv of its blocks a ConvTwist (the stem stays plain). Options: see `xresnet`."""
    return xresnet(34, twist=True, num_classes=num_classes, in_chans=in_chans, act_layer=act_layer,
                   maxblur=maxblur, sa=sa, wide_stem=wide_stem, drop_rate=drop_rate,
                   drop_path_rate=drop_path_rate, init_max=init_max)


@register_model
def xresnet50(num_classes: int = 10, *, in_chans: int = 3, act_layer: str = "mish", maxblur: bool = False,
              sa: bool = False, wide_stem: bool = False, drop_rate: float = 0.0,
              drop_path_rate: float = 0.0) -> XResNet:
    """fast.ai leaderboard xresnet50 (deep stem, pooled shortcuts, Mish, zero-init last BN; timm's ResNet). Options: see `xresnet`."""
    return xresnet(50, twist=False, num_classes=num_classes, in_chans=in_chans, act_layer=act_layer,
                   maxblur=maxblur, sa=sa, wide_stem=wide_stem, drop_rate=drop_rate,
                   drop_path_rate=drop_path_rate)


@register_model
def convtwist_xresnet50(num_classes: int = 10, *, in_chans: int = 3, act_layer: str = "mish", maxblur: bool = False,
                        sa: bool = False, wide_stem: bool = False, drop_rate: float = 0.0,
                        drop_path_rate: float = 0.0,
                        init_max: float = 1.5) -> XResNet:
    """xresnet50 with every 3x3 conv of its blocks a ConvTwist (the stem stays plain). Options: see `xresnet`."""
    return xresnet(50, twist=True, num_classes=num_classes, in_chans=in_chans, act_layer=act_layer,
                   maxblur=maxblur, sa=sa, wide_stem=wide_stem, drop_rate=drop_rate,
                   drop_path_rate=drop_path_rate, init_max=init_max)
