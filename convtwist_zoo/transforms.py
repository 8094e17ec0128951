"""Image transforms and the normalisation constants: the one place that knows how pixels become tensors."""
from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode, v2

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "AUGMENTATIONS", "train_transform", "eval_transform"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


AUGMENTATIONS = ("crop", "trivial")


def train_transform(image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD, min_scale: float = 0.35,
                    augment: str = "crop"):
    """RandomResizedCrop + horizontal flip (``crop``), plus TrivialAugmentWide (``trivial``), then normalise."""
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augment!r}; choose one of {', '.join(AUGMENTATIONS)}")
    steps = [v2.RGB(), v2.RandomResizedCrop(image_size, scale=(min_scale, 1.0), antialias=True),
             v2.RandomHorizontalFlip()]
    if augment == "trivial":
        steps.append(v2.TrivialAugmentWide())
    return v2.Compose(steps + [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def eval_transform(image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct: float = 0.875,
                   interpolation: str = "bilinear", angle: float = 0.0, scale: float = 1.0):
    """Resize the shortest side to ``image_size / crop_pct``, centre-crop ``image_size``, normalise (the fast.ai and
    timm protocol). ``image_size`` is an int or (height, width).

    ``angle`` (degrees, counter-clockwise) and ``scale`` (>1 zooms in) turn/rescale the crop about its centre, with
    black where the image has no pixels: the robustness sweeps."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    steps = [v2.RGB(),
             v2.Resize(int(round(min(h, w) / crop_pct)), interpolation=InterpolationMode(interpolation),
                       antialias=True),
             v2.CenterCrop((h, w))]
    if angle or scale != 1.0:
        steps.append(v2.Lambda(lambda im: v2.functional.affine(
            im, angle=float(angle), translate=[0.0, 0.0], scale=float(scale), shear=[0.0, 0.0],
            interpolation=InterpolationMode.BILINEAR, fill=0)))
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(steps)
