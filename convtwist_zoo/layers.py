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
is 8/9 of a 3x3 convolution's work for both twists together (17/9 for the whole layer instead of 3). `_TwistConv`
does this with a hand-written backward.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import fused_kernels

__all__ = ["ConvTwist", "TWIST_TAPS", "antisymmetric_kernel", "twist_taps_from_kernel", "twistify",
           "TwistifyReport", "to_seed_state_dict", "coordinate_grids"]

# Free taps of an antisymmetric 3x3 kernel; each one's mirror (2-r, 2-c) holds its negative.
TWIST_TAPS = ((0, 0), (0, 1), (0, 2), (1, 0))


def antisymmetric_kernel(taps: torch.Tensor) -> torch.Tensor:
    """Full ``(nf, ni, 3, 3)`` kernel from the 4 free taps ``(nf, ni, 4)``; row-major order makes the mirror of
    position k be position 8-k, so the kernel is ``[a0 a1 a2 a3 0 -a3 -a2 -a1 -a0]``."""
    zero = torch.zeros_like(taps[..., :1])
    full = torch.cat([taps, zero, -taps.flip([-1])], dim=-1)
    return full.reshape(full.shape[:-1] + (3, 3)) if not torch.jit.is_scripting() else \
        full.reshape(list(full.shape[:-1]) + [3, 3])


def twist_taps_from_kernel(kernel: torch.Tensor) -> torch.Tensor:
    """The 4 free taps of the antisymmetric part ``(w - w.flip(2).flip(3)) / 2`` of any 3x3 kernel (the seed's
    ``symmetrize``)."""
    flat = kernel.flatten(-2)
    return (flat[..., :4] - flat[..., 5:].flip(-1)) / 2


_GRID_CACHE: dict = {}


def coordinate_grids(h: int, w: int, dtype: torch.dtype, device: torch.device):
    """Seed's grids ``gx[j] = 2*j/w - 1`` (shape ``1x1x1xw``) and ``gy[i] = 2*i/h - 1`` (``1x1xhx1``), computed in
    float64 then cast, built once per (size, dtype, device) and shared by every layer."""
    key = (h, w, dtype, str(device))
    grids = _GRID_CACHE.get(key)
    if grids is None:
        gx = (torch.arange(w, dtype=torch.float64) * 2 / w - 1).to(device=device, dtype=dtype).view(1, 1, 1, w)
        gy = (torch.arange(h, dtype=torch.float64) * 2 / h - 1).to(device=device, dtype=dtype).view(1, 1, h, 1)
        grids = _GRID_CACHE[key] = (gx, gy)
    return grids


