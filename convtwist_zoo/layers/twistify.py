"""`twistify`: turn the eligible 3x3 convolutions of any model into ConvTwist layers, with a report of what changed
and why the rest stayed."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .conv_twist import ConvTwist

__all__ = ["twistify", "TwistifyReport"]


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
