"""Export-time folding: turn a trained model into a plain, static module of convolutions and constants.

For each ConvTwist (at a fixed input size):
- the antisymmetric kernels become constant weights; ``center_x``/``center_y`` fold into the main kernel
  (``W + center_x*Wx + center_y*Wy`` is one conv);
- the twist convolutions keep their 4-tap form: per tap a fixed depthwise conv of +-1 (the difference of opposite
  pixels) and a 1x1 conv for each of x and y, i.e. 8/9 of a 3x3 conv's work;
- the coordinate grids of the layer's output resolution become two ``1x1xHxW`` constants (per resolution, not per
  channel; full planes rather than a row and a column because ONNX Runtime broadcasts a whole plane 2x faster);
- the BatchNorm that follows folds into both convs' weights and the main conv's bias;
- in the ONNX graph only, the twist passes an identity depthwise 1x1 conv before it joins the main conv (see
  `FoldedConvTwist.forward`).
Plain Conv2d + BatchNorm pairs fold as usual, and every Mish becomes a `FoldedMish`, which the ONNX graph computes
without a Softplus. Folding never touches the source model.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
from timm.layers import BlurPool2d

from ..layers import ConvTwist
from ..layers._twist_math import TWIST_TAPS, coordinate_grids
from ..errors import InputError, ZooError

__all__ = ["FoldedConvTwist", "FoldedMish", "fold_model", "UnsupportedLayerError", "network_stride", "SUPPORTED_LEAVES"]

# Leaf modules the exporter knows how to handle (everything else is refused with a clear error).
SUPPORTED_LEAVES = (nn.Conv2d, nn.Conv1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Mish, nn.Hardswish,
                    nn.Hardsigmoid, nn.Sigmoid, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, BlurPool2d,
                    nn.Linear, nn.Identity, nn.Flatten, nn.Dropout)


class UnsupportedLayerError(ZooError, TypeError):
    """The model holds a layer type the exporter does not know."""


class FoldedConvTwist(nn.Module):
    """A ConvTwist (and the BatchNorm after it) folded for one input size: constant convs and grids only."""

    def __init__(self, layer: ConvTwist, bn: nn.BatchNorm2d | None, in_hw: tuple[int, int]):
        super().__init__()
        ni, nf, s = layer.in_channels, layer.out_channels, layer.stride
        self.out_channels, self.in_hw = nf, tuple(in_hw)
        self.out_hw = layer.output_size(*in_hw)
        with torch.no_grad():
            main = layer.folded_kernel().detach().clone()
            bias = layer.bias.detach().clone() if layer.bias is not None else torch.zeros(nf)
            taps = torch.cat([layer.weight_x, layer.weight_y]).detach().clone()  # (2nf, ni, 4)
            if bn is not None:
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                main = main * scale.view(-1, 1, 1, 1)
                bias = (bias - bn.running_mean) * scale + bn.bias
                taps = taps * scale.repeat(2).view(-1, 1, 1)
        self.main = nn.Conv2d(ni, nf, 3, s, 1, bias=True)
        self.main.weight.data.copy_(main)
        self.main.bias.data.copy_(bias)
        # Per tap t: a depthwise +-1 conv gives D_t = x[p+t] - x[p-t], and 1x1 convs add A_t @ D_t into each twist.
        # Many small convs beat one concatenated pair in ONNX Runtime: every op stays in its blocked NCHWc layout
        # and each conv accumulates into the previous one's output (its Conv+Add fusion); no Concat or Split copies.
        self.diff, self.twist_x, self.twist_y = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for t, (r, c) in enumerate(TWIST_TAPS):
            diff = nn.Conv2d(ni, ni, 3, s, 1, groups=ni, bias=False)
            diff.weight.data.zero_()
            diff.weight.data[:, 0, r, c], diff.weight.data[:, 0, 2 - r, 2 - c] = 1.0, -1.0
            self.diff.append(diff)
            for twist, rows in ((self.twist_x, taps[:nf]), (self.twist_y, taps[nf:])):
                conv = nn.Conv2d(ni, nf, 1, bias=False)
                conv.weight.data.copy_(rows[:, :, t, None, None])
                twist.append(conv)
        gx, gy = coordinate_grids(*self.out_hw, torch.float32, torch.device("cpu"))
        self.register_buffer("grid_x", gx.expand(1, 1, *self.out_hw).clone())
        self.register_buffer("grid_y", gy.expand(1, 1, *self.out_hw).clone())
        self.to_blocked = nn.Conv2d(nf, nf, 1, groups=nf, bias=False)
        self.to_blocked.weight.data.fill_(1.0)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing() and not torch.compiler.is_compiling() and tuple(x.shape[-2:]) != self.in_hw:
            raise InputError(f"this folded layer was built for {self.in_hw[0]}x{self.in_hw[1]} inputs, got "
                             f"{x.shape[-2]}x{x.shape[-1]}; fold (export) again for that image size")
        d = self.diff[0](x)
        tx, ty = self.twist_x[0](d), self.twist_y[0](d)
        for diff, twist_x, twist_y in zip(self.diff[1:], self.twist_x[1:], self.twist_y[1:]):
            d = diff(x)
            tx, ty = tx + twist_x(d), ty + twist_y(d)
        twist = self.grid_x * tx + self.grid_y * ty
        if torch.onnx.is_in_onnx_export():
            # ONNX Runtime's blocked (NCHWc) layout cannot take a Mul by a constant plane, so the twist is in NCHW
            # here. Passing it through a conv brings it back into the blocked layout, and then the sum (and the
            # ReLU after it) fuse into the main conv instead of running in NCHW: 32 fewer nodes in resnet50, and
            # 0.2-3% faster in 11 of 12 pairs and settings of bench/onnx.py timed in turns (the 12th within noise).
            twist = self.to_blocked(twist)
        return self.main(x) + twist


class FoldedMish(nn.Mish):
    """Mish, which the ONNX graph computes as ``x / (1 + 2 / (e * (e + 2)))`` with ``e = exp(x)``: the same function,
    since ``tanh(softplus(x)) = n / (n + 2)`` with ``n = e * (e + 2)``. Torch exports Mish through Softplus (opset
    18's Mish op expands to it too), and ONNX Runtime's CPU Softplus kernel is unvectorised, far slower than its Exp,
    Mul and Div. Exact to float32 rounding, in float16 graphs too; an ``e`` that overflows gives ``x`` and one that
    underflows gives 0, never NaN. Six elementwise nodes: the 2 is a tensor constant, so that ``2 / n`` is one Div
    rather than the Reciprocal and Mul torch writes for a Python number over a tensor. Eager PyTorch keeps its own
    kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            e = torch.exp(x)
            return x / (1 + x.new_tensor(2.0) / (e * (e + 2)))
        return super().forward(x)


def _fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    fused = copy.deepcopy(conv)
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused.weight.copy_(conv.weight * scale.view(-1, *([1] * (conv.weight.dim() - 1))))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
    return fused


def _conv_bn_pairs(module: nn.Module):
    """(conv name, bn name) pairs inside ``module`` whose BN directly follows the conv: ``convN``/``bnN`` attributes
    (torchvision ResNet blocks and stem) and adjacent entries of an ``nn.Sequential``."""
    children = dict(module.named_children())
    pairs = []
    for name, child in children.items():
        if isinstance(child, (nn.Conv2d, ConvTwist)) and name.startswith("conv"):
            bn = children.get("bn" + name[len("conv"):])
            if isinstance(bn, nn.BatchNorm2d):
                pairs.append((name, "bn" + name[len("conv"):]))
    if isinstance(module, nn.Sequential):
        names = list(children)
        for a, b in zip(names, names[1:]):
            if isinstance(children[a], (nn.Conv2d, ConvTwist)) and isinstance(children[b], nn.BatchNorm2d):
                pairs.append((a, b))
    return pairs


def _check_supported(model: nn.Module) -> None:
    for name, m in model.named_modules():
        if isinstance(m, ConvTwist) or next(m.children(), None) is not None:
            continue
        if not isinstance(m, SUPPORTED_LEAVES):
            raise UnsupportedLayerError(
                f"cannot export layer {name!r} of type {type(m).__name__}: the exporter knows ConvTwist and "
                f"{', '.join(t.__name__ for t in SUPPORTED_LEAVES)}. Replace it, or export the model with "
                "torch.onnx.export directly")


def _input_sizes(model: nn.Module, image_size: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """Spatial input size of every ConvTwist for one forward pass at ``image_size`` (found with hooks)."""
    sizes, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, ConvTwist):
            hooks.append(m.register_forward_pre_hook(
                lambda mod, args, name=name: sizes.__setitem__(name, tuple(args[0].shape[-2:]))))
    try:
        with torch.no_grad():
            model(torch.zeros(1, _in_channels(model), *image_size))
    finally:
        for h in hooks:
            h.remove()
    return sizes


def _in_channels(model: nn.Module) -> int:
    first = next(m for m in model.modules() if isinstance(m, (nn.Conv2d, ConvTwist)))
    return first.in_channels


def network_stride(model: nn.Module) -> int:
    """Product of the strides along the network (32 for a ResNet): image sizes must be multiples of it."""
    stride = 1
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, ConvTwist)) and not (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)):
            s = m.stride if isinstance(m, ConvTwist) else m.stride[0]
            stride *= s
        elif isinstance(m, nn.MaxPool2d):
            stride *= m.stride if isinstance(m.stride, int) else m.stride[0]
    return stride


