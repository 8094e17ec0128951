"""fast.ai's simple self-attention, the xresnets' optional ``sa`` block."""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["SimpleSelfAttention"]


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
