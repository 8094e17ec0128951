"""The twist's parametrisation: the 4 free taps of an antisymmetric 3x3 kernel, and the coordinate grids ``XX``/``YY``
that multiply the twist convolutions. Shared by the layer, its autograd Functions, export folding and the flow
experiment."""
from __future__ import annotations

import torch

__all__ = ["TWIST_TAPS", "antisymmetric_kernel", "twist_taps_from_kernel", "coordinate_grids", "grids_like"]

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
