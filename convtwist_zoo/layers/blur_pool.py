"""MaxBlurPool: a stride-2 max pool that aliases less (max 3x3 at stride 1, then a binomial blur at stride 2), on
fused CPU operators where they are built; and `PoolFirst`, a downsampling block run behind one shared pool."""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import BlurPool2d

from ._kernels import fx_tracing, load, maxblur_fused

__all__ = ["MaxBlurPool", "PoolFirst"]


class _MaxBlurFn(torch.autograd.Function):
    """MaxBlurPool on the fused CPU kernels: one byte per element remembers where each window's maximum was."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y, positions = load().maxblur_forward(x.contiguous(memory_format=torch.channels_last),
                                                            ctx.needs_input_grad[0])
        ctx.save_for_backward(positions)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (positions,) = ctx.saved_tensors
        return load().maxblur_backward(grad.contiguous(memory_format=torch.channels_last), positions)


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
            if not fx_tracing() and maxblur_fused(x):
                return _MaxBlurFn.apply(x)
        for module in self:  # the two modules: TorchScript, torch.fx, tracers, torch.compile, other devices
            x = module(x)
        return x


class PoolFirst(nn.Module):
    """A downsampling residual block run at stride 1 behind one pool shared by its two paths."""

    def __init__(self, pool: nn.Module, block: nn.Module):
        super().__init__()
        self.pool, self.block = pool, block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.pool(x))
