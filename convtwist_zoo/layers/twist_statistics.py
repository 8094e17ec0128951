"""How much, and where, a trained network uses its twist: per ConvTwist layer, the twist kernels' norm against the
main kernel's and the learned centres, with a summary per stage (`convtwist-zoo inspect`)."""
from __future__ import annotations

import torch
import torch.nn as nn

from .conv_twist import ConvTwist

__all__ = ["layer_statistics"]


def _stage_of(name: str) -> str:
    return name.split(".")[0] if name.startswith("layer") else "stem"


@torch.no_grad()
def layer_statistics(model: nn.Module) -> dict:
    """Per ConvTwist layer: the twist kernels' norm relative to the main kernel, and the learned centres; with a
    per-stage summary. How much, and where, does the network use the twist?"""
    layers, stages = [], {}
    for name, m in model.named_modules():
        if not isinstance(m, ConvTwist):
            continue
        w, wx, wy = (k.float() for k in m.kernels())
        ratio = (torch.sqrt(wx.square().sum() + wy.square().sum()) / w.norm()).item()
        cx, cy = m.center_x.float(), m.center_y.float()
        row = {"layer": name, "stage": _stage_of(name), "in": m.in_channels, "out": m.out_channels,
               "stride": m.stride, "twist_ratio": ratio, "center_x": cx.tolist(), "center_y": cy.tolist(),
               "center_x_abs": cx.abs().mean().item(), "center_y_abs": cy.abs().mean().item(),
               "center_x_std": cx.std().item(), "center_y_std": cy.std().item()}
        layers.append(row)
        stages.setdefault(row["stage"], []).append(row)
    summary = [{"stage": s, "layers": len(rows), "twist_ratio": sum(r["twist_ratio"] for r in rows) / len(rows),
                "center_x_abs": sum(r["center_x_abs"] for r in rows) / len(rows),
                "center_y_abs": sum(r["center_y_abs"] for r in rows) / len(rows)} for s, rows in stages.items()]
    return {"layers": layers, "stages": summary}
