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
"""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import BlurPool2d
from timm.models.resnet import BasicBlock, Bottleneck, ResNet

from . import fused_kernels
from .layers import fx_tracing, twistify
from .models import check_images

__all__ = ["XResNet", "MaxBlurPool", "PoolFirst", "SimpleSelfAttention", "xresnet", "XRESNET_LAYERS"]

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


class _MaxBlurFn(torch.autograd.Function):
    """MaxBlurPool on the fused CPU kernels: one byte per element remembers where each window's maximum was."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y, positions = fused_kernels.load().maxblur_forward(x.contiguous(memory_format=torch.channels_last),
                                                            ctx.needs_input_grad[0])
        ctx.save_for_backward(positions)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (positions,) = ctx.saved_tensors
        return fused_kernels.load().maxblur_backward(grad.contiguous(memory_format=torch.channels_last), positions)


class MaxBlurPool(nn.Sequential):
    """Max pool 3x3 at stride 1, then a 3x3 binomial blur at stride 2 (Zhang, "Making convolutional networks
    shift-invariant again", 2019): a stride-2 max pool that aliases less.

    On the CPU it runs on fused kernels where they are built: the same function, without the plain modules' int64
    index per element, scatter and depthwise convolution, which dominate the pool's cost in training
    (bench/maxblur.py). Tracers (ONNX export), torch.compile and other devices get the two modules."""

    def __init__(self, channels: int):
        super().__init__(nn.MaxPool2d(3, stride=1, padding=1), BlurPool2d(channels, filt_size=3, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            if not fx_tracing() and self._fused_fits(x):
                return _MaxBlurFn.apply(x)
        for module in self:  # the two modules: TorchScript, torch.fx, tracers, torch.compile, other devices
            x = module(x)
        return x

    @torch.jit.unused
    def _fused_fits(self, x: torch.Tensor) -> bool:
        """Whether the fused CPU kernels compute this call as the two modules would."""
        if (x.device.type != "cpu" or x.dim() != 4 or min(x.shape[2:]) < 2 or torch.jit.is_tracing()
                or torch.compiler.is_compiling() or fused_kernels.load() is None):
            return False
        # the kernels compute in the input's dtype; under autocast the blur's conv2d would compute in autocast's:
        # where the two differ (an fp32 input under bf16 autocast) the modules run, so that the maxima are the same
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        return x.dtype == dtype and dtype in (torch.float32, torch.bfloat16, torch.float16)


class PoolFirst(nn.Module):
    """A downsampling residual block run at stride 1 behind one pool shared by its two paths."""

    def __init__(self, pool: nn.Module, block: nn.Module):
        super().__init__()
        self.pool, self.block = pool, block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.pool(x))


class SimpleSelfAttention(nn.Module):
    """fast.ai's simple self-attention: ``x + gamma * (x x^T) conv1x1(x)`` over the flattened positions; ``gamma``
    starts at 0, so the block starts as the identity."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 1, bias=False)
        nn.init.kaiming_normal_(self.conv.weight)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        flat = x.reshape(n, c, h * w)
        attended = torch.bmm(torch.bmm(flat, flat.transpose(1, 2)), self.conv(flat))
        return (flat + self.gamma * attended).reshape(n, c, h, w)


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
        raise ValueError(f"unsupported xresnet depth {depth}; choose one of {sorted(XRESNET_LAYERS)}")
    for name, value in (("maxblur", maxblur), ("sa", sa), ("wide_stem", wide_stem)):
        if not isinstance(value, bool):  # "no" or "0" would otherwise read as switched on
            raise ValueError(f"option {name} takes true or false, got {value!r}")
    if not isinstance(act_layer, str):
        raise ValueError(f"option act_layer takes an activation's name (e.g. mish, relu), got {act_layer!r}")
    if isinstance(init_max, bool) or not isinstance(init_max, (int, float)) or not init_max > 0:
        raise ValueError(f"option init_max takes a number above 0, got {init_max!r}")
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
