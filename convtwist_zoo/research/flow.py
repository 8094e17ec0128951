"""What ConvTwist does: the reference's flow experiment.

`flow_layer`/`apply_flow` rebuild the seed's "ConvTwist at work" experiment: a 1-channel ConvTwist with an identity
main kernel, centres 0 and Sobel-kernel twists, applied many times, moves an image along the flow of a vector field:
rotation (``XX*B + YY*A``), scaling (``XX*(-A) + YY*B``), or, with a plain ``I + 0.01*A`` / ``I + 0.01*B`` kernel and
no twist, a shift in x or y.
"""
from __future__ import annotations

import torch

from ..layers import ConvTwist
from ..layers._twist_math import twist_taps_from_kernel
from ..errors import InputError

__all__ = ["SOBEL_X", "SOBEL_Y", "GENERATORS", "flow_layer", "apply_flow", "image_moments"]

# The seed's kernels: A = Sobel in x (generates translation along x), B = Sobel in y (translation along y).
SOBEL_X = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
SOBEL_Y = torch.tensor([[1.0, 2, 1], [0, 0, 0], [-1, -2, -1]])
IDENTITY = torch.tensor([[0.0, 0, 0], [0, 1, 0], [0, 0, 0]])
GENERATORS = ("rotation", "scaling", "shift-x", "shift-y")


def flow_layer(generator: str, strength: float = 0.01, sign: float = 1.0) -> ConvTwist:
    """A ``ConvTwist(1, 1)`` set up as in the seed: main kernel I, centres 0, twist kernels ``strength`` times Sobel
    kernels (rotation: conv_x = B, conv_y = A; scaling: conv_x = -A, conv_y = B); for the shifts the main kernel is
    ``I + strength*A`` (or ``B``) and the twists are 0. ``sign=-1`` flips the twist kernels (the opposite flow)."""
    if generator not in GENERATORS:
        raise InputError(f"unknown generator {generator!r}; choose one of {', '.join(GENERATORS)}")
    layer = ConvTwist(1, 1)
    s = strength * sign
    kx, ky, main = {"rotation": (SOBEL_Y, SOBEL_X, IDENTITY), "scaling": (-SOBEL_X, SOBEL_Y, IDENTITY),
                    "shift-x": (0 * SOBEL_X, 0 * SOBEL_X, IDENTITY + s * SOBEL_X),
                    "shift-y": (0 * SOBEL_X, 0 * SOBEL_X, IDENTITY + s * SOBEL_Y)}[generator]
    with torch.no_grad():
        layer.weight.copy_(main.view(1, 1, 3, 3))
        layer.weight_x.copy_(twist_taps_from_kernel(s * kx.view(1, 1, 3, 3)))
        layer.weight_y.copy_(twist_taps_from_kernel(s * ky.view(1, 1, 3, 3)))
        layer.center_x.zero_()
        layer.center_y.zero_()
    return layer.eval()


@torch.no_grad()
def apply_flow(image: torch.Tensor, generator: str, steps: int, snapshots: int = 4, strength: float = 0.01,
               sign: float = 1.0) -> list[tuple[int, torch.Tensor]]:
    """Apply the flow layer ``steps`` times to a (H, W) or (C, H, W) image, each channel on its own; returns
    ``snapshots`` (step, image) pairs, the last one after ``steps`` steps, the first the original."""
    layer = flow_layer(generator, strength, sign)
    x = image.float()
    x = x.reshape(-1, 1, *x.shape[-2:])
    marks = sorted({round(steps * k / snapshots) for k in range(snapshots + 1)})
    out = []
    for step in range(steps + 1):
        if step in marks:
            out.append((step, x.reshape(image.shape).clone()))
        if step < steps:
            x = layer(x)
    return out


def image_moments(image: torch.Tensor) -> dict:
    """Centroid (cx, cy in pixels), orientation (degrees, counter-clockwise from the x axis, image y pointing down)
    and spread (sqrt of the trace of the covariance) of a non-negative (H, W) image."""
    img = image.double().clamp_min(0)
    h, w = img.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    m = img.sum()
    cx, cy = (img * xs).sum() / m, (img * ys).sum() / m
    mu20 = (img * (xs - cx) ** 2).sum() / m
    mu02 = (img * (ys - cy) ** 2).sum() / m
    mu11 = (img * (xs - cx) * (ys - cy)).sum() / m
    angle = 0.5 * torch.atan2(-2 * mu11, mu20 - mu02)  # minus: y grows downwards, angles counter-clockwise
    return {"cx": cx.item(), "cy": cy.item(), "angle": torch.rad2deg(angle).item(),
            "spread": torch.sqrt(mu20 + mu02).item()}
