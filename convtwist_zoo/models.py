"""ResNet builders: torchvision's ResNet, plain or with every 3x3 conv a ConvTwist (the 7x7 stem stays).

`ZooResNet` adds the backbone API that timm users expect: ``forward_features``, ``forward_head``,
``get_classifier``, ``reset_classifier``; `FeatureResNet` returns the stage feature maps (``features_only``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.models import FeatureInfo, checkpoint_seq
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from .layers import fx_tracing, twistify

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
    """torchvision ResNet with the attributes and methods timm's models have: ``num_classes``, ``num_features``,
    ``head_hidden_size``, ``feature_info`` (channels and reduction of each stage), ``forward_features`` (unpooled),
    ``forward_head(pre_logits=...)``, ``get_classifier``, ``reset_classifier``, ``set_grad_checkpointing``,
    ``group_matcher``."""

    def __init__(self, block, layers, num_classes: int = 1000, **kwargs):
        super().__init__(block, layers, num_classes=num_classes, **kwargs)
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = self.fc.in_features
        self.grad_checkpointing = False
        width = 64 * (4 if block is Bottleneck else 1)
        self.feature_info = [{"num_chs": 64, "reduction": 2, "module": "relu"}] + [
            {"num_chs": width * 2 ** i, "reduction": 4 * 2 ** i, "module": f"layer{i + 1}"} for i in range(4)]

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """Parameter groups by depth, as timm's ResNet gives them (for layer-wise lr decay)."""
        return {"stem": r"^conv1|bn1", "blocks": r"^layer(\d+)" if coarse else r"^layer(\d+)\.(\d+)"}

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage's activations in the backward pass instead of keeping them (less memory)."""
        self.grad_checkpointing = enable

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Trunk: stem and the four stages, unpooled (N, C, H/32, W/32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(nn.Sequential(self.layer1, self.layer2, self.layer3, self.layer4), x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool then the classifier (skipped with ``pre_logits``)."""
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            if not fx_tracing():  # input checks branch on shapes: eager only
                check_images(x, self.conv1.in_channels)
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """New classifier for ``num_classes`` (0 gives an identity head that returns pooled features)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()



class FeatureResNet(nn.Module):
    """A ResNet trunk (torchvision's or timm's) that returns the feature maps of the chosen stages (timm's
    ``features_only``), with timm's `FeatureInfo` (``.channels()``, ``.reduction()``, ``.module_name()``).

    ``out_indices`` count the max-pooled stem as 0 (reduction 4) and the stages as 1..4 (reductions 4, 8, 16, 32).
    Parameter names match the full model's, so pretrained weights load into it (the classifier is dropped).
    """

    def __init__(self, model: nn.Module, out_indices=(1, 2, 3, 4)):
        super().__init__()
        if not set(out_indices) <= {0, 1, 2, 3, 4}:
            raise ValueError(f"out_indices must be within 0..4 (0 = stem, 1..4 = stages), got {out_indices}")
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