def grids_like(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`coordinate_grids` for the size, dtype and device of ``out``, in ops that TorchScript compiles; torch.fx
    records it as one call (its shapes are not known while tracing)."""
    h, w = out.shape[-2], out.shape[-1]
    gx = (torch.arange(w, dtype=torch.float64, device=out.device) * 2 / w - 1).to(out.dtype).view(1, 1, 1, w)
    gy = (torch.arange(h, dtype=torch.float64, device=out.device) * 2 / h - 1).to(out.dtype).view(1, 1, h, 1)
    return gx, gy


torch.fx.wrap("grids_like")


def fx_tracing() -> bool:
    """Whether torch.fx's symbolic tracer is running (its proxies have no shapes or devices to branch on)."""
    return torch.fx._symbolic_trace.is_fx_symbolic_tracing()


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
            raise ValueError(f"ConvTwist supports stride 1 or 2, got {stride}")
        if kernel_size not in (3, (3, 3)) or padding not in (1, (1, 1)):
            raise ValueError(f"ConvTwist is a 3x3 convolution with padding 1, got kernel_size={kernel_size}, "
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
            raise ValueError(f"ConvTwist expects a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"ConvTwist({self.in_channels}->{self.out_channels}) expects {self.in_channels} input "
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
        """The eager path: the fused CPU kernels where they are built, plain ops for tracers and torch.compile."""
        self._check_input(x)
        # plain ops for tracers (ONNX export of an unfolded model) and for torch.compile without the CPU kernels
        # (its tracer cannot follow the plain path's writes into views; it fuses the plain ops itself)
        if torch.jit.is_tracing() or (torch.compiler.is_compiling() and _cpu_kernels(x) is None):
            return _twist_reference(x, self.folded_kernel(), torch.cat([self.weight_x, self.weight_y]), self.bias,
                                    self.stride)
        # autocast does not reach into an autograd.Function: cast to the autocast dtype here, as conv2d would
        dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
        with torch.autocast(x.device.type, enabled=False):
            bias = self.bias.to(dtype) if self.bias is not None else None
            stacked = _stacked_is_faster(x, dtype, self.in_channels, self.stride)
            kernel, taps = self._compute_kernels(x, dtype, stacked)
            if stacked:
                if bias is not None:
                    bias = torch.cat([bias, bias.new_zeros(2 * self.out_channels)])
                return _StackedTwistConv.apply(x.to(dtype), kernel, bias, self.stride)
            return _TwistConv.apply(x.to(dtype), kernel, taps, bias, self.stride)

    def _compute_kernels(self, x: torch.Tensor, dtype: torch.dtype, stacked: bool):
        """The kernels the fused Functions take, in ``dtype``: (main with centres folded, taps ``[Wx; Wy]``), or
        (``[main; Kx; Ky]``, None) for the stacked path. On CPU one C++ pass each way replaces about ten tensor ops
        over the parameters (about 6% of a convtwist_resnet18 training step)."""
        params = (self.weight, self.weight_x, self.weight_y, self.center_x, self.center_y)
        if (_cpu_kernels(x) is not None and all(p.dtype == torch.float32 for p in params)
                and all(p.is_contiguous() for p in params[1:])
                and (self.weight.is_contiguous() or self.weight.is_contiguous(memory_format=torch.channels_last))):
            kernel, taps = _PreparedKernels.apply(*params, dtype, stacked)
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


# Largest input-channel count, per dtype, at which one convolution with 3*nf outputs (main, x and y kernels stacked)
# replaces the 4-tap path on a CPU (stride 1). It pays where oneDNN's bf16 convolution is far from compute-bound at few
# channels and the taps' difference matrix is memory-bound: on one host convtwist_resnet18's bf16 step went from
# 1.86x to 1.80x of resnet18 with it at <= 64 channels. On this project's 2-core Zen 4 hosts the convolution already
# runs at the bf16 peak and the taps won every A/B (2-6% per step, bench/layer.py), so it is off unless
# CONVTWIST_ZOO_STACKED_MAX_CHANNELS (e.g. 64) asks for it. A bf16 run resumes on the path it started with only if
# this setting stays the same.
STACKED_MAX_IN_CHANNELS = ({torch.bfloat16: int(os.environ["CONVTWIST_ZOO_STACKED_MAX_CHANNELS"])}
                           if os.environ.get("CONVTWIST_ZOO_STACKED_MAX_CHANNELS") else {})


def _cpu_kernels(x: torch.Tensor):
    """The fused kernels for ``x``: built on first use for a CPU tensor (while compiling, only if built before), None
    on other devices or without a compiler."""
    return fused_kernels.load() if x.device.type == "cpu" else None


def _stacked_is_faster(x: torch.Tensor, dtype: torch.dtype, in_channels: int, stride: int) -> bool:
    return (stride == 1 and in_channels <= STACKED_MAX_IN_CHANNELS.get(dtype, 0) and _cpu_kernels(x) is not None)


def _is_nchw(x: torch.Tensor) -> bool:
    """Not channels_last: the CPU kernels convert such an input, and give the output back in NCHW."""
    return not x.is_contiguous(memory_format=torch.channels_last)


def _tap_slices(ho: int, wo: int, stride: int):
    """Index of the 3x3 window position (r, c) on the padded input for every output pixel, per tap pair."""
    def at(r, c):
        return (slice(r, r + stride * (ho - 1) + 1, stride), slice(c, c + stride * (wo - 1) + 1, stride))
    return [(at(r, c), at(2 - r, 2 - c)) for r, c in TWIST_TAPS]


def _twist_reference(x, main_kernel, taps, bias, stride):
    """Plain-ops ConvTwist (autograd does the backward): used under tracing; the fused path must equal it."""
    nf = main_kernel.shape[0]
    out = F.conv2d(x, main_kernel, bias, stride, 1)
    ho, wo = out.shape[-2:]
    xp = F.pad(x, (1, 1, 1, 1))
    diffs = torch.cat([xp[:, :, a[0], a[1]] - xp[:, :, b[0], b[1]] for a, b in _tap_slices(ho, wo, stride)], 1)
    twist = F.conv2d(diffs, taps.transpose(1, 2).reshape(2 * nf, -1, 1, 1))
    gx, gy = coordinate_grids(ho, wo, out.dtype, out.device)
    return out + gx * twist[:, :nf] + gy * twist[:, nf:]


class _PreparedKernels(torch.autograd.Function):
    """`ConvTwist._compute_kernels` on the C++ operators: ``twist_prepare_*`` builds the kernels from the fp32
    parameters in one pass, ``twist_prepare_backward`` returns the parameters' gradients in one pass. The tap path's
    kernels come in the layouts their consumers use (main channels_last, taps tap-major), which saves the layout
    copies the convolution and the GEMM would make each step (about 4% of a convtwist_resnet18 step, profiled). The
    stacked path's second output is empty."""

    @staticmethod
    def forward(ctx, weight, weight_x, weight_y, center_x, center_y, dtype, stacked):
        ops = fused_kernels.load()
        ctx.save_for_backward(weight_x, weight_y, center_x, center_y)
        # a model's .to(memory_format=channels_last) leaves the kernel channels_last; its gradient must match
        ctx.channels_last = not weight.is_contiguous()
        if stacked:
            return ops.twist_prepare_stacked(weight, weight_x, weight_y, center_x, center_y, dtype), weight.new_empty(0)
        return ops.twist_prepare_taps(weight, weight_x, weight_y, center_x, center_y, dtype)

    @staticmethod
    def backward(ctx, grad_kernel, grad_taps):
        # the tap path's gradients are read through their strides (no copies); the stacked kernel's must be contiguous
        saved = ctx.saved_tensors  # once: activation checkpointing lets a saved tensor be unpacked only once
        stacked = grad_kernel.shape[0] != saved[0].shape[0]
        if stacked or grad_kernel.stride(2) != 3 * grad_kernel.stride(3):
            grad_kernel = grad_kernel.contiguous()
        grads = fused_kernels.load().twist_prepare_backward(grad_kernel, grad_taps, *saved, ctx.channels_last)
        return (*(g if need else None for g, need in zip(grads, ctx.needs_input_grad)), None, None)


class _TwistConv(torch.autograd.Function):
    """``conv3x3(x, main) + bias + gx*Tx + gy*Ty`` with ``T = D @ A^T`` and ``D_t = x[p+t] - x[p-t]``, with a
    hand-written backward: the tap differences are written once into an NHWC buffer (a matrix), both twists are one
    matmul, and the backward scatters the differences' gradient straight into the conv's input gradient instead of
    autograd's zero-filled copy per slice (about 1.2x faster per training step)."""

    @staticmethod
    def forward(ctx, x, main_kernel, taps, bias, stride):
        n, ni, h, w = x.shape
        nf, ntaps = main_kernel.shape[0], len(TWIST_TAPS)
        ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
        a_mat = taps.transpose(1, 2).reshape(2 * nf, ntaps * ni)
        kernels = _cpu_kernels(x)
        ctx.nchw = kernels is not None and _is_nchw(x)  # give the caller its own format back, both ways
        if kernels is not None:  # one pass per step, NHWC throughout
            x = x.contiguous(memory_format=torch.channels_last)
        out = F.conv2d(x, main_kernel, bias, stride, 1)
        if kernels is not None:
            diffs = kernels.twist_diffs(x, stride)
            out = out.contiguous(memory_format=torch.channels_last)
            kernels.twist_combine_(out, diffs @ a_mat.t())
        else:
            xp = F.pad(x, (1, 1, 1, 1))
            diffs = x.new_empty((n, ho, wo, ntaps, ni))  # rows = output pixels, columns = (tap, input channel)
            diffs_view = diffs.permute(0, 3, 4, 1, 2)
            for t, (a, b) in enumerate(_tap_slices(ho, wo, stride)):
                torch.sub(xp[:, :, a[0], a[1]], xp[:, :, b[0], b[1]], out=diffs_view[:, t])
            twist = (diffs.view(-1, ntaps * ni) @ a_mat.t()).view(n, ho, wo, 2 * nf).permute(0, 3, 1, 2)
            gx, gy = coordinate_grids(ho, wo, out.dtype, out.device)
            out = out.addcmul_(gx, twist[:, :nf]).addcmul_(gy, twist[:, nf:])
        ctx.save_for_backward(x, main_kernel, a_mat, diffs)
        ctx.stride, ctx.has_bias, ctx.fused = stride, bias is not None, kernels is not None
        return out.contiguous() if ctx.nchw else out

    @staticmethod
    def backward(ctx, grad):
        x, main_kernel, a_mat, diffs = ctx.saved_tensors
        n, ni, h, w = x.shape
        nf, ntaps, s = main_kernel.shape[0], len(TWIST_TAPS), ctx.stride
        ho, wo = grad.shape[-2:]
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if ctx.fused:
            grad = grad.contiguous(memory_format=torch.channels_last)
            grad_twist = fused_kernels.load().twist_grid_grad(grad)
        else:
            gx, gy = coordinate_grids(ho, wo, grad.dtype, grad.device)
            grad_twist = grad.new_empty((n, ho, wo, 2 * nf))
            torch.mul(grad, gx, out=grad_twist.permute(0, 3, 1, 2)[:, :nf])
            torch.mul(grad, gy, out=grad_twist.permute(0, 3, 1, 2)[:, nf:])
            grad_twist = grad_twist.view(-1, 2 * nf)
        grad_taps = (grad_twist.t() @ diffs.view(-1, ntaps * ni)).view(2 * nf, ntaps, ni).transpose(1, 2)
        grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad, x, main_kernel, [nf] if ctx.has_bias else None, [s, s], [1, 1], [1, 1], False, [0, 0], 1,
            [need_x, need_w, ctx.has_bias])
        if need_x:
            grad_diffs = grad_twist @ a_mat
            if ctx.fused:
                grad_x = grad_x.contiguous(memory_format=torch.channels_last)
                fused_kernels.load().twist_scatter_add_(grad_x, grad_diffs, s)
            else:
                grad_diffs = grad_diffs.view(n, ho, wo, ntaps, ni).permute(0, 3, 4, 1, 2)
                padded = F.pad(grad_x, (1, 1, 1, 1))
                for t, (a, b) in enumerate(_tap_slices(ho, wo, s)):
                    padded[:, :, a[0], a[1]] += grad_diffs[:, t]
                    padded[:, :, b[0], b[1]] -= grad_diffs[:, t]
                grad_x = padded[:, :, 1:h + 1, 1:w + 1]
        if ctx.nchw and grad_x is not None:
            grad_x = grad_x.contiguous()
        return grad_x, grad_w, grad_taps, grad_b, None


class _StackedTwistConv(torch.autograd.Function):
    """``y = conv3x3(x, [main; Kx; Ky])`` with 3*nf outputs, then ``y_main + gx*y_x + gy*y_y`` (fused kernel). The
    backward is the convolution's own with the grid-weighted gradient ``[g, gx*g, gy*g]``; autograd takes the kernel
    gradient back to the taps and centres through the ``cat`` that built the stacked kernel."""

    @staticmethod
    def forward(ctx, x, kernel, bias, stride):
        kernels = fused_kernels.load()
        ctx.nchw = _is_nchw(x)
        x = x.contiguous(memory_format=torch.channels_last)
        y = F.conv2d(x, kernel, bias, stride, 1).contiguous(memory_format=torch.channels_last)
        ctx.save_for_backward(x, kernel)
        ctx.stride, ctx.has_bias = stride, bias is not None
        out = kernels.twist_combine3(y)
        return out.contiguous() if ctx.nchw else out

    @staticmethod
    def backward(ctx, grad):
        x, kernel = ctx.saved_tensors
        s = ctx.stride
        grad_y = fused_kernels.load().twist_grid_grad3(grad.contiguous(memory_format=torch.channels_last))
        grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad_y, x, kernel, [kernel.shape[0]] if ctx.has_bias else None, [s, s], [1, 1], [1, 1], False, [0, 0], 1,
            [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias])
        if ctx.nchw and grad_x is not None:
            grad_x = grad_x.contiguous()
        return grad_x, grad_w, grad_b, None


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


@dataclass
class TwistifyReport:
    """What `twistify` changed: layer names swapped, convs left alone (with why), parameter counts."""
    replaced: list = field(default_factory=list)
    skipped: list = field(default_factory=list)  # (name, reason)
    params_before: int = 0
    params_after: int = 0

    def __str__(self) -> str:
        lines = [f"twistify: replaced {len(self.replaced)} conv(s), skipped {len(self.skipped)}; "
                 f"parameters {self.params_before:,} -> {self.params_after:,}"]
        lines += [f"  replaced {n}" for n in self.replaced]
        lines += [f"  kept     {n} ({why})" for n, why in self.skipped]
        return "\n".join(lines)


def _skip_reason(conv: nn.Conv2d):
    """Why a conv cannot become a ConvTwist (all reasons, comma-separated), or None when it can."""
    reasons = []
    if conv.kernel_size != (3, 3):
        reasons.append(f"kernel {conv.kernel_size[0]}x{conv.kernel_size[1]}")
    if conv.groups != 1:
        reasons.append("depthwise" if conv.groups == conv.in_channels else f"groups={conv.groups}")
    if conv.dilation != (1, 1):
        reasons.append(f"dilation {conv.dilation}")
    if conv.stride[0] != conv.stride[1] or conv.stride[0] not in (1, 2):
        reasons.append(f"stride {conv.stride}")
    if not reasons and (conv.padding != (1, 1) or conv.padding_mode != "zeros"):
        reasons.append(f"padding {conv.padding} {conv.padding_mode}")
    return ", ".join(reasons) or None


def twistify(model: nn.Module, exclude=(), init_max: float = 1.5, keep_weights: bool = True,
             verbose: bool = False, return_report: bool = False):
    """Replace every 3x3, groups=1, dilation=1, padding=1 ``nn.Conv2d`` in ``model`` with a ``ConvTwist``.

    Args:
        model: any ``nn.Module`` (changed in place).
        exclude: module names, or name prefixes, to keep plain (e.g. ``("conv1",)`` for a stem).
        init_max: the new layers' centre initialisation bound.
        keep_weights: the main kernel keeps the conv's weights (and bias), so a pretrained model starts from its
            own function plus the small twist terms.
        verbose: print the report.
        return_report: also return the `TwistifyReport` (what was replaced, what was kept and why).

    Returns:
        ``model``, or ``(model, report)`` with ``return_report``.

    Example:
        >>> vgg, report = twistify(torchvision.models.vgg11(num_classes=10), return_report=True)
        >>> len(report.replaced)
        8
    """
    report = TwistifyReport(params_before=sum(p.numel() for p in model.parameters()))
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Conv2d) or isinstance(module, ConvTwist):
            continue
        if any(name == e or name.startswith(e + ".") for e in exclude):
            report.skipped.append((name, "excluded"))
            continue
        reason = _skip_reason(module)
        if reason:
            report.skipped.append((name, reason))
            continue
        twist = ConvTwist(module.in_channels, module.out_channels, module.stride[0], init_max,
                          bias=module.bias is not None).to(module.weight.device, module.weight.dtype)
        if keep_weights:
            with torch.no_grad():
                twist.weight.copy_(module.weight)
                if module.bias is not None:
                    twist.bias.copy_(module.bias)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, twist)
        report.replaced.append(name)
    report.params_after = sum(p.numel() for p in model.parameters())
    if verbose:
        print(report)
    return (model, report) if return_report else model
