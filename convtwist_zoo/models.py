"""ResNet builders: torchvision's ResNet, plain or with every 3x3 conv a ConvTwist (the 7x7 stem stays).

`ZooResNet` adds the backbone API that timm users expect: ``forward_features``, ``forward_head``,
``get_classifier``, ``reset_classifier``; `FeatureResNet` returns the stage feature maps (``features_only``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from .layers import twistify

__all__ = ["ZooResNet", "FeatureResNet", "resnet", "check_images", "ARCHS"]

# depth -> (block, layers per stage)
ARCHS = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]), 50: (Bottleneck, [3, 4, 6, 3])}


def check_images(x: torch.Tensor, in_chans: int) -> None:
    """A clear error for input a ResNet cannot take: not (N, in_chans, H, W), or smaller than its stride of 32."""
    if x.dim() != 4 or x.shape[1] != in_chans:
        raise ValueError(f"expected images of shape (N, {in_chans}, H, W), got {tuple(x.shape)}; "
                         "convert grayscale/RGBA images to RGB first")
    if x.shape[-1] < 32 or x.shape[-2] < 32:
        raise ValueError(f"image size {tuple(x.shape[-2:])} is too small: the network downsamples by 32, "
                         "use at least 32x32 (the checkpoints were trained at 128x128)")


class ZooResNet(ResNet):
    """torchvision ResNet with timm-style head/feature methods."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Trunk: stem and the four stages, unpooled (N, C, H/32, W/32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool then the classifier (skipped with ``pre_logits``)."""
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, self.conv1.in_channels)
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """New classifier for ``num_classes`` (0 gives an identity head that returns pooled features)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.fc.in_features, num_classes) if num_classes > 0 else nn.Identity()

    @property
    def feature_info(self):
        """Channels and reduction (stride) of each stage's output, as timm's ``feature_info``."""
        info = []
        for i, stage in enumerate((self.layer1, self.layer2, self.layer3, self.layer4), start=1):
            last = stage[-1]
            channels = (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features
            info.append({"module": f"layer{i}", "num_chs": channels, "reduction": 2 ** (i + 1)})
        return info


class FeatureResNet(nn.Module):
    """A ResNet trunk (torchvision's or timm's) that returns the feature maps of the chosen stages (timm's
    ``features_only``).

    ``out_indices`` count the max-pooled stem as 0 (reduction 4) and the stages as 1..4 (reductions 4, 8, 16, 32).
    Parameter names match the full model's, so pretrained weights load into it (the classifier is dropped).
    """

    def __init__(self, model: ZooResNet, out_indices=(1, 2, 3, 4)):
        super().__init__()
        if not set(out_indices) <= {0, 1, 2, 3, 4}:
            raise ValueError(f"out_indices must be within 0..4 (0 = stem, 1..4 = stages), got {out_indices}")
        self.out_indices = tuple(out_indices)
        self.act = "act1" if hasattr(model, "act1") else "relu"  # timm's name, torchvision's
        for name in ("conv1", "bn1", self.act, "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(model, name))
        stem = {"module": "maxpool", "num_chs": model.bn1.num_features, "reduction": 4}
        all_info = [stem] + [i for i in model.feature_info if i["module"].startswith("layer")]
        self.feature_info = [all_info[i] for i in self.out_indices]

    def forward(self, x: torch.Tensor):
        x = self.maxpool(getattr(self, self.act)(self.bn1(self.conv1(x))))
        outs = [x] if 0 in self.out_indices else []
        for i, stage in enumerate((self.layer1, self.layer2, self.layer3, self.layer4), start=1):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
            if i >= max(self.out_indices):
                break
        return outs


def resnet(depth: int, *, twist: bool, num_classes: int = 10, init_max: float = 1.5,
           zero_init_residual: bool = True, in_chans: int = 3) -> ZooResNet:
    """torchvision ResNet-``depth``; with ``twist`` every 3x3 conv becomes a ConvTwist."""
    if depth not in ARCHS:
        raise ValueError(f"unsupported ResNet depth {depth}; choose one of {sorted(ARCHS)}")
    block, layers = ARCHS[depth]
    model = ZooResNet(block, layers, num_classes=num_classes, zero_init_residual=zero_init_residual)
    if in_chans != 3:
        model.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
    if num_classes == 0:  # timm's convention: no head, the model returns pooled features
        model.reset_classifier(0)
    if twist:
        twistify(model, init_max=init_max)
    return model
