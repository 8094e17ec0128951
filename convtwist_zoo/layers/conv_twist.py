"""The ConvTwist layer, conversion from the seed's layout, and `twistify` for any model.

ConvTwist computes ``conv(x) + XX * conv_x(x) + YY * conv_y(x)`` where ``conv_x``/``conv_y`` have
antisymmetric 3x3 kernels (``w[r, c] = -w[2 - r, 2 - c]``, centre 0) and ``XX``/``YY`` are the output's
coordinate grids (``2*j/w - 1``, ``2*i/h - 1``) shifted by learnable per-channel centres.

Parametrisation: an antisymmetric kernel has 4 free taps, stored as ``weight_x``/``weight_y`` of shape
``(nf, ni, 4)`` for the positions ``TWIST_TAPS`` (row-major (0,0), (0,1), (0,2), (1,0)); the mirrored positions hold
the negatives. So the layer has ``nf*ni*(9+4+4) + 2*nf`` parameters and never edits a parameter in ``forward``.

Computation: with ``XX = gx + center_x`` the centre terms are plain convolutions, so they fold into the main kernel:
``conv_{W + cx*Wx + cy*Wy}(x) + gx * conv_x(x) + gy * conv_y(x)``. The two twist convolutions use the antisymmetry:
``conv_x(x) = sum_t a_t * (x[p + t] - x[p - t])``, four differences of shifted inputs followed by one matmul, which
is 8/9 of a 3x3 convolution's work for both twists together (17/9 for the whole layer instead of 3). `TwistConv` (in `_twist_functions`)
does this with a hand-written backward.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._kernels import compute_dtype, cpu_ops, fx_tracing, stacked_is_faster, twist_path
from ._twist_functions import PreparedKernels, StackedTwistConv, TwistConv, twist_reference
from ._twist_math import TWIST_TAPS, antisymmetric_kernel, grids_like, twist_taps_from_kernel
from ..errors import InputError

__all__ = ["ConvTwist", "to_seed_state_dict"]


class ConvTwist(nn.Module):
    """Drop-in replacement for a 3x3 ``nn.Conv2d(in_channels, out_channels, 3, stride, padding=1)``: the seed's
    ``ConvTwist(ni, nf, stride)``, ``conv(x) + XX * conv_x(x) + YY * conv_y(x)``.

    Parameters: ``weight`` (nf, ni, 3, 3), ``weight_x``/``weight_y`` (nf, ni, 4) free taps of the antisymmetric
    twist kernels, ``center_x``/``center_y`` (nf), and ``bias`` (nf) when ``bias=True``: ``nf*ni*17 + 2*nf``
    (+ nf) in all.

    Args:
        in_channels: input channels (the seed's ``ni``; positional as in the seed).
        out_channels: output channels (the seed's ``nf``).
        stride: 1 or 2.
        init_max: the centres start uniform in (-init_max, init_max).
        bias: add a learnable bias, as ``nn.Conv2d(bias=True)``.
        kernel_size, padding: accepted for ``nn.Conv2d`` compatibility; only 3 and 1.

    Returns (forward):
        ``(N, out_channels, H', W')`` in the memory format of the input: NCHW in, NCHW out; channels_last in,
        channels_last out (the CPU kernels work in channels_last, so an NCHW input costs two layout copies).

    Example:
        >>> layer = ConvTwist(64, 128, stride=2)
        >>> layer(torch.randn(1, 64, 32, 32)).shape
        torch.Size([1, 128, 16, 16])
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, init_max: float = 1.5,
                 bias: bool = False, *, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        if stride not in (1, 2):
            raise InputError(f"ConvTwist supports stride 1 or 2, got {stride}")
        if kernel_size not in (3, (3, 3)) or padding not in (1, (1, 1)):
            raise InputError(f"ConvTwist is a 3x3 convolution with padding 1, got kernel_size={kernel_size}, "
                             f"padding={padding}")
        ni, nf = in_channels, out_channels
        self.in_channels, self.out_channels, self.stride, self.init_max = ni, nf, stride, init_max
        self.weight = nn.Parameter(torch.empty(nf, ni, 3, 3))
        self.weight_x = nn.Parameter(torch.empty(nf, ni, len(TWIST_TAPS)))
        self.weight_y = nn.Parameter(torch.empty(nf, ni, len(TWIST_TAPS)))
        self.center_x = nn.Parameter(torch.empty(nf))
        self.center_y = nn.Parameter(torch.empty(nf))
        self.bias = nn.Parameter(torch.empty(nf)) if bias else None
        self.reset_parameters()
        self.register_load_state_dict_pre_hook(_accept_seed_layout)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Seed's init: every kernel as ``nn.Conv2d`` inits it, ``conv_x`` antisymmetrised, ``conv_y`` = ``conv_x``
        rotated 90 degrees (``transpose(2,3).flip(3)``), centres uniform(-init_max, init_max)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        kx = torch.empty_like(self.weight)
        nn.init.kaiming_uniform_(kx, a=math.sqrt(5))
        kx = antisymmetric_kernel(twist_taps_from_kernel(kx))
        self.weight_x.copy_(twist_taps_from_kernel(kx))
        self.weight_y.copy_(twist_taps_from_kernel(kx.transpose(2, 3).flip(3)))
        self.center_x.uniform_(-self.init_max, self.init_max)
        self.center_y.uniform_(-self.init_max, self.init_max)
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_channels * 9)
            self.bias.uniform_(-bound, bound)

    def kernels(self):
        """The three full 3x3 kernels (conv, conv_x, conv_y) in the seed's sense."""
        return self.weight, antisymmetric_kernel(self.weight_x), antisymmetric_kernel(self.weight_y)

    def folded_kernel(self) -> torch.Tensor:
        """Main kernel with the centre terms folded in: ``W + center_x*Wx + center_y*Wy``."""
        # antisymmetric_kernel is linear: fold the centres on the 4 taps (4/9 of the work) and expand once
        taps = self.center_x.view(-1, 1, 1) * self.weight_x + self.center_y.view(-1, 1, 1) * self.weight_y
        return self.weight + antisymmetric_kernel(taps)

    def output_size(self, h: int, w: int):
        return (h - 1) // self.stride + 1, (w - 1) // self.stride + 1

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4:
            raise InputError(f"ConvTwist expects a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise InputError(f"ConvTwist({self.in_channels}->{self.out_channels}) expects {self.in_channels} input "
                             f"channels, got {x.shape[1]} (input shape {tuple(x.shape)})")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            if not fx_tracing():
                return self._forward_eager(x)
        return self.forward_plain(x)

    def forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        """The layer in standard convolutions, the seed's formula with the centres folded into the main kernel:
        what TorchScript compiles and torch.fx traces (the fused CPU kernels are opaque to both); equal to the fused
        path within float rounding."""
        kx, ky = antisymmetric_kernel(self.weight_x), antisymmetric_kernel(self.weight_y)
        main = self.weight + self.center_x.view(-1, 1, 1, 1) * kx + self.center_y.view(-1, 1, 1, 1) * ky
        out = F.conv2d(x, main, self.bias, self.stride, 1)
        twist = F.conv2d(x, torch.cat([kx, ky]), None, self.stride, 1)
        gx, gy = grids_like(out)
        return out + gx * twist[:, :self.out_channels] + gy * twist[:, self.out_channels:]

    @torch.jit.unused
    def _forward_eager(self, x: torch.Tensor) -> torch.Tensor:
        """The eager path, on the computation `_kernels.twist_path` picks."""
        self._check_input(x)
        path = twist_path(x)
        if path == "plain":
            return twist_reference(x, self.folded_kernel(), torch.cat([self.weight_x, self.weight_y]), self.bias,
                                   self.stride)
        dtype = compute_dtype(x)
        with torch.autocast(x.device.type, enabled=False):
            bias = self.bias.to(dtype) if self.bias is not None else None
            stacked = stacked_is_faster(x, dtype, self.in_channels, self.stride)
            kernel, taps = self._compute_kernels(x, dtype, stacked)
            if stacked:
                if bias is not None:
                    bias = torch.cat([bias, bias.new_zeros(2 * self.out_channels)])
                return StackedTwistConv.apply(x.to(dtype), kernel, bias, self.stride)
            return TwistConv.apply(x.to(dtype), kernel, taps, bias, self.stride)

    def _compute_kernels(self, x: torch.Tensor, dtype: torch.dtype, stacked: bool):
        """The kernels the fused Functions take, in ``dtype``: (main with centres folded, taps ``[Wx; Wy]``), or
        (``[main; Kx; Ky]``, None) for the stacked path. On CPU one C++ pass each way replaces about ten tensor ops
        over the parameters (about 6% of a convtwist_resnet18 training step)."""
        params = (self.weight, self.weight_x, self.weight_y, self.center_x, self.center_y)
        if (cpu_ops(x) is not None and all(p.dtype == torch.float32 for p in params)
                and all(p.is_contiguous() for p in params[1:])
                and (self.weight.is_contiguous() or self.weight.is_contiguous(memory_format=torch.channels_last))):
            kernel, taps = PreparedKernels.apply(*params, dtype, stacked)
            return kernel, (None if stacked else taps)
        return self._plain_kernels(dtype, stacked)

    def _plain_kernels(self, dtype: torch.dtype, stacked: bool):
        """`_compute_kernels` in tensor ops (other devices and dtypes; the reference of the C++ pass)."""
        if stacked:
            return torch.cat([self.folded_kernel(), *self.kernels()[1:]]).to(dtype), None
        return self.folded_kernel().to(dtype), torch.cat([self.weight_x, self.weight_y]).to(dtype)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, stride={self.stride}, init_max={self.init_max}"
                f"{', bias=True' if self.bias is not None else ''}")


