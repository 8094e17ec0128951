"""``features_only``: a ResNet trunk (torchvision's or timm's) that returns its stage feature maps, with timm's
`FeatureInfo`."""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.models import FeatureInfo

from ..errors import InputError

__all__ = ["FeatureResNet"]


class FeatureResNet(nn.Module):
    """A ResNet trunk (torchvision's or timm's) that returns the feature maps of the chosen stages (timm's
    ``features_only``), with timm's `FeatureInfo` (``.channels()``, ``.reduction()``, ``.module_name()``).

    ``out_indices`` count the max-pooled stem as 0 (reduction 4) and the stages as 1..4 (reductions 4, 8, 16, 32).
    Parameter names match the full model's, so pretrained weights load into it (the classifier is dropped).
    """

    def __init__(self, model: nn.Module, out_indices=(1, 2, 3, 4)):
        super().__init__()
        if not set(out_indices) <= {0, 1, 2, 3, 4}:
            raise InputError(f"out_indices must be within 0..4 (0 = stem, 1..4 = stages), got {out_indices}")
        self.out_indices = list(out_indices)
        for name in ("conv1", "bn1", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(model, name))
        # the stem's activation (timm's act1, torchvision's relu: no parameters, so the name changes no weight's)
        self.act1 = model.act1 if hasattr(model, "act1") else model.relu
        stem = {"module": "maxpool", "num_chs": model.bn1.num_features, "reduction": 4}
        stages = [i for i in model.feature_info if i["module"].startswith("layer")]
        self.feature_info = FeatureInfo([stem] + stages, self.out_indices)
        self.pretrained_cfg = self.default_cfg = getattr(model, "pretrained_cfg", None)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.act1(x)
        x = self.maxpool(x)
        outs: list[torch.Tensor] = []
        if 0 in self.out_indices:
            outs.append(x)
        x = self.layer1(x)  # the stages one by one: TorchScript does not iterate over differing modules
        if 1 in self.out_indices:
            outs.append(x)
        x = self.layer2(x)
        if 2 in self.out_indices:
            outs.append(x)
        x = self.layer3(x)
        if 3 in self.out_indices:
            outs.append(x)
        if 4 in self.out_indices:
            outs.append(self.layer4(x))
        return outs