def fold_model(model: nn.Module, image_size) -> nn.Module:
    """A folded, eval-mode copy of ``model`` for ``image_size`` (int or (H, W)): every ConvTwist becomes a
    `FoldedConvTwist` with its BatchNorm folded in, every Conv2d+BatchNorm pair one Conv2d, every Mish a
    `FoldedMish`."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    _check_supported(model)
    folded = copy.deepcopy(model).eval().float()
    sizes = _input_sizes(folded, (h, w))
    for parent_name, parent in list(folded.named_modules()):
        for conv_name, bn_name in _conv_bn_pairs(parent):
            conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
            full = f"{parent_name}.{conv_name}" if parent_name else conv_name
            if isinstance(conv, ConvTwist):
                setattr(parent, conv_name, FoldedConvTwist(conv, bn, sizes[full]))
            else:
                setattr(parent, conv_name, _fold_conv_bn(conv, bn))
            setattr(parent, bn_name, nn.Identity())
    for name, m in list(folded.named_modules()):  # ConvTwists without a BatchNorm after them
        if isinstance(m, ConvTwist):
            parent_name, _, child = name.rpartition(".")
            setattr(folded.get_submodule(parent_name) if parent_name else folded, child,
                    FoldedConvTwist(m, None, sizes[name]))
        elif type(m) is nn.Mish:
            parent_name, _, child = name.rpartition(".")
            setattr(folded.get_submodule(parent_name) if parent_name else folded, child, FoldedMish(m.inplace))
    return folded
