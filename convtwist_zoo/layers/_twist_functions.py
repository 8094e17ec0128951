"""The autograd Functions behind ConvTwist's eager paths (`_kernels.twist_path` picks which runs): the plain-ops
reference, and three Functions with hand-written backwards, on the C++ CPU operators where they are built."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._kernels import cpu_ops, load
from ._twist_math import TWIST_TAPS, coordinate_grids

__all__ = ["twist_reference", "PreparedKernels", "TwistConv", "StackedTwistConv"]


def _is_nchw(x: torch.Tensor) -> bool:
    """Not channels_last: the CPU kernels convert such an input, and give the output back in NCHW."""
    return not x.is_contiguous(memory_format=torch.channels_last)


def _tap_slices(ho: int, wo: int, stride: int):
    """Index of the 3x3 window position (r, c) on the padded input for every output pixel, per tap pair."""
    def at(r, c):
        return (slice(r, r + stride * (ho - 1) + 1, stride), slice(c, c + stride * (wo - 1) + 1, stride))
    return [(at(r, c), at(2 - r, 2 - c)) for r, c in TWIST_TAPS]


def twist_reference(x, main_kernel, taps, bias, stride):
    """Plain-ops ConvTwist (autograd does the backward): used under tracing; the fused path must equal it."""
    nf = main_kernel.shape[0]
    out = F.conv2d(x, main_kernel, bias, stride, 1)
    ho, wo = out.shape[-2:]
    xp = F.pad(x, (1, 1, 1, 1))
    diffs = torch.cat([xp[:, :, a[0], a[1]] - xp[:, :, b[0], b[1]] for a, b in _tap_slices(ho, wo, stride)], 1)
    twist = F.conv2d(diffs, taps.transpose(1, 2).reshape(2 * nf, -1, 1, 1))
    gx, gy = coordinate_grids(ho, wo, out.dtype, out.device)
    return out + gx * twist[:, :nf] + gy * twist[:, nf:]


class PreparedKernels(torch.autograd.Function):
    """`ConvTwist._compute_kernels` on the C++ operators: ``twist_prepare_*`` builds the kernels from the fp32
    parameters in one pass, ``twist_prepare_backward`` returns the parameters' gradients in one pass. The tap path's
    kernels come in the layouts their consumers use (main channels_last, taps tap-major), which saves the layout
    copies the convolution and the GEMM would make each step (about 4% of a convtwist_resnet18 step, profiled). The
    stacked path's second output is empty."""

    @staticmethod
    def forward(ctx, weight, weight_x, weight_y, center_x, center_y, dtype, stacked):
        ops = load()
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
        grads = load().twist_prepare_backward(grad_kernel, grad_taps, *saved, ctx.channels_last)
        return (*(g if need else None for g, need in zip(grads, ctx.needs_input_grad)), None, None)


class TwistConv(torch.autograd.Function):
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
        kernels = cpu_ops(x)
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
            grad_twist = load().twist_grid_grad(grad)
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
                load().twist_scatter_add_(grad_x, grad_diffs, s)
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


class StackedTwistConv(torch.autograd.Function):
    """``y = conv3x3(x, [main; Kx; Ky])`` with 3*nf outputs, then ``y_main + gx*y_x + gy*y_y`` (fused kernel). The
    backward is the convolution's own with the grid-weighted gradient ``[g, gx*g, gy*g]``; autograd takes the kernel
    gradient back to the taps and centres through the ``cat`` that built the stacked kernel."""

    @staticmethod
    def forward(ctx, x, kernel, bias, stride):
        kernels = load()
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
        grad_y = load().twist_grid_grad3(grad.contiguous(memory_format=torch.channels_last))
        grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad_y, x, kernel, [kernel.shape[0]] if ctx.has_bias else None, [s, s], [1, 1], [1, 1], False, [0, 0], 1,
            [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias])
        if ctx.nchw and grad_x is not None:
            grad_x = grad_x.contiguous()
        return grad_x, grad_w, grad_b, None


