"""ResNet-18/50: torchvision's ResNet, plain or with every 3x3 conv a ConvTwist (the 7x7 stem and 1x1 convs stay).

Read top to bottom: the model class (`ZooResNet`, torchvision's ResNet with the backbone API timm users expect), the
builder, the checkpoints trained here (``default_cfgs``: dataset, sha256, size; the default tag is the one
``pretrained=True`` gives), then one registered entry point per architecture.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.models import checkpoint_seq
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from ..layers import twistify
from ..layers._kernels import fx_tracing
from ..errors import InputError
from ._pretrained import checkpoint, register_checkpoints
from ._registry import register_model

__all__ = ["ZooResNet", "resnet", "check_images", "ARCHS", "default_cfgs", "resnet18", "resnet50",
           "convtwist_resnet18", "convtwist_resnet50"]

# depth -> (block, layers per stage)
ARCHS = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]), 50: (Bottleneck, [3, 4, 6, 3])}


def check_images(x: torch.Tensor, in_chans: int) -> None:
    """A clear error for input a ResNet cannot take: not (N, in_chans, H, W), or smaller than its stride of 32."""
    if x.dim() != 4 or x.shape[1] != in_chans:
        raise InputError(f"expected images of shape (N, {in_chans}, H, W), got {tuple(x.shape)}; "
                         "convert grayscale/RGBA images to RGB first")
    if x.shape[-1] < 32 or x.shape[-2] < 32:
        raise InputError(f"image size {tuple(x.shape[-2:])} is too small: the network downsamples by 32, "
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


def resnet(depth: int, *, twist: bool, num_classes: int = 10, init_max: float = 1.5,
           zero_init_residual: bool = True, in_chans: int = 3) -> ZooResNet:
    """torchvision ResNet-``depth``; with ``twist`` every 3x3 conv becomes a ConvTwist."""
    if depth not in ARCHS:
        raise InputError(f"unsupported ResNet depth {depth}; choose one of {sorted(ARCHS)}")
    block, layers = ARCHS[depth]
    model = ZooResNet(block, layers, num_classes=num_classes, zero_init_residual=zero_init_residual)
    if in_chans != 3:
        model.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
    if num_classes == 0:  # timm's convention: no head, the model returns pooled features
        model.reset_classifier(0)
    if twist:
        twistify(model, init_max=init_max)
    return model


default_cfgs = register_checkpoints({
    "resnet18.imagenette": checkpoint(
        "imagenette", "b7dbfd82edc11f558a45a0fe9ab3525acca9ba00cb0c9cbc2dfe74655bbcf843", 22393420, default=True),
    "resnet18.imagewoof": checkpoint(
        "imagewoof", "43e3143809189012cd9b55cc3a89a325b391eea731835e75c5779e87a6e4be59", 22393420),
    "resnet50.imagenette": checkpoint(
        "imagenette", "07d7ba4753c9a101acf89c40420f419eaab558a6b1d43b1e6fc46355ba4112e9", 47192220, default=True),
    "resnet50.imagewoof": checkpoint(
        "imagewoof", "5f7531bf2536ef48b46b38ca37c5d92ee4682f11b0b1772dbf237ec3c4463067", 47192220),
    "convtwist_resnet18.imagenette": checkpoint(
        "imagenette", "99b1d77ca64d7bbf53331a95e9c8f24848814453eeb8f0b11e5bd8b6000b0b06", 41944412, default=True),
    "convtwist_resnet18.imagewoof": checkpoint(
        "imagewoof", "19cf0a2e2518d2b8a490d7562fd133abf54a6b3c175f6382d427e4d8ef5721df", 41944412),
    "convtwist_resnet50.imagenette": checkpoint(
        "imagenette", "52494e406160562caec703000e3ab3a5ce8d02b2a0ece9ef332aebc4c890a324", 67332820, default=True),
    "convtwist_resnet50.imagewoof": checkpoint(
        "imagewoof", "7cc311bba95d65ba6bb27d757f36529f34140fd9c8a1f36f1670659e64d33a97", 67332820),
})


@register_model
def resnet18(num_classes: int = 10, *, in_chans: int = 3, zero_init_residual: bool = True) -> ZooResNet:
    """Plain torchvision ResNet-18 (the baseline for convtwist_resnet18)."""
    return resnet(18, twist=False, num_classes=num_classes, in_chans=in_chans, zero_init_residual=zero_init_residual)


@register_model
def resnet50(num_classes: int = 10, *, in_chans: int = 3, zero_init_residual: bool = True) -> ZooResNet:
    """Plain torchvision ResNet-50 (the baseline for convtwist_resnet50)."""
    return resnet(50, twist=False, num_classes=num_classes, in_chans=in_chans, zero_init_residual=zero_init_residual)


@register_model
def convtwist_resnet18(num_classes: int = 10, *, in_chans: int = 3, zero_init_residual: bool = True,
                       init_max: float = 1.5) -> ZooResNet:
    """ResNet-18 with every 3x3 conv a ConvTwist (7x7 stem and 1x1 shortcuts stay plain)."""
    return resnet(18, twist=True, num_classes=num_classes, in_chans=in_chans, zero_init_residual=zero_init_residual,
                  init_max=init_max)


@register_model
def convtwist_resnet50(num_classes: int = 10, *, in_chans: int = 3, zero_init_residual: bool = True,
                       init_max: float = 1.5) -> ZooResNet:
    """ResNet-50 with every 3x3 conv a ConvTwist (7x7 stem and 1x1 convs stay plain)."""
    return resnet(50, twist=True, num_classes=num_classes, in_chans=in_chans, zero_init_residual=zero_init_residual,
                  init_max=init_max)