def _accept_seed_layout(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                        error_msgs):
    """Load the seed's layout (``conv.weight``, ``conv_x.weight``, ``conv_y.weight`` full kernels) by converting it:
    the twist kernels are antisymmetrised on load, as the seed's forward would."""
    if prefix + "conv.weight" not in state_dict:
        return
    state_dict[prefix + "weight"] = state_dict.pop(prefix + "conv.weight")
    if prefix + "conv.bias" in state_dict:
        state_dict[prefix + "bias"] = state_dict.pop(prefix + "conv.bias")
    for axis in ("x", "y"):
        full = state_dict.pop(prefix + f"conv_{axis}.weight", None)
        if full is not None:
            state_dict[prefix + f"weight_{axis}"] = twist_taps_from_kernel(full)


def to_seed_state_dict(module: nn.Module) -> dict:
    """State dict of ``module`` with every ConvTwist in the seed's layout (``conv``/``conv_x``/``conv_y`` kernels)."""
    state = module.state_dict()
    for name, layer in module.named_modules():
        if not isinstance(layer, ConvTwist):
            continue
        p = name + "." if name else ""
        w, wx, wy = (k.detach() for k in layer.kernels())
        state[p + "conv.weight"] = state.pop(p + "weight")
        if layer.bias is not None:
            state[p + "conv.bias"] = state.pop(p + "bias")
        state[p + "conv_x.weight"] = wx
        state[p + "conv_y.weight"] = wy
        del state[p + "weight_x"], state[p + "weight_y"]
    return state

